"""Per-IP connection rate limiting (the seed's "rate limiting for connection establishment").

A token bucket per client address: ``burst`` connections at once, refilled at
``rate_per_s``. Pure: callers pass the time. The table of addresses is bounded
so a flood of spoofed sources cannot grow memory.
"""

from __future__ import annotations

from collections import OrderedDict


class ConnectionRateLimit:
    """Token buckets keyed by client address."""

    def __init__(self, rate_per_s: float, burst: int, *, max_clients: int = 50_000) -> None:
        self.rate = rate_per_s
        self.burst = max(1, burst)
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """False when the rate is 0 (no limit)."""
        return self.rate > 0

    def allow(self, client: str, now: float) -> bool:
        """Spend one token for ``client``; False when its bucket is empty."""
        if not self.enabled:
            return True
        tokens, last = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)  # the least recently seen
        return allowed
