"""A fleet of relay processes sharing one Redis: the shared directory, bridging, heartbeats."""
