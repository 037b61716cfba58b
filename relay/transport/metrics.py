"""``GET /metrics``: Prometheus text, from relay's own state at scrape time.

Nothing on the per-frame path touches a metric object: runners count frames
in plain integers and the collector reads them (and every other figure) only
when Prometheus scrapes. Event-loop lag — the best single sign of an
overloaded relay — is sampled by a small task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from relay.transport.health import health
from relay.transport.state import AppState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RelayCollector(Collector):
    """Reads the server's state when scraped."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        registry = self._state.registry
        doc = health(self._state)
        sessions = GaugeMetricFamily("relay_sessions", "Live sessions by state", labels=["state"])
        states: dict[str, int] = {}
        for runner in registry.sessions.values():
            name = runner.session.state.name.lower()
            states[name] = states.get(name, 0) + 1
        for state, count in sorted(states.items()):
            sessions.add_metric([state], count)
        yield sessions
        yield GaugeMetricFamily("relay_waiting_frontends", "Frontends waiting for a call",
                                value=doc["waitingFrontends"])
        connections = GaugeMetricFamily("relay_connections", "Open connections by kind",
                                        labels=["kind"])
        for kind, count in doc["connections"].items():
            connections.add_metric([kind], count)
        yield connections
        frames = CounterMetricFamily("relay_frames", "Audio frames relayed", labels=["direction"])
        to_model, to_caller = registry.frames_relayed()
        frames.add_metric(["caller_to_model"], to_model)
        frames.add_metric(["model_to_caller"], to_caller)
        yield frames
        ended = CounterMetricFamily("relay_sessions_ended", "Sessions ended by reason",
                                    labels=["reason"])
        for reason, count in sorted(registry.ended_by_reason.items()):
            ended.add_metric([reason], count)
        yield ended
        yield CounterMetricFamily("relay_upstream_connect_failures",
                                  "Model connections that never opened",
                                  value=self._state.counters.upstream_failures)
        yield GaugeMetricFamily("relay_event_loop_lag_seconds",
                                "How late the last loop-lag probe ran",
                                value=self._state.counters.loop_lag_s)


class Metrics:
    """relay's metrics registry, and the loop-lag probe."""

    def __init__(self, state: AppState, probe_interval_s: float = 1.0) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.upstream_connect_seconds = Histogram(
            "relay_upstream_connect_seconds", "Time to open a model connection (incl. retries)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=self.registry,
        )
        self._state = state
        self._interval = probe_interval_s
        self._probe: asyncio.Task[None] | None = None
        self.registry.register(RelayCollector(state))

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)

    def start(self) -> None:
        """Start sampling event-loop lag."""
        if self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._sample_lag())

    async def stop(self) -> None:
        """Stop the probe."""
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
            self._probe = None

    async def _sample_lag(self) -> None:
        while True:
            expected = time.monotonic() + self._interval
            await asyncio.sleep(self._interval)
            self._state.counters.loop_lag_s = max(0.0, time.monotonic() - expected)
