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
(responses and tool-call batches), :class:`~relay.core.playback.Playback`
(what the caller heard), :class:`~relay.core.deadlines.Deadlines` (reaping)
and :class:`~relay.core.replay.Replay` (the resume buffer).
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Concatenate, ParamSpec, assert_never

import orjson

from relay.core.configuration import Configuration
from relay.core.deadlines import Deadlines, Due, Limits
from relay.core.effects import Effects, ModelEvent, OpenUpstream, RunTool, Teardown
from relay.core.playback import Playback, b64_decoded_len
from relay.core.replay import Message, Replay
from relay.core.tools import Effect, ToolOutcome
from relay.core.turns import Turns
from relay.errors import MalformedMessage
from relay.logs import Ev, get_logger
from relay.messages import frontend as fmsg
from relay.messages import realtime as rt
from relay.messages import twilio
from relay.messages.jobconfig import jobconfig_summary


class State(IntEnum):
    """Where a session is in its life; only ever moves forward."""

    WAITING = 1
    CONNECTING = 2
    LIVE = 3
    FAREWELL = 4
    ENDING = 5
    ENDED = 6


class EndReason(StrEnum):
    """Why a session ended; sent to frontends and counted in /health."""

    CALLER_HUNG_UP = "caller_hung_up"
    CALL_DROPPED = "call_dropped"
    FRONTEND_ENDED = "frontend_ended"
    FRONTEND_LEFT = "frontend_left"
    ABANDONED = "abandoned"
    INTERVIEW_COMPLETED = "interview_completed"
    UPSTREAM_FAILED = "upstream_failed"
    UPSTREAM_CLOSED = "upstream_closed"
    RESET = "reset"
    SHUTDOWN = "shutdown"
    STOPPED = "stopped"
    SUPERSEDED = "superseded"
    INACTIVITY = "inactivity"
    MAX_DURATION = "max_duration"
    INTERNAL_ERROR = "internal_error"
    #: The node running the session stopped; another node ended it.
    RELAY_LOST = "relay_lost"


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """Per-session knobs, taken from :class:`~relay.config.Settings`."""

    tools: tuple[dict[str, Any], ...] = ()
    default_voice: str = "marin"
    transcription_model: str = "gpt-4o-mini-transcribe"
    greet_first: bool = True
    mark_interval_ms: int = 100
    pre_open_audio_frames: int = 250
    limits: Limits = Limits()
    resume_buffer_events: int = 500
    max_avatars: int = 4


@dataclass(frozen=True, slots=True)
class FrontendInfo:
    """How one frontend wants its events."""

    dialect: str = "ga"  # or "beta"
    wants_audio: bool = False
    #: Connected to a bare ``/logs`` (no session ID, no call SID).
    bare: bool = False


_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_GOODBYE = "Say a brief, warm goodbye to the candidate now, in one or two sentences."
_APPEND = ('{"type":"input_audio_buffer.append","audio":"', '"}')

P = ParamSpec("P")


def append_event(payload: str) -> bytes:
    """The model event carrying one caller audio frame (payload is base64).

    Base64 needs no JSON escaping, so the hot path splices it in; anything with
    a quote or backslash (never valid base64) is serialised properly instead.
    """
    if '"' in payload or "\\" in payload:
        return orjson.dumps({"type": "input_audio_buffer.append", "audio": payload})
    return (_APPEND[0] + payload + _APPEND[1]).encode()


def _hands_back(method: Callable[Concatenate[Session, P], None]) -> Callable[Concatenate[Session, P], Effects]:
    """An input: run it, then hand back (and forget) every effect it decided on."""

    @functools.wraps(method)
    def input_method(self: Session, *args: P.args, **kwargs: P.kwargs) -> Effects:
        try:
            method(self, *args, **kwargs)
        except BaseException:
            # Half-made decisions of a failed input are never performed.
            self._fx = Effects()
            raise
        return self._take()

    return input_method


class Session:
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
        self.frontends: dict[int, FrontendInfo] = {}
        self.call: twilio.Start | None = None
        self.call_started_at: float | None = None
        self.config = Configuration(session_id)
        self.turns = Turns()
        self.playback = Playback(options.mark_interval_ms)
        self.replay = Replay(options.resume_buffer_events)
        self._held_audio: deque[str] = deque(maxlen=max(1, options.pre_open_audio_frames))
        # Frontend-owned tool calls waiting for the app's output: call_id -> deadline.
        self._frontend_calls: dict[str, float] = {}
        self._fx = Effects()
        self._log = get_logger(sessionId=session_id)

    def _take(self) -> Effects:
        fx, self._fx = self._fx, Effects()
        return fx

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

    @_hands_back
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
        self._log.info(Ev.SESSION_ENDING, reason=reason.value)
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

    @_hands_back
    def on_timer(self) -> None:
        """Act on every deadline that has passed (warnings, reaping, grace, farewell, tools)."""
        if self.ended:
            return
        now = self.clock()
        for due in self.deadlines.due(now):
            match due:
                case Due.INACTIVITY_WARNING:
                    self._to_frontends({"type": "session.inactivity_warning", "sessionId": self.id,
                                        "disconnectInMs": self.deadlines.inactivity_left_ms(now)})
                case Due.DURATION_WARNING:
                    self._to_frontends({"type": "session.duration_warning", "sessionId": self.id,
                                        "endsInMs": self.deadlines.duration_left_ms(now)})
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
                    self._expire_frontend_calls(now)
                case _ as unreachable:
                    assert_never(unreachable)

    def _touch(self) -> None:
        if self.deadlines.touch(self.clock()) and not self.ended:
            # The countdown the frontends show is over.
            self._to_frontends({"type": "session.inactivity_warning_cleared", "sessionId": self.id})

    # -- frontends --------------------------------------------------------------

    @_hands_back
    def add_frontend(self, fid: int, info: FrontendInfo) -> None:
        """A frontend joined; it learns at once if the call is already here."""
        self.frontends[fid] = info
        self.deadlines.grace_at = None
        if self.call is not None:
            self._to_frontends(
                fmsg.session_associated(self.id, self.call.call_sid, self.call.stream_sid), fid
            )
        if len(self.replay):
            missed, dropped = self.replay.drain()
            self._log.info(Ev.FRONTEND_RESUMED, missed=len(missed), dropped=dropped)
            self._to_frontends({"type": "session.resumed", "sessionId": self.id,
                                "missed": len(missed), "dropped": dropped}, fid)
            for message in missed:
                self._to_frontends(message, fid)
        # Joining is activity; warnings are state, not history: after the
        # replay the frontend hears only what is in force now.
        self._touch()
        if "duration" in self.deadlines.warnings:
            self._to_frontends({"type": "session.duration_warning", "sessionId": self.id,
                                "endsInMs": self.deadlines.duration_left_ms(self.clock())}, fid)

    @_hands_back
    def remove_frontend(self, fid: int) -> None:
        """A frontend's connection closed (without ``session.end``)."""
        if self.frontends.pop(fid, None) is None or self.ended:
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

    @_hands_back
    def on_frontend_message(self, fid: int, msg: fmsg.FrontendMessage) -> None:
        """A vetted message from frontend ``fid``."""
        self._touch()
        if self.ended:
            return
        self._log.debug(Ev.FRONTEND_MESSAGE, frontend=fid, type=type(msg).__name__)
        match msg:
            case fmsg.JobConfigMessage(config):
                self._log.info(Ev.JOB_CONFIG_RECEIVED, sessionId=self.id, **jobconfig_summary(config))
                self.config.set_job(config)
                self._configure(fid)
            case fmsg.SessionUpdateMessage(session, dropped):
                self._log.info(Ev.JOB_CONFIG_RECEIVED, sessionId=self.id, via="session.update",
                               dropped=list(dropped))
                self.config.merge_overrides(session)
                self._configure(fid)
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
            return
        data = orjson.dumps(event)
        kind = event["type"]
        if kind == "response.create":
            self._fx.upstream += self.turns.request_from_frontend(data)
            return
        self._fx.upstream.append(data)
        item = event.get("item")
        if kind == "conversation.item.create" and isinstance(item, dict) \
                and item.get("type") == "function_call_output":
            call_id = item["call_id"]
            if self._frontend_calls.pop(call_id, None) is not None:
                self._reschedule_frontend_calls()
                self._answered(call_id, continue_turn=True)

    def _configure(self, fid: int) -> None:
        if self.model_ready:
            self._log.info(Ev.JOB_CONFIG_LIVE_UPDATE, sessionId=self.id)
            self._send_session_update([fid])
        else:
            self._log.info(Ev.JOB_CONFIG_QUEUED, state=self.state.name)
            self.config.queue_ack(fid)
            self._to_frontends(fmsg.job_config_ack(self.id, "queued"), fid)

    def _send_session_update(self, acks: list[int]) -> None:
        self._fx.upstream.append(self.config.update_event(
            self.options.tools,
            default_voice=self.options.default_voice,
            transcription_model=self.options.transcription_model,
            farewell=self.state is State.FAREWELL,
            acks=acks,
        ))

    # -- the call -----------------------------------------------------------------

    @_hands_back
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

    @_hands_back
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
            case twilio.Dtmf():
                self._touch()
            case twilio.Stop():
                self._log.info(Ev.CALL_STOPPED)
                self._end(EndReason.CALLER_HUNG_UP)
            case twilio.Connected() | twilio.Start():
                self._log.warning(Ev.BAD_INPUT, code="wrong_order", detail="repeated stream setup")
            case _ as unreachable:
                assert_never(unreachable)

    @_hands_back
    def on_call_media(self, payload: str) -> None:
        """One frame of caller audio (base64 μ-law)."""
        self._call_media(payload)

    def _call_media(self, payload: str) -> None:
        if self.model_ready:
            self._fx.upstream.append(append_event(payload))
        elif self.state is State.CONNECTING:
            self._held_audio.append(payload)

    @_hands_back
    def on_call_closed(self) -> None:
        """The stream socket closed (after ``stop``, this changes nothing)."""
        self._end(EndReason.CALL_DROPPED)

    # -- the model ----------------------------------------------------------------

    @_hands_back
    def on_upstream_open(self) -> None:
        """The model connection opened: configure it and release held audio."""
        if self.state is not State.CONNECTING:
            return
        self._set_state(State.LIVE)
        self._send_session_update(self.config.take_queued_acks())
        if self.options.greet_first:
            self._fx.upstream += self.turns.request()
        while self._held_audio:
            self._fx.upstream.append(append_event(self._held_audio.popleft()))

    @_hands_back
    def on_upstream_failed(self, detail: str) -> None:
        """No model connection could be opened, after every retry."""
        if self.ended:
            return
        self._to_frontends(fmsg.error("upstream_failed", detail))
        self._end(EndReason.UPSTREAM_FAILED)

    @_hands_back
    def on_upstream_closed(self) -> None:
        """The model connection closed while the session was live."""
        self._end(EndReason.UPSTREAM_CLOSED)

    @_hands_back
    def on_upstream_text(self, text: str) -> None:
        """One server event from the model, as JSON text."""
        if self.ended:
            return
        try:
            event, typed = rt.parse_event(text)
        except MalformedMessage as exc:
            self._log.warning(Ev.BAD_INPUT, source="model", detail=exc.message)
            return
        # Forwarded before it is acted on: an event that ends the session (the
        # goodbye's response.done) must reach frontends before "ended" does.
        kind = event["type"]
        self._to_frontends(ModelEvent(text, event, kind))
        if type(typed) is not rt.AudioDelta:
            self._log.debug(Ev.MODEL_EVENT, type=kind)
        self._on_model_event(typed)

    def _on_model_event(self, event: rt.RealtimeEvent) -> None:
        match event:
            case rt.AudioDelta(item_id, delta):
                self._on_output_audio(item_id, delta)
            case rt.AudioDone(item_id):
                mark = self.playback.on_audio_done(item_id)
                if mark is not None and self.call is not None:
                    self._fx.call.append(twilio.mark_message(self.call.stream_sid, mark))
            case rt.SpeechStarted():
                self._on_speech_started()
            case rt.ResponseCreated():
                self.turns.on_created()
            case rt.ResponseDone():
                self._fx.upstream += self.turns.on_done()
                self._maybe_finish_farewell()
            case rt.FunctionCall(call_id, name, arguments):
                self._on_function_call(call_id, name, arguments)
            case rt.SessionUpdated():
                for fid in self.config.on_updated():
                    self._log.info(Ev.JOB_CONFIG_APPLIED)
                    self._to_frontends(fmsg.job_config_ack(self.id, "applied"), fid)
            case rt.ModelError(code, message, event_id):
                self._log.warning(Ev.UPSTREAM_ERROR, code=code)
                refused = self.config.on_refused(event_id)
                if refused is not None:
                    self._log.warning(Ev.JOB_CONFIG_REJECTED, code=code)
                    for fid in refused:
                        self._to_frontends(fmsg.error("config_rejected", message), fid)
            case rt.Other():
                pass
            case _ as unreachable:
                assert_never(unreachable)

    def _on_output_audio(self, item_id: str, delta: str) -> None:
        if self.call is None:
            return
        self.config.voice_locked = True
        self.turns.had_audio = True
        self.frames_out += 1
        sid = self.call.stream_sid
        self._fx.call.append(twilio.media_message(sid, delta))
        mark = self.playback.on_audio(item_id, b64_decoded_len(delta), self.clock())
        if mark is not None:
            self._fx.call.append(twilio.mark_message(sid, mark))

    def _on_speech_started(self) -> None:
        self._touch()
        truncation = self.playback.barge_in(self.clock())
        if truncation is not None and self.call is not None:
            self._log.info(Ev.BARGE_IN, audioEndMs=truncation.audio_end_ms)
            self._fx.upstream.append(orjson.dumps({
                "type": "conversation.item.truncate",
                "item_id": truncation.item_id,
                "content_index": 0,
                "audio_end_ms": truncation.audio_end_ms,
            }))
            self._fx.call.append(twilio.clear_message(self.call.stream_sid))
            self._maybe_finish_farewell()

    # -- tools ----------------------------------------------------------------------

    def _on_function_call(self, call_id: str, name: str, arguments: str) -> None:
        self._log.info(Ev.TOOL_CALL, tool=name[:60])
        self.turns.call_opened(call_id, name)
        own = {tool.get("name") for tool in self.options.tools}
        if name not in own and name in self.config.frontend_tool_names:
            # The app declared this tool: the app answers it (the reference
            # demo's Function Calls panel), within the tool timeout.
            self._frontend_calls[call_id] = (
                self.clock() + self.options.limits.frontend_tool_timeout_s)
            self._reschedule_frontend_calls()
            return
        self._fx.commands.append(RunTool(call_id, name, arguments))

    def _reschedule_frontend_calls(self) -> None:
        self.deadlines.tool_at = min(self._frontend_calls.values(), default=None)

    def _expire_frontend_calls(self, now: float) -> None:
        for call_id, at in list(self._frontend_calls.items()):
            if at <= now:
                del self._frontend_calls[call_id]
                self._log.warning(Ev.TOOL_TIMED_OUT, callId=call_id[:64])
                self._send_output(call_id, {"error": "the app did not answer this call in time"})
                self._answered(call_id, continue_turn=True)
        self._reschedule_frontend_calls()

    @_hands_back
    def on_tool_result(self, call_id: str, outcome: ToolOutcome) -> None:
        """A tool call relay ran finished; answer the model and apply its effect."""
        if not self.model_ready:
            return
        self._send_output(call_id, dict(outcome.output))
        if outcome.effect is Effect.END_INTERVIEW:
            self._answered(call_id, continue_turn=False)
            self._begin_farewell()
        else:
            self._answered(call_id, continue_turn=self.state is State.LIVE)

    def _send_output(self, call_id: str, output: dict[str, Any]) -> None:
        self._fx.upstream.append(orjson.dumps({
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call_id,
                     "output": orjson.dumps(output).decode()},
        }))

    def _answered(self, call_id: str, *, continue_turn: bool) -> None:
        self._fx.upstream += self.turns.call_answered(call_id, continue_turn=continue_turn)
        self._maybe_finish_farewell()

    # -- the farewell -------------------------------------------------------------

    def _begin_farewell(self) -> None:
        if self.state is not State.LIVE:
            return
        self._set_state(State.FAREWELL)
        self._log.info(Ev.FAREWELL)
        self.deadlines.start_farewell(self.clock())
        self.turns.forget_calls()
        self._frontend_calls.clear()
        self._reschedule_frontend_calls()
        # No new turns: the caller's next words must not start another answer.
        self._fx.upstream.append(self.config.record(
            {"type": "session.update",
             "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}},
            [],
        ))
        if not self.turns.had_audio and not self.playback.playing:
            # The model ended without a goodbye: ask for one.
            self._fx.upstream += self.turns.request(orjson.dumps(
                {"type": "response.create", "response": {"instructions": _GOODBYE}}
            ))
        else:
            self._maybe_finish_farewell()

    def _maybe_finish_farewell(self) -> None:
        if self.state is State.FAREWELL and not self.turns.busy and not self.playback.playing:
            self._end(EndReason.INTERVIEW_COMPLETED)

    # -- output -----------------------------------------------------------------

    def _to_frontends(self, message: Message, fid: int | None = None) -> None:
        if self.frontends:
            self._fx.frontend.append((fid, message))
        elif fid is None and not self.ended:
            self.replay.keep(message)
