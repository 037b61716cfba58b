"""relay's plain HTTP endpoints, answered on the WebSocket port.

``GET|POST /twiml``, ``GET /health``, ``GET /public-url``, ``GET /tools`` and
``POST /api/sessions/reset``. Each handler takes the request and returns a
websockets :class:`~websockets.http11.Response`; none of them upgrades.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from relay.httpbody import form_fields
from relay.routes import HttpRoute
from relay.twiml import connect_stream_twiml, stream_url

if TYPE_CHECKING:
    from relay.server import RelayServer

Endpoint = Callable[["RelayServer", Request, HttpRoute], Awaitable[Response]]


def respond(status: int, body: bytes | str, content_type: str, **headers: str) -> Response:
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
    for name, value in headers.items():
        h[name.replace("_", "-")] = value
    return Response(status, status_enum.phrase, h, data)


def json_response(status: int, payload: Any) -> Response:
    """A JSON response."""
    return respond(status, orjson.dumps(payload), "application/json")


def error_response(status: int, code: str, message: str) -> Response:
    """A JSON error body: ``{"error": code, "message": …}``."""
    return json_response(status, {"error": code, "message": message})


def bearer_ok(request: Request, expected: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <expected>``.

    With no token configured every request passes (development mode).
    """
    if not expected:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip(), expected)


async def twiml(server: RelayServer, request: Request, route: HttpRoute) -> Response:
    """TwiML that connects the call to ``/call``, carrying the sessionId."""
    if request.method not in ("GET", "POST"):
        return error_response(405, "method_not_allowed", "use GET or POST")
    params = dict(route.query)
    params.update(form_fields(request))
    public = server.settings.public_url or _public_from_request(request)
    parameters = {}
    session_id = params.get("sessionId")
    if session_id:
        parameters["sessionId"] = session_id
    try:
        body = connect_stream_twiml(stream_url(public, "/call"), parameters)
    except ValueError as exc:
        return error_response(400, "bad_request", str(exc))
    return respond(200, body, "text/xml; charset=utf-8")


def _public_from_request(request: Request) -> str:
    host = request.headers.get("X-Forwarded-Host") or request.headers.get("Host") or "localhost"
    proto = request.headers.get("X-Forwarded-Proto") or "https"
    if proto == "https" and host.split(":")[0] in ("localhost", "127.0.0.1"):
        proto = "http"
    return f"{proto}://{host}"


async def health(server: RelayServer, request: Request, route: HttpRoute) -> Response:
    """Liveness plus counts: sessions, waiting frontends, open connections, ends by reason."""
    return json_response(200, server.health())


async def public_url(server: RelayServer, request: Request, route: HttpRoute) -> Response:
    """The configured public URL, as the reference demo's web app expects."""
    return json_response(200, {"publicUrl": server.settings.public_url})


async def tools(server: RelayServer, request: Request, route: HttpRoute) -> Response:
    """The function schemas the model is offered."""
    return json_response(200, server.toolbox.schemas)


async def reset(server: RelayServer, request: Request, route: HttpRoute) -> Response:
    """End every session (operators and tests); guarded by RELAY_ADMIN_TOKEN."""
    if request.method != "POST":
        return error_response(405, "method_not_allowed", "use POST")
    if not bearer_ok(request, server.settings.admin_token):
        return error_response(401, "unauthorized", "admin token required")
    ended = await server.registry.reset_all_sessions()
    return json_response(200, {"ended": ended})


ENDPOINTS: dict[str, Endpoint] = {
    "/twiml": twiml,
    "/health": health,
    "/public-url": public_url,
    "/tools": tools,
    "/api/sessions/reset": reset,
}
