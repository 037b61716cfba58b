"""The built-in local model: an offline stand-in for the OpenAI Realtime API (GA).

:class:`LocalModel` lets the whole relay run and demo with no network and no API
key. It speaks the GA wire format (event names, ``event_id``, ``item_...`` and
``resp_...`` ids, ``output_index``/``content_index``) but understands no words: a
small energy VAD finds the caller's turns and the "answer" plays the caller's own
audio back, so the full audio path (Twilio -> relay -> model -> relay -> Twilio)
is exercised.

It is a protocol object with no I/O, in the style of ``websockets``' Sans-I/O
protocol: JSON text in, JSON text out, no asyncio, no clock, no timers. Time is
the amount of audio received (8 bytes of u-law per millisecond), so results are
deterministic. A response is produced whole inside one :meth:`LocalModel.receive`
call; there is therefore never a response in progress to interrupt or cancel.

Turn flow with server VAD (the default, and what relay configures)::

    input_audio_buffer.append ... (>= speech_start_ms loud)  -> speech_started
    input_audio_buffer.append ... (>= silence_end_ms quiet)  -> speech_stopped,
        committed, conversation.item.added/.done (user), transcription.completed,
        then a response playing the utterance back (if create_response)

Limits: audio only (``output_modalities: ["text"]`` still yields audio), no tool
calls, input and output formats must be ``audio/pcmu``.
"""

from __future__ import annotations

import base64
import binascii
import math
import uuid
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Any, Final

import orjson

from relay.messages.dialect import GA_SESSION_FIELDS
from relay.providers.g711 import linear_to_ulaw, tone, ulaw_rms, ulaw_to_linear
from relay.providers.local_shapes import (
    ClientError,
    default_session,
    merge,
    path,
    response_events,
)

__all__ = ["DEFAULT_GREETING", "LocalModel", "linear_to_ulaw", "ulaw_rms", "ulaw_to_linear"]

BYTES_PER_MS: Final = 8  # G.711 at 8 kHz: one byte per sample
FRAME_MS: Final = 20
FRAME_BYTES: Final = FRAME_MS * BYTES_PER_MS  # what Twilio sends per media message
MIN_COMMIT_MS: Final = 100  # the API refuses to commit less audio than this

DEFAULT_GREETING: Final = (
    "Hello! This is the offline practice interviewer. I can't understand words, "
    "but I will play back what you say. Tell me about yourself."
)

_PCMU: Final = {"type": "audio/pcmu"}
_CLIENT_ITEM_TYPES: Final = frozenset({"message", "function_call", "function_call_output"})


# G.711 lives in relay.providers.g711; re-exported for callers of this module.
def _tone(ms: int, *, hz: float = 440.0, amplitude: int = 2000) -> bytes:
    return tone(ms, hz, amplitude)


# --- the model ----------------------------------------------------------------------


class _Vad(Enum):
    SILENCE = "silence"
    SPEECH = "speech"


def _new_session_id() -> str:
    return "sess_" + uuid.uuid4().hex[:20]


def _frames(ms: int) -> int:
    return max(1, math.ceil(ms / FRAME_MS))


class LocalModel:
    """An in-process Realtime API (GA) peer that echoes the caller's turns.

    Not thread-safe; one instance per upstream connection. Every method returns
    the server events to deliver, as JSON text, in order.

    Args:
        session_id_factory: Makes the ``sess_...`` id reported in ``session.created``.
        greeting: Transcript of the reply to a ``response.create`` with no caller
            audio awaiting an answer (e.g. "greet the candidate first").
        speech_threshold_rms: Frame RMS (16-bit linear units) at or above which a
            20 ms frame counts as speech.
        speech_start_ms: Loud audio needed, uninterrupted, to start a turn.
        silence_end_ms: Quiet audio that ends a turn.
        prefix_padding_ms: Audio before the detected onset kept in the turn.
        max_utterance_ms: Cap on one turn's stored (and played back) audio.
        chunk_ms: Audio per ``response.output_audio.delta``.
        greeting_tone_ms: Length of the soft tone played with the greeting.
    """

    def __init__(
        self,
        *,
        session_id_factory: Callable[[], str] = _new_session_id,
        greeting: str = DEFAULT_GREETING,
        speech_threshold_rms: float = 500.0,
        speech_start_ms: int = 60,
        silence_end_ms: int = 500,
        prefix_padding_ms: int = 300,
        max_utterance_ms: int = 10_000,
        chunk_ms: int = 100,
        greeting_tone_ms: int = 300,
    ) -> None:
        self._greeting = greeting
        self._greeting_audio = _tone(greeting_tone_ms)
        self._threshold = speech_threshold_rms
        self._start_frames = _frames(speech_start_ms)
        self._end_frames = _frames(silence_end_ms)
        self._max_bytes = max_utterance_ms * BYTES_PER_MS
        self._chunk_bytes = max(1, chunk_ms) * BYTES_PER_MS
        self._session = default_session(session_id_factory(), greeting)
        self._counter = 0
        self._conversation_id = self._id("conv")
        self._last_item_id: str | None = None
        self._items: dict[str, dict[str, Any]] = {}
        self._audio_ms: dict[str, int] = {}  # assistant item id -> playable audio length
        self._spoken = False  # assistant audio exists: the voice is locked
        self._unanswered: tuple[int, bytes] | None = None  # (speech ms, audio)
        self._frames_seen = 0
        self._rest = b""
        # The most recent frames while no turn is open: prefix padding plus onset.
        self._window: deque[bytes] = deque(maxlen=_frames(prefix_padding_ms) + self._start_frames)
        self._reset_input()
        self._handlers: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_append,
            "input_audio_buffer.commit": self._on_commit,
            "input_audio_buffer.clear": self._on_clear,
            "conversation.item.create": self._on_item_create,
            "conversation.item.truncate": self._on_item_truncate,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
        }

    # -- public API --------------------------------------------------------------------

    def open(self) -> list[str]:
        """Events sent when the connection opens: one ``session.created``."""
        return self._dump([self._event("session.created", session=merge({}, self._session))])

    def receive(self, text: str) -> list[str]:
        """Handle one client event (JSON text); return the server events it causes.

        Malformed JSON, unknown event types and invalid fields produce one GA
        ``error`` event (``error.event_id`` echoes the client's ``event_id``) and
        change nothing. Never raises for bad input.
        """
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError:
            return self._dump([self._error(ClientError("invalid_json", "The event is not valid JSON."))])
        client_event_id = event.get("event_id") if isinstance(event, dict) else None
        if not isinstance(client_event_id, str):
            client_event_id = None
        try:
            if not isinstance(event, dict):
                raise ClientError("invalid_type", "A client event must be a JSON object.")
            event_type = event.get("type")
            if not isinstance(event_type, str):
                raise ClientError(
                    "missing_required_parameter", "Missing required parameter: 'type'.", "type"
                )
            handler = self._handlers.get(event_type)
            if handler is None:
                raise ClientError(
                    "invalid_value",
                    f"Invalid value: '{event_type[:64]}'. Supported values are: "
                    + ", ".join(f"'{name}'" for name in self._handlers)
                    + ".",
                    "type",
                )
            return self._dump(handler(event))
        except ClientError as err:
            return self._dump([self._error(err, client_event_id)])

    # -- client events -----------------------------------------------------------------

    def _on_session_update(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        update = event.get("session")
        if not isinstance(update, dict):
            raise ClientError("invalid_type", "Expected an object for 'session'.", "session")
        for key in update:
            if key not in GA_SESSION_FIELDS:
                raise ClientError(
                    "unknown_parameter", f"Unknown parameter: 'session.{key}'.", f"session.{key}"
                )
        if update.get("type", "realtime") != "realtime":
            raise ClientError(
                "invalid_value", "The local model only offers 'realtime' sessions.", "session.type"
            )
        for direction in ("input", "output"):
            fmt = path(update, "audio", direction, "format")
            if fmt is not None and path(fmt, "type") != "audio/pcmu":
                raise ClientError(
                    "invalid_value",
                    "The local model only supports audio/pcmu.",
                    f"session.audio.{direction}.format",
                )
        voice = path(update, "audio", "output", "voice")
        if self._spoken and voice is not None and voice != self._voice():
            # Mirrors the real API, which refuses the whole update.
            raise ClientError(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                "session.audio.output.voice",
            )
        turn_detection_before = self._turn_detection()
        self._session = merge(self._session, update)
        if self._turn_detection() != turn_detection_before:
            self._reset_input()
        return [self._event("session.updated", session=merge({}, self._session))]

    def _on_append(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise ClientError("missing_required_parameter", "Missing required parameter: 'audio'.", "audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except binascii.Error:
            raise ClientError("invalid_value", "Invalid base64 audio.", "audio") from None
        data = self._rest + data
        whole = len(data) - len(data) % FRAME_BYTES
        self._rest = data[whole:]
        events: list[dict[str, Any]] = []
        for start in range(0, whole, FRAME_BYTES):
            events += self._on_frame(data[start : start + FRAME_BYTES])
        return events

    def _on_commit(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        audio = self._pending_audio()
        if len(audio) < MIN_COMMIT_MS * BYTES_PER_MS:
            raise ClientError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {len(audio) // BYTES_PER_MS}ms of audio.",
            )
        if self._vad is _Vad.SPEECH:
            speech_ms = self._last_voiced_end_ms - self._onset_ms
        else:
            speech_ms = len(audio) // BYTES_PER_MS
        item_id = self._turn_item_id or self._id("item")
        # A manual commit never answers by itself; response.create will play it back.
        return self._commit_turn(item_id, audio, speech_ms, respond=False)

    def _on_clear(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        self._reset_input()
        return [self._event("input_audio_buffer.cleared")]

    def _on_item_create(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        item = event.get("item")
        if not isinstance(item, dict):
            raise ClientError("missing_required_parameter", "Missing required parameter: 'item'.", "item")
        kind = item.get("type")
        if not isinstance(kind, str) or kind not in _CLIENT_ITEM_TYPES:
            raise ClientError("invalid_value", "Unsupported item type.", "item.type")
        item_id = item.get("id") or self._id("item")
        if not isinstance(item_id, str) or item_id in self._items:
            raise ClientError("invalid_value", "Item id is invalid or already in use.", "item.id")
        stored = merge({"id": item_id, "object": "realtime.item", "status": "completed"}, item)
        stored["id"] = item_id
        previous = self._remember(stored)
        return [
            self._event("conversation.item.added", previous_item_id=previous, item=stored),
            self._event("conversation.item.done", previous_item_id=previous, item=stored),
        ]

    def _on_item_truncate(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        item_id, content_index, end_ms = (event.get(k) for k in ("item_id", "content_index", "audio_end_ms"))
        if not isinstance(item_id, str) or item_id not in self._audio_ms:
            raise ClientError("invalid_value", "Only assistant audio items can be truncated.", "item_id")
        if content_index != 0:
            raise ClientError("invalid_value", "Invalid content index.", "content_index")
        if isinstance(end_ms, bool) or not isinstance(end_ms, int) or end_ms < 0:
            raise ClientError(
                "invalid_value", "audio_end_ms must be a non-negative integer.", "audio_end_ms"
            )
        if end_ms > self._audio_ms[item_id]:
            raise ClientError(
                "invalid_value",
                f"Audio content of {self._audio_ms[item_id]}ms is already shorter than {end_ms}ms.",
                "audio_end_ms",
            )
        # Like the real API: the item keeps only what the caller heard, and its
        # transcript is dropped because it may describe audio that was never played.
        self._audio_ms[item_id] = end_ms
        self._items[item_id]["content"][0]["transcript"] = None
        return [
            self._event("conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=end_ms)
        ]

    def _on_response_create(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        options = event.get("response")
        if options is not None and not isinstance(options, dict):
            raise ClientError("invalid_type", "Expected an object for 'response'.", "response")
        # response.instructions and the rest are accepted and ignored: the local model
        # has nothing to say but the greeting or the caller's own words.
        if self._unanswered is not None:
            speech_ms, audio = self._unanswered
            self._unanswered = None
            return self._respond(_heard(speech_ms), audio)
        return self._respond(self._greeting, self._greeting_audio)

    def _on_response_cancel(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        # Responses complete inside the receive() that starts them, so none is ever
        # active; the real API answers a cancel in that state with this error.
        raise ClientError("response_cancel_not_active", "Cancellation failed: no active response found.")

    # -- voice activity ----------------------------------------------------------------

    def _on_frame(self, frame: bytes) -> list[dict[str, Any]]:
        self._frames_seen += 1
        now_ms = self._frames_seen * FRAME_MS  # end of this frame, since the session began
        if self._turn_detection() is None:
            self._store(frame)
            return []
        loud = ulaw_rms(frame) >= self._threshold
        if self._vad is _Vad.SILENCE:
            self._window.append(frame)
            self._loud_run = self._loud_run + 1 if loud else 0
            if self._loud_run < self._start_frames:
                return []
            self._vad = _Vad.SPEECH
            padded = b"".join(self._window)
            self._window.clear()
            self._buffer = bytearray(padded[: self._max_bytes])
            # Like the API, the turn starts prefix_padding_ms before the detected onset.
            start_ms = now_ms - len(padded) // BYTES_PER_MS
            self._onset_ms = now_ms - self._loud_run * FRAME_MS
            self._last_voiced_end_ms = now_ms
            self._quiet_run = 0
            self._turn_item_id = self._id("item")
            return [
                self._event(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=start_ms,
                    item_id=self._turn_item_id,
                )
            ]
        self._store(frame)
        if loud:
            self._quiet_run = 0
            self._last_voiced_end_ms = now_ms
            return []
        self._quiet_run += 1
        if self._quiet_run < self._end_frames:
            return []
        item_id = self._turn_item_id or self._id("item")
        respond = path(self._turn_detection(), "create_response") is not False
        stopped = self._event("input_audio_buffer.speech_stopped", audio_end_ms=now_ms, item_id=item_id)
        speech_ms = self._last_voiced_end_ms - self._onset_ms
        return [stopped, *self._commit_turn(item_id, bytes(self._buffer), speech_ms, respond=respond)]

    def _store(self, frame: bytes) -> None:
        room = self._max_bytes - len(self._buffer)
        if room > 0:
            self._buffer += frame[:room]

    def _pending_audio(self) -> bytes:
        if self._turn_detection() is not None and self._vad is _Vad.SILENCE:
            return b"".join(self._window)
        return bytes(self._buffer)

    def _reset_input(self) -> None:
        self._vad = _Vad.SILENCE
        self._buffer = bytearray()
        self._window.clear()
        self._loud_run = 0
        self._quiet_run = 0
        self._onset_ms = 0
        self._last_voiced_end_ms = 0
        self._turn_item_id: str | None = None

    def _turn_detection(self) -> Any:
        return path(self._session, "audio", "input", "turn_detection")

    def _voice(self) -> Any:
        return path(self._session, "audio", "output", "voice")

    # -- conversation and responses ----------------------------------------------------

    def _commit_turn(
        self, item_id: str, audio: bytes, speech_ms: int, *, respond: bool
    ) -> list[dict[str, Any]]:
        self._reset_input()
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        previous = self._remember(item)
        events = [
            self._event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id),
            self._event("conversation.item.added", previous_item_id=previous, item=item),
            self._event("conversation.item.done", previous_item_id=previous, item=item),
        ]
        if path(self._session, "audio", "input", "transcription") is not None:
            events.append(
                self._event(
                    "conversation.item.input_audio_transcription.completed",
                    item_id=item_id,
                    content_index=0,
                    transcript=f"({speech_ms / 1000:.1f} seconds of speech)",
                    usage={"type": "duration", "seconds": len(audio) / (BYTES_PER_MS * 1000)},
                )
            )
        if respond:
            events += self._respond(_heard(speech_ms), audio)
        else:
            self._unanswered = (speech_ms, audio)
        return events

    def _respond(self, transcript: str, audio: bytes) -> list[dict[str, Any]]:
        events, done_item = response_events(
            self._id, transcript=transcript, audio=audio, chunk_bytes=self._chunk_bytes,
            conversation_id=self._conversation_id, voice=self._voice(),
            previous_item_id=self._last_item_id)
        self._remember(merge({}, done_item))
        self._audio_ms[done_item["id"]] = len(audio) // BYTES_PER_MS
        self._spoken = True
        return events

    def _remember(self, item: dict[str, Any]) -> str | None:
        """Append an item to the conversation; return the id of the item before it."""
        previous = self._last_item_id
        self._items[item["id"]] = item
        self._last_item_id = item["id"]
        return previous

    # -- plumbing ----------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        # Counter-based so runs are reproducible; the shape matches the API's ids.
        self._counter += 1
        return f"{prefix}_local{self._counter:010d}"

    def _event(self, event_type: str, **fields: Any) -> dict[str, Any]:
        return {"type": event_type, "event_id": self._id("event"), **fields}

    def _error(self, err: ClientError, client_event_id: str | None = None) -> dict[str, Any]:
        return self._event(
            "error",
            error={
                "type": "invalid_request_error",
                "code": err.code,
                "message": err.message,
                "param": err.param,
                "event_id": client_event_id,
            },
        )

    @staticmethod
    def _dump(events: list[dict[str, Any]]) -> list[str]:
        return [orjson.dumps(event).decode() for event in events]


def _heard(speech_ms: int) -> str:
    return f"I heard {speech_ms / 1000:.1f} seconds from you. Tell me more."
