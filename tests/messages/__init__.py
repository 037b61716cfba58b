"""Tests of relay.messages: every inbound parser and outbound shape, and the beta/GA dialect."""
