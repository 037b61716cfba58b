"""The drain: how one relay server stops, once, in a fixed order, within bounds.

1. Stop accepting (a handshake still in progress gets 503).
2. End every session (reason ``shutdown``): each frontend is told at once, and
   each session's teardown hangs its call up and stops its avatars through
   their providers, then closes the model, the call and the frontends with 1001.
3. Connections no session will close (a ``/call`` still waiting for ``start``,
   a frontend bridged to another node) are closed with 1001 at once.
4. At ``RELAY_DRAIN_S``, or at once on a second signal (:meth:`Drain.hurry`),
   whatever is still open is closed with 1001; hurried, without waiting for
   the peer's closing handshake.
5. Teardowns still busy hanging up calls or stopping avatars are waited for
   anyway: a second signal shortens the drain, it never skips those (each is
   bounded by ``RELAY_HANGUP_TIMEOUT_S``). Then the server lets go of the rest
   (the fleet, the directory's store, the providers' HTTP clients, metrics).

So every connection has its 1001 within ``RELAY_DRAIN_S`` of the first signal,
and the process is gone within ``RELAY_DRAIN_S`` + ``RELAY_HANGUP_TIMEOUT_S`` +
two close timeouts at worst.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from relay.core.session import EndReason
from relay.logs import Ev, get_logger
from relay.messages.closecodes import CloseCode
from relay.transport.state import AppState

_log = get_logger(component="server")
_REASON = "server shutting down"


class Drain:
    """One server's shutdown; :meth:`run` it once, :meth:`hurry` it from a second signal."""

    def __init__(self, state: AppState, server: Any,
                 release: Callable[[], Awaitable[None]]) -> None:
        self._state = state
        self._server = server
        self._release = release
        self._hurried = asyncio.Event()

    @property
    def hurried(self) -> bool:
        """Whether a second signal asked to stop sooner."""
        return self._hurried.is_set()

    def hurry(self) -> None:
        """Close what is open now instead of at the drain's deadline; idempotent."""
        if not self._hurried.is_set():
            _log.warning(Ev.SHUTDOWN_HURRIED)
            self._hurried.set()

    async def run(self) -> None:
        state, settings = self._state, self._state.settings
        registry = state.registry
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.drain_s
        state.shutting_down = True
        _log.info(Ev.SERVER_STOPPING, sessions=len(registry.sessions), drainS=settings.drain_s)
        if self._server is not None:
            self._server.close(close_connections=False)  # stop accepting; connections are ours
        await registry.close()
        # end_all tells every frontend before its first await; the task runs it now.
        ending = loop.create_task(registry.end_all(EndReason.SHUTDOWN))
        await asyncio.sleep(0)
        self._close(lambda conn: conn.session_id not in registry.sessions)
        hurry = loop.create_task(self._hurried.wait())
        try:
            await asyncio.wait({ending, hurry}, timeout=max(0.0, deadline - loop.time()),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            hurry.cancel()
        if not ending.done():
            _log.warning(Ev.DRAIN_TIMEOUT, left=len(registry.sessions),
                         connections=len(state.connections))
        self._close(lambda conn: True)
        # Hang-ups and avatar stops are never skipped; each teardown bounds its own.
        try:
            async with asyncio.timeout(settings.hangup_timeout_s + 2 * settings.close_timeout_s):
                await asyncio.shield(ending)
        except TimeoutError:
            _log.warning(Ev.DRAIN_TIMEOUT, left=len(registry.sessions), step="teardowns")
        await self._wait_connections(settings.close_timeout_s)
        await self._release()
        _log.info(Ev.SERVER_STOPPED)

    def _close(self, which: Any) -> None:
        for conn in list(self._state.connections):
            if not which(conn):
                continue
            if self.hurried:
                conn.close_now(CloseCode.GOING_AWAY, _REASON)
            else:
                conn.close_soon(CloseCode.GOING_AWAY, _REASON)

    async def _wait_connections(self, limit: float) -> None:
        """Let closing handshakes and handlers finish, then drop what is left."""
        if self._server is None:
            return
        try:
            async with asyncio.timeout(limit):
                await self._server.wait_closed()
            return
        except TimeoutError:
            _log.warning(Ev.DRAIN_TIMEOUT, connections=len(self._state.connections),
                         step="closing handshakes")
        for conn in list(self._state.connections):
            conn.abort()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                await self._server.wait_closed()
