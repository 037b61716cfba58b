"""The websockets server: routes paths, answers HTTP, owns shutdown.

One port serves Twilio (``/call``), browsers (``/logs``) and plain HTTP. Each
WebSocket handler attaches its connection to a session through the
:class:`~relay.lifecycle.registry.Registry` and then only waits for the connection to
end; messages flow through the sinks of :mod:`relay.wire.connection`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from relay.config import Settings
from relay.core.deadlines import Limits
from relay.core.session import EndReason, FrontendInfo, SessionOptions
from relay.core.tools import ToolBox, default_toolbox
from relay.errors import BadInput, UpstreamConnectError
from relay.lifecycle.registry import (
    Capacity,
    FrontendRoute,
    PairingRefused,
    Registry,
    valid_session_id,
)
from relay.lifecycle.runner import RunnerDeps
from relay.logs import Ev, get_logger
from relay.messages import frontend, twilio
from relay.messages.closecodes import CloseCode
from relay.providers.heygen import AvatarSessions
from relay.providers.local import LocalModel
from relay.providers.openai import open_realtime
from relay.providers.peer import LocalPeer, UpstreamPeer
from relay.providers.twilio_rest import CallHangUp
from relay.security.auth import SUBPROTOCOL, AuthError
from relay.security.gate import Gate
from relay.transport import http as httpapi
from relay.transport.metrics import Metrics
from relay.transport.routes import BadPath, CallRoute, HttpRoute, LogsRoute, parse_route
from relay.wire.connection import WireMixin
from relay.wire.httpbody import body_reading_connection


def session_options(settings: Settings, toolbox: ToolBox) -> SessionOptions:
    """The per-session knobs from the process settings."""
    return SessionOptions(
        tools=tuple(toolbox.schemas),
        default_voice=settings.voice,
        transcription_model=settings.transcription_model,
        greet_first=settings.greet_first,
        mark_interval_ms=settings.mark_interval_ms,
        pre_open_audio_frames=settings.pre_open_audio_frames,
        limits=Limits(
            inactivity_warning_s=settings.inactivity_warning_s,
            inactivity_timeout_s=settings.inactivity_timeout_s,
            max_session_s=settings.max_session_s,
            duration_warning_s=settings.duration_warning_s,
            resume_grace_s=settings.resume_grace_s,
            farewell_timeout_s=settings.farewell_timeout_s,
        ),
        resume_buffer_events=settings.resume_buffer_events,
    )


class RelayServer:
    """relay's server: start it, serve, close it once."""

    def __init__(self, settings: Settings, *, toolbox: ToolBox | None = None) -> None:
        self.settings = settings
        self.toolbox = toolbox or default_toolbox()
        budget = settings.hangup_timeout_s
        # Attempts sized so retries fit the teardown's budget for provider calls.
        self.calls = CallHangUp(
            settings.twilio_account_sid, settings.twilio_auth_token,
            base_url=settings.twilio_api_base_url, attempts=3, timeout=budget / 3,
            backoff_initial=min(0.2, budget / 20), backoff_max=budget / 6,
        )
        self.avatars = AvatarSessions(
            settings.heygen_api_key, base_url=settings.heygen_api_base_url, attempts=3,
            timeout=budget / 3, backoff_initial=min(0.2, budget / 20), backoff_max=budget / 6,
        )
        deps = RunnerDeps(
            connect_upstream=self._connect_upstream,
            toolbox=self.toolbox,
            hang_up=self._hang_up,
            stop_avatar=self._stop_avatar,
            close_timeout_s=settings.close_timeout_s,
            hangup_timeout_s=budget,
        )
        capacity = Capacity(
            max_sessions=settings.max_sessions,
            max_sessions_per_user=settings.max_sessions_per_user,
            max_frontends_per_session=settings.max_frontends_per_session,
        )
        self.registry = Registry(session_options(settings, self.toolbox), deps, limits=capacity)
        self.gate = Gate(settings, self.registry, time.monotonic)
        self.metrics = Metrics(self)
        self._server: Server | None = None
        self._closing: asyncio.Task[None] | None = None
        self._handlers = {"call": 0, "frontend": 0}
        self._log = get_logger(component="server")

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``HOST:PORT``; returns once the socket is bound."""
        connection_class = type(
            "RelayServerConnection",
            (WireMixin, body_reading_connection(self.settings.max_http_body)),
            {},
        )
        self._server = await serve(
            self._handle,
            self.settings.host,
            self.settings.port,
            process_request=self._process_request,
            create_connection=connection_class,
            select_subprotocol=self._select_subprotocol,
            compression=None,
            max_size=max(self.settings.max_frontend_message, self.settings.max_call_message),
            open_timeout=self.settings.handshake_timeout_s,
            ping_interval=self.settings.ping_interval_s,
            ping_timeout=self.settings.ping_timeout_s,
            close_timeout=self.settings.close_timeout_s,
        )
        self.registry.start_sweeping(self.settings.sweep_interval_s)
        self.metrics.start()
        model = "local" if self.settings.uses_local_model else "openai"
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        self._log.info(Ev.SERVER_STARTED, host=self.settings.host, port=self.port, model=model,
                       loop=loop)
        if self.settings.uses_local_model:
            self._log.info(Ev.MODEL_LOCAL)
        else:
            self._log.info(Ev.MODEL_OPENAI, url=self.settings.openai_realtime_url)
        if not self.calls.configured:
            self._log.warning(Ev.NO_TWILIO_CREDENTIALS)
        if self.gate.verifier is None:
            self._log.warning(Ev.DEV_MODE)
        if self.gate.signatures is None:
            self._log.warning(Ev.NO_TWILIO_SIGNATURES)

    @property
    def port(self) -> int:
        """The bound port (useful with ``PORT=0``)."""
        assert self._server is not None, "server not started"
        return self._server.sockets[0].getsockname()[1]

    async def serve_forever(self) -> None:
        """Serve until :meth:`close` is called."""
        assert self._server is not None, "server not started"
        await self._server.wait_closed()
        if self._closing is not None:
            await self._closing

    def close(self) -> asyncio.Task[None]:
        """Stop accepting, end every session (``shutdown``), close; idempotent.

        Returns the shutdown task; await it (or :meth:`wait_closed`).
        """
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._shutdown())
        return self._closing

    async def wait_closed(self) -> None:
        """Wait for a shutdown started by :meth:`close`."""
        await self.close()

    async def _shutdown(self) -> None:
        self._log.info(Ev.SERVER_STOPPING, sessions=len(self.registry.sessions))
        if self._server is not None:
            # Stop accepting first so no session is born during the drain.
            self._server.close(close_connections=False)
        await self.registry.close()
        try:
            async with asyncio.timeout(self.settings.drain_s):
                await self.registry.end_all(EndReason.SHUTDOWN)
        except TimeoutError:
            self._log.warning(Ev.DRAIN_TIMEOUT, left=len(self.registry.sessions))
        if self._server is not None:
            self._server.close(close_connections=True)
            try:
                async with asyncio.timeout(self.settings.close_timeout_s):
                    await self._server.wait_closed()
            except TimeoutError:
                self._log.warning(Ev.DRAIN_TIMEOUT, left=len(self._server.connections))
        await self.calls.close()
        await self.avatars.close()
        await self.metrics.stop()
        self._log.info(Ev.SERVER_STOPPED)

    # -- model ------------------------------------------------------------------------

    async def _hang_up(self, call_sid: str, answered: bool) -> object:
        return await self.calls.hang_up(call_sid, answered=answered)

    async def _stop_avatar(self, provider: str, avatar_id: str) -> object:
        return await self.avatars.stop(avatar_id)

    async def _connect_upstream(self, session_id: str) -> UpstreamPeer:
        started = time.monotonic()
        try:
            peer = await self._open_upstream(session_id)
        except UpstreamConnectError:
            self.metrics.upstream_failures += 1
            raise
        self.metrics.upstream_connect_seconds.observe(time.monotonic() - started)
        return peer

    async def _open_upstream(self, session_id: str) -> UpstreamPeer:
        s = self.settings
        if s.uses_local_model:
            return LocalPeer(LocalModel())
        return await open_realtime(
            s.openai_realtime_url,
            s.openai_api_key,
            attempts=s.upstream_connect_attempts,
            backoff_initial=s.upstream_backoff_initial_s,
            backoff_max=s.upstream_backoff_max_s,
            open_timeout=s.upstream_open_timeout_s,
            ping_interval=s.ping_interval_s,
            ping_timeout=s.ping_timeout_s,
            close_timeout=s.close_timeout_s,
            session_id=session_id,
        )

    def health(self) -> dict[str, Any]:
        """The ``/health`` document."""
        counts = self.registry.counts()
        return {
            "status": "ok" if self._closing is None else "shutting_down",
            "model": "local" if self.settings.uses_local_model else "openai",
            "sessions": counts["sessions"],
            "waitingFrontends": counts["waitingFrontends"],
            "connections": {
                # Streams still waiting for their start count as calls too.
                "call": max(counts["call"], self._handlers["call"]),
                "frontend": max(counts["frontend"], self._handlers["frontend"]),
                "upstream": counts["upstream"],
            },
            "endedByReason": dict(self.registry.ended_by_reason),
            "resumeGraceS": self.settings.resume_grace_s,
            "security": {
                "auth": self.gate.verifier is not None,
                "twilioSignatures": self.gate.signatures is not None,
                "origins": list(self.settings.allowed_origins),
                "handshakeTimeoutS": self.settings.handshake_timeout_s,
                "connRatePerS": self.settings.conn_rate_per_s,
                "connBurst": self.settings.conn_burst,
            },
        }

    # -- HTTP and routing ---------------------------------------------------------------

    def _select_subprotocol(self, conn: ServerConnection, offered: Sequence[str]) -> str | None:
        # relay.v1 is the only subprotocol ever selected; a token offered
        # beside it is a credential, never echoed back.
        return SUBPROTOCOL if SUBPROTOCOL in offered else None

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        client = self.gate.client_address(conn.remote_address, request)
        # Twilio's streams come from a handful of Twilio addresses: when they
        # are authenticated by signature, the per-IP limit would only refuse calls.
        signed_stream = self.gate.signatures is not None and request.path.startswith("/call")
        if not signed_stream and not self.gate.rate_ok(client):
            self._log.warning(Ev.RATE_LIMITED, client=client)
            return httpapi.error_response(429, "rate_limited", "too many connections; slow down")
        try:
            route = parse_route(request.path)
        except BadPath as exc:
            return httpapi.error_response(404, "not_found", str(exc))
        if isinstance(route, HttpRoute):
            return await httpapi.answer(self, request, route)
        if request.method != "GET":
            return httpapi.error_response(405, "method_not_allowed", "WebSocket upgrades use GET")
        if route.session_id is not None and not valid_session_id(route.session_id):
            return httpapi.error_response(400, "bad_session_id", "sessionId is not valid")
        assert isinstance(conn, WireMixin)
        conn.max_send_buffer = self.settings.max_send_buffer
        try:
            if isinstance(route, LogsRoute):
                if route.dialect not in (None, "ga", "beta"):
                    return httpapi.error_response(400, "bad_dialect", "dialect must be ga or beta")
                conn.relay_user = self.gate.admit_frontend(request, route)  # type: ignore[attr-defined]
                conn.protocol.max_message_size = self.settings.max_frontend_message
            else:
                self.gate.admit_call(request, route)
                conn.protocol.max_message_size = self.settings.max_call_message
        except AuthError as exc:
            kind = "frontend" if isinstance(route, LogsRoute) else "call"
            self._log.warning(Ev.HANDSHAKE_REFUSED, kind=kind, status=exc.status,
                              reason=exc.message, client=client)
            return httpapi.error_response(exc.status, httpapi.error_code(exc.status), exc.message)
        conn.relay_route = route  # type: ignore[attr-defined]
        return None

    async def _handle(self, conn: ServerConnection) -> None:
        route = conn.relay_route  # type: ignore[attr-defined]
        assert isinstance(conn, WireMixin)
        if isinstance(route, CallRoute):
            await self._handle_call(conn, route)
        else:
            await self._handle_frontend(conn, route)
        if conn.close_task is not None:
            await conn.close_task

    async def _handle_frontend(self, conn: WireMixin, route: LogsRoute) -> None:
        log = self._log.bind(sessionId=route.session_id, callSid=route.call_sid)
        log.info(Ev.FRONTEND_SETUP)
        info = FrontendInfo(
            dialect=route.dialect or self.settings.frontend_dialect,
            wants_audio=route.wants_audio,
        )
        try:
            runner, fid = self.registry.attach_frontend(
                FrontendRoute(route.session_id, route.call_sid, info,
                              user_id=conn.relay_user), conn  # type: ignore[attr-defined]
            )
        except PairingRefused as exc:
            log.warning(Ev.FRONTEND_REFUSED, reason=str(exc))
            if exc.ended_reason is not None:
                conn.send_now(orjson.dumps(frontend.call_status_changed(
                    route.session_id or "", "ended", None, exc.ended_reason)))
            conn.close_soon(exc.code, str(exc))
            return
        self._handlers["frontend"] += 1
        try:
            await conn.wait_closed()  # type: ignore[attr-defined]
        finally:
            self._handlers["frontend"] -= 1
            runner.detach_frontend(fid)
            log.info(Ev.FRONTEND_CLOSED, sessionId=runner.id, code=conn.close_code)  # type: ignore[attr-defined]

    async def _handle_call(self, conn: WireMixin, route: CallRoute) -> None:
        log = self._log.bind(sessionId=route.session_id)
        log.info(Ev.CALL_CONNECTED)
        loop = asyncio.get_running_loop()
        paired: asyncio.Future[Any] = loop.create_future()

        def before_start(text: str) -> None:
            # Pairing happens right here, inside the data callback, so no
            # media frame can slip in between `start` and the session's sink.
            if paired.done():
                return
            try:
                msg = twilio.parse_message(text)
                if isinstance(msg, twilio.Connected):
                    return
                if not isinstance(msg, twilio.Start):
                    raise BadInput(f"{type(msg).__name__.lower()} before start", code="wrong_order")
                if not self.gate.stream_token_ok(msg.custom_parameters.get("streamToken"),
                                                 msg.call_sid):
                    # A replayed or forged stream: refused before any model session.
                    raise BadInput("missing, reused or expired stream token", code="bad_stream_token")
                runner = self.registry.attach_call(msg, route.session_id, conn)
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
        self._handlers["call"] += 1
        runner = None
        try:
            closed = loop.create_task(conn.wait_closed())  # type: ignore[attr-defined]
            try:
                done, _ = await asyncio.wait(
                    {paired, closed}, timeout=self.settings.call_start_timeout_s,
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
            self._handlers["call"] -= 1
            if runner is not None:
                runner.call_closed()
            log.info(Ev.CALL_CLOSED, code=conn.close_code)  # type: ignore[attr-defined]

