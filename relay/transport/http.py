"""relay's plain HTTP endpoints, answered on the WebSocket port.

``GET|POST /twiml``, ``GET /health``, ``GET /public-url``, ``GET /tools``, and the
API: ``POST /api/sessions/reset``, ``POST /api/sessions/stop_all``,
``POST /api/sessions/{sessionId}/stop`` (works from ``navigator.sendBeacon``:
no custom headers, credentials in the query string, any small body) and
``POST /api/heygen/stop_all_sessions``. Each handler takes the request and
returns a websockets :class:`~websockets.http11.Response`; none upgrades.
Browsers call the API cross-origin, so it answers CORS preflights.

Two rules hold for every endpoint, from the table at the bottom:

* **Operator endpoints fail closed.** Without ``RELAY_ADMIN_TOKEN`` they answer
  403 saying how to turn them on; with it they need it in
  ``Authorization: Bearer`` (never the query string, which proxies log).
* **No cross-site simple POSTs.** A ``POST`` needs ``Content-Type:
  application/json`` or ``X-Relay-Request: 1``. A page on another site can send
  neither without a CORS preflight, which only ``RELAY_ALLOWED_ORIGINS`` pass,
  so a hidden form cannot end anyone's interviews. Two endpoints are exempt:
  ``/twiml`` (Twilio posts a form; it is authenticated by its signature) and
  the stop beacon (``navigator.sendBeacon`` can set neither; with auth on it
  needs the user's own token in ``?token=``, which another site does not have).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from relay.errors import AvatarApiError, FleetUnavailable, Forbidden
from relay.lifecycle.registry import valid_session_id
from relay.messages.twiml import APOLOGY, connect_stream_twiml, stream_url
from relay.security.auth import AuthError
from relay.security.origins import origin_allowed
from relay.transport import calls
from relay.transport.health import health as health_document
from relay.transport.metrics import CONTENT_TYPE, Metrics
from relay.transport.routes import HttpRoute
from relay.transport.state import AppState
from relay.wire.httpbody import form_fields

Handler = Callable[["Context", Request, HttpRoute], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Context:
    """What an endpoint may use: the server's shared state and its metrics."""

    state: AppState
    metrics: Metrics


def respond(status: int, body: bytes | str, content_type: str,
            headers: Mapping[str, str] | None = None) -> Response:
    """A complete HTTP response with the length set."""
    data = body.encode() if isinstance(body, str) else body
    status_enum = HTTPStatus(status)
    h = Headers()
    h["Content-Type"] = content_type
    h["Content-Length"] = str(len(data))
    h["Cache-Control"] = "no-store"
    # websockets closes the connection after any non-upgrade response; say so,
    # or keep-alive clients reuse a dead socket.
    h["Connection"] = "close"
    h["X-Content-Type-Options"] = "nosniff"
    for name, value in (headers or {}).items():
        h[name] = value
    return Response(status, status_enum.phrase, h, data)


def json_response(status: int, payload: Any) -> Response:
    """A JSON response."""
    return respond(status, orjson.dumps(payload), "application/json")


def error_response(status: int, code: str, message: str) -> Response:
    """A JSON error body: ``{"error": code, "message": …}``."""
    return json_response(status, {"error": code, "message": message})


async def twiml(ctx: Context, request: Request, route: HttpRoute) -> Response:
    """TwiML that connects the call to ``/call``, carrying the sessionId."""
    ctx.state.gate.admit_webhook(request)
    params = dict(route.query)
    params.update(form_fields(request))
    public = ctx.state.settings.public_url or _public_from_request(request)
    parameters = {}
    session_id = params.get("sessionId")
    directory = ctx.state.registry.directory
    call_sid = params.get("CallSid")
    if not session_id and call_sid:
        # A page registered this call (/logs?callSid=): name its session, so the
        # stream routes to the node the page is on.
        registered = await directory.session_of_call(call_sid)
        if registered is None and await directory.owner(call_sid) is not None:
            registered = call_sid
        session_id = registered
    if session_id:
        parameters["sessionId"] = session_id
    if params.get("CallSid"):
        # Only calls Twilio told relay about may later be cancelled by relay.
        await ctx.state.registry.directory.learn_call(params["CallSid"])
    if ctx.state.gate.signatures is not None:
        call_sid = params.get("CallSid")
        if not call_sid:
            return error_response(400, "bad_request", "CallSid is required")
        # Binds the stream to this signed webhook: a replayed upgrade has no token.
        parameters["streamToken"] = await ctx.state.registry.directory.mint_stream_token(
            call_sid, session_id or None)
    # The session ID goes in the stream's path as well as its parameters: a
    # proxy in front of several relay processes can then route the call to the
    # process its frontend is on (/logs/{id}); Twilio keeps paths, drops queries.
    path = f"/call/{quote(session_id, safe='')}" if session_id else "/call"
    try:
        # Played only if relay closes the stream before hanging up: when the
        # model cannot be reached (RELAY_APOLOGY_S), the caller is not left in silence.
        body = connect_stream_twiml(stream_url(public, path), parameters,
                                    apology=APOLOGY if ctx.state.settings.apology_s > 0 else None)
    except ValueError as exc:
        return error_response(400, "bad_request", str(exc))
    return respond(200, body, "text/xml; charset=utf-8")


def _public_from_request(request: Request) -> str:
    host = request.headers.get("X-Forwarded-Host") or request.headers.get("Host") or "localhost"
    proto = request.headers.get("X-Forwarded-Proto") or "https"
    if proto == "https" and host.split(":")[0] in ("localhost", "127.0.0.1"):
        proto = "http"
    return f"{proto}://{host}"


async def health(ctx: Context, request: Request, route: HttpRoute) -> Response:
    """Liveness plus counts: sessions, waiting frontends, open connections, ends by reason."""
    return json_response(200, health_document(ctx.state))


async def public_url(ctx: Context, request: Request, route: HttpRoute) -> Response:
    """``PUBLIC_URL``, else the URL this request reached relay at (as ``/twiml`` derives it).

    The reference demo's web app checks that this URL answers; an empty one never would.
    """
    return json_response(200, {"publicUrl": ctx.state.settings.public_url
                               or _public_from_request(request)})


async def tools(ctx: Context, request: Request, route: HttpRoute) -> Response:
    """The function schemas the model is offered."""
    return json_response(200, ctx.state.toolbox.schemas)


async def reset(ctx: Context, request: Request, route: HttpRoute) -> Response:
    """End every session (operators and tests); guarded by RELAY_ADMIN_TOKEN."""
    ended = await ctx.state.registry.reset_all_sessions()
    return json_response(200, {"ended": ended})


async def stop_all(ctx: Context, request: Request, route: HttpRoute) -> Response:
    """End the caller's sessions (every session for the admin); call it when the app loads."""
    who = ctx.state.gate.api_caller(request, route.query)
    if who.admin:
        return json_response(200, {"stopped": await ctx.state.registry.end_all_stopped()})
    if who.user_id is None:
        return error_response(401, "unauthorized", "a user (or the admin token) is required")
    return json_response(200, {"stopped": await ctx.state.registry.stop_user(who.user_id)})


async def stop_one(ctx: Context, request: Request, route: HttpRoute) -> Response:
    """End one session: the page's ``beforeunload`` beacon."""
    session_id = route.path.split("/")[3]
    if not valid_session_id(session_id):
        return error_response(400, "bad_session_id", "sessionId is not valid")
    who = ctx.state.gate.api_caller(request, route.query)
    try:
        stopped = await ctx.state.registry.stop_session(session_id, who.user_id, admin=who.admin)
    except Forbidden:
        return error_response(403, "forbidden", "that session belongs to another user")
    if not stopped:
        return error_response(404, "not_found", "no such live session")
    return json_response(200, {"stopped": True, "sessionId": session_id})


async def heygen_stop_all(ctx: Context, request: Request, route: HttpRoute) -> Response:
    """Stop every live HeyGen streaming session of the account (operators, app start)."""
    if not ctx.state.avatars.configured:
        return error_response(503, "not_configured", "HEYGEN_API_KEY is not set")
    try:
        stopped = await ctx.state.avatars.stop_all()
    except AvatarApiError as exc:
        return error_response(502, "heygen_unavailable", f"{exc} ({exc.reason})")
    return json_response(200, {"stopped": stopped})


async def sessions(ctx: Context, request: Request, route: HttpRoute) -> Response:
    """Live sessions and the last ended ones (the live sessions page); operators only."""
    return json_response(200, {
        "sessions": await ctx.state.registry.fleet_snapshot(),
        "ended": list(reversed(ctx.state.registry.recently_ended)),
        "health": health_document(ctx.state),
    })


async def dashboard(ctx: Context, request: Request, route: HttpRoute) -> Response:
    """The live sessions page (plain HTML and JS; it asks for the admin token if one is set)."""
    # It shows who is on a call: no other site may frame it (clickjacking).
    return respond(200, _DASHBOARD.read_bytes(), "text/html; charset=utf-8", {
        "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                   "script-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        "X-Frame-Options": "DENY",
    })


_DASHBOARD = Path(__file__).with_name("dashboard.html")

async def metrics(ctx: Context, request: Request, route: HttpRoute) -> Response:
    """Prometheus text: sessions, connections, frames, ends by reason, upstream, loop lag."""
    return respond(200, ctx.metrics.render(), CONTENT_TYPE)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One HTTP endpoint: its handler, the methods it serves, and whether it is for operators."""

    handler: Handler
    methods: frozenset[str]
    #: Needs ``Authorization: Bearer $RELAY_ADMIN_TOKEN``; off (403) when none is set.
    admin: bool = False
    #: Takes a POST a browser may send cross-site without a preflight (Twilio's
    #: form, a beacon): exempt from the JSON-or-custom-header rule.
    simple_post: bool = False


async def calls_place(ctx: Context, request: Request, route: HttpRoute) -> Response:
    """Place the interview call (``POST /api/calls``, see :mod:`relay.transport.calls`)."""
    public = ctx.state.settings.public_url or _public_from_request(request)
    status, body = await calls.place_call(ctx.state, request, route, public)
    return json_response(status, body)


async def calls_status(ctx: Context, request: Request, route: HttpRoute) -> Response:
    """Twilio's signed status callback for a call relay placed."""
    await calls.status_callback(ctx.state, request, route)
    return respond(204, b"", "text/plain")


async def calls_amd(ctx: Context, request: Request, route: HttpRoute) -> Response:
    """Twilio's signed answering-machine callback for a call relay placed."""
    await calls.amd_callback(ctx.state, request, route)
    return respond(204, b"", "text/plain")


_GET = frozenset({"GET", "HEAD"})
_POST = frozenset({"POST"})

ENDPOINTS: dict[str, Endpoint] = {
    "/metrics": Endpoint(metrics, _GET, admin=True),
    "/": Endpoint(dashboard, _GET),
    "/dashboard": Endpoint(dashboard, _GET),
    "/api/sessions": Endpoint(sessions, _GET, admin=True),
    "/twiml": Endpoint(twiml, frozenset({"GET", "POST"}), simple_post=True),
    "/health": Endpoint(health, _GET),
    "/public-url": Endpoint(public_url, _GET),
    "/tools": Endpoint(tools, _GET),
    "/api/sessions/reset": Endpoint(reset, _POST, admin=True),
    "/api/sessions/stop_all": Endpoint(stop_all, _POST),
    "/api/heygen/stop_all_sessions": Endpoint(heygen_stop_all, _POST, admin=True),
    "/api/calls": Endpoint(calls_place, _POST),
    "/api/calls/status": Endpoint(calls_status, _POST, simple_post=True),
    "/api/calls/amd": Endpoint(calls_amd, _POST, simple_post=True),
}
_STOP_ONE_PATH = re.compile(r"/api/sessions/[^/]+/stop\Z")
_STOP_ONE = Endpoint(stop_one, _POST, simple_post=True)


def resolve(path: str) -> Endpoint | None:
    """The endpoint serving ``path``, or None."""
    endpoint = ENDPOINTS.get(path)
    if endpoint is None and _STOP_ONE_PATH.match(path):
        endpoint = _STOP_ONE
    return endpoint


async def answer(ctx: Context, request: Request, route: HttpRoute) -> Response:
    """Answer a plain HTTP request: route, method, operator check, CORS, then the handler."""
    endpoint = resolve(route.path)
    if endpoint is None:
        return error_response(404, "not_found", f"no endpoint {route.path}")
    if request.method == "OPTIONS":
        return preflight(ctx.state, request)
    gate = ctx.state.gate
    if request.method not in endpoint.methods:
        allowed = " or ".join(sorted(endpoint.methods - {"HEAD"}))
        response = error_response(405, "method_not_allowed", f"use {allowed}")
    elif endpoint.admin and not gate.admin_configured:
        response = error_response(403, "admin_disabled", (
            "this operator endpoint is off: set RELAY_ADMIN_TOKEN on relay and send it as "
            "Authorization: Bearer <token>"))
    elif endpoint.admin and not gate.is_admin(request):
        response = error_response(401, "unauthorized",
                                  "send the admin token as Authorization: Bearer <token>")
    elif request.method == "POST" and not endpoint.simple_post and not _not_simple(request):
        response = error_response(403, "custom_header_required", (
            "send Content-Type: application/json or X-Relay-Request: 1 "
            "(cross-site form posts are refused)"))
    else:
        try:
            response = await endpoint.handler(ctx, request, route)
        except AuthError as exc:
            response = error_response(exc.status, error_code(exc.status), exc.message)
        except FleetUnavailable as exc:
            response = error_response(503, "fleet_unavailable", str(exc))
    for name, value in cors_headers(ctx.state, request).items():
        response.headers[name] = value
    return response


def _not_simple(request: Request) -> bool:
    # What a cross-site page cannot send without a CORS preflight.
    content_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return content_type == "application/json" or request.headers.get("X-Relay-Request") == "1"


def error_code(status: int) -> str:
    """The ``error`` code relay answers a refusal with."""
    return {401: "unauthorized", 403: "forbidden", 409: "conflict", 429: "rate_limited",
            503: "unavailable"}.get(status, "refused")


def cors_headers(state: AppState, request: Request) -> dict[str, str]:
    """CORS headers for an API response, if the request's Origin is allowed."""
    origin = request.headers.get("Origin")
    if origin is None:
        return {}
    if not origin_allowed(origin, state.settings.allowed_origins):
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Relay-Request",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


def preflight(state: AppState, request: Request) -> Response:
    """Answer an ``OPTIONS`` preflight: 204 with CORS headers, or 403 for other origins."""
    headers = cors_headers(state, request)
    if not headers:
        return error_response(403, "origin_not_allowed", "this origin may not call relay")
    return respond(204, b"", "text/plain", headers)
