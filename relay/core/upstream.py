"""The session's inputs from the model connection: its opening, its events, its end.

Part of :class:`~relay.core.session.Session`, split off because the model's
side is the largest of its inputs: what a server event means for the call (audio
to play, a barge-in to cut short, a refused update to fall back from, a tool to
call) is decided here. It keeps no state of its own: every attribute it uses is
the session's (see ``Session.__init__``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, assert_never

import orjson

from relay.core.calls import ToolCalls
from relay.core.configuration import Configuration
from relay.core.effects import Effects, ModelEvent, hands_back
from relay.core.options import EndReason, SessionOptions
from relay.core.outbound import MACHINES, VOICEMAIL_MESSAGE, Dialing
from relay.core.playback import Playback
from relay.core.replay import Message
from relay.core.state import State
from relay.core.tools import Effect, ToolOutcome
from relay.core.turns import Turns
from relay.errors import MalformedMessage
from relay.logs import Ev
from relay.messages import frontend as fmsg
from relay.messages import realtime as rt
from relay.messages import twilio
from relay.messages.realtime import append_event

#: Asks the model for the short message left on a voicemail.
VOICEMAIL_REQUEST = orjson.dumps({"type": "response.create", "response": {
    "instructions": VOICEMAIL_MESSAGE}})


class UpstreamInput:
    """The model's side of :class:`~relay.core.session.Session` (a mixin)."""

    id: str
    options: SessionOptions
    clock: Callable[[], float]
    state: State
    call: twilio.Start | None
    config: Configuration
    turns: Turns
    playback: Playback
    calls: ToolCalls
    dialing: Dialing
    frames_out: int
    malformed_model_events: int
    _audio_frontends: int
    _held_audio: deque[str]
    _fx: Effects
    _log: Any

    if TYPE_CHECKING:
        ended: bool
        model_ready: bool

        def _set_state(self, new: State) -> None: ...
        def _end(self, reason: EndReason) -> None: ...
        def _touch(self) -> None: ...
        def _send_session_update(self, acks: dict[int, Any]) -> None: ...
        def _begin_farewell(self) -> None: ...
        def _maybe_finish_farewell(self) -> None: ...
        def _to_frontends(self, message: Message, fid: int | None = None) -> None: ...

    @hands_back
    def on_upstream_open(self) -> None:
        """The model connection opened: configure it and release held audio."""
        if self.state is not State.CONNECTING:
            return
        self._set_state(State.LIVE)
        self._send_session_update(self.config.take_queued())
        if self.dialing.call is not None and self.dialing.call.answered_by in MACHINES:
            self._fx.upstream += self.turns.request(VOICEMAIL_REQUEST)
        elif self.options.greet_first:
            self._fx.upstream += self.turns.request()
        while self._held_audio:
            self._fx.upstream.append(append_event(self._held_audio.popleft()))

    @hands_back
    def on_upstream_failed(self, detail: str) -> None:
        """No model connection could be opened, after every retry."""
        if self.ended:
            return
        self._to_frontends(fmsg.error("upstream_failed", detail))
        self._end(EndReason.UPSTREAM_FAILED)

    @hands_back
    def on_upstream_closed(self) -> None:
        """The model connection closed while the session was live."""
        self._end(EndReason.UPSTREAM_CLOSED)

    @hands_back
    def on_upstream_text(self, text: str) -> None:
        """One server event from the model, as JSON text."""
        if self.ended:
            return
        audio = None if self._audio_frontends else rt.audio_delta(text)
        if audio is not None:
            # The event of every 20-odd milliseconds of the answer, read without
            # parsing it (no frontend asked for it, none keeps it): straight to the call.
            if not self.playback.was_truncated(audio[0]):
                self._on_audio(*audio)
            return
        try:
            event, typed = rt.parse_event(text)
        except MalformedMessage as exc:
            # Never forwarded; logged once per session, then only counted.
            self.malformed_model_events += 1
            if self.malformed_model_events == 1:
                self._log.warning(Ev.BAD_INPUT, source="model", detail=exc.message)
            return
        if type(typed) is rt.AudioDelta and self.playback.was_truncated(typed.item_id):
            # The model keeps sending a cut-off item for a moment after the
            # caller barged in: none of it may play after the clear.
            return
        kind = event["type"]
        # Forwarded before it is acted on: an event that ends the session (the
        # goodbye's response.done) must reach frontends before "ended" does.
        self._to_frontends(ModelEvent(*rt.for_frontends(text, event, typed), kind))
        if type(typed) is not rt.AudioDelta:
            self._log.debug(Ev.MODEL_EVENT, type=kind)
        self._on_model_event(typed)

    def _on_model_event(self, event: rt.RealtimeEvent) -> None:
        match event:
            case rt.AudioDelta(item_id, delta):
                self._on_audio(item_id, delta)
            case rt.AudioDone(item_id) if self.call is not None:
                self._fx.call += self.playback.finish(self.call.stream_sid, item_id)
            case rt.SpeechStarted():
                self._on_speech_started()
            case rt.ResponseCreated():
                self.turns.on_created()
            case rt.ResponseDone():
                self._fx.upstream += self.turns.on_done()
                self._maybe_finish_farewell()
            case rt.FunctionCall(call_id, name, arguments):
                self._log.info(Ev.TOOL_CALL, tool=name[:60])
                self.calls.on_call(self._fx, call_id, name, arguments,
                                   self.config.frontend_tool_names, self.clock())
            case rt.SessionUpdated():
                for fid, details in self.config.on_updated().items():
                    self._log.info(Ev.JOB_CONFIG_APPLIED)
                    self._to_frontends(fmsg.job_config_ack(self.id, "applied", details), fid)
            case rt.ModelError(code, message, event_id, param):
                self._log.warning(Ev.UPSTREAM_ERROR, code=code, param=param)
                if code == "conversation_already_has_active_response":
                    self._fx.upstream += self.turns.on_refused()
                self._on_refused_update(code, event_id, message, param)
            case rt.AudioDone() | rt.Other():
                pass  # no call to play audio to; or nothing to do
            case _ as unreachable:
                assert_never(unreachable)

    def _on_audio(self, item_id: str, delta: str) -> None:
        if self.call is None:
            return  # no call to play it to
        self.config.voice_locked = True
        self.turns.had_audio = True
        self.frames_out += 1
        self._fx.call += self.playback.play(self.call.stream_sid, item_id, delta, self.clock())

    def _on_refused_update(self, code: str | None, event_id: str | None, message: str,
                           param: str | None) -> None:
        refused = self.config.on_refused(code, event_id, message, param,
                                         farewell=self.state is State.FAREWELL)
        if refused is None:
            return
        self._log.warning(Ev.JOB_CONFIG_REJECTED, code=code, param=param,
                          fallback=refused.fallback is not None)
        if refused.fallback is not None:
            # Instead, at once: the same without the voice, or relay's own
            # configuration (else the call stays on the API's default format).
            self._fx.upstream.append(refused.fallback)
        if refused.message:
            for fid in [None] if refused.fallback is not None else refused.acks:
                self._to_frontends(fmsg.error("config_rejected", refused.message), fid)

    def _on_speech_started(self) -> None:
        self._touch()
        truncation = self.playback.barge_in(self.clock())
        if truncation is not None and self.call is not None:
            self._log.info(Ev.BARGE_IN, audioEndMs=truncation.audio_end_ms)
            self._fx.upstream.append(rt.truncate_event(truncation.item_id, truncation.audio_end_ms))
            self._fx.call.append(twilio.clear_message(self.call.stream_sid))
            self._maybe_finish_farewell()

    @hands_back
    def on_tool_result(self, call_id: str, outcome: ToolOutcome) -> None:
        """A tool call relay ran finished; answer the model and apply its effect."""
        if not self.model_ready:
            return
        ending = outcome.effect is Effect.END_INTERVIEW
        self.calls.answer(self._fx, call_id, dict(outcome.output),
                          continue_turn=not ending and self.state is State.LIVE)
        if ending:
            self._begin_farewell()
        self._maybe_finish_farewell()
