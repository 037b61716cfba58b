"""Twilio Media Streams messages, as the provider sends and accepts them.

Inbound (Twilio → relay): ``connected``, ``start``, ``media``, ``dtmf``,
``mark``, ``stop``. Outbound (relay → Twilio): ``media``, ``mark`` with a
``name``, ``clear`` — and nothing else: Twilio treats any other message as an
error, so refusals on ``/call`` are close codes.

Audio is G.711 μ-law at 8 kHz, base64 in ``media.payload``; relay passes it to
the model untouched. A media frame's payload is taken out without a JSON round
trip (:func:`media_payload`): 50 frames a second per call make that the
hottest line in relay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import assert_never

import orjson

from relay.errors import MalformedMessage, UnknownMessage
from relay.messages.depth import MAX_TWILIO_DEPTH, depth_exceeds


class TwilioEvent(StrEnum):
    """The ``event`` field of an inbound Media Streams message."""

    CONNECTED = "connected"
    START = "start"
    MEDIA = "media"
    DTMF = "dtmf"
    MARK = "mark"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class Connected:
    """The first message on a stream: Twilio's protocol version."""

    version: str


@dataclass(frozen=True, slots=True)
class Start:
    """The stream's metadata; relay pairs the call with a session on it."""

    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Media:
    """One chunk of caller audio (base64 μ-law)."""

    payload: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    """A key the caller pressed."""

    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    """Twilio echoes a mark once the audio sent before it has played."""

    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    """The stream ended: the caller hung up or the call was ended."""

    call_sid: str


TwilioMessage = Connected | Start | Media | Dtmf | Mark | Stop

# Twilio SIDs are two letters and 32 hex digits; relay accepts any short
# alphanumeric ID so test and self-hosted peers work, but nothing that could
# break out of a JSON string or a log line.
_SID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_MAX_PARAMETERS = 32


def parse_message(text: str) -> TwilioMessage:
    """Parse one inbound Media Streams message.

    Raises:
        MalformedMessage: not a JSON object or required fields are missing.
        UnknownMessage: an ``event`` relay does not know.
    """
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise MalformedMessage("message is not valid JSON") from None
    if not isinstance(msg, dict):
        raise MalformedMessage("message is not a JSON object")
    if depth_exceeds(msg, MAX_TWILIO_DEPTH):
        # Twilio never nests this deep; str() of such a value would recurse.
        raise MalformedMessage(f"message is nested more than {MAX_TWILIO_DEPTH} levels deep")
    raw_event = msg.get("event")
    try:
        event = TwilioEvent(raw_event)
    except ValueError:
        raise UnknownMessage(f"unknown Media Streams event {str(raw_event)[:40]!r}") from None
    match event:
        case TwilioEvent.CONNECTED:
            return Connected(version=str(msg.get("version", "")))
        case TwilioEvent.START:
            return _parse_start(msg)
        case TwilioEvent.MEDIA:
            media = _object(msg, "media")
            payload = media.get("payload")
            if not isinstance(payload, str):
                raise MalformedMessage("media.payload must be a string")
            return Media(payload=payload)
        case TwilioEvent.DTMF:
            digit = _object(msg, "dtmf").get("digit")
            if not isinstance(digit, str) or len(digit) != 1:
                raise MalformedMessage("dtmf.digit must be one character")
            return Dtmf(digit=digit)
        case TwilioEvent.MARK:
            name = _object(msg, "mark").get("name")
            if not isinstance(name, str):
                raise MalformedMessage("mark.name must be a string")
            return Mark(name=name)
        case TwilioEvent.STOP:
            stop = msg.get("stop")
            call_sid = stop.get("callSid", "") if isinstance(stop, dict) else ""
            return Stop(call_sid=str(call_sid))
        case _ as unreachable:
            assert_never(unreachable)


def _parse_start(msg: dict[str, object]) -> Start:
    start = _object(msg, "start")
    stream_sid = start.get("streamSid", msg.get("streamSid"))
    call_sid = start.get("callSid")
    account_sid = start.get("accountSid", "")
    for name, value in (("streamSid", stream_sid), ("callSid", call_sid)):
        if not isinstance(value, str) or not _SID.match(value):
            raise MalformedMessage(f"start.{name} is missing or not a valid SID")
    raw_params = start.get("customParameters") or {}
    if not isinstance(raw_params, dict) or len(raw_params) > _MAX_PARAMETERS:
        raise MalformedMessage("start.customParameters must be a small object")
    params = {str(k)[:64]: str(v)[:512] for k, v in raw_params.items()}
    assert isinstance(stream_sid, str) and isinstance(call_sid, str)
    return Start(
        stream_sid=stream_sid,
        call_sid=call_sid,
        account_sid=str(account_sid)[:64],
        custom_parameters=params,
    )


def _object(msg: dict[str, object], key: str) -> dict[str, object]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise MalformedMessage(f"{key} must be an object")
    return value


# A media frame as Twilio writes it: "event" first, then flat string fields
# (sequenceNumber, streamSid) around one "media" object of flat string fields
# (track, chunk, timestamp) around one base64 payload. Anything else (nesting,
# other keys, junk) takes the full parser; this only has to be right when it answers.
_OUTER = r'(?:, *"(?:sequenceNumber|streamSid)": *"[A-Za-z0-9_-]{0,64}")*'
_INNER = r'"(?:track|chunk|timestamp)": *"[A-Za-z0-9_]{0,32}"'
_MEDIA_FRAME = re.compile(
    r'\{"event": *"media"' + _OUTER + r', *"media": *\{(?:' + _INNER + r', *)*'
    r'"payload": *"([A-Za-z0-9+/]*={0,2})"(?:, *' + _INNER + r')*\}' + _OUTER + r'\}'
)


def media_payload(text: str) -> str | None:
    """Return the payload of a media frame without parsing the JSON, or None.

    None means "not recognisably a plain media frame": the caller then takes
    the full :func:`parse_message` path, so this never has to be complete,
    only right when it answers. The payload is base64, so it is valid inside
    another JSON string as is.
    """
    match = _MEDIA_FRAME.fullmatch(text)
    return match.group(1) if match else None


#: What JSON must escape inside a string (RFC 8259 §7).
_ESCAPED = re.compile(r'["\\\x00-\x1f]')


def media_message(stream_sid: str, payload: str) -> bytes:
    """An outbound ``media`` message carrying base64 μ-law audio.

    Once per chunk of the model's audio: spliced, as orjson would write it,
    when neither value holds anything JSON escapes (base64 and SIDs never do).
    """
    if _ESCAPED.search(payload) or _ESCAPED.search(stream_sid):
        return orjson.dumps({"event": "media", "streamSid": stream_sid,
                             "media": {"payload": payload}})
    return f'{{"event":"media","streamSid":"{stream_sid}","media":{{"payload":"{payload}"}}}}'.encode()


def mark_message(stream_sid: str, name: str) -> bytes:
    """An outbound ``mark``; Twilio echoes it once the audio before it played."""
    if _ESCAPED.search(name) or _ESCAPED.search(stream_sid):
        return orjson.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})
    return f'{{"event":"mark","streamSid":"{stream_sid}","mark":{{"name":"{name}"}}}}'.encode()


def clear_message(stream_sid: str) -> bytes:
    """An outbound ``clear``: drop the audio Twilio has buffered (barge-in)."""
    return orjson.dumps({"event": "clear", "streamSid": stream_sid})
