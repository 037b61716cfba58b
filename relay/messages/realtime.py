"""The model's server events that relay acts on, typed; and the client events relay writes.

The OpenAI Realtime API (GA) sends JSON events with a string ``type``. relay
forwards every well-formed event to the session's frontends and acts on a
handful of them; :func:`parse_event` turns one event's text into the decoded
object and a small typed value, so the session dispatches with ``match`` and
``assert_never`` instead of comparing strings. An event whose ``type`` is not
a string is malformed (:class:`~relay.errors.MalformedMessage`): relay neither
acts on it nor forwards it. The client events relay itself sends the model
(beyond ``session.update``, see :mod:`relay.core.instructions`) are built at the
end, so their GA shapes live in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from relay.errors import MalformedMessage

AUDIO_DELTA = "response.output_audio.delta"


@dataclass(frozen=True, slots=True)
class AudioDelta:
    """A chunk of the model's audio (base64 μ-law) for one output item."""

    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class AudioDone:
    """The model finished one item's audio."""

    item_id: str


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Server VAD heard the caller start speaking."""

    item_id: str | None


@dataclass(frozen=True, slots=True)
class ResponseCreated:
    """The model started a response."""

    response_id: str | None


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """The model finished (or cancelled) a response."""

    response_id: str | None


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """The model called a function (``response.output_item.done`` with a function_call item)."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    """The model applied a ``session.update``."""


@dataclass(frozen=True, slots=True)
class ModelError:
    """The model refused something; ``event_id`` names the client event it refused, if any.

    ``param`` is the path of the offending field, e.g. ``session.audio.input.turn_detection``.
    """

    code: str | None
    message: str
    event_id: str | None
    param: str | None = None


@dataclass(frozen=True, slots=True)
class Other:
    """Any other event: forwarded to frontends, not acted on."""

    type: str


RealtimeEvent = (
    AudioDelta | AudioDone | SpeechStarted | ResponseCreated | ResponseDone | FunctionCall
    | SessionUpdated | ModelError | Other
)


def parse_event(text: str) -> tuple[dict[str, Any], RealtimeEvent]:
    """Decode one server event and classify it.

    Raises:
        MalformedMessage: not a JSON object, or its ``type`` is not a string.
    """
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise MalformedMessage("model event is not valid JSON") from None
    if not isinstance(event, dict):
        raise MalformedMessage("model event is not a JSON object")
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        raise MalformedMessage("model event has no string type")
    return event, classify(kind, event)


# A chunk of the model's audio as the GA API writes it: compact JSON, its fields in
# the documented order, IDs of plain characters and base64 audio, nothing to
# unescape. https://platform.openai.com/docs/api-reference/realtime-server-events/response/output_audio/delta
# Anything else (another order, spaces, escapes, other fields) takes the full
# parser: this only has to be right when it answers.
_ID = r'"[A-Za-z0-9_-]{1,128}"'
_AUDIO_DELTA = re.compile(
    r'\{"type":"response\.output_audio\.delta","event_id":' + _ID + r',"response_id":' + _ID
    + r',"item_id":"([A-Za-z0-9_-]{1,128})","output_index":[0-9]{1,9},"content_index":[0-9]{1,9}'
    r',"delta":"([A-Za-z0-9+/]*={0,2})"\}'
)


def audio_delta(text: str) -> tuple[str, str] | None:
    """The item ID and base64 audio of a ``response.output_audio.delta``, without parsing it.

    None means "not recognisably a plain audio delta": the caller then takes
    :func:`parse_event`, which gives the same item ID and audio for every
    event this answers for. The audio is base64, safe inside another JSON
    string as is.
    """
    match = _AUDIO_DELTA.fullmatch(text)
    return None if match is None else (match[1], match[2])


def for_frontends(text: str, event: dict[str, Any], typed: RealtimeEvent,
                  ) -> tuple[str, dict[str, Any]]:
    """The event as frontends get it: as sent, but the model's errors say ``source: "model"``.

    relay's own ``error`` messages say ``source: "relay"``; without the mark the
    two look alike.
    """
    if type(typed) is not ModelError:
        return text, event
    marked = {**event, "source": "model"}
    return orjson.dumps(marked).decode(), marked


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def classify(kind: str, event: dict[str, Any]) -> RealtimeEvent:
    """The typed value of one decoded event (never raises)."""
    if kind == AUDIO_DELTA:
        item_id, delta = _str(event.get("item_id")), _str(event.get("delta"))
        return AudioDelta(item_id, delta) if item_id is not None and delta is not None else Other(kind)
    if kind == "response.output_audio.done":
        item_id = _str(event.get("item_id"))
        return AudioDone(item_id) if item_id is not None else Other(kind)
    if kind == "input_audio_buffer.speech_started":
        return SpeechStarted(_str(event.get("item_id")))
    if kind in ("response.created", "response.done"):
        response = event.get("response")
        rid = _str(response.get("id")) if isinstance(response, dict) else None
        return ResponseCreated(rid) if kind == "response.created" else ResponseDone(rid)
    if kind == "response.output_item.done":
        item = event.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call":
            call_id, name = _str(item.get("call_id")), _str(item.get("name"))
            if call_id is not None and name is not None:
                return FunctionCall(call_id, name, _str(item.get("arguments")) or "{}")
        return Other(kind)
    if kind == "session.updated":
        return SessionUpdated()
    if kind == "error":
        detail = event.get("error")
        if not isinstance(detail, dict):
            detail = {}
        return ModelError(_str(detail.get("code")), str(detail.get("message") or "")[:300],
                          _str(detail.get("event_id")), _str(detail.get("param")))
    return Other(kind)


# -- relay → model ---------------------------------------------------------------

_APPEND = ('{"type":"input_audio_buffer.append","audio":"', '"}')


def append_event(payload: str) -> bytes:
    """The model event carrying one caller audio frame (payload is base64).

    Base64 needs no JSON escaping, so the hot path splices it in; anything with
    a quote or backslash (never valid base64) is serialised properly instead.
    """
    if '"' in payload or "\\" in payload:
        return orjson.dumps({"type": "input_audio_buffer.append", "audio": payload})
    return (_APPEND[0] + payload + _APPEND[1]).encode()



def function_output_event(call_id: str, output: Any) -> bytes:
    """``conversation.item.create`` answering a function call (``output`` as JSON text)."""
    return orjson.dumps({
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": call_id,
                 "output": orjson.dumps(output).decode()},
    })


def user_text_event(text: str) -> bytes:
    """``conversation.item.create`` with a user message of one ``input_text`` part."""
    return orjson.dumps({
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    })


def truncate_event(item_id: str, audio_end_ms: int) -> bytes:
    """``conversation.item.truncate``: the caller heard ``audio_end_ms`` of the item's audio."""
    return orjson.dumps({"type": "conversation.item.truncate", "item_id": item_id,
                         "content_index": 0, "audio_end_ms": audio_end_ms})
