"""Messages between the browser and relay (JSON text frames on ``/logs``).

Inbound messages are parsed into one small typed value each; anything relay
does not document is refused with an ``error`` and never forwarded to the
model. Outbound relay messages are built here so their shapes live in one
place (see DESIGN.md, "Messages").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from relay.errors import JobConfigError, MalformedMessage, UnknownMessage
from relay.messages.depth import MAX_FRONTEND_DEPTH, depth_exceeds
from relay.messages.dialect import session_to_ga
from relay.messages.jobconfig import JobConfig, read_job_config
from relay.messages.overrides import vet_session


class FrontendType(StrEnum):
    """The ``type`` of a message a frontend may send."""

    JOB_CONFIG = "job_config"
    SESSION_UPDATE = "session.update"
    ACTIVITY = "activity"
    SESSION_END = "session.end"
    ITEM_CREATE = "conversation.item.create"
    RESPONSE_CREATE = "response.create"
    RESPONSE_CANCEL = "response.cancel"
    AVATAR_ATTACH = "avatar.attach"


@dataclass(frozen=True, slots=True)
class JobConfigMessage:
    """The interview to run, and which of the message's keys relay used and ignored."""

    config: JobConfig
    used: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class JobConfigRefused:
    """A job configuration relay cannot use (the session logs its receipt, then refuses it)."""

    reason: str


@dataclass(frozen=True, slots=True)
class SessionUpdateMessage:
    """The reference demo's configuration, translated to GA and vetted (:mod:`relay.messages.overrides`)."""

    session: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Activity:
    """The user is still here."""


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """End the interview now."""


@dataclass(frozen=True, slots=True)
class AvatarAttach:
    """A streaming avatar session to stop when the interview ends."""

    provider: str
    avatar_session_id: str


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """A vetted OpenAI client event to forward to the model."""

    event: dict[str, Any]


FrontendMessage = (
    JobConfigMessage | JobConfigRefused | SessionUpdateMessage | Activity | SessionEnd
    | AvatarAttach | ClientEvent
)

_MAX_TEXT = 8000
_AVATAR_PROVIDERS = frozenset({"heygen"})
# HeyGen streaming session IDs are UUIDs (streaming.new's data.session_id).
_AVATAR_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_ITEM_ROLES = frozenset({"user", "system"})


def parse_message(text: str) -> FrontendMessage:
    """Parse and vet one frontend message.

    Raises:
        MalformedMessage: not a JSON object, or fields of the wrong shape.
        UnknownMessage: a type the relay does not accept from a browser.
    """
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise MalformedMessage("message is not valid JSON") from None
    if not isinstance(msg, dict):
        raise MalformedMessage("message is not a JSON object")
    raw_type = msg.get("type")
    try:
        kind = FrontendType(raw_type)
    except ValueError:
        shown = str(raw_type)[:60] if raw_type is not None else "(none)"
        raise UnknownMessage(f"message type {shown!r} is not accepted") from None
    too_deep = f"message is nested more than {MAX_FRONTEND_DEPTH} levels deep"
    if kind is FrontendType.JOB_CONFIG:
        # A refused job configuration still reaches the session: its receipt is
        # logged whatever it holds (the first thing to look for when the AI
        # "did not get the job").
        if depth_exceeds(msg, MAX_FRONTEND_DEPTH):
            return JobConfigRefused(too_deep)
        try:
            reading = read_job_config(msg.get("config"))
        except JobConfigError as exc:
            return JobConfigRefused(str(exc))
        return JobConfigMessage(reading.config, reading.used, reading.ignored)
    if depth_exceeds(msg, MAX_FRONTEND_DEPTH):
        raise MalformedMessage(too_deep)
    match kind:
        case FrontendType.SESSION_UPDATE:
            session = msg.get("session")
            if not isinstance(session, dict):
                raise MalformedMessage("session.update needs a session object")
            return SessionUpdateMessage(vet_session(*session_to_ga(session)))
        case FrontendType.ACTIVITY:
            return Activity()
        case FrontendType.SESSION_END:
            return SessionEnd()
        case FrontendType.ITEM_CREATE:
            return ClientEvent(_vet_item_create(msg))
        case FrontendType.RESPONSE_CREATE:
            return ClientEvent(_vet_response_create(msg))
        case FrontendType.RESPONSE_CANCEL:
            return ClientEvent({"type": "response.cancel"})
        case FrontendType.AVATAR_ATTACH:
            provider, avatar_id = msg.get("provider"), msg.get("avatarSessionId")
            if not isinstance(provider, str) or provider not in _AVATAR_PROVIDERS:
                raise MalformedMessage("avatar.attach needs provider \"heygen\"")
            if not isinstance(avatar_id, str) or not _AVATAR_ID.match(avatar_id):
                raise MalformedMessage("avatar.attach needs a HeyGen session ID (a UUID) as avatarSessionId")
            return AvatarAttach(provider, avatar_id)


def _vet_item_create(msg: dict[str, Any]) -> dict[str, Any]:
    item = msg.get("item")
    if not isinstance(item, dict):
        raise MalformedMessage("conversation.item.create needs an item object")
    kind = item.get("type")
    if kind == "function_call_output":
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not isinstance(output, str) or len(output) > _MAX_TEXT:
            raise MalformedMessage("function_call_output needs call_id and output strings")
        clean = {"type": kind, "call_id": call_id[:64], "output": output}
    elif kind == "message":
        role, content = item.get("role"), item.get("content")
        if not isinstance(role, str) or role not in _ITEM_ROLES or not isinstance(content, list) \
                or not content:
            raise MalformedMessage("a message item needs role user or system and content")
        parts = []
        for part in content[:8]:
            if not isinstance(part, dict) or part.get("type") != "input_text":
                raise MalformedMessage("message content parts must be input_text")
            text = part.get("text")
            if not isinstance(text, str) or len(text) > _MAX_TEXT:
                raise MalformedMessage("input_text needs a text string")
            parts.append({"type": "input_text", "text": text})
        clean = {"type": "message", "role": role, "content": parts}
    else:
        raise UnknownMessage("only function_call_output and message items may be created")
    return {"type": "conversation.item.create", "item": clean}


def _vet_response_create(msg: dict[str, Any]) -> dict[str, Any]:
    response = msg.get("response")
    if response is None:
        return {"type": "response.create"}
    if not isinstance(response, dict) or set(response) - {"instructions"}:
        raise MalformedMessage("response.create accepts only response.instructions")
    instructions = response.get("instructions")
    if instructions is not None and (
        not isinstance(instructions, str) or len(instructions) > _MAX_TEXT
    ):
        raise MalformedMessage("response.instructions must be a string")
    return {"type": "response.create", "response": dict(response)}


# -- relay → frontend --------------------------------------------------------


def session_associated(session_id: str, call_sid: str, stream_sid: str) -> dict[str, Any]:
    """The frontend's session now has a phone call."""
    return {
        "type": "session.associated",
        "sessionId": session_id,
        "callSid": call_sid,
        "streamSid": stream_sid,
    }


def job_config_ack(session_id: str, status: str, details: dict[str, Any] | None = None,
                   ) -> dict[str, Any]:
    """``queued`` until the model is ready, then ``applied``.

    ``details`` adds, when there is something to say: ``used`` and ``ignored``
    (the fields of a job configuration relay used, and those it left out) and
    ``notApplied`` (``[{"field", "reason"}]``: what the model was not given).
    """
    ack = {"type": "job_config.ack", "sessionId": session_id, "status": status}
    for key in ("used", "ignored", "notApplied"):
        if details and key in details:
            ack[key] = details[key]
    return ack


def call_status_changed(
    session_id: str, status: str, stream_sid: str | None, reason: str | None = None
) -> dict[str, Any]:
    """``connected`` when the call starts; ``ended`` (with a reason) before any close."""
    return {
        "type": "call.status_changed",
        "status": status,
        "sessionId": session_id,
        "streamSid": stream_sid,
        "reason": reason,
    }


def inactivity_warning(session_id: str, disconnect_in_ms: int) -> dict[str, Any]:
    """No activity for a while: the session ends in ``disconnect_in_ms`` without any."""
    return {"type": "session.inactivity_warning", "sessionId": session_id,
            "disconnectInMs": disconnect_in_ms}


def inactivity_warning_cleared(session_id: str) -> dict[str, Any]:
    """Activity after an inactivity warning: its countdown is over."""
    return {"type": "session.inactivity_warning_cleared", "sessionId": session_id}


def duration_warning(session_id: str, ends_in_ms: int) -> dict[str, Any]:
    """The session reaches its hard cap in ``ends_in_ms``."""
    return {"type": "session.duration_warning", "sessionId": session_id, "endsInMs": ends_in_ms}


def session_resumed(session_id: str, missed: int, dropped: int) -> dict[str, Any]:
    """A frontend reattached: ``missed`` messages follow; ``dropped`` older ones were not kept."""
    return {"type": "session.resumed", "sessionId": session_id, "missed": missed,
            "dropped": dropped}


def error(code: str, message: str) -> dict[str, Any]:
    """Input relay refused, or a failure the user should know about.

    ``source: "relay"`` tells it apart from the model's own ``error`` events,
    which are forwarded with ``source: "model"``.
    """
    return {"type": "error", "code": code, "message": message, "source": "relay"}
