"""The server: one port for WebSockets and HTTP, routing, the HTTP endpoints, health, metrics, the live sessions page."""
