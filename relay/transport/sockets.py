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
from relay.errors import BadInput, FleetUnavailable, PairingRefused
from relay.lifecycle.pairing import FrontendRoute
from relay.logs import Ev, get_logger
from relay.messages import frontend, twilio
from relay.messages.closecodes import CloseCode
from relay.transport.refusals import log_refusal
from relay.transport.routes import CallRoute, LogsRoute
from relay.transport.state import AppState
from relay.wire.connection import WireMixin
from relay.wire.httpbody import BodyReadingConnection
from relay.wire.reader import FrameReader


@dataclass(slots=True)
class Admitted:
    """What the handshake decided about one connection."""

    route: CallRoute | LogsRoute
    #: The user a frontend acts for (from its token, or ``?userId=`` in development mode).
    user_id: str | None = None
    #: The client's address, as the gate saw it.
    client: str = "unknown"
    #: The one session the frontend's token allows, if it names one.
    token_session_id: str | None = None


class RelayConnection(FrameReader, WireMixin, BodyReadingConnection):
    """A server connection: relay's frame reader and wire behaviour, request bodies, its admission."""

    admitted: Admitted | None = None
    #: The local session whose teardown closes this connection, once paired.
    session_id: str | None = None


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
    state.connections.add(conn)
    try:
        if isinstance(admitted.route, CallRoute):
            await _handle_call(state, conn, admitted.route)
        else:
            await _handle_frontend(state, conn, admitted.route, admitted)
        if conn.close_task is not None:
            await conn.close_task
    finally:
        state.connections.discard(conn)


async def _handle_frontend(state: AppState, conn: RelayConnection, route: LogsRoute,
                           admitted: Admitted) -> None:
    log = _log.bind(sessionId=route.session_id, callSid=route.call_sid)
    log.info(Ev.FRONTEND_SETUP)
    bare = route.session_id is None and route.call_sid is None
    info = FrontendInfo(
        dialect=route.dialect or state.settings.frontend_dialect,
        wants_audio=route.wants_audio,
        bare=bare,
    )
    try:
        session_id = await state.registry.attach_frontend(
            FrontendRoute(route.session_id, route.call_sid, info, user_id=admitted.user_id,
                          token_session_id=admitted.token_session_id), conn
        )
    except FleetUnavailable as exc:
        log.warning(Ev.FLEET_REFUSED, kind="frontend")
        conn.close_soon(CloseCode.TRY_AGAIN_LATER, str(exc))
        return
    except PairingRefused as exc:
        log_refusal(state.gate, admitted.client, Ev.FRONTEND_REFUSED, log, reason=str(exc))
        if exc.ended_reason is not None:
            conn.send_now(orjson.dumps(frontend.call_status_changed(
                route.session_id or "", "ended", None, exc.ended_reason)))
        conn.close_soon(exc.code, str(exc))
        return
    if session_id in state.registry.sessions:
        conn.session_id = session_id
    handlers = state.counters.handlers
    handlers["frontend"] += 1
    try:
        await conn.wait_closed()
    finally:
        handlers["frontend"] -= 1
        state.registry.detach_frontend(conn)
        log.info(Ev.FRONTEND_CLOSED, sessionId=session_id, code=conn.close_code)


def _client(conn: RelayConnection) -> str:
    return conn.admitted.client if conn.admitted is not None else "unknown"


#: Frames a call may send after ``start`` while it is being paired (20 ms each).
_MAX_EARLY_FRAMES = 250


async def _handle_call(state: AppState, conn: RelayConnection, route: CallRoute) -> None:
    log = _log.bind(sessionId=route.session_id)
    client = _client(conn)
    log.info(Ev.CALL_CONNECTED)
    loop = asyncio.get_running_loop()
    started: asyncio.Future[twilio.Start | None] = loop.create_future()
    early: list[str] = []

    def before_start(text: str) -> None:
        if started.done():
            # Frames that came in the same read as `start`, kept in order for
            # the session; reading is paused until it is paired.
            if len(early) < _MAX_EARLY_FRAMES:
                early.append(text)
            return
        try:
            msg = twilio.parse_message(text)
            if isinstance(msg, twilio.Connected):
                return
            if not isinstance(msg, twilio.Start):
                raise BadInput(f"{type(msg).__name__.lower()} before start", code="wrong_order")
        except BadInput as exc:
            log_refusal(state.gate, client, Ev.CALL_REFUSED, log, code=exc.code,
                        detail=exc.message)
            conn.close_soon(CloseCode.POLICY_VIOLATION, exc.message)
            started.set_result(None)
            return
        conn.pause_reading()
        started.set_result(msg)

    conn.set_sinks(before_start)
    handlers = state.counters.handlers
    handlers["call"] += 1
    runner = None
    closed = loop.create_task(conn.wait_closed())
    try:
        done, _ = await asyncio.wait({started, closed}, timeout=state.settings.call_start_timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if not done:
            log_refusal(state.gate, client, Ev.CALL_REFUSED, log, code="start_timeout")
            conn.close_soon(CloseCode.START_TIMEOUT, "no start message in time")
        start = started.result() if started.done() else None
        if start is not None and not closed.done():
            runner = await _pair_call(state, conn, route, start, log)
            if runner is not None:
                conn.session_id = runner.id
                conn.redeliver(early)
                conn.resume_reading()
        await closed
    finally:
        closed.cancel()
        handlers["call"] -= 1
        if runner is not None:
            runner.call_closed()
        log.info(Ev.CALL_CLOSED, code=conn.close_code)


async def _pair_call(state: AppState, conn: RelayConnection, route: CallRoute,
                     start: twilio.Start, log: Any) -> Any:
    client = _client(conn)
    named = route.session_id or start.custom_parameters.get("sessionId") or None
    try:
        if state.gate.signatures is not None and not await state.registry.directory.spend_stream_token(
                start.custom_parameters.get("streamToken"), start.call_sid, named):
            # A replayed or forged stream: refused before any model session.
            raise BadInput("missing, reused, expired or mismatched stream token",
                           code="bad_stream_token")
        runner = await state.registry.attach_call(start, route.session_id, conn)
    except BadInput as exc:
        log_refusal(state.gate, client, Ev.CALL_REFUSED, log, code=exc.code, detail=exc.message)
        conn.close_soon(CloseCode.POLICY_VIOLATION, exc.message)
        return None
    except PairingRefused as exc:
        log_refusal(state.gate, client, Ev.CALL_REFUSED, log, code=exc.code, detail=str(exc))
        conn.close_soon(exc.code, str(exc))
        return None
    except FleetUnavailable as exc:
        log.warning(Ev.FLEET_REFUSED, kind="call")
        conn.close_soon(CloseCode.TRY_AGAIN_LATER, str(exc))
        return None
    log.info(Ev.CALL_STARTED, sessionId=runner.id, callSid=start.call_sid,
             streamSid=start.stream_sid)
    return runner
