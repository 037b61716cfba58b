"""Sessions in time: the registry that pairs connections with sessions, the runner that carries out a session's decisions, reporting."""
