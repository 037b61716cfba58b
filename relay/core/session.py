"""One practice interview's state machine: events in, effects out, no I/O.

A session has at most one call (Twilio stream), one model connection, any
number of frontends, a job configuration and deadlines. Its inputs are
``on_*`` methods; each appends what to send and do to :attr:`Session.effects`
(see :mod:`relay.core.effects`), which the runner carries out.

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
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, assert_never

import orjson

from relay.core.deadlines import Deadlines, Due, Limits
from relay.core.effects import Effects, ModelEvent, OpenUpstream, RunTool, Teardown
from relay.core.instructions import build_session_update
from relay.core.playback import Playback, b64_decoded_len
from relay.core.tools import Effect, ToolOutcome
from relay.logs import Ev, get_logger
from relay.messages import frontend as fmsg
from relay.messages import twilio
from relay.messages.jobconfig import JobConfig, jobconfig_summary


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


_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_TRANSIENT = frozenset({"session.inactivity_warning", "session.inactivity_warning_cleared",
                        "session.duration_warning"})
_GOODBYE = "Say a brief, warm goodbye to the candidate now, in one or two sentences."
_APPEND = ('{"type":"input_audio_buffer.append","audio":"', '"}')


def append_event(payload: str) -> bytes:
    """The model event carrying one caller audio frame (payload is base64).

    Base64 needs no JSON escaping, so the hot path splices it in; anything with
    a quote or backslash (never valid base64) is serialised properly instead.
    """
    if '"' in payload or "\\" in payload:
        return orjson.dumps({"type": "input_audio_buffer.append", "audio": payload})
    return (_APPEND[0] + payload + _APPEND[1]).encode()


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
        #: Streaming avatar sessions to stop at teardown (provider, id).
        self.avatars: dict[str, str] = {}
        # Frontend-bound messages while no frontend is attached, replayed to
        # the next one (a page refresh must not lose the transcript).
        self._missed: deque[dict[str, Any] | ModelEvent] = deque(
            maxlen=max(1, options.resume_buffer_events)
        )
        self._missed_dropped = 0
        #: Model audio chunks sent to the caller (a metric).
        self.frames_out = 0
        self.effects = Effects()
        self.frontends: dict[int, FrontendInfo] = {}
        self.call: twilio.Start | None = None
        self.call_started_at: float | None = None
        self.job_config: JobConfig | None = None
        self.overrides: dict[str, Any] = {}
        self.playback = Playback(options.mark_interval_ms)
        self._held_audio: deque[str] = deque(maxlen=max(1, options.pre_open_audio_frames))
        self._queued_acks: list[int] = []
        # One entry per session.update sent, oldest first: its event_id and
        # the frontends to acknowledge when the model confirms it.
        self._awaiting_updated: deque[tuple[str, list[int]]] = deque()
        self._update_seq = 0
        self._voice_locked = False
        self._response_active = False
        self._response_had_audio = False
        # response.create sent and not yet answered by response.created, and
        # client events held until the active response is done (the model
        # refuses a second response while one is in progress).
        self._responses_requested = 0
        self._after_response: list[bytes] = []
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

    def end(self, reason: EndReason) -> None:
        """End the session for ``reason``; does nothing if it is already ending.

        Queues ``call.status_changed: ended`` for every frontend before the
        :class:`~relay.core.effects.Teardown` command, so frontends always hear why
        before their connection closes.
        """
        if self.ended:
            return
        self.end_reason = reason
        self._set_state(State.ENDING)
        self._log.info(Ev.SESSION_ENDING, reason=reason.value)
        if self.frontends:
            self._log.info(Ev.CALL_ENDED_NOTIFY, frontends=len(self.frontends))
        self._to_frontends(fmsg.call_status_changed(self.id, "ended", self.stream_sid, reason.value))
        self.effects.commands.append(Teardown(reason.value))

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

    def on_timer(self) -> None:
        """Act on every deadline that has passed (warnings, reaping, grace, farewell)."""
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
                    self.end(EndReason.INACTIVITY)
                case Due.MAX_DURATION:
                    self.end(EndReason.MAX_DURATION)
                case Due.GRACE:
                    if not self.frontends and self.call is None:
                        self.end(EndReason.ABANDONED)
                case Due.FAREWELL:
                    self.end(EndReason.INTERVIEW_COMPLETED)
                case _ as unreachable:
                    assert_never(unreachable)

    def _touch(self) -> None:
        if self.deadlines.touch(self.clock()) and not self.ended:
            # The countdown the frontends show is over.
            self._to_frontends({"type": "session.inactivity_warning_cleared", "sessionId": self.id})

    # -- frontends --------------------------------------------------------------

    def add_frontend(self, fid: int, info: FrontendInfo) -> None:
        """A frontend joined; it learns at once if the call is already here."""
        self.frontends[fid] = info
        self.deadlines.grace_at = None
        if self.call is not None:
            self._to_frontends(
                fmsg.session_associated(self.id, self.call.call_sid, self.call.stream_sid), fid
            )
        if self._missed:
            self._log.info(Ev.FRONTEND_RESUMED, missed=len(self._missed),
                           dropped=self._missed_dropped)
            self._to_frontends({"type": "session.resumed", "sessionId": self.id,
                                "missed": len(self._missed), "dropped": self._missed_dropped}, fid)
            while self._missed:
                self._to_frontends(self._missed.popleft(), fid)
            self._missed_dropped = 0
        # Joining is activity; warnings are state, not history: after the
        # replay the frontend hears only what is in force now.
        self._touch()
        if "duration" in self.deadlines.warnings:
            self._to_frontends({"type": "session.duration_warning", "sessionId": self.id,
                                "endsInMs": self.deadlines.duration_left_ms(self.clock())}, fid)

    def remove_frontend(self, fid: int) -> None:
        """A frontend's connection closed (without ``session.end``)."""
        if self.frontends.pop(fid, None) is None or self.ended:
            return
        if self.frontends or self.call is not None:
            return
        if self.claimable or (self.job_config is None and not self.overrides):
            # Nobody can come back to a bare /logs session (it has no name),
            # and a session holding no configuration has nothing to resume.
            self.end(EndReason.FRONTEND_LEFT)
        else:
            # A refresh before the call arrives must not lose the queued
            # configuration: keep it for the grace window.
            self.deadlines.start_grace(self.clock())

    def on_frontend_message(self, fid: int, msg: fmsg.FrontendMessage) -> None:
        """A vetted message from frontend ``fid``."""
        self._touch()
        if self.ended:
            return
        self._log.debug(Ev.FRONTEND_MESSAGE, frontend=fid, type=type(msg).__name__)
        match msg:
            case fmsg.JobConfigMessage(config):
                self._log.info(Ev.JOB_CONFIG_RECEIVED, sessionId=self.id, **jobconfig_summary(config))
                self.job_config = config
                self._configure(fid)
            case fmsg.SessionUpdateMessage(session, dropped):
                self._log.info(Ev.JOB_CONFIG_RECEIVED, sessionId=self.id, via="session.update",
                               dropped=list(dropped))
                self.overrides = _deep_merge(self.overrides, session)
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
                self.end(EndReason.FRONTEND_ENDED)
            case fmsg.ClientEvent(event):
                if self.model_ready:
                    self.effects.upstream.append(orjson.dumps(event))
                else:
                    self._to_frontends(
                        fmsg.error("wrong_order", f"{event['type']} needs a live call"), fid
                    )
            case _ as unreachable:
                assert_never(unreachable)

    def _configure(self, fid: int) -> None:
        if self.model_ready:
            self._log.info(Ev.JOB_CONFIG_LIVE_UPDATE, sessionId=self.id)
            self._send_session_update([fid])
        else:
            self._log.info(Ev.JOB_CONFIG_QUEUED, state=self.state.name)
            self._queued_acks.append(fid)
            self._to_frontends(fmsg.job_config_ack(self.id, "queued"), fid)

    def _send_session_update(self, ack: list[int]) -> None:
        extra = dict(self.overrides)
        tools = list(self.options.tools)
        if isinstance(extra.get("tools"), list):
            # A frontend's tools join relay's own; they never replace
            # end_interview and the other server-side tools.
            own = {tool["name"] for tool in tools}
            tools += [t for t in extra.pop("tools") if isinstance(t, dict)
                      and isinstance(t.get("name"), str) and t["name"] not in own]
        update = build_session_update(
            self.job_config,
            tools=tools,
            default_voice=self.options.default_voice,
            transcription_model=self.options.transcription_model,
            include_voice=not self._voice_locked,
            extra=extra or None,
        )
        if self.state is State.FAREWELL:
            # The goodbye is playing: no new turns, whatever the configuration says.
            update["session"].setdefault("audio", {}).setdefault("input", {})["turn_detection"] = None
        self._push_update(update, ack)

    def _push_update(self, update: dict[str, Any], ack: list[int]) -> None:
        self._update_seq += 1
        event_id = f"relay_update_{self._update_seq}"
        update["event_id"] = event_id
        self._awaiting_updated.append((event_id, ack))
        self.effects.upstream.append(orjson.dumps(update))

    # -- the call -----------------------------------------------------------------

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
        self.effects.commands.append(OpenUpstream())

    def on_call_message(self, msg: twilio.TwilioMessage) -> None:
        """A parsed Media Streams message after ``start``."""
        match msg:
            case twilio.Media(payload):
                if _BASE64.fullmatch(payload):
                    self.on_call_media(payload)
                else:  # never from Twilio; never spliced into the model's JSON
                    self._log.warning(Ev.BAD_INPUT, source="call", code="bad_audio")
            case twilio.Mark(name):
                if self.playback.on_mark(name, self.clock()):
                    self._maybe_finish_farewell()
            case twilio.Dtmf():
                self._touch()
            case twilio.Stop():
                self._log.info(Ev.CALL_STOPPED)
                self.end(EndReason.CALLER_HUNG_UP)
            case twilio.Connected() | twilio.Start():
                self._log.warning(Ev.BAD_INPUT, code="wrong_order", detail="repeated stream setup")
            case _ as unreachable:
                assert_never(unreachable)

    def on_call_media(self, payload: str) -> None:
        """One frame of caller audio (base64 μ-law)."""
        if self.model_ready:
            self.effects.upstream.append(append_event(payload))
        elif self.state is State.CONNECTING:
            self._held_audio.append(payload)

    def on_call_closed(self) -> None:
        """The stream socket closed (after ``stop``, this changes nothing)."""
        self.end(EndReason.CALL_DROPPED)

    # -- the model ----------------------------------------------------------------

    def on_upstream_open(self) -> None:
        """The model connection opened: configure it and release held audio."""
        if self.state is not State.CONNECTING:
            return
        self._set_state(State.LIVE)
        self._send_session_update(list(dict.fromkeys(self._queued_acks)))
        self._queued_acks.clear()
        if self.options.greet_first:
            self._request_response(b'{"type":"response.create"}')
        while self._held_audio:
            self.effects.upstream.append(append_event(self._held_audio.popleft()))

    def on_upstream_failed(self, detail: str) -> None:
        """No model connection could be opened, after every retry."""
        if self.ended:
            return
        self._to_frontends(fmsg.error("upstream_failed", detail))
        self.end(EndReason.UPSTREAM_FAILED)

    def on_upstream_closed(self) -> None:
        """The model connection closed while the session was live."""
        self.end(EndReason.UPSTREAM_CLOSED)

    def on_upstream_text(self, text: str) -> None:
        """One server event from the model, as JSON text."""
        if self.ended:
            return
        try:
            event = orjson.loads(text)
            kind = event["type"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            self._log.warning(Ev.BAD_INPUT, source="model", detail="unparseable event")
            return
        # Forwarded before it is acted on: an event that ends the session (the
        # goodbye's response.done) must reach frontends before "ended" does.
        self._to_frontends(ModelEvent(text, event, kind))
        if kind == "response.output_audio.delta":
            self._on_output_audio(event)
            return
        self._log.debug(Ev.MODEL_EVENT, type=kind)
        self._on_model_event(kind, event)

    def _on_output_audio(self, event: dict[str, Any]) -> None:
        delta = event.get("delta")
        item_id = event.get("item_id")
        if self.call is None or not isinstance(delta, str) or not isinstance(item_id, str):
            return
        self._voice_locked = True
        self._response_had_audio = True
        self.frames_out += 1
        sid = self.call.stream_sid
        self.effects.call.append(twilio.media_message(sid, delta))
        mark = self.playback.on_audio(item_id, b64_decoded_len(delta), self.clock())
        if mark is not None:
            self.effects.call.append(twilio.mark_message(sid, mark))

    def _on_model_event(self, kind: str, event: dict[str, Any]) -> None:
        if kind == "session.updated":
            if self._awaiting_updated:
                _, ack = self._awaiting_updated.popleft()
                for fid in ack:
                    self._log.info(Ev.JOB_CONFIG_APPLIED)
                    self._to_frontends(fmsg.job_config_ack(self.id, "applied"), fid)
        elif kind == "input_audio_buffer.speech_started":
            self._touch()
            truncation = self.playback.barge_in(self.clock())
            if truncation is not None and self.call is not None:
                self._log.info(Ev.BARGE_IN, audioEndMs=truncation.audio_end_ms)
                self.effects.upstream.append(orjson.dumps({
                    "type": "conversation.item.truncate",
                    "item_id": truncation.item_id,
                    "content_index": 0,
                    "audio_end_ms": truncation.audio_end_ms,
                }))
                self.effects.call.append(twilio.clear_message(self.call.stream_sid))
                self._maybe_finish_farewell()
        elif kind == "response.output_audio.done":
            item_id = event.get("item_id")
            mark = self.playback.on_audio_done(item_id) if isinstance(item_id, str) else None
            if mark is not None and self.call is not None:
                self.effects.call.append(twilio.mark_message(self.call.stream_sid, mark))
        elif kind == "response.created":
            self._response_active = True
            self._response_had_audio = False
            self._responses_requested = max(0, self._responses_requested - 1)
        elif kind == "response.done":
            self._response_active = False
            held, self._after_response = self._after_response, []
            for data in held:
                self._request_response(data)
            self._maybe_finish_farewell()
        elif kind == "response.output_item.done":
            item = event.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                self._on_function_call(item)
        elif kind == "error":
            detail = event.get("error")
            code = detail.get("code") if isinstance(detail, dict) else None
            self._log.warning(Ev.UPSTREAM_ERROR, code=code)
            failed = detail.get("event_id") if isinstance(detail, dict) else None
            for entry in list(self._awaiting_updated):
                if entry[0] == failed:
                    self._awaiting_updated.remove(entry)
                    self._log.warning(Ev.JOB_CONFIG_REJECTED, code=code)
                    message = str(detail.get("message"))[:300] if isinstance(detail, dict) else ""
                    for fid in entry[1]:
                        self._to_frontends(fmsg.error("config_rejected", message), fid)

    def _on_function_call(self, item: dict[str, Any]) -> None:
        call_id, name = item.get("call_id"), item.get("name")
        if not isinstance(call_id, str) or not isinstance(name, str):
            return
        arguments = item.get("arguments")
        self._log.info(Ev.TOOL_CALL, tool=name[:60])
        self.effects.commands.append(
            RunTool(call_id, name, arguments if isinstance(arguments, str) else "{}")
        )

    def on_tool_result(self, call_id: str, outcome: ToolOutcome) -> None:
        """A tool call finished; answer the model and apply its effect."""
        if not self.model_ready:
            return
        self.effects.upstream.append(orjson.dumps({
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call_id,
                     "output": orjson.dumps(dict(outcome.output)).decode()},
        }))
        if outcome.effect is Effect.END_INTERVIEW:
            self._begin_farewell()
        elif self.state is State.LIVE:
            self._request_response(b'{"type":"response.create"}')

    def _request_response(self, data: bytes) -> None:
        if self._response_active:
            self._after_response.append(data)
        else:
            self._responses_requested += 1
            self.effects.upstream.append(data)

    def _begin_farewell(self) -> None:
        if self.state is not State.LIVE:
            return
        self._set_state(State.FAREWELL)
        self._log.info(Ev.FAREWELL)
        self.deadlines.start_farewell(self.clock())
        # No new turns: the caller's next words must not start another answer.
        self._push_update(
            {"type": "session.update",
             "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}},
            [],
        )
        if not self._response_had_audio and not self.playback.playing:
            # The model ended without a goodbye: ask for one.
            self._request_response(orjson.dumps(
                {"type": "response.create", "response": {"instructions": _GOODBYE}}
            ))
        else:
            self._maybe_finish_farewell()

    def _maybe_finish_farewell(self) -> None:
        if (
            self.state is State.FAREWELL
            and not self._response_active
            and not self._responses_requested
            and not self._after_response
            and not self.playback.playing
        ):
            self.end(EndReason.INTERVIEW_COMPLETED)

    # -- output -----------------------------------------------------------------

    def _to_frontends(self, message: dict[str, Any] | ModelEvent, fid: int | None = None) -> None:
        if self.frontends:
            self.effects.frontend.append((fid, message))
        elif fid is None and not self.ended:
            if isinstance(message, ModelEvent):
                if message.type == "response.output_audio.delta":
                    return  # audio is for the caller; a returning browser needs the transcript
            elif message.get("type") in _TRANSIENT:
                return  # warnings are re-sent as they stand when a frontend joins
            if len(self._missed) == self._missed.maxlen:
                self._missed_dropped += 1
            self._missed.append(message)


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
