"""One practice interview's state machine: events in, effects out, no I/O.

A session has at most one call (Twilio stream), one model connection, any
number of frontends, a job configuration and deadlines. Its inputs are public
methods (``on_*``, :meth:`Session.end`, :meth:`Session.add_frontend`, …);
each returns the :class:`~relay.core.effects.Effects` it decided on — what to
send and what to do — and the runner performs them. Nothing is left behind
in the session to be flushed later, so no input's effects can be forgotten.

States and transitions (each logged once, by :meth:`Session._set_state`)::

    WAITING ──call started──▶ CONNECTING ──model open──▶ LIVE ──end_interview──▶ FAREWELL
       │                          │                        │                        │
       └──────────────── end(reason): any of them ─────────┴────────────────────────┘
                                              ▼
                                           ENDING ──teardown done──▶ ENDED

- WAITING: frontends (or a queued job configuration) wait for the call.
- CONNECTING: the call started; caller audio is held while the model connects.
- LIVE: audio flows both ways; configuration updates go straight to the model.
- FAREWELL: the model ended the interview; the call ends when its goodbye has
  played (the final mark came back) or after ``farewell_timeout_s``.
- ENDING: ``call.status_changed: ended`` is queued for every frontend and the
  runner tears down in order. Every end goes through :meth:`Session.end`,
  which acts once.

What it is built from: :class:`~relay.core.configuration.Configuration`
(what the model was asked for and confirmed), :class:`~relay.core.turns.Turns`
(responses and tool-call batches), :class:`~relay.core.calls.ToolCalls` (who
answers each function call), :class:`~relay.core.playback.Playback` (what the
caller heard), :class:`~relay.core.deadlines.Deadlines` (reaping) and
:class:`~relay.core.replay.Replay` (the resume buffer); its options and end
reasons are in :mod:`relay.core.options`, its inputs from the model (the
largest side) in :mod:`relay.core.upstream`.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import Any, assert_never

import orjson

from relay.core.calls import ToolCalls
from relay.core.configuration import MAX_OVERRIDES_BYTES, Configuration, Details
from relay.core.deadlines import Deadlines, Due
from relay.core.effects import Effects, OpenUpstream, Teardown, hands_back
from relay.core.options import EndReason, FrontendInfo, SessionOptions
from relay.core.outbound import Dialing, DialReport, Placed
from relay.core.playback import Playback
from relay.core.replay import Message, Replay
from relay.core.state import State
from relay.core.turns import Turns
from relay.core.upstream import VOICEMAIL_REQUEST, UpstreamInput
from relay.logs import Ev, get_logger
from relay.messages import frontend as fmsg
from relay.messages import realtime as rt
from relay.messages import twilio
from relay.messages.realtime import append_event

__all__ = ["EndReason", "FrontendInfo", "Session", "SessionOptions", "State", "append_event"]


_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_DTMF_DIGITS = frozenset("0123456789*#ABCD")
_GOODBYE = orjson.dumps({"type": "response.create", "response": {
    "instructions": "Say a brief, warm goodbye to the candidate now, in one or two sentences."}})


class Session(UpstreamInput):
    """The decisions of one session. Pure: time comes from ``clock``."""

    def __init__(
        self,
        session_id: str,
        options: SessionOptions,
        clock: Callable[[], float],
        *,
        claimable: bool = False,
    ) -> None:
        self.id = session_id
        self.options = options
        self.clock = clock
        #: A bare ``/logs`` frontend's session: the next unclaimed call takes it.
        self.claimable = claimable
        self.state = State.WAITING
        self.end_reason: EndReason | None = None
        self.created_at = clock()
        self.deadlines = Deadlines(options.limits, self.created_at)
        #: The user the session belongs to (from a frontend), if known.
        self.user_id: str | None = None
        #: A call SID a frontend registered before the call's stream started.
        self.registered_call_sid: str | None = None
        #: Streaming avatar sessions to stop at teardown (id -> provider).
        self.avatars: dict[str, str] = {}
        #: Model audio chunks sent to the caller (a metric).
        self.frames_out = 0
        #: Model events dropped as malformed (only the first is logged).
        self.malformed_model_events = 0
        self.frontends: dict[int, FrontendInfo] = {}
        #: How many of them asked for the model's audio (``?audio=1``).
        self._audio_frontends = 0
        self.call: twilio.Start | None = None
        self.call_started_at: float | None = None
        self.config = Configuration(options.tools, options.phone)
        self.turns = Turns()
        self.playback = Playback(options.mark_interval_ms)
        self.replay = Replay(options.resume_buffer_events)
        self._held_audio: deque[str] = deque(maxlen=max(1, options.pre_open_audio_frames))
        self.calls = ToolCalls((tool["name"] for tool in options.tools),
                               options.limits.frontend_tool_timeout_s, self.turns, self.deadlines)
        #: The call relay placed for this session (``POST /api/calls``), if any.
        self.dialing = Dialing(options.voicemail)
        self._fx = Effects()
        self._log = get_logger(sessionId=session_id)

    # -- state ----------------------------------------------------------------

    def _set_state(self, new: State) -> None:
        if new <= self.state:
            raise AssertionError(f"session state cannot go from {self.state.name} to {new.name}")
        self._log.info(Ev.SESSION_STATE, old=self.state.name, new=new.name)
        self.state = new

    @property
    def ended(self) -> bool:
        """Whether the session is ending or ended."""
        return self.state >= State.ENDING

    @property
    def model_ready(self) -> bool:
        """Whether the model connection is open (events may be sent to it)."""
        return self.state in (State.LIVE, State.FAREWELL)

    @property
    def stream_sid(self) -> str | None:
        """The call's stream SID, once the call started."""
        return self.call.stream_sid if self.call else None

    @property
    def job_config(self) -> Any:
        """The job configuration in force (None until one is received)."""
        return self.config.job_config

    @hands_back
    def end(self, reason: EndReason) -> None:
        """End the session for ``reason``; does nothing if it is already ending.

        Queues ``call.status_changed: ended`` for every frontend before the
        :class:`~relay.core.effects.Teardown` command, so frontends always hear
        why before their connection closes.
        """
        self._end(reason)

    def _end(self, reason: EndReason) -> None:
        if self.ended:
            return
        self.end_reason = reason
        self._set_state(State.ENDING)
        self._log.info(Ev.SESSION_ENDING, reason=reason.value,
                       **({"malformedModelEvents": self.malformed_model_events}
                          if self.malformed_model_events else {}))
        if self.frontends:
            self._log.info(Ev.CALL_ENDED_NOTIFY, frontends=len(self.frontends))
        self._to_frontends(fmsg.call_status_changed(self.id, "ended", self.stream_sid, reason.value))
        self._fx.commands.append(Teardown(reason.value))

    def mark_ended(self) -> None:
        """The runner finished the teardown."""
        self._set_state(State.ENDED)

    # -- deadlines --------------------------------------------------------------

    @property
    def last_activity(self) -> float:
        """When the user or the caller last did something."""
        return self.deadlines.last_activity

    def deadline(self) -> float | None:
        """The earliest time :meth:`on_timer` must run, or None once ending."""
        return None if self.ended else self.deadlines.next()

    @hands_back
    def on_timer(self) -> None:
        """Act on every deadline that has passed (warnings, reaping, grace, farewell, tools)."""
        if self.ended:
            return
        now = self.clock()
        for due in self.deadlines.due(now):
            match due:
                case Due.INACTIVITY_WARNING:
                    self._to_frontends(fmsg.inactivity_warning(
                        self.id, self.deadlines.inactivity_left_ms(now)))
                case Due.DURATION_WARNING:
                    self._to_frontends(fmsg.duration_warning(
                        self.id, self.deadlines.duration_left_ms(now)))
                case Due.INACTIVITY:
                    self._end(EndReason.INACTIVITY)
                case Due.MAX_DURATION:
                    self._end(EndReason.MAX_DURATION)
                case Due.GRACE:
                    if not self.frontends and self.call is None:
                        self._end(EndReason.ABANDONED)
                case Due.FAREWELL:
                    self._end(EndReason.INTERVIEW_COMPLETED)
                case Due.TOOL:
                    for call_id in self.calls.expire(self._fx, now):
                        self._log.warning(Ev.TOOL_TIMED_OUT, callId=call_id[:64])
                    self._maybe_finish_farewell()
                case _ as unreachable:
                    assert_never(unreachable)

    def _touch(self) -> None:
        if self.deadlines.touch(self.clock()) and not self.ended:
            # The countdown the frontends show is over.
            self._to_frontends(fmsg.inactivity_warning_cleared(self.id))

    # -- frontends --------------------------------------------------------------

    @hands_back
    def add_frontend(self, fid: int, info: FrontendInfo) -> None:
        """A frontend joined; it learns at once if the call is already here."""
        self.frontends[fid] = info
        self._audio_frontends += info.wants_audio
        self.deadlines.grace_at = None
        if self.call is not None:
            self._to_frontends(
                fmsg.session_associated(self.id, self.call.call_sid, self.call.stream_sid), fid
            )
        if len(self.replay):
            missed, dropped = self.replay.drain()
            self._log.info(Ev.FRONTEND_RESUMED, missed=len(missed), dropped=dropped)
            self._to_frontends(fmsg.session_resumed(self.id, len(missed), dropped), fid)
            for message in missed:
                self._to_frontends(message, fid)
        # Joining is activity; warnings are state, not history: after the
        # replay the frontend hears only what is in force now.
        self._touch()
        if "duration" in self.deadlines.warnings:
            self._to_frontends(fmsg.duration_warning(
                self.id, self.deadlines.duration_left_ms(self.clock())), fid)

    @hands_back
    def remove_frontend(self, fid: int) -> None:
        """A frontend's connection closed (without ``session.end``)."""
        info = self.frontends.pop(fid, None)
        if info is None:
            return
        self._audio_frontends -= info.wants_audio
        if self.ended:
            return
        if self.frontends or self.call is not None:
            return
        if self.claimable or not self.config.given:
            # Nobody can come back to a bare /logs session (it has no name),
            # and a session holding no configuration has nothing to resume.
            self._end(EndReason.FRONTEND_LEFT)
        else:
            # A refresh before the call arrives must not lose the queued
            # configuration: keep it for the grace window.
            self.deadlines.start_grace(self.clock())

    @hands_back
    def on_frontend_message(self, fid: int, msg: fmsg.FrontendMessage) -> None:
        """A vetted message from frontend ``fid``."""
        self._touch()
        if self.ended:
            return
        self._log.debug(Ev.FRONTEND_MESSAGE, frontend=fid, type=type(msg).__name__)
        match msg:
            case fmsg.JobConfigMessage(config, used, ignored):
                self._log.info(Ev.JOB_CONFIG_RECEIVED, sessionId=self.id, used=list(used),
                               ignored=list(ignored), voice=config.voice,
                               has_instructions=config.instructions is not None)
                self._configure(fid, self.config.take_job(msg))
            case fmsg.JobConfigRefused(reason):
                self._log.info(Ev.JOB_CONFIG_RECEIVED, sessionId=self.id, refused=True)
                self._log.warning(Ev.BAD_INPUT, source="frontend", frontend=fid,
                                  code="invalid_job_config")
                self._to_frontends(fmsg.error("invalid_job_config", reason), fid)
            case fmsg.SessionUpdateMessage(session):
                self._log.info(Ev.JOB_CONFIG_RECEIVED, sessionId=self.id, via="session.update",
                               fields=sorted(session))
                details = self.config.take_overrides(session)
                if details is not None:
                    self._configure(fid, details)
                else:
                    self._to_frontends(fmsg.error(
                        "config_too_large", "the configuration would grow past "
                        f"{MAX_OVERRIDES_BYTES // 1024} KiB; nothing of this update was kept"), fid)
            case fmsg.Activity():
                pass
            case fmsg.AvatarAttach(provider, avatar_id):
                if avatar_id not in self.avatars and len(self.avatars) >= self.options.max_avatars:
                    self._to_frontends(fmsg.error("too_many_avatars", "avatar limit reached"), fid)
                else:
                    self.avatars[avatar_id] = provider
                    self._log.info(Ev.AVATAR_ATTACHED, provider=provider)
            case fmsg.SessionEnd():
                self._end(EndReason.FRONTEND_ENDED)
            case fmsg.ClientEvent(event):
                self._client_event(fid, event)
            case _ as unreachable:
                assert_never(unreachable)

    def _client_event(self, fid: int, event: dict[str, Any]) -> None:
        if not self.model_ready:
            self._to_frontends(fmsg.error("wrong_order", f"{event['type']} needs a live call"), fid)
        elif self.calls.forward(self._fx, event):
            self._maybe_finish_farewell()

    def _configure(self, fid: int, details: Details) -> None:
        if self.model_ready:
            self._log.info(Ev.JOB_CONFIG_LIVE_UPDATE, sessionId=self.id)
            self._send_session_update({fid: details})
        else:
            self._log.info(Ev.JOB_CONFIG_QUEUED, state=self.state.name)
            self.config.queue_ack(fid, details)
            self._to_frontends(fmsg.job_config_ack(self.id, "queued", details), fid)

    def _send_session_update(self, acks: dict[int, Details]) -> None:
        self._fx.upstream.append(self.config.update_event(
            farewell=self.state is State.FAREWELL, acks=acks))

    # -- the call -----------------------------------------------------------------

    @hands_back
    def on_call_started(self, start: twilio.Start) -> None:
        """Twilio's ``start`` arrived and the registry paired the call here."""
        if self.state is not State.WAITING:
            raise AssertionError(
                f"session state cannot go from {self.state.name} to {State.CONNECTING.name}")
        self.call = start
        self.call_started_at = self.clock()
        self.claimable = False
        self.deadlines.grace_at = None
        self._touch()
        self._set_state(State.CONNECTING)
        self._log.info(Ev.SESSION_PAIRED, callSid=start.call_sid, streamSid=start.stream_sid)
        self._to_frontends(fmsg.session_associated(self.id, start.call_sid, start.stream_sid))
        self._to_frontends(fmsg.call_status_changed(self.id, "connected", start.stream_sid))
        self._fx.commands.append(OpenUpstream())

    @hands_back
    def on_call_message(self, msg: twilio.TwilioMessage) -> None:
        """A parsed Media Streams message after ``start``."""
        match msg:
            case twilio.Media(payload):
                if _BASE64.fullmatch(payload):
                    self._call_media(payload)
                else:  # never from Twilio; never spliced into the model's JSON
                    self._log.warning(Ev.BAD_INPUT, source="call", code="bad_audio")
            case twilio.Mark(name):
                if self.playback.on_mark(name, self.clock()):
                    self._maybe_finish_farewell()
            case twilio.Dtmf(digit):
                self._touch()
                if self.options.dtmf_to_model and self.model_ready and digit in _DTMF_DIGITS:
                    # The model hears only audio, and a key press is none: say it in words.
                    self._fx.upstream.append(rt.user_text_event(f"The caller pressed {digit}"))
            case twilio.Stop():
                self._log.info(Ev.CALL_STOPPED)
                self._end(EndReason.CALLER_HUNG_UP)
            case twilio.Connected() | twilio.Start():
                self._log.warning(Ev.BAD_INPUT, code="wrong_order", detail="repeated stream setup")
            case _ as unreachable:
                assert_never(unreachable)

    @hands_back
    def on_call_media(self, payload: str) -> None:
        """One frame of caller audio (base64 μ-law)."""
        self._call_media(payload)

    def _call_media(self, payload: str) -> None:
        if self.model_ready:
            self._fx.upstream.append(append_event(payload))
        elif self.state is State.CONNECTING:
            self._held_audio.append(payload)

    @hands_back
    def on_dial_report(self, report: DialReport) -> None:
        """Twilio reported on the call relay placed for this session (``POST /api/calls``)."""
        self._log.info(Ev.CALL_PROGRESS, report=type(report).__name__, callSid=report.call_sid)
        if isinstance(report, Placed):
            self.registered_call_sid = report.call_sid
        step = self.dialing.report(report, streamed=self.call is not None)
        if self.ended:
            return
        if step.tell is not None and self.call is None:
            self._to_frontends(fmsg.call_status_changed(self.id, step.tell, None))
        if step.leave_message and self.model_ready:
            self._fx.upstream += self.turns.request(VOICEMAIL_REQUEST)
        if step.end is not None:
            self._end(EndReason(step.end))

    @hands_back
    def on_call_closed(self) -> None:
        """The stream socket closed (after ``stop``, this changes nothing)."""
        self._end(EndReason.CALL_DROPPED)

    # -- the farewell -------------------------------------------------------------

    def _begin_farewell(self) -> None:
        if self.state is not State.LIVE:
            return
        self._set_state(State.FAREWELL)
        self._log.info(Ev.FAREWELL)
        self.deadlines.start_farewell(self.clock())
        self.calls.forget()
        # No new turns: the caller's next words must not start another answer.
        self._fx.upstream.append(self.config.no_new_turns())
        if not self.turns.had_audio and not self.playback.playing:
            # The model ended without a goodbye: ask for one.
            self._fx.upstream += self.turns.request(_GOODBYE)

    def _maybe_finish_farewell(self) -> None:
        if self.state is State.FAREWELL and not self.turns.busy and not self.playback.playing:
            self._end(EndReason.INTERVIEW_COMPLETED)

    # -- output -----------------------------------------------------------------

    def _to_frontends(self, message: Message, fid: int | None = None) -> None:
        if self.frontends:
            self._fx.frontend.append((fid, message))
        elif fid is None and not self.ended:
            self.replay.keep(message)
