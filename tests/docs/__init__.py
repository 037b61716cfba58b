"""Tests that the docs (README.md, docs/) stay true to the code."""
