"""Tests of relay.core: the session and its pure parts, unit by unit and over real sockets."""
