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
        # Every family carries the node: one scrape config serves a whole fleet.
        registry = self._state.registry
        node = registry.node
        doc = health(self._state)
        sessions = GaugeMetricFamily("relay_sessions", "Live sessions by state",
                                     labels=["node", "state"])
        states: dict[str, int] = {}
        for runner in registry.sessions.values():
            name = runner.session.state.name.lower()
            states[name] = states.get(name, 0) + 1
        for state, count in sorted(states.items()):
            sessions.add_metric([node, state], count)
        yield sessions
        waiting = GaugeMetricFamily("relay_waiting_frontends", "Frontends waiting for a call",
                                    labels=["node"])
        waiting.add_metric([node], doc["waitingFrontends"])
        yield waiting
        connections = GaugeMetricFamily("relay_connections", "Open connections by kind",
                                        labels=["node", "kind"])
        for kind, count in doc["connections"].items():
            connections.add_metric([node, kind], count)
        yield connections
        frames = CounterMetricFamily("relay_frames", "Audio frames relayed",
                                     labels=["node", "direction"])
        to_model, to_caller = registry.frames_relayed()
        frames.add_metric([node, "caller_to_model"], to_model)
        frames.add_metric([node, "model_to_caller"], to_caller)
        yield frames
        ended = CounterMetricFamily("relay_sessions_ended", "Sessions ended by reason",
                                    labels=["node", "reason"])
        for reason, count in sorted(registry.ended_by_reason.items()):
            ended.add_metric([node, reason], count)
        yield ended
        failures = CounterMetricFamily("relay_upstream_connect_failures",
                                       "Model connections that never opened", labels=["node"])
        failures.add_metric([node], self._state.counters.upstream_failures)
        yield failures
        lag = GaugeMetricFamily("relay_event_loop_lag_seconds",
                                "How late the last loop-lag probe ran", labels=["node"])
        lag.add_metric([node], self._state.counters.loop_lag_s)
        yield lag
        if self._state.fleet is not None:
            alive = GaugeMetricFamily("relay_fleet_nodes", "Nodes of the fleet alive, as this node sees them",
                                      labels=["node"])
            alive.add_metric([node], sum(1 for v in self._state.fleet.membership.nodes if v.alive))
            yield alive


class Metrics:
    """relay's metrics registry, and the loop-lag probe."""

    def __init__(self, state: AppState, probe_interval_s: float = 1.0) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._connect_seconds = Histogram(
            "relay_upstream_connect_seconds", "Time to open a model connection (incl. retries)",
            labelnames=["node"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=self.registry,
        )
        self._state = state
        self._interval = probe_interval_s
        self._probe: asyncio.Task[None] | None = None
        self.registry.register(RelayCollector(state))

    def upstream_connected(self, seconds: float) -> None:
        """A model connection opened after ``seconds`` (retries included)."""
        self._connect_seconds.labels(node=self._state.registry.node).observe(seconds)

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
