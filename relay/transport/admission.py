"""Every request, before anything else: rate limit, route, HTTP answer or WebSocket admission.

websockets calls :func:`process_request` for each request. Plain HTTP is
answered here (:mod:`relay.transport.http`); a WebSocket upgrade is checked by
the gate and the registry and either refused with an HTTP status or marked
:class:`~relay.transport.sockets.Admitted` for its handler.
"""

from __future__ import annotations

from relay.errors import AuthError, BadPath, FleetUnavailable
from relay.lifecycle.pairing import FrontendRoute, valid_session_id
from relay.logs import Ev, get_logger
from relay.transport import http
from relay.transport.routes import HttpRoute, LogsRoute, parse_route
from relay.transport.sockets import Admitted, RelayConnection
from relay.wire.compat import Request, Response

_log = get_logger(component="server")


async def process_request(ctx: http.Context, conn: RelayConnection,
                          request: Request) -> Response | None:
    """Answer or refuse ``request``; None lets a WebSocket upgrade proceed."""
    state = ctx.state
    gate = state.gate
    client = gate.client_address(conn.remote_address, request)
    # Twilio's streams come from a handful of Twilio addresses: when they
    # are authenticated by signature, the per-IP limit would only refuse calls.
    signed_stream = gate.signatures is not None and request.path.startswith("/call")
    if not signed_stream and not gate.rate_ok(client):
        _log.warning(Ev.RATE_LIMITED, client=client)
        return http.error_response(429, "rate_limited", "too many connections; slow down")
    try:
        route = parse_route(request.path)
    except BadPath as exc:
        return http.error_response(404, "not_found", str(exc))
    if isinstance(route, HttpRoute):
        return await http.answer(ctx, request, route)
    if request.method != "GET":
        return http.error_response(405, "method_not_allowed", "WebSocket upgrades use GET")
    if route.session_id is not None and not valid_session_id(route.session_id):
        return http.error_response(400, "bad_session_id", "sessionId is not valid")
    if isinstance(route, LogsRoute) and route.call_sid is not None and not valid_session_id(
            route.call_sid):
        return http.error_response(400, "bad_call_sid", "callSid is not valid")
    conn.max_send_buffer = state.settings.max_send_buffer
    user_id, token_sid = None, None
    try:
        if isinstance(route, LogsRoute):
            if route.dialect not in (None, "ga", "beta"):
                return http.error_response(400, "bad_dialect", "dialect must be ga or beta")
            user_id, token_sid = gate.admit_frontend(request, route.session_id, route.query)
            refusal = await state.registry.admission(FrontendRoute(
                route.session_id, route.call_sid, user_id=user_id, token_session_id=token_sid))
            if refusal is not None:
                raise AuthError(*refusal)
            conn.protocol.max_message_size = state.settings.max_frontend_message
        else:
            gate.admit_call(request)
            conn.protocol.max_message_size = state.settings.max_call_message
    except FleetUnavailable as exc:
        _log.warning(Ev.FLEET_REFUSED, client=client)
        return http.error_response(503, "fleet_unavailable", str(exc))
    except AuthError as exc:
        kind = "frontend" if isinstance(route, LogsRoute) else "call"
        _log.warning(Ev.HANDSHAKE_REFUSED, kind=kind, status=exc.status,
                     reason=exc.message, client=client)
        return http.error_response(exc.status, http.error_code(exc.status), exc.message)
    conn.admitted = Admitted(route, user_id, client, token_sid)
    return None
