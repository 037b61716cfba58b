"""The decisions, free of I/O: one session's state machine and what it is built from."""
