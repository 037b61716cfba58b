"""The state one relay server shares with its edges, passed in explicitly.

Like uvicorn's ``ServerState``: the HTTP endpoints, ``/health``, ``/metrics``
and the WebSocket handlers all receive this one object instead of reaching
through the server. It holds references, not logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from relay.config import Settings
from relay.core.tools import ToolBox
from relay.fleet.node import FleetNode
from relay.lifecycle.registry import Registry
from relay.providers.heygen import AvatarSessions
from relay.providers.twilio_dial import CallDialer
from relay.providers.twilio_rest import CallHangUp
from relay.security.gate import Gate
from relay.security.limits import ConnectionRateLimit


@dataclass(slots=True)
class Counters:
    """Plain integers the server keeps; read at scrape time, never per frame."""

    #: WebSocket handlers running, by kind (a stream waiting for ``start`` counts).
    handlers: dict[str, int] = field(default_factory=lambda: {"call": 0, "frontend": 0})
    #: Model connections that never opened.
    upstream_failures: int = 0
    #: How late the last event-loop probe ran, in seconds.
    loop_lag_s: float = 0.0


@dataclass(slots=True)
class AppState:
    """Everything the edges of one server may use."""

    settings: Settings
    registry: Registry
    gate: Gate
    toolbox: ToolBox
    calls: CallHangUp
    avatars: AvatarSessions
    counters: Counters = field(default_factory=Counters)
    #: Every WebSocket connection past its handshake, until its handler returns
    #: (the drain closes each with 1001).
    connections: set[Any] = field(default_factory=set)
    #: Places outbound calls (``POST /api/calls``) through Twilio.
    dialer: CallDialer = field(default_factory=lambda: CallDialer("", ""))
    #: Calls each user may place: a token bucket per user.
    dial_rate: ConnectionRateLimit = field(default_factory=lambda: ConnectionRateLimit(0, 1))
    #: This node in its fleet (RELAY_REDIS_URL), or None for one process alone.
    fleet: FleetNode | None = None
    #: Set once shutdown began: /health says so and new sessions are refused.
    shutting_down: bool = False
