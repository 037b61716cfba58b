"""Which endpoint a request path names. Pure: a path in, a route out.

WebSocket paths: ``/call``, ``/call/{sessionId}``, ``/logs``,
``/logs/{sessionId}``, ``/logs?sessionId=…``, ``/logs?callSid=…`` (plus
``dialect=beta`` and ``audio=1`` for frontends). Everything else is HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from relay.errors import BadPath


@dataclass(frozen=True, slots=True)
class CallRoute:
    """A Twilio Media Stream."""

    session_id: str | None


@dataclass(frozen=True, slots=True)
class LogsRoute:
    """A frontend connection."""

    session_id: str | None
    call_sid: str | None
    dialect: str | None
    wants_audio: bool
    query: dict[str, str]


@dataclass(frozen=True, slots=True)
class HttpRoute:
    """A plain HTTP endpoint: the path without its query, and the query."""

    path: str
    query: dict[str, str]


Route = CallRoute | LogsRoute | HttpRoute


def parse_route(raw_path: str) -> Route:
    """Classify a request path.

    Raises:
        BadPath: a ``/call`` or ``/logs`` path with extra segments.
    """
    parts = urlsplit(raw_path)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    segments = [unquote(s) for s in parts.path.split("/") if s]
    head = segments[0] if segments else ""
    if head == "call":
        if len(segments) > 2:
            raise BadPath("use /call or /call/{sessionId}")
        return CallRoute(segments[1] if len(segments) == 2 else None)
    if head == "logs":
        if len(segments) > 2:
            raise BadPath("use /logs or /logs/{sessionId}")
        session_id = segments[1] if len(segments) == 2 else (query.get("sessionId") or None)
        dialect = query.get("dialect") or None
        return LogsRoute(
            session_id=session_id,
            call_sid=query.get("callSid") or None,
            dialect=dialect,
            wants_audio=query.get("audio", "") in ("1", "true", "yes"),
            query=query,
        )
    return HttpRoute("/" + "/".join(segments), query)
