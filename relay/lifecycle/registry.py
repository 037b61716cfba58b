"""All sessions: lookup, pairing, waiting frontends, reset.

One :class:`Registry` is created by the server and passed in; there is no
module-level state. Pairing is synchronous (no ``await`` between looking a
session up and attaching to it), so two connections arriving together can
never both claim the same session.

A call's session is, in order (DESIGN.md, "Pairing"):

1. the ``/call/{sessionId}`` path segment;
2. the ``sessionId`` custom parameter of Twilio's ``start`` message;
3. the session of a frontend that registered the call's SID (``/logs?callSid=``);
4. the oldest session of a frontend waiting on a bare ``/logs``;
5. else a new session whose ID is the call SID.

Symmetrically, a bare ``/logs`` frontend joins the oldest session made by
rule 5 that no frontend has joined yet, else it waits for a call.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from relay.core.session import EndReason, FrontendInfo, Session, SessionOptions, State
from relay.lifecycle.ports import Peer
from relay.lifecycle.runner import RunnerDeps, SessionRunner
from relay.logs import Ev, get_logger
from relay.messages import twilio

_SESSION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")


def valid_session_id(value: str) -> bool:
    """Whether ``value`` can name a session (UUIDs and Twilio SIDs can)."""
    return bool(_SESSION_ID.match(value))


class PairingRefused(Exception):
    """A connection cannot join the session it names.

    Attributes:
        code: the WebSocket close code to refuse it with.
        ended_reason: set when the session already ended: the frontend is told
            why (``call.status_changed: ended``) before the close.
    """

    def __init__(self, message: str, code: int, ended_reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.ended_reason = ended_reason


#: How many ended session IDs are remembered, and for how long (seconds).
_ENDED_MEMORY = 5000
_ENDED_TTL_S = 3600.0


@dataclass(frozen=True, slots=True)
class Capacity:
    """How much one relay process takes on."""

    max_sessions: int = 1000
    max_sessions_per_user: int = 2
    max_frontends_per_session: int = 4


@dataclass(frozen=True, slots=True)
class FrontendRoute:
    """Where a ``/logs`` connection asked to go."""

    session_id: str | None = None
    call_sid: str | None = None
    info: FrontendInfo = FrontendInfo()
    #: Who is connecting (from the token once auth is on; else ``?userId=``).
    user_id: str | None = None


class Registry:
    """Owns every session runner of the process."""

    def __init__(self, options: SessionOptions, deps: RunnerDeps,
                 clock: Callable[[], float] | None = None,
                 limits: Capacity | None = None) -> None:
        self._options = options
        self._limits = limits or Capacity()
        self._deps = deps
        self._clock = clock
        self.sessions: dict[str, SessionRunner] = {}
        self._by_call_sid: dict[str, str] = {}
        #: Bare /logs sessions in arrival order, waiting to be claimed by a call.
        self._waiting: dict[str, None] = {}
        #: Sessions a call created (rule 5) that no frontend has joined yet.
        self._unwatched_calls: dict[str, None] = {}
        #: Live sessions of each user (one session per user: a new one supersedes).
        self._by_user: dict[str, set[str]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._frames_done = [0, 0]  # caller→model, model→caller, of forgotten sessions
        self.ended_by_reason: Counter[str] = Counter()
        #: The last ended sessions, newest last (for the live sessions page).
        self.recently_ended: deque[dict[str, object]] = deque(maxlen=50)
        # Session IDs are single-use: a frontend returning to an ended one is
        # told how it ended instead of silently getting a new, empty session.
        self._ended_ids: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._log = get_logger(component="registry")

    # -- creation -------------------------------------------------------------------

    def _create(self, session_id: str, *, claimable: bool = False) -> SessionRunner:
        if sum(1 for r in self.sessions.values() if not r.done) >= self._limits.max_sessions:
            raise PairingRefused("relay is at capacity", 1013)
        clock = self._clock or asyncio.get_running_loop().time
        session = Session(session_id, self._options, clock, claimable=claimable)
        runner = SessionRunner(session, self._deps, self._forget)
        self.sessions[session_id] = runner
        self._log.info(Ev.SESSION_CREATED, sessionId=session_id, claimable=claimable)
        return runner

    def _live(self, session_id: str) -> SessionRunner | None:
        runner = self.sessions.get(session_id)
        if runner is None or runner.session.ended:
            return None
        return runner

    # -- admission (read-only) ---------------------------------------------------------

    def admission(self, session_id: str | None, call_sid: str | None,
                  user_id: str | None) -> tuple[int, str] | None:
        """Whether a frontend may join (or start) a session; None, or (status, reason).

        Touches nothing: it runs on the handshake, before any session state.
        """
        runner = self._live(session_id) if session_id is not None else None
        if runner is None and call_sid is not None:
            known = self._by_call_sid.get(call_sid)
            runner = self._live(known) if known else None
        if runner is not None:
            if not self._may_join(runner, user_id):
                return 403, "that session belongs to another user"
            if len(runner.frontends) >= self._limits.max_frontends_per_session:
                return 409, "too many frontends on this session"
            return None
        live = sum(1 for r in self.sessions.values() if not r.done)
        if live >= self._limits.max_sessions:
            return 503, "relay is at capacity; try again shortly"
        if user_id is not None:
            owned = sum(1 for sid in self._by_user.get(user_id, ()) if sid in self.sessions)
            if owned >= self._limits.max_sessions_per_user:
                return 429, "too many sessions for this user; end one first"
        return None

    # -- pairing ---------------------------------------------------------------------

    def attach_frontend(self, route: FrontendRoute, conn: Peer) -> tuple[SessionRunner, int]:
        """Attach a ``/logs`` connection to its session, creating it if needed.

        Raises:
            PairingRefused: the named session is ending right now, or belongs
                to another user.
        """
        runner: SessionRunner | None = None
        if route.session_id is not None:
            runner = self._live(route.session_id)
            if runner is None:
                if route.session_id in self.sessions:
                    raise PairingRefused("that session is ending; start a new one", 1013)
                ended = self._ended_ids.get(route.session_id)
                if ended is not None and time.monotonic() - ended[1] < _ENDED_TTL_S:
                    raise PairingRefused("that session has ended; start a new one", 1000,
                                         ended_reason=ended[0])
                self._supersede(route.user_id, keep=route.session_id)
                runner = self._create(route.session_id)
            elif not self._may_join(runner, route.user_id):
                raise PairingRefused("that session belongs to another user", 1008)
        elif route.call_sid is not None:
            known = self._by_call_sid.get(route.call_sid)
            runner = self._live(known) if known else None
            if runner is not None and not self._may_join(runner, route.user_id):
                raise PairingRefused("that call belongs to another user", 1008)
            if runner is None:
                self._supersede(route.user_id, keep=None)
                runner = self._create(str(uuid.uuid4()))
                self._by_call_sid[route.call_sid] = runner.id
                runner.session.registered_call_sid = route.call_sid
        else:
            while self._unwatched_calls and runner is None:
                sid = next(iter(self._unwatched_calls))
                del self._unwatched_calls[sid]
                runner = self._live(sid)
            if runner is None:
                self._supersede(route.user_id, keep=None)
                runner = self._create(str(uuid.uuid4()), claimable=True)
                self._waiting[runner.id] = None
        self._unwatched_calls.pop(runner.id, None)
        if route.user_id is not None and runner.session.user_id is None:
            runner.session.user_id = route.user_id
            self._by_user.setdefault(route.user_id, set()).add(runner.id)
        fid = runner.attach_frontend(conn, route.info)
        return runner, fid

    def attach_call(self, start: twilio.Start, path_session_id: str | None,
                    conn: Peer) -> SessionRunner:
        """Pair a started call with its session (rules in the module docstring).

        Raises:
            PairingRefused: the session already has a call, or its ID is invalid.
        """
        sid = path_session_id or start.custom_parameters.get("sessionId") or None
        runner: SessionRunner | None = None
        if sid is not None:
            if not valid_session_id(sid):
                raise PairingRefused("invalid sessionId", 1008)
            runner = self._live(sid)
            if runner is None:
                if sid in self.sessions:
                    raise PairingRefused("that session is ending", 1013)
                runner = self._create(sid)
        else:
            known = self._by_call_sid.get(start.call_sid)
            runner = self._live(known) if known else None
            while runner is None and self._waiting:
                waiting_id = next(iter(self._waiting))
                del self._waiting[waiting_id]
                runner = self._live(waiting_id)
            if runner is None:
                if start.call_sid in self.sessions:
                    raise PairingRefused("a session for this call already exists", 4009)
                runner = self._create(start.call_sid)
                self._unwatched_calls[runner.id] = None
        if runner.session.call is not None or runner.session.state is not State.WAITING:
            raise PairingRefused("this session already has a call", 4009)
        self._waiting.pop(runner.id, None)
        self._by_call_sid[start.call_sid] = runner.id
        runner.attach_call(conn, start)
        return runner

    def _may_join(self, runner: SessionRunner, user_id: str | None) -> bool:
        owner = runner.session.user_id
        return owner is None or owner == user_id

    def _supersede(self, user_id: str | None, keep: str | None) -> None:
        # One session per user (the avatar seed's singleton rule): a user who
        # starts a new interview ends the old one first.
        if user_id is None:
            return
        for sid in list(self._by_user.get(user_id, ())):
            runner = self._live(sid)
            if runner is not None and sid != keep:
                self._log.info(Ev.SUPERSEDED, sessionId=sid, newSessionId=keep)
                runner.end(EndReason.SUPERSEDED)

    # -- ending ------------------------------------------------------------------------

    def frames_relayed(self) -> tuple[int, int]:
        """Audio frames relayed since start: caller→model, model→caller."""
        to_model, to_caller = self._frames_done
        for runner in self.sessions.values():
            to_model += runner.frames_in
            to_caller += runner.session.frames_out
        return to_model, to_caller

    def _forget(self, runner: SessionRunner) -> None:
        self._frames_done[0] += runner.frames_in
        self._frames_done[1] += runner.session.frames_out
        if self.sessions.get(runner.id) is runner:
            del self.sessions[runner.id]
        user = runner.session.user_id
        if user is not None and user in self._by_user:
            self._by_user[user].discard(runner.id)
            if not self._by_user[user]:
                del self._by_user[user]
        self._waiting.pop(runner.id, None)
        self._unwatched_calls.pop(runner.id, None)
        for call_sid in [k for k, v in self._by_call_sid.items() if v == runner.id]:
            del self._by_call_sid[call_sid]
        reason = runner.session.end_reason
        self.ended_by_reason[reason.value if reason else "unknown"] += 1
        session = runner.session
        if session.call is not None:
            # Only an interview that happened is over for good; a session that
            # ended before its call came may be named again by that call.
            self._ended_ids[session.id] = (reason.value if reason else "unknown", time.monotonic())
            while len(self._ended_ids) > _ENDED_MEMORY:
                self._ended_ids.popitem(last=False)
        self.recently_ended.append({
            "sessionId": session.id,
            "userId": session.user_id,
            "callSid": session.call.call_sid if session.call else None,
            "reason": reason.value if reason else "unknown",
            "endedAt": time.time(),
            "durationS": round(session.clock() - session.created_at, 1),
        })

    async def end_all(self, reason: EndReason) -> int:
        """End every session for ``reason`` and wait for their teardowns.

        Returns how many sessions were ended.
        """
        runners = list(self.sessions.values())
        for runner in runners:
            runner.end(reason)
        if runners:
            await asyncio.gather(*(runner.wait_done() for runner in runners))
        return len(runners)

    async def end_all_stopped(self) -> int:
        """End every session (reason ``stopped``): an operator's stop-all."""
        return await self._stop([r for r in list(self.sessions.values()) if not r.session.ended])

    async def stop_user(self, user_id: str) -> int:
        """End every session of ``user_id`` (reason ``stopped``); returns how many."""
        runners = [r for sid in self._by_user.get(user_id, ()) if (r := self._live(sid))]
        return await self._stop(runners)

    async def stop_session(self, session_id: str, user_id: str | None, *, admin: bool) -> bool:
        """End one session; False if there is no such live session.

        Raises:
            PermissionError: the session belongs to another user.
        """
        runner = self._live(session_id)
        if runner is None:
            return False
        if not admin and not self._may_join(runner, user_id):
            raise PermissionError("that session belongs to another user")
        await self._stop([runner])
        return True

    async def _stop(self, runners: list[SessionRunner]) -> int:
        for runner in runners:
            self._log.info(Ev.STOP_REQUESTED, sessionId=runner.id)
            runner.end(EndReason.STOPPED)
        await asyncio.gather(*(runner.wait_done() for runner in runners))
        return len(runners)

    def start_sweeping(self, interval: float) -> None:
        """Check every session's deadlines every ``interval`` seconds, until :meth:`close`."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(interval))

    async def _sweep_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    def sweep(self) -> int:
        """Act on every passed deadline now; returns how many sessions it ended.

        Timers normally do this; the sweep catches what they missed.
        """
        ended = sum(1 for runner in list(self.sessions.values()) if runner.check_timers())
        if ended:
            self._log.warning(Ev.SWEEP, ended=ended)
        return ended

    async def close(self) -> None:
        """Stop sweeping (sessions are ended with :meth:`end_all`)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None

    async def reset_all_sessions(self) -> int:
        """End every session and clear every waiting frontend (operators, tests)."""
        self._log.info(Ev.RESET_ALL, sessions=len(self.sessions))
        ended = await self.end_all(EndReason.RESET)
        self._waiting.clear()
        self._unwatched_calls.clear()
        return ended

    # -- reporting -----------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, object]]:
        """Every live session as the live sessions page shows it."""
        rows = []
        for runner in self.sessions.values():
            session = runner.session
            now = session.clock()
            upstream = runner.upstream
            rows.append({
                "sessionId": session.id,
                "state": session.state.name.lower(),
                "userId": session.user_id,
                "callSid": session.call.call_sid if session.call else None,
                "streamSid": session.stream_sid,
                "call": "connected" if runner.call_open else ("ended" if session.call else "none"),
                "frontends": len(runner.frontends),
                "model": "open" if upstream is not None and upstream.is_open else (
                    "connecting" if session.state.name == "CONNECTING" else "none"),
                "ageS": round(now - session.created_at, 1),
                "idleS": round(now - session.last_activity, 1),
                "warnings": session.deadlines.warnings,
                "waiting": runner.id in self._waiting,
                "avatars": len(session.avatars),
            })
        return rows

    def counts(self) -> dict[str, int]:
        """Sessions, waiting frontends, and open connections by kind."""
        waiting = 0
        calls = frontends = upstreams = 0
        for runner in self.sessions.values():
            if runner.id in self._waiting:
                waiting += len(runner.frontends)
            frontends += len(runner.frontends)
            if runner.call is not None and not runner.done and runner.call_open:
                calls += 1
            if runner.upstream is not None and runner.upstream.is_open:
                upstreams += 1
        return {
            "sessions": len(self.sessions),
            "waitingFrontends": waiting,
            "call": calls,
            "frontend": frontends,
            "upstream": upstreams,
        }
