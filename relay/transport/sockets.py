"""The two WebSocket handlers: a Twilio call stream and a browser frontend.

Each attaches its connection to a session through the registry and then only
waits for the connection to end; messages flow through the sinks of
:mod:`relay.wire.connection`. Admission (tokens, signatures, origins) already
happened on the handshake (:mod:`relay.transport.admission`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

from relay.core.session import FrontendInfo
from relay.errors import BadInput
from relay.lifecycle.registry import FrontendRoute, PairingRefused
from relay.logs import Ev, get_logger
from relay.messages import frontend, twilio
from relay.messages.closecodes import CloseCode
from relay.transport.routes import CallRoute, LogsRoute
from relay.transport.state import AppState
from relay.wire.connection import WireMixin
from relay.wire.httpbody import BodyReadingConnection


@dataclass(slots=True)
class Admitted:
    """What the handshake decided about one connection."""

    route: CallRoute | LogsRoute
    #: The user a frontend acts for (from its token, or ``?userId=`` in development mode).
    user_id: str | None = None
    #: The client's address, as the gate saw it.
    client: str = "unknown"


class RelayConnection(WireMixin, BodyReadingConnection):
    """A server connection: relay's wire behaviour, request bodies, and its admission."""

    admitted: Admitted | None = None


def connection_class(max_body: int) -> type[RelayConnection]:
    """The connection class for a server whose HTTP bodies are capped at ``max_body``."""
    cap = max_body

    class CappedRelayConnection(RelayConnection):
        max_body = cap

    return CappedRelayConnection


_log = get_logger(component="server")


async def handle(state: AppState, conn: RelayConnection) -> None:
    """The websockets connection handler: one call stream or one frontend."""
    admitted = conn.admitted
    assert admitted is not None, "process_request admits every upgrade"
    if isinstance(admitted.route, CallRoute):
        await _handle_call(state, conn, admitted.route)
    else:
        await _handle_frontend(state, conn, admitted.route, admitted.user_id)
    if conn.close_task is not None:
        await conn.close_task


async def _handle_frontend(state: AppState, conn: RelayConnection, route: LogsRoute,
                           user_id: str | None) -> None:
    log = _log.bind(sessionId=route.session_id, callSid=route.call_sid)
    log.info(Ev.FRONTEND_SETUP)
    info = FrontendInfo(
        dialect=route.dialect or state.settings.frontend_dialect,
        wants_audio=route.wants_audio,
    )
    try:
        runner, fid = state.registry.attach_frontend(
            FrontendRoute(route.session_id, route.call_sid, info, user_id=user_id), conn
        )
    except PairingRefused as exc:
        log.warning(Ev.FRONTEND_REFUSED, reason=str(exc))
        if exc.ended_reason is not None:
            conn.send_now(orjson.dumps(frontend.call_status_changed(
                route.session_id or "", "ended", None, exc.ended_reason)))
        conn.close_soon(exc.code, str(exc))
        return
    handlers = state.counters.handlers
    handlers["frontend"] += 1
    try:
        await conn.wait_closed()
    finally:
        handlers["frontend"] -= 1
        runner.detach_frontend(fid)
        log.info(Ev.FRONTEND_CLOSED, sessionId=runner.id, code=conn.close_code)


async def _handle_call(state: AppState, conn: RelayConnection, route: CallRoute) -> None:
    log = _log.bind(sessionId=route.session_id)
    log.info(Ev.CALL_CONNECTED)
    loop = asyncio.get_running_loop()
    paired: asyncio.Future[Any] = loop.create_future()

    def before_start(text: str) -> None:
        # Pairing happens right here, inside the data callback, so no media
        # frame can slip in between `start` and the session's sink.
        if paired.done():
            return
        try:
            msg = twilio.parse_message(text)
            if isinstance(msg, twilio.Connected):
                return
            if not isinstance(msg, twilio.Start):
                raise BadInput(f"{type(msg).__name__.lower()} before start", code="wrong_order")
            if not state.gate.stream_token_ok(msg.custom_parameters.get("streamToken"),
                                              msg.call_sid):
                # A replayed or forged stream: refused before any model session.
                raise BadInput("missing, reused or expired stream token", code="bad_stream_token")
            runner = state.registry.attach_call(msg, route.session_id, conn)
        except BadInput as exc:
            log.warning(Ev.CALL_REFUSED, code=exc.code, detail=exc.message)
            conn.close_soon(CloseCode.POLICY_VIOLATION, exc.message)
            paired.set_result(None)
            return
        except PairingRefused as exc:
            log.warning(Ev.CALL_REFUSED, code=exc.code, detail=str(exc))
            conn.close_soon(exc.code, str(exc))
            paired.set_result(None)
            return
        log.info(Ev.CALL_STARTED, sessionId=runner.id, callSid=msg.call_sid,
                 streamSid=msg.stream_sid)
        paired.set_result(runner)

    conn.set_sinks(before_start)
    handlers = state.counters.handlers
    handlers["call"] += 1
    runner = None
    try:
        closed = loop.create_task(conn.wait_closed())
        try:
            done, _ = await asyncio.wait(
                {paired, closed}, timeout=state.settings.call_start_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                log.warning(Ev.CALL_REFUSED, code="start_timeout")
                conn.close_soon(CloseCode.START_TIMEOUT, "no start message in time")
            runner = paired.result() if paired.done() else None
            await closed
        finally:
            closed.cancel()
    finally:
        handlers["call"] -= 1
        if runner is not None:
            runner.call_closed()
        log.info(Ev.CALL_CLOSED, code=conn.close_code)
