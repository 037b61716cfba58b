"""Tests of relay.security: admission, tokens, ownership, operator endpoints and abuse."""
