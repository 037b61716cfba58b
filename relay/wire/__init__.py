"""websockets adapted to relay: direct delivery to sinks, non-blocking sends, request bodies. The one place that knows websockets internals."""
