"""Tests of the fleet's pieces: the HAProxy configuration, the harness, scripts/fleet."""
