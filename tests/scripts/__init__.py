"""Tests of the shipped scripts (scripts/): each run as a command line against a real relay."""
