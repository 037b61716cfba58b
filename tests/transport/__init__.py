"""Tests of relay.transport: the server, its HTTP endpoints, start-up and shutdown."""
