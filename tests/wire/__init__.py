"""Tests of relay.wire: relay's frame reader, inbound budgets and the websockets internals it uses."""
