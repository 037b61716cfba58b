"""Tests of the simulated peers (sim/, relay_sim) on their own, without the relay."""
