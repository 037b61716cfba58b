"""Tests of relay.lifecycle: pairing, reaping, stopping, teardown and placing calls."""
