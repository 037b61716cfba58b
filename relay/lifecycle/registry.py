"""This process's sessions: create, pair, end, sweep.

One :class:`Registry` is created by the server and passed in; there is no
module-level state. It keeps the runner of every session this process runs
and carries out :class:`~relay.lifecycle.pairing.Pairing`'s decisions over
the :class:`~relay.lifecycle.directory.Directory` (the index every process of
a fleet shares; one process alone uses the in-memory one). In a fleet, a
session another node owns is reached through :class:`~relay.lifecycle.remote.Remote`:
frontends are bridged to it, a call takes it over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from relay.core.session import EndReason, Session, SessionOptions
from relay.errors import FleetUnavailable, PairingRefused
from relay.lifecycle import reporting
from relay.lifecycle.dialing import Dialing
from relay.lifecycle.directory import Directory
from relay.lifecycle.memory import MemoryDirectory
from relay.lifecycle.moves import Moves
from relay.lifecycle.pairing import (
    Create,
    FrontendRoute,
    Join,
    Pairing,
    Refuse,
    valid_session_id,
)
from relay.lifecycle.ports import Peer
from relay.lifecycle.remote import Attachment, Remote
from relay.lifecycle.runner import RunnerDeps, SessionRunner
from relay.lifecycle.stopping import Stopping
from relay.logs import Ev, get_logger
from relay.messages import twilio
from relay.messages.closecodes import CloseCode

__all__ = ["Capacity", "FrontendRoute", "PairingRefused", "Registry", "valid_session_id"]

class Taken(PairingRefused):
    """A session ID was claimed by another connection between look-up and claim."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id} was just made elsewhere", CloseCode.SESSION_BUSY)


@dataclass(frozen=True, slots=True)
class Capacity:
    """How much one relay process takes on."""

    max_sessions: int = 1000
    max_sessions_per_user: int = 2
    max_frontends_per_session: int = 4


class Registry(Moves, Stopping, Dialing):
    """Owns every session runner of the process."""

    def __init__(self, options: SessionOptions, deps: RunnerDeps,
                 clock: Callable[[], float] | None = None,
                 limits: Capacity | None = None, *,
                 directory: Directory | None = None,
                 auth: bool = False, bare_pairing: bool | None = None) -> None:
        self._options = options
        self._limits = limits or Capacity()
        self._deps = deps
        self._clock = clock
        self.directory = directory or MemoryDirectory("local")
        self.pairing = Pairing(self.directory, auth=auth,
                               bare_pairing=not auth if bare_pairing is None else bare_pairing)
        self.sessions: dict[str, SessionRunner] = {}
        self._creating: dict[str, asyncio.Future[SessionRunner | None]] = {}
        # Which session each frontend connection is attached to now (a bare
        # frontend moves to a new session when its call ends).
        self._attachments: dict[Peer, tuple[SessionRunner, int] | Attachment] = {}
        #: The rest of the fleet, when there is one.
        self.remote: Remote | None = None
        self.reporting = reporting.Reporting()
        self._sweeper: asyncio.Task[None] | None = None
        # Releases that could not reach the directory (fleet store away), retried.
        self._unreleased: list[tuple[str, str | None, str | None]] = []
        self._pending: set[asyncio.Task[None]] = set()
        self._log = get_logger(component="registry")

    @property
    def ended_by_reason(self) -> dict[str, int]:
        """How many sessions ended, by reason."""
        return self.reporting.ended_by_reason

    @property
    def recently_ended(self) -> list[dict[str, object]]:
        """The last ended sessions, newest last."""
        return list(self.reporting.recently_ended)

    # -- creation -------------------------------------------------------------------

    def _live_count(self) -> int:
        return sum(1 for r in self.sessions.values() if not r.done)

    async def _create(self, target: Create, user_id: str | None) -> SessionRunner:
        """Claim ``target``'s ID and make its runner.

        Raises:
            Taken: another connection (on any node) made it first; pair again.
        """
        if self._live_count() >= self._limits.max_sessions:
            raise PairingRefused("relay is at capacity", CloseCode.TRY_AGAIN_LATER)
        sid = target.session_id
        if sid in self._creating:
            raise Taken(sid)
        # Claiming may wait on the fleet's store: a second connection for the
        # same ID meanwhile waits for this one instead of missing it.
        creating = self._creating[sid] = asyncio.get_running_loop().create_future()
        try:
            taken = await self.directory.claim(sid, user_id, ownerless_call=target.ownerless_call)
            if taken is not None:
                raise Taken(sid)
            runner = self._new_runner(sid, user_id, claimable=target.claimable)
            creating.set_result(runner)
        finally:
            if not creating.done():
                creating.set_result(None)
            del self._creating[sid]
        if target.call_sid is not None:
            await self.directory.bind_call(target.call_sid, target.session_id)
            runner.session.registered_call_sid = target.call_sid
        if target.claimable:
            await self.directory.add_waiting(target.session_id)
        self._log.info(Ev.SESSION_CREATED, sessionId=target.session_id, claimable=target.claimable)
        return runner

    def _new_runner(self, session_id: str, user_id: str | None, *,
                    claimable: bool = False) -> SessionRunner:
        clock = self._clock or asyncio.get_running_loop().time
        session = Session(session_id, self._options, clock, claimable=claimable)
        session.user_id = user_id
        runner = SessionRunner(session, self._deps, self._forget)
        runner.on_frontends_left = self._frontends_left
        runner.keeps_frontends = self._keeps_frontends
        runner.on_avatar = self._avatar_attached
        self.sessions[session_id] = runner
        return runner

    @property
    def node(self) -> str:
        """This process's node ID."""
        return self.directory.node

    async def _arrived(self, session_id: str) -> SessionRunner | None:
        """The local runner of ``session_id``, waiting for one being made right now."""
        creating = self._creating.get(session_id)
        if creating is not None:
            await asyncio.shield(creating)
        return self.sessions.get(session_id)

    def _local(self, session_id: str) -> SessionRunner | None:
        return self.sessions.get(session_id)

    # -- admission (read-only) ---------------------------------------------------------

    async def admission(self, route: FrontendRoute) -> tuple[int, str] | None:
        """Whether a frontend may join (or start) a session; None, or (status, reason).

        Changes nothing: it runs on the handshake, before any session state.
        """
        target = await self.pairing.for_frontend(route, peek=True)
        if isinstance(target, Refuse):
            # An ended session's frontend is told why after the upgrade.
            return None if target.ended_reason is not None else (target.status, target.message)
        if isinstance(target, Join):
            runner = self._local(target.session_id)
            if runner is not None and len(runner.frontends) >= self._limits.max_frontends_per_session:
                return 409, "too many frontends on this session"
            return None
        if self._live_count() >= self._limits.max_sessions:
            return 503, "relay is at capacity; try again shortly"
        if route.user_id is not None:
            owned = len(await self.directory.user_sessions(route.user_id))
            if owned >= self._limits.max_sessions_per_user:
                return 429, "too many sessions for this user; end one first"
        return None

    # -- pairing ---------------------------------------------------------------------

    async def attach_frontend(self, route: FrontendRoute, conn: Peer) -> str:
        """Attach a ``/logs`` connection to its session, creating it if needed; its session ID.

        Raises:
            PairingRefused: the named session is ending or ended, or belongs to
                another user.
        """
        for _ in range(3):
            try:
                return await self._attach_frontend(route, conn)
            except Taken:
                continue  # made by another connection meanwhile: now it is a join
        raise PairingRefused("that session is busy; try again", CloseCode.TRY_AGAIN_LATER)

    async def _attach_frontend(self, route: FrontendRoute, conn: Peer) -> str:
        target = await self.pairing.for_frontend(route)
        runner: SessionRunner | None
        match target:
            case Refuse(message, code, _, ended_reason):
                raise PairingRefused(message, code, ended_reason=ended_reason)
            case Join(session_id, owner) if owner.node != self.node:
                assert self.remote is not None, "a session another node owns needs the fleet"
                await self.directory.drop_queues(session_id)
                self._attachments[conn] = await self.remote.open_frontend(
                    owner.node, session_id, conn, route.info, route.user_id,
                    route.token_session_id)
                return session_id
            case Join(session_id):
                runner = await self._arrived(session_id)
                if runner is None or runner.session.ended:
                    raise PairingRefused("that session is ending; start a new one",
                                         CloseCode.TRY_AGAIN_LATER)
                await self.directory.drop_queues(session_id)
            case Create():
                await self._supersede(route.user_id, keep=target.session_id)
                runner = await self._create(target, route.user_id)
        if route.user_id is not None and runner.session.user_id is None:
            runner.session.user_id = route.user_id
            await self.directory.set_user(runner.id, route.user_id)
        fid = runner.attach_frontend(conn, route.info)
        self._attachments[conn] = (runner, fid)
        return runner.id

    def detach_frontend(self, conn: Peer) -> None:
        """A frontend connection closed: detach it from the session it is on now."""
        attached = self._attachments.pop(conn, None)
        if attached is None:
            return
        if isinstance(attached, tuple):
            runner, fid = attached
            runner.detach_frontend(fid)
        else:
            attached.detach()

    async def attach_call(self, start: twilio.Start, path_session_id: str | None,
                          conn: Peer) -> SessionRunner:
        """Pair a started call with its session (rules in :mod:`relay.lifecycle.pairing`).

        Raises:
            PairingRefused: the session already has a call, or its ID is invalid.
        """
        for _ in range(3):
            try:
                return await self._attach_call(start, path_session_id, conn)
            except Taken:
                continue
        raise PairingRefused("that session is busy", CloseCode.TRY_AGAIN_LATER)

    async def _attach_call(self, start: twilio.Start, path_session_id: str | None,
                           conn: Peer) -> SessionRunner:
        target = await self.pairing.for_call(start, path_session_id)
        runner: SessionRunner | None
        match target:
            case Refuse(message, code):
                raise PairingRefused(message, code)
            case Join(session_id, owner) if owner.node != self.node:
                # Audio never crosses nodes: the session moves here, to its call.
                assert self.remote is not None, "a session another node owns needs the fleet"
                carried = await self.remote.take_over(owner.node, session_id)
                if carried is None:
                    raise PairingRefused("this session already has a call", CloseCode.SESSION_BUSY)
                runner = self._arrive(session_id, carried)
            case Join(session_id):
                runner = await self._arrived(session_id)
                if runner is None or runner.session.ended:
                    raise PairingRefused("that session is ending", CloseCode.TRY_AGAIN_LATER)
            case Create():
                runner = await self._create(target, None)
        if runner.session.call is not None or runner.session.state.name != "WAITING":
            raise PairingRefused("this session already has a call", CloseCode.SESSION_BUSY)
        await self.directory.drop_queues(runner.id)
        await self.directory.bind_call(start.call_sid, runner.id)
        await self.directory.call_started(runner.id, start.call_sid)
        runner.attach_call(conn, start)
        if not runner.frontends and self.pairing.bare_pairing:
            await self.directory.add_unwatched(runner.id)
        return runner

    def _avatar_attached(self, runner: SessionRunner, avatar_id: str) -> None:
        self._background(self.directory.avatar_attached(runner.id, avatar_id))

    async def _supersede(self, user_id: str | None, keep: str | None) -> None:
        # One session per user (the avatar seed's singleton rule): a user who
        # starts a new interview ends the old one first, on whichever node.
        if user_id is None:
            return
        for sid in await self.directory.user_sessions(user_id):
            if sid == keep:
                continue
            runner = self._local(sid)
            if runner is not None:
                if not runner.session.ended:
                    self._log.info(Ev.SUPERSEDED, sessionId=sid, newSessionId=keep)
                    runner.end(EndReason.SUPERSEDED)
            elif self.remote is not None and (owner := await self.directory.owner(sid)):
                self._log.info(Ev.SUPERSEDED, sessionId=sid, newSessionId=keep, node=owner.node)
                await self.remote.end(owner.node, sid, EndReason.SUPERSEDED, wait=False)

    def _frontends_left(self, runner: SessionRunner) -> None:
        # A call nobody watches any more (the page refreshed) is what a bare
        # /logs should find next.
        if self.pairing.bare_pairing and runner.session.call is not None:
            self._background(self.directory.add_unwatched(runner.id))

    def _background(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # -- ending ------------------------------------------------------------------------

    def frames_relayed(self) -> tuple[int, int]:
        """Audio frames relayed since start: caller→model, model→caller."""
        return self.reporting.frames_relayed(self.sessions.values())

    async def _forget(self, runner: SessionRunner) -> None:
        """A runner finished its teardown: forget it, and re-home the frontends it kept."""
        if self.sessions.get(runner.id) is runner:
            del self.sessions[runner.id]
        for link in runner.frontends.values():
            if link not in runner.kept_frontends:
                self._attachments.pop(link.conn, None)
        if runner.relinquished:
            return
        self.reporting.forgotten(runner)
        session = runner.session
        # Only an interview that happened is over for good; a session that
        # ended before its call came may be named again by that call.
        reason = session.end_reason.value if session.end_reason else "unknown"
        try:
            await self.directory.release(session.id, session.user_id,
                                         ended_reason=reason if session.call else None)
        except FleetUnavailable:
            # The shared store is away: release it once the store is back.
            self._unreleased.append((session.id, session.user_id,
                                     reason if session.call else None))
        if runner.kept_frontends:
            await self._rehome(runner)

    def start_sweeping(self, interval: float) -> None:
        """Check every session's deadlines every ``interval`` seconds, until :meth:`close`."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(interval))

    async def _sweep_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sweep()
            await self.retry_releases()

    async def retry_releases(self) -> None:
        """Release what could not be released while the directory was unreachable."""
        while self._unreleased:
            session_id, user_id, reason = self._unreleased[0]
            try:
                await self.directory.release(session_id, user_id, ended_reason=reason)
            except FleetUnavailable:
                return
            self._unreleased.pop(0)

    def sweep(self) -> int:
        """Act on every passed deadline now; returns how many sessions it ended.

        Timers normally do this; the sweep catches what they missed. One
        session's failure never stops the sweep (each check is guarded by that
        session's own crash boundary).
        """
        ended = 0
        for runner in list(self.sessions.values()):
            try:
                ended += runner.check_timers()
            except Exception:
                self._log.error(Ev.HANDLER_CRASHED, where="sweep", sessionId=runner.id,
                                exc_info=True)
        if ended:
            self._log.warning(Ev.SWEEP, ended=ended)
        return ended

    async def close(self) -> None:
        """Stop sweeping (sessions are ended with :meth:`end_all`)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    # -- reporting -----------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, object]]:
        """Every live session of this node as the live sessions page shows it."""
        return [{**reporting.snapshot_row(r, r.session.claimable), "node": self.node}
                for r in self.sessions.values()]

    async def fleet_snapshot(self) -> list[dict[str, object]]:
        """Every live session of every node."""
        rows = self.snapshot()
        if self.remote is not None:
            rows += await self.remote.snapshot()
        return rows

    def counts(self) -> dict[str, int]:
        """Sessions, waiting frontends, and open connections by kind."""
        return reporting.counts(self.sessions.values())
