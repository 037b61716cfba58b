"""Unit tests for relay.transport.routes: classifying request paths."""

from __future__ import annotations

import pytest

from relay.errors import BadPath
from relay.transport.routes import CallRoute, HttpRoute, LogsRoute, parse_route

SID = "3f2c9a7e-1b2d-4c5e-8f90-a1b2c3d4e5f6"


def logs(session_id: str | None = None, call_sid: str | None = None, dialect: str | None = None,
         wants_audio: bool = False, query: dict[str, str] | None = None) -> LogsRoute:
    return LogsRoute(session_id, call_sid, dialect, wants_audio, query or {})


# -- /call ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "route"), [
    ("/call", CallRoute(None)),
    ("/call/", CallRoute(None)),
    (f"/call/{SID}", CallRoute(SID)),
    (f"/call/{SID}/", CallRoute(SID)),
    ("/call/CA0123456789abcdef0123456789abcdef", CallRoute("CA0123456789abcdef0123456789abcdef")),
    ("/call/a%20b", CallRoute("a b")),
])
def test_call_paths(path: str, route: CallRoute) -> None:
    """/call and /call/{sessionId} (trailing slash and percent-escapes allowed) name a call."""
    assert parse_route(path) == route


def test_call_ignores_query() -> None:
    """A query on /call does not name the session (Twilio drops stream URL queries anyway)."""
    assert parse_route(f"/call?sessionId={SID}") == CallRoute(None)
    assert parse_route("/call/abc?x=1") == CallRoute("abc")


# -- /logs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "route"), [
    ("/logs", logs()),
    ("/logs/", logs()),
    (f"/logs/{SID}", logs(SID)),
    (f"/logs?sessionId={SID}", logs(SID, query={"sessionId": SID})),
    ("/logs?sessionId=", logs(query={"sessionId": ""})),
    ("/logs?callSid=CA123", logs(call_sid="CA123", query={"callSid": "CA123"})),
    ("/logs?callSid=", logs(query={"callSid": ""})),
    ("/logs?dialect=beta", logs(dialect="beta", query={"dialect": "beta"})),
    ("/logs?dialect=", logs(query={"dialect": ""})),
])
def test_logs_paths(path: str, route: LogsRoute) -> None:
    """/logs, /logs/{id}, ?sessionId= and ?callSid= name the frontend's session or call; blanks are None."""
    assert parse_route(path) == route


def test_logs_path_segment_wins_over_query() -> None:
    """When both are given, the /logs/{sessionId} segment names the session, not the query."""
    route = parse_route("/logs/from-path?sessionId=from-query")
    assert isinstance(route, LogsRoute)
    assert route.session_id == "from-path"
    assert route.query == {"sessionId": "from-query"}


@pytest.mark.parametrize(("value", "wanted"), [
    ("1", True), ("true", True), ("yes", True), ("0", False), ("", False), ("no", False),
    ("TRUE", False),
])
def test_logs_audio_flag(value: str, wanted: bool) -> None:
    """?audio=1|true|yes asks for audio deltas; anything else does not."""
    route = parse_route(f"/logs?audio={value}")
    assert isinstance(route, LogsRoute) and route.wants_audio is wanted


def test_logs_all_query_params_together() -> None:
    """Every frontend query parameter is read at once, and the raw query is kept."""
    route = parse_route(f"/logs?sessionId={SID}&callSid=CA1&dialect=beta&audio=1&extra=x%20y")
    assert route == LogsRoute(
        session_id=SID, call_sid="CA1", dialect="beta", wants_audio=True,
        query={"sessionId": SID, "callSid": "CA1", "dialect": "beta", "audio": "1",
               "extra": "x y"},
    )


def test_logs_query_last_value_wins() -> None:
    """A repeated query parameter takes its last value."""
    route = parse_route("/logs?sessionId=a&sessionId=b")
    assert isinstance(route, LogsRoute) and route.session_id == "b"


def test_logs_session_id_is_unescaped() -> None:
    """Percent-escapes in the session segment and the query are decoded."""
    assert parse_route("/logs/a%2Db").session_id == "a-b"  # type: ignore[union-attr]
    assert parse_route("/logs?sessionId=a%2Db").session_id == "a-b"  # type: ignore[union-attr]


# -- bad paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/call/a/b",
    "/call/a/b/c",
    f"/call/{SID}/extra?x=1",
    "/logs/a/b",
    "/logs/a/b/",
    "/logs/x/y?sessionId=z",
])
def test_extra_segments_are_bad_paths(path: str) -> None:
    """/call and /logs with more than one segment after them raise BadPath."""
    with pytest.raises(BadPath, match="/call|/logs"):
        parse_route(path)


def test_bad_path_is_a_value_error() -> None:
    """BadPath subclasses ValueError."""
    assert issubclass(BadPath, ValueError)


# -- HTTP ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "route"), [
    ("/", HttpRoute("/", {})),
    ("", HttpRoute("/", {})),
    ("/health", HttpRoute("/health", {})),
    ("/health/", HttpRoute("/health", {})),
    ("/twiml?sessionId=abc", HttpRoute("/twiml", {"sessionId": "abc"})),
    ("/sessions/abc/end", HttpRoute("/sessions/abc/end", {})),
    ("/callback", HttpRoute("/callback", {})),
    ("/logsx", HttpRoute("/logsx", {})),
    ("/Call", HttpRoute("/Call", {})),
    ("/api/x?flag&y=", HttpRoute("/api/x", {"flag": "", "y": ""})),
])
def test_http_paths(path: str, route: HttpRoute) -> None:
    """Any other path is HTTP: normalised without trailing slash, with its query (blanks kept)."""
    assert parse_route(path) == route
