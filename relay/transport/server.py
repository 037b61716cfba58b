"""The websockets server: one port for Twilio, browsers and HTTP; it owns shutdown.

:class:`RelayServer` builds the process's one :class:`~relay.transport.state.AppState`
(registry, gate, providers), listens, and stops once (:mod:`relay.transport.shutdown`):
stop accepting, end every session (frontends told, calls hung up, avatars
stopped), every connection closed with 1001 within ``RELAY_DRAIN_S``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

from relay.config import Settings
from relay.core.deadlines import Limits
from relay.core.instructions import PhoneSettings
from relay.core.session import SessionOptions
from relay.core.tools import ToolBox, default_toolbox
from relay.errors import SettingsError, UpstreamConnectError
from relay.fleet.directory import RedisDirectory
from relay.fleet.node import FleetNode
from relay.fleet.store import Store
from relay.lifecycle.directory import Directory
from relay.lifecycle.memory import MemoryDirectory
from relay.lifecycle.ports import Peer
from relay.lifecycle.registry import Capacity, Registry
from relay.lifecycle.runner import RunnerDeps
from relay.logs import Ev, get_logger
from relay.providers.endpoints import realtime_endpoint
from relay.providers.heygen import AvatarSessions
from relay.providers.local import LocalModel
from relay.providers.localpeer import LocalPeer
from relay.providers.openai import open_realtime
from relay.providers.twilio_dial import CallDialer
from relay.providers.twilio_rest import CallHangUp
from relay.security.auth import SUBPROTOCOL
from relay.security.gate import Gate
from relay.security.limits import ConnectionRateLimit
from relay.transport import admission, sockets
from relay.transport import calls as outbound
from relay.transport.health import health, protections
from relay.transport.http import Context
from relay.transport.metrics import Metrics
from relay.transport.shutdown import Drain
from relay.transport.state import AppState


def session_options(settings: Settings, toolbox: ToolBox) -> SessionOptions:
    """The per-session knobs from the process settings."""
    return SessionOptions(
        tools=tuple(toolbox.schemas),
        phone=PhoneSettings(
            voice=settings.voice,
            transcription_model=settings.transcription_model,
            transcription_language=settings.transcription_language,
            noise_reduction=settings.noise_reduction,
            idle_timeout_ms=settings.vad_idle_timeout_ms,
        ),
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
            frontend_tool_timeout_s=settings.frontend_tool_timeout_s,
        ),
        resume_buffer_events=settings.resume_buffer_events,
        dtmf_to_model=settings.dtmf_to_model,
        voicemail=settings.voicemail,
    )


class RelayServer:
    """relay's server: start it, serve, close it once."""

    def __init__(self, settings: Settings, *, toolbox: ToolBox | None = None) -> None:
        problem = settings.exposure_problem()
        if problem is not None:
            raise SettingsError(problem)
        self.settings = settings
        self._endpoint = realtime_endpoint(settings)
        toolbox = toolbox or default_toolbox()
        budget = settings.hangup_timeout_s
        # Attempts sized so retries fit the teardown's budget for provider calls.
        calls = CallHangUp(
            settings.twilio_account_sid, settings.twilio_auth_token,
            base_url=settings.twilio_api_base_url, attempts=3, timeout=budget / 3,
            backoff_initial=min(0.2, budget / 20), backoff_max=budget / 6,
        )
        avatars = AvatarSessions(
            settings.heygen_api_key, base_url=settings.heygen_api_base_url, attempts=3,
            timeout=budget / 3, backoff_initial=min(0.2, budget / 20), backoff_max=budget / 6,
        )
        deps = RunnerDeps(
            connect_upstream=self._connect_upstream,
            toolbox=toolbox,
            hang_up=lambda call_sid, answered: calls.hang_up(call_sid, answered=answered),
            stop_avatar=lambda provider, avatar_id: avatars.stop(avatar_id),
            knows_call=lambda call_sid: self.state.registry.directory.knows_call(call_sid),
            close_timeout_s=settings.close_timeout_s,
            hangup_timeout_s=budget,
            refusal_log_first=settings.refusal_log_first,
            refusal_log_window_s=settings.refusal_log_window_s,
            apology_s=settings.apology_s,
        )
        capacity = Capacity(
            max_sessions=settings.max_sessions,
            max_sessions_per_user=settings.max_sessions_per_user,
            max_frontends_per_session=settings.max_frontends_per_session,
        )
        node = settings.node_id or f"{socket.gethostname()}:{settings.port or os.getpid()}"
        self._store: Store | None = None
        directory: Directory
        if settings.redis_url:
            self._store = Store(settings.redis_url)
            directory = RedisDirectory(self._store, node,
                                       stream_token_ttl_s=settings.stream_token_ttl_s)
        else:
            directory = MemoryDirectory(node, stream_token_ttl_s=settings.stream_token_ttl_s)
        registry = Registry(
            session_options(settings, toolbox), deps, limits=capacity, directory=directory,
            auth=bool(settings.auth_secret), bare_pairing=settings.bare_pairing_on)
        self.fleet: FleetNode | None = None
        if self._store is not None:
            assert isinstance(directory, RedisDirectory)
            self.fleet = FleetNode(
                self._store, directory, registry,
                heartbeat_s=settings.fleet_heartbeat_s, dead_after_s=settings.fleet_dead_after_s,
                hang_up=deps.hang_up, stop_avatar=deps.stop_avatar,
                load=lambda: self._load())
            registry.remote = self.fleet
        dialer = CallDialer(settings.twilio_account_sid, settings.twilio_auth_token,
                            base_url=settings.twilio_api_base_url)
        dial_rate = ConnectionRateLimit(settings.dial_rate_per_hour / 3600.0,
                                        max(1, settings.dial_burst))
        self.state = AppState(
            settings=settings,
            registry=registry,
            gate=Gate(settings, time.monotonic),
            toolbox=toolbox,
            calls=calls,
            avatars=avatars,
            fleet=self.fleet,
            dialer=dialer,
            dial_rate=dial_rate,
        )
        if self.fleet is not None:
            self.fleet.placer = lambda runner, to, public: outbound.place_here(
                self.state, runner, to, public or settings.public_url)
        self.metrics = Metrics(self.state)
        self._http = Context(self.state, self.metrics)
        self._server: Server | None = None
        self._closing: asyncio.Task[None] | None = None
        self._drain: Drain | None = None
        self._log = get_logger(component="server")

    @property
    def registry(self) -> Registry:
        """The process's sessions."""
        return self.state.registry

    def health(self) -> dict[str, Any]:
        """The ``/health`` document."""
        return health(self.state)

    def _load(self) -> dict[str, Any]:
        counts = self.registry.counts()
        return {"sessions": counts["sessions"], "calls": counts["call"],
                "frontends": counts["frontend"]}

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``HOST:PORT``; returns once the socket is bound."""
        s = self.settings
        if self.fleet is not None:
            # Reachable by the other nodes before any connection arrives here.
            await self.fleet.start()
        self._server = await serve(
            partial(sockets.handle, self.state),
            s.host,
            s.port,
            process_request=partial(admission.process_request, self._http),
            create_connection=sockets.connection_class(s.max_http_body),
            select_subprotocol=_select_subprotocol,
            compression=None,
            max_size=max(s.max_frontend_message, s.max_call_message),
            open_timeout=s.handshake_timeout_s,
            ping_interval=s.ping_interval_s,
            ping_timeout=s.ping_timeout_s,
            close_timeout=s.close_timeout_s,
        )
        self.registry.start_sweeping(s.sweep_interval_s)
        self.metrics.start()
        self._log_start()

    def _log_start(self) -> None:
        s = self.settings
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        self._log.info(Ev.SERVER_STARTED, host=s.host, port=self.port,
                       model="local" if s.uses_local_model else "openai", loop=loop,
                       frontendDialect=s.frontend_dialect)
        if s.uses_local_model:
            self._log.info(Ev.MODEL_LOCAL)
        else:
            self._log.info(Ev.MODEL_OPENAI, url=self._endpoint.url, provider=self._endpoint.provider)
        if not self.state.calls.configured:
            self._log.warning(Ev.NO_TWILIO_CREDENTIALS)
        if self.state.gate.verifier is None:
            self._log.warning(Ev.DEV_MODE)
        if self.state.gate.signatures is None:
            self._log.warning(Ev.NO_TWILIO_SIGNATURES)
        on, off = protections(self.state)
        self._log.info(Ev.PROTECTIONS, on=on, off=off)

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

        Returns the shutdown task; await it (or :meth:`wait_closed`). The order
        and its bounds are :mod:`relay.transport.shutdown`'s.
        """
        if self._closing is None:
            self._drain = Drain(self.state, self._server, self._release)
            self._closing = asyncio.get_running_loop().create_task(self._drain.run())
        return self._closing

    def hurry(self) -> None:
        """A second signal: close every connection now; hang-ups and avatar stops still happen."""
        if self._drain is None:
            self.close()
        assert self._drain is not None
        self._drain.hurry()

    async def wait_closed(self) -> None:
        """Wait for a shutdown started by :meth:`close`."""
        await self.close()

    async def _release(self) -> None:
        # The drain's last step: what this server holds besides connections.
        await self.registry.retry_releases()
        if self.fleet is not None:
            await self.fleet.stop()
        if self._store is not None:
            await self._store.close()
        await self.state.calls.close()
        await self.state.dialer.close()
        await self.state.avatars.close()
        await self.metrics.stop()

    # -- model ------------------------------------------------------------------------

    async def _connect_upstream(self, session_id: str) -> Peer:
        started = time.monotonic()
        try:
            peer = await self._open_upstream(session_id)
        except UpstreamConnectError:
            self.state.counters.upstream_failures += 1
            raise
        self.metrics.upstream_connected(time.monotonic() - started)
        return peer

    async def _open_upstream(self, session_id: str) -> Peer:
        s = self.settings
        if s.uses_local_model:
            return LocalPeer(LocalModel())
        return await open_realtime(
            self._endpoint.url,
            self._endpoint.headers,
            attempts=s.upstream_connect_attempts,
            backoff_initial=s.upstream_backoff_initial_s,
            backoff_max=s.upstream_backoff_max_s,
            open_timeout=s.upstream_open_timeout_s,
            ping_interval=s.ping_interval_s,
            ping_timeout=s.ping_timeout_s,
            close_timeout=s.close_timeout_s,
            session_id=session_id,
            budget=s.upstream_connect_budget_s,
        )


def _select_subprotocol(conn: ServerConnection, offered: Sequence[str]) -> str | None:
    # relay.v1 is the only subprotocol ever selected; a token offered beside
    # it is a credential, never echoed back.
    return SUBPROTOCOL if SUBPROTOCOL in offered else None
