"""Carries out one session's decisions: sockets, tasks and timers.

The :class:`~relay.core.session.Session` decides; a :class:`SessionRunner`
feeds it what arrives on the call, the model connection, frontends and its
timer, and performs the :class:`~relay.core.effects.Effects` each input hands
back. Every input goes through one door, :meth:`SessionRunner._enter`, which
is also the session's crash boundary: an exception there (or in any task of
the session) is logged once with its traceback and ends this session alone
with ``internal_error``. It owns every task of the session (model connection,
tool calls, teardown) and cancels or awaits each one; when the teardown
finishes nothing of the session is left running.

The per-frame path is kept lean: once the model is live, a caller's media
frame goes from the Twilio socket's data callback to the model socket's
buffer with one string search and one write — no JSON parsing, no session
call, no task switch.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec

import orjson

from relay.core.effects import Effects, ModelEvent, OpenUpstream, RunTool, Teardown
from relay.core.outbound import DialReport
from relay.core.session import EndReason, FrontendInfo, Session, State
from relay.core.tools import ToolBox, ToolContext, ToolOutcome
from relay.errors import BadInput, UpstreamConnectError
from relay.lifecycle.ports import Peer
from relay.logs import Ev, get_logger
from relay.messages import frontend as fmsg
from relay.messages import twilio
from relay.messages.closecodes import CloseCode
from relay.messages.dialect import event_to_beta
from relay.messages.realtime import AUDIO_DELTA, append_event
from relay.security.sampling import RefusalSampler

ConnectUpstream = Callable[[str], Awaitable[Peer]]
#: Ends the phone call itself (Twilio REST): call SID, and whether it was answered.
HangUp = Callable[[str, bool], Awaitable[object]]
#: Stops a streaming avatar session: provider, avatar session ID.
StopAvatar = Callable[[str, str], Awaitable[object]]
#: Whether relay may end this call SID (it learned it from Twilio or placed the call).
KnowsCall = Callable[[str], Awaitable[bool]]

P = ParamSpec("P")
_fids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class RunnerDeps:
    """What every runner shares: how to reach the model, tools, and timeouts."""

    connect_upstream: ConnectUpstream
    toolbox: ToolBox
    hang_up: HangUp | None = None
    stop_avatar: StopAvatar | None = None
    knows_call: KnowsCall | None = None
    close_timeout_s: float = 2.0
    hangup_timeout_s: float = 6.0
    #: Refused messages logged in full per connection, then only counted.
    refusal_log_first: int = 5
    refusal_log_window_s: float = 60.0
    #: When the model cannot be reached: how long the TwiML's apology may play
    #: between closing the stream and hanging up (0: hang up at once).
    apology_s: float = 0.0


@dataclass(slots=True)
class FrontendLink:
    """One frontend connection of this session."""

    conn: Peer
    info: FrontendInfo


class SessionRunner:
    """The I/O shell around one :class:`Session`."""

    def __init__(
        self,
        session: Session,
        deps: RunnerDeps,
        forget: Callable[[SessionRunner], Awaitable[None]],
    ) -> None:
        self.session = session
        self.deps = deps
        self._forget = forget
        self._loop = asyncio.get_running_loop()
        self.call: Peer | None = None
        self.upstream: Peer | None = None
        self.frontends: dict[int, FrontendLink] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._attempt: asyncio.Task[Peer] | None = None
        # Closing handshakes started outside the teardown's own steps; awaited,
        # never cancelled, so a connection is never left half open.
        self._closers: set[asyncio.Task[None]] = set()
        self._teardown_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._timer_version: int | None = None
        self._media_direct = False
        self._crashed = False
        self._done = asyncio.Event()
        #: Called when the last frontend of a session with a call has left.
        self.on_frontends_left: Callable[[SessionRunner], None] | None = None
        #: Asked at teardown which frontends stay open (to wait for the next call).
        self.keeps_frontends: Callable[[SessionRunner], set[int]] | None = None
        #: The frontends the teardown left open, for the registry to re-home.
        self.kept_frontends: list[FrontendLink] = []
        #: Called when a frontend attached an avatar (the fleet records it).
        self.on_avatar: Callable[[SessionRunner, str], None] | None = None
        #: The session moved to another node: nothing of it runs here any more.
        self.relinquished = False
        #: A call for this session is being placed right now (POST /api/calls).
        self.placing_call = False
        self.frames_in = 0
        self._log = get_logger(sessionId=session.id)
        # Keyed by frontend ID, or "call": one peer's refusals never hide another's.
        self._refusals = RefusalSampler(deps.refusal_log_first, deps.refusal_log_window_s,
                                        self._loop.time)

    @property
    def id(self) -> str:
        return self.session.id

    @property
    def call_open(self) -> bool:
        """Whether the call's stream socket is still open."""
        return self.call is not None and not self.call.closed

    @property
    def done(self) -> bool:
        """Whether the teardown has finished."""
        return self._done.is_set()

    async def wait_done(self) -> None:
        """Wait until the session has been torn down and forgotten."""
        await self._done.wait()

    # -- the one door ------------------------------------------------------------------

    def _enter(self, method: Callable[Concatenate[Any, P], Effects] | Callable[P, Effects],
               *args: Any) -> None:
        """Feed the session one input and perform what it hands back; the crash boundary."""
        try:
            self._perform(method(*args))
        except Exception:
            self._crash(getattr(method, "__name__", "input"))

    def _crash(self, where: str) -> None:
        if self._crashed:
            return
        self._crashed = True
        self._log.error(Ev.HANDLER_CRASHED, where=where, exc_info=True)
        try:
            self._perform(self.session.end(EndReason.INTERNAL_ERROR))
        except Exception:
            # Even ending failed: tear down without the session's help, so the
            # frontends are still told, the call still hung up.
            self._log.error(Ev.HANDLER_CRASHED, where="end after crash", exc_info=True)
            self._send_frontends(None, fmsg.call_status_changed(
                self.id, "ended", self.session.stream_sid, EndReason.INTERNAL_ERROR.value))
            self._start_teardown(EndReason.INTERNAL_ERROR.value)

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        """A task of this session: tracked, and a crash in it ends the session."""
        task = self._loop.create_task(coro)
        self._tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            if not done.cancelled() and done.exception() is not None:
                exc = done.exception()
                try:
                    raise exc  # type: ignore[misc]
                except Exception:
                    self._crash(what)

        task.add_done_callback(finished)
        return task

    # -- inputs from the registry and handlers -------------------------------------

    def end(self, reason: EndReason) -> None:
        """End the session (idempotent); :meth:`wait_done` waits for the teardown."""
        self._enter(self.session.end, reason)

    def check_timers(self) -> bool:
        """Act on passed deadlines now (the registry's sweep). Returns True if it ended."""
        was_ended = self.session.ended
        self._enter(self.session.on_timer)
        return self.session.ended and not was_ended

    def attach_frontend(self, conn: Peer, info: FrontendInfo) -> int:
        """Add a frontend; returns its ID. Its messages now reach the session."""
        fid = next(_fids)
        self.frontends[fid] = FrontendLink(conn, info)
        # The session learns of the frontend first: setting the sinks delivers
        # what it sent meanwhile, and the answers must reach it.
        self._enter(self.session.add_frontend, fid, info)
        conn.set_sinks(lambda text: self._on_frontend_text(fid, text),
                       lambda data: self._refuse_frontend(
                           fid, "binary_not_accepted", "send JSON text frames, not binary"))
        return fid

    def detach_frontend(self, fid: int) -> None:
        """A frontend's connection closed."""
        if self.frontends.pop(fid, None) is None:
            return
        unlogged = self._refusals.forget(fid)
        if unlogged:
            self._log.warning(Ev.REFUSALS_SAMPLED, source="frontend", frontend=fid,
                              unlogged=unlogged)
        self._log.info(Ev.FRONTEND_CLEANUP, sessionId=self.id, remaining=len(self.frontends))
        self._enter(self.session.remove_frontend, fid)
        if (not self.frontends and self.session.call is not None and not self.session.ended
                and self.on_frontends_left is not None):
            self.on_frontends_left(self)

    def _on_frontend_text(self, fid: int, text: str) -> None:
        try:
            msg = fmsg.parse_message(text)
        except BadInput as exc:
            self._refuse_frontend(fid, exc.code, exc.message)
            return
        except Exception:
            self._crash("parse frontend message")
            return
        avatars = len(self.session.avatars)
        self._enter(self.session.on_frontend_message, fid, msg)
        if len(self.session.avatars) > avatars and self.on_avatar is not None:
            self.on_avatar(self, next(reversed(self.session.avatars)))

    def _refuse_frontend(self, fid: int, code: str, message: str) -> None:
        self._log_refusal(fid, source="frontend", frontend=fid, code=code)
        link = self.frontends.get(fid)
        if link is not None:
            link.conn.send_now(orjson.dumps(fmsg.error(code, message)))

    def attach_call(self, conn: Peer, start: twilio.Start) -> None:
        """The call's ``start`` arrived and it was paired with this session."""
        self.call = conn
        conn.set_sinks(self._on_call_text)
        self._enter(self.session.on_call_started, start)

    def _on_call_text(self, text: str) -> None:
        payload = twilio.media_payload(text)
        if payload is not None:
            self.frames_in += 1
            if self._media_direct:
                self.upstream.send_now(append_event(payload))  # type: ignore[union-attr]
            else:
                self._enter(self.session.on_call_media, payload)
            return
        try:
            msg = twilio.parse_message(text)
        except BadInput as exc:
            # Twilio cannot receive errors, and ending a paid interview over
            # one bad frame would hurt the user more than dropping it.
            self._log_refusal("call", source="call", code=exc.code)
            return
        except Exception:
            self._crash("parse call message")
            return
        self._enter(self.session.on_call_message, msg)

    def _log_refusal(self, peer: int | str, **fields: Any) -> None:
        # One line per refusal only for a peer's first few; then counts.
        sample = self._refusals.note(peer)
        if sample is None:
            return
        if sample.full:
            self._log.warning(Ev.BAD_INPUT, **fields)
        else:
            self._log.warning(Ev.REFUSALS_SAMPLED, source=fields["source"], peer=str(peer),
                              unlogged=sample.suppressed)

    def dial_report(self, report: DialReport) -> None:
        """Twilio reported on the call relay placed for this session."""
        self._enter(self.session.on_dial_report, report)

    def call_closed(self) -> None:
        """The Twilio stream socket closed."""
        self._enter(self.session.on_call_closed)

    # -- the model ---------------------------------------------------------------

    async def _run_upstream(self) -> None:
        attempt = self._attempt = self._loop.create_task(self.deps.connect_upstream(self.id))
        try:
            peer = await attempt
        except UpstreamConnectError as exc:
            self._enter(self.session.on_upstream_failed, str(exc))
            return
        except asyncio.CancelledError:
            self._close_orphan(attempt)
            raise
        if self.session.ended:
            # The caller hung up while the model was connecting: the new
            # connection must be closed, not leaked.
            self._close_orphan(attempt)
            return
        self.upstream = peer
        peer.set_sinks(self._on_upstream_text)
        self._enter(self.session.on_upstream_open)
        await peer.wait_closed()
        if not self.session.ended:
            self._log.info(Ev.UPSTREAM_CLOSED)
        self._enter(self.session.on_upstream_closed)

    def _close_orphan(self, attempt: asyncio.Task[Peer]) -> None:
        if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
            task = attempt.result().close_soon(CloseCode.NORMAL, "session ended")
            if task is not None:
                self._closers.add(task)

    def _on_upstream_text(self, text: str) -> None:
        self._enter(self.session.on_upstream_text, text)

    async def _run_tool(self, cmd: RunTool) -> None:
        ctx = ToolContext(self.id, self.session.call_started_at or self.session.created_at)
        try:
            outcome = await self.deps.toolbox.run(cmd.name, cmd.arguments, ctx)
        except Exception:
            self._log.error(Ev.TOOL_FAILED, tool=cmd.name, exc_info=True)
            outcome = ToolOutcome({"error": "the tool failed"})
        self._enter(self.session.on_tool_result, cmd.call_id, outcome)

    # -- effects -------------------------------------------------------------------

    def _perform(self, effects: Effects) -> None:
        if effects:
            if effects.call and self.call is not None:
                for data in effects.call:
                    self.call.send_now(data)
            if effects.upstream and self.upstream is not None:
                for data in effects.upstream:
                    self.upstream.send_now(data)
            for target, message in effects.frontend:
                self._send_frontends(target, message)
            for cmd in effects.commands:
                match cmd:
                    case OpenUpstream():
                        self._spawn(self._run_upstream(), "model connection")
                    case RunTool():
                        self._spawn(self._run_tool(cmd), "tool call")
                    case Teardown(reason):
                        self._start_teardown(reason)
        upstream = self.upstream
        self._media_direct = (self.session.model_ready and upstream is not None
                              and upstream.is_open)
        self._rearm_timer()

    def _start_teardown(self, reason: str) -> None:
        if self._teardown_task is None:
            self._teardown_task = self._loop.create_task(self._teardown(reason))

    def _send_frontends(self, target: int | None, message: dict[str, Any] | ModelEvent) -> None:
        links = self.frontends.values() if target is None else (
            [self.frontends[target]] if target in self.frontends else []
        )
        if isinstance(message, dict):
            data = orjson.dumps(message)
            for link in links:
                link.conn.send_now(data)
            return
        # Translated once, on the first beta frontend; b"" marks an event
        # beta has no name for, which beta frontends skip and GA ones still get.
        beta: bytes | None = None
        for link in links:
            info = link.info
            if message.type == AUDIO_DELTA and not info.wants_audio:
                continue
            if info.dialect == "beta":
                if beta is None:
                    translated = event_to_beta(message.event)
                    beta = b"" if translated is None else orjson.dumps(translated)
                if beta:
                    link.conn.send_now(beta)
            else:
                link.conn.send_now(message.text)

    def _rearm_timer(self) -> None:
        # Called after every input, audio frames included: look at the
        # deadlines only when they may have moved.
        version = -1 if self.session.ended else self.session.deadlines.version
        if version == self._timer_version:
            return
        self._timer_version = version
        deadline = None if self.session.ended else self.session.deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._timer_version = None  # re-arm even if nothing was due yet
        self._enter(self.session.on_timer)

    def relinquish(self) -> None:
        """The session moved to another node before its call: stop its timers, run nothing.

        Only a waiting session moves (no call, no model connection), so there
        is nothing to close: its frontends are bridged to the new owner.
        """
        self.relinquished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        self.frontends.clear()
        self._done.set()

    # -- teardown ------------------------------------------------------------------

    async def _teardown(self, reason: str) -> None:
        """End the phone call and avatars, close the model, the call and frontends, forget.

        The ``ended`` message already went out with the input that started
        this. Each step is guarded and bounded: one close that fails or hangs
        never stops the others.
        """
        try:
            ending = self._loop.create_task(self._end_outside_world(reason))
            if self._attempt is not None and not self._attempt.done():
                self._attempt.cancel()
            if self.upstream is not None:
                await self._close(self.upstream, CloseCode.NORMAL, "session ended")
            await self._step("hang up and stop avatars", ending,
                             self.deps.hangup_timeout_s + self._apology_s(reason))
            code = {
                "shutdown": CloseCode.GOING_AWAY,
                "superseded": CloseCode.SUPERSEDED,
                "internal_error": CloseCode.INTERNAL_ERROR,
            }.get(reason, CloseCode.NORMAL)
            kept = self.keeps_frontends(self) if self.keeps_frontends is not None else set()
            self.kept_frontends = [link for fid, link in self.frontends.items() if fid in kept]
            closes = [self._close(link.conn, code, reason)
                      for fid, link in self.frontends.items() if fid not in kept]
            if self.call is not None:
                closes.insert(0, self._close(self.call, code if code != CloseCode.SUPERSEDED
                                             else CloseCode.NORMAL, reason))
            await asyncio.gather(*closes)
        finally:
            if self._timer is not None:
                self._timer.cancel()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._closers:
                await self._step("close orphans", asyncio.gather(*self._closers, return_exceptions=True))
            if self.session.state is not State.ENDED:  # a crash may have ended it already
                self.session.mark_ended()
            await self._forget(self)
            self._log.info(Ev.SESSION_FORGOTTEN, reason=reason)
            self._done.set()

    async def _end_outside_world(self, reason: str) -> None:
        # Closing the stream socket does not hang up a bidirectional call, and
        # avatars bill per minute: both are ended through their providers.
        session = self.session
        jobs: list[Awaitable[object]] = []
        if self.deps.hang_up is not None:
            if session.call is not None and self._apology_s(reason):
                jobs.append(self._apologise_then_hang_up(session.call.call_sid))
            elif session.call is not None and reason != EndReason.CALLER_HUNG_UP:
                jobs.append(self.deps.hang_up(session.call.call_sid, True))
            elif session.call is None and session.registered_call_sid and not (
                    session.dialing.call is not None and session.dialing.call.final):
                # Registered but never streamed: the call may still be ringing.
                # A browser can name any CallSid, so only one relay learned
                # from Twilio (or placed itself) is ever cancelled.
                jobs.append(self._cancel_registered(session.registered_call_sid))
        if self.deps.stop_avatar is not None:
            for avatar_id, provider in session.avatars.items():
                jobs.append(self.deps.stop_avatar(provider, avatar_id))
        for result in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(result, BaseException):
                self._log.warning(Ev.HANDLER_CRASHED, step="provider call",
                                  error=type(result).__name__)

    def _apology_s(self, reason: str) -> float:
        # Only a model that could not be reached leaves the caller waiting for
        # an explanation; every other end hangs up before the stream closes.
        if reason != EndReason.UPSTREAM_FAILED or not self.call_open:
            return 0.0
        return self.deps.apology_s

    async def _apologise_then_hang_up(self, call_sid: str) -> object:
        # Twilio plays the TwiML's <Say> once the stream closes; the REST
        # hang-up follows when it has had time to (the call ends by itself
        # when the TwiML runs out, so this is the net under it).
        assert self.call is not None and self.deps.hang_up is not None
        await self._close(self.call, CloseCode.NORMAL, "the model cannot be reached")
        await asyncio.sleep(self.deps.apology_s)
        return await self.deps.hang_up(call_sid, True)

    async def _cancel_registered(self, call_sid: str) -> object:
        knows = self.deps.knows_call
        if knows is None or not await knows(call_sid):
            self._log.warning(Ev.HANGUP_UNKNOWN_CALL)
            return None
        assert self.deps.hang_up is not None
        return await self.deps.hang_up(call_sid, False)

    async def _close(self, conn: Peer, code: int, reason: str) -> None:
        try:
            task = conn.close_soon(code, reason)
        except Exception:
            # One connection failing to close must not keep the others open.
            self._log.warning(Ev.HANDLER_CRASHED, step=f"close {type(conn).__name__}",
                              exc_info=True)
            conn.abort()
            return
        if task is None:
            task = conn.close_task
        if task is not None:
            await self._step(f"close {type(conn).__name__}", asyncio.shield(task))

    async def _step(self, what: str, awaitable: Awaitable[Any], timeout: float | None = None) -> None:
        try:
            async with asyncio.timeout(timeout or self.deps.close_timeout_s):
                await awaitable
        except TimeoutError:
            self._log.warning(Ev.STEP_TIMED_OUT, step=what)
            if isinstance(awaitable, asyncio.Task):
                awaitable.cancel()
        except Exception:
            self._log.warning(Ev.HANDLER_CRASHED, step=what, exc_info=True)
