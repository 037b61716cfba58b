"""Every request, before anything else: headers, rate limit, route, HTTP answer or admission.

websockets calls :func:`process_request` for each request. A header relay
reads that comes twice is a 400; then the per-IP rate limit applies to every
path (a ``/call`` upgrade over the limit is let through only once its Twilio
signature checks out). Plain HTTP is answered here (:mod:`relay.transport.http`);
a WebSocket upgrade is checked by the gate and the registry and either refused
with an HTTP status or marked :class:`~relay.transport.sockets.Admitted` for
its handler, with its endpoint's inbound budget. Refusals are logged sampled
per client address (:class:`~relay.security.sampling.RefusalSampler`).
"""

from __future__ import annotations

from relay.errors import AuthError, BadPath, FleetUnavailable
from relay.lifecycle.pairing import FrontendRoute, valid_session_id
from relay.logs import Ev, get_logger
from relay.security.gate import repeated_header, socket_address
from relay.transport import http
from relay.transport.refusals import log_refusal
from relay.transport.routes import CallRoute, HttpRoute, LogsRoute, Route, parse_route
from relay.transport.sockets import Admitted, RelayConnection
from relay.wire.compat import Request, Response

_log = get_logger(component="server")


async def process_request(ctx: http.Context, conn: RelayConnection,
                          request: Request) -> Response | None:
    """Answer or refuse ``request``; None lets a WebSocket upgrade proceed."""
    state = ctx.state
    gate = state.gate
    repeated = repeated_header(request)
    if repeated is not None:
        # Nothing may read headers before this: websockets raises on a repeated one.
        log_refusal(gate, socket_address(conn.remote_address), Ev.HANDSHAKE_REFUSED,
                    status=400, reason="repeated header", header=repeated)
        return http.error_response(400, "bad_request", f"send the {repeated} header once")
    client = gate.client_address(conn.remote_address, request)
    route: Route | None
    try:
        route = parse_route(request.path)
    except BadPath as exc:
        route, bad_path = None, str(exc)
    if not gate.rate_ok(client) and not (
            isinstance(route, CallRoute) and gate.signed_by_twilio(request)):
        log_refusal(gate, client, Ev.RATE_LIMITED)
        return http.error_response(429, "rate_limited", "too many connections; slow down")
    if route is None:
        return http.error_response(404, "not_found", bad_path)
    if isinstance(route, HttpRoute):
        return await http.answer(ctx, request, route)
    if request.method != "GET":
        return http.error_response(405, "method_not_allowed", "WebSocket upgrades use GET")
    if route.session_id is not None and not valid_session_id(route.session_id):
        return http.error_response(400, "bad_session_id", "sessionId is not valid")
    if isinstance(route, LogsRoute) and route.call_sid is not None and not valid_session_id(
            route.call_sid):
        return http.error_response(400, "bad_call_sid", "callSid is not valid")
    settings = state.settings
    conn.max_send_buffer = settings.max_send_buffer
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
            conn.protocol.max_message_size = settings.max_frontend_message
            conn.set_budget(gate.frontend_budget, kind="frontend", client=client,
                            sessionId=route.session_id)
        else:
            gate.admit_call(request)
            conn.protocol.max_message_size = settings.max_call_message
            conn.set_budget(gate.call_budget, kind="call", client=client,
                            sessionId=route.session_id)
    except FleetUnavailable as exc:
        _log.warning(Ev.FLEET_REFUSED, client=client)
        return http.error_response(503, "fleet_unavailable", str(exc))
    except AuthError as exc:
        kind = "frontend" if isinstance(route, LogsRoute) else "call"
        log_refusal(gate, client, Ev.HANDSHAKE_REFUSED, kind=kind, status=exc.status,
                    reason=exc.message)
        return http.error_response(exc.status, http.error_code(exc.status), exc.message)
    conn.admitted = Admitted(route, user_id, client, token_sid)
    return None

