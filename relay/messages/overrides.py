"""What a frontend may set in the model's session, and nothing else.

A frontend's ``session.update`` (translated to GA by
:func:`relay.messages.dialect.session_to_ga`) is laid over relay's own
configuration and sent to the model on the operator's OpenAI account, so it
is vetted field by field against a whitelist (:func:`vet_session`):

- ``instructions``; ``tools`` (function tools only) and ``tool_choice``;
  ``output_modalities``; ``max_output_tokens``; ``truncation``;
- ``audio.input``: ``transcription``, ``turn_detection``, ``noise_reduction``
  and ``format``; ``audio.output``: ``voice``, ``speed`` and ``format`` (both
  formats stay ``audio/pcmu`` whatever is asked: phone audio is passed through);
- ``type``, which must be ``realtime``.

Anything else — ``prompt`` (a stored prompt of the operator's account),
``tracing``, ``include``, ``model``, MCP tools (they make the model call out to
any server), fields GA does not have — is refused with
:class:`~relay.errors.MalformedMessage` code ``field_not_allowed`` naming the
field; a whitelisted field with a wrong value gets code ``malformed_message``,
also naming it. The result is a valid GA partial session: the shapes follow
``openai.types.realtime`` (``RealtimeSessionCreateRequestParam``). Pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final

from relay.errors import MalformedMessage
from relay.messages.dialect import BETA_SESSION_FIELDS

__all__ = ["FRONTEND_FIELDS", "MAX_TOOLS", "vet_session"]

#: Top-level GA session fields a frontend may set.
FRONTEND_FIELDS: Final = ("type", "instructions", "tools", "tool_choice", "output_modalities",
                          "max_output_tokens", "truncation", "audio")
MAX_TOOLS: Final = 32
_MAX_INSTRUCTIONS: Final = 16_000
_MAX_DESCRIPTION: Final = 1024
_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_VOICE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_FORMATS: Final = ({"type": "audio/pcmu"}, {"type": "audio/pcma"}, {"type": "audio/pcm", "rate": 24000})

Check = Callable[[Any, str], Any]


def _refuse(path: str, why: str) -> MalformedMessage:
    return MalformedMessage(f"session.{path} {why}")


def _not_allowed(path: str) -> MalformedMessage:
    return MalformedMessage(
        f"session.{path} may not be set by a frontend (see the frontend fields in docs/protocol.md)",
        code="field_not_allowed")


def _object(value: Any, path: str, fields: dict[str, Check]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _refuse(path, "must be an object")
    out = {}
    for key, item in value.items():
        check = fields.get(key)
        if check is None:
            raise _not_allowed(f"{path}.{key}")
        out[key] = check(item, f"{path}.{key}")
    return out


def _text(cap: int) -> Check:
    def check(value: Any, path: str) -> str:
        if not isinstance(value, str) or len(value) > cap:
            raise _refuse(path, f"must be a string of at most {cap} characters")
        return value
    return check


def _number(low: float, high: float, *, integer: bool = False) -> Check:
    def check(value: Any, path: str) -> int | float:
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not (
                math.isfinite(value) and low <= value <= high):
            kind = "a whole number" if integer else "a number"
            raise _refuse(path, f"must be {kind} from {low:g} to {high:g}")
        return value
    return check


def _flag(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _refuse(path, "must be true or false")
    return value


def _choice(*allowed: str) -> Check:
    def check(value: Any, path: str) -> str:
        if value not in allowed:
            raise _refuse(path, "must be one of " + ", ".join(allowed))
        return value
    return check


def _nullable(check: Check) -> Check:
    return lambda value, path: None if value is None else check(value, path)


def _format(value: Any, path: str) -> dict[str, Any]:
    if value not in _FORMATS:
        raise _refuse(path, "must be an audio format: audio/pcmu, audio/pcma or audio/pcm at 24000 Hz")
    return dict(value)


_SERVER_VAD: Final[dict[str, Check]] = {
    "type": _choice("server_vad"),
    "threshold": _number(0, 1),
    "prefix_padding_ms": _number(0, 10_000, integer=True),
    "silence_duration_ms": _number(0, 10_000, integer=True),
    "idle_timeout_ms": _nullable(_number(1, 600_000, integer=True)),
    "create_response": _flag,
    "interrupt_response": _flag,
}
_SEMANTIC_VAD: Final[dict[str, Check]] = {
    "type": _choice("semantic_vad"),
    "eagerness": _choice("low", "medium", "high", "auto"),
    "create_response": _flag,
    "interrupt_response": _flag,
}


_TURN_DETECTIONS: Final[dict[str, dict[str, Check]]] = {
    "server_vad": _SERVER_VAD, "semantic_vad": _SEMANTIC_VAD}


def _turn_detection(value: Any, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _refuse(path, "must be an object or null")
    # The type says which settings exist; without it relay could not tell
    # whether the result is valid for the turn detection in force.
    kind = value.get("type")
    fields = _TURN_DETECTIONS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise _refuse(f"{path}.type", "must be server_vad or semantic_vad")
    return _object(value, path, fields)


_TRANSCRIPTION: Final[dict[str, Check]] = {
    "model": _text(64),
    "language": _text(16),
    "prompt": _text(1024),
}
_NOISE_REDUCTION: Final[dict[str, Check]] = {"type": _choice("near_field", "far_field")}


def _voice(value: Any, path: str) -> str | dict[str, str]:
    if isinstance(value, str) and _VOICE.match(value):
        return value
    if isinstance(value, dict) and set(value) == {"id"} and isinstance(value["id"], str) \
            and _VOICE.match(value["id"]):
        return {"id": value["id"]}  # a custom voice: {"id": "voice_…"}
    raise _refuse(path, "must be a voice name or {\"id\": \"voice_…\"}")


_AUDIO_INPUT: Final[dict[str, Check]] = {
    "format": _format,
    "transcription": _nullable(lambda v, p: _object(v, p, _TRANSCRIPTION)),
    "turn_detection": _turn_detection,
    "noise_reduction": _nullable(lambda v, p: _object(v, p, _NOISE_REDUCTION)),
}
_AUDIO_OUTPUT: Final[dict[str, Check]] = {
    "format": _format,
    "voice": _voice,
    "speed": _number(0.25, 1.5),
}
_AUDIO: Final[dict[str, Check]] = {
    "input": lambda v, p: _object(v, p, _AUDIO_INPUT),
    "output": lambda v, p: _object(v, p, _AUDIO_OUTPUT),
}


def _tool(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _refuse(path, "must be an object")
    if value.get("type") != "function":
        # MCP tools make the model call servers of the frontend's choosing.
        raise _not_allowed(f"{path}.type") if "type" in value else _refuse(
            f"{path}.type", "must be function")
    tool = _object(value, path, {
        "type": _choice("function"),
        "name": _name,
        "description": _text(_MAX_DESCRIPTION),
        "parameters": _schema,
    })
    if "name" not in tool:
        raise _refuse(f"{path}.name", "is required")
    return tool


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise _refuse(path, "must be 1-64 characters of A-Z a-z 0-9 _ -")
    return value


def _schema(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _refuse(path, "must be a JSON Schema object")
    return value  # free-form JSON Schema; its depth is bounded with the message's


def _tools(value: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise _refuse(path, f"must be a list of at most {MAX_TOOLS} function tools")
    tools = [_tool(tool, f"{path}[{index}]") for index, tool in enumerate(value)]
    names = [tool["name"] for tool in tools]
    if len(set(names)) != len(names):
        raise _refuse(path, "must not name a tool twice")
    return tools


def _tool_choice(value: Any, path: str) -> str | dict[str, str]:
    if value in ("none", "auto", "required"):
        return value  # type: ignore[no-any-return]
    if isinstance(value, dict) and value.get("type") == "function":
        return _object(value, path, {"type": _choice("function"), "name": _name})
    if isinstance(value, dict) and "type" in value:
        raise _not_allowed(f"{path}.type")
    raise _refuse(path, "must be none, auto, required or {\"type\": \"function\", \"name\": …}")


def _modalities(value: Any, path: str) -> list[str]:
    if value not in (["audio"], ["text"]):
        raise _refuse(path, "must be [\"audio\"] or [\"text\"]")
    return list(value)


def _max_output_tokens(value: Any, path: str) -> int | str:
    return "inf" if value == "inf" else _number(1, 4096, integer=True)(value, path)  # type: ignore[no-any-return]


def _truncation(value: Any, path: str) -> str | dict[str, Any]:
    if value in ("auto", "disabled"):
        return value  # type: ignore[no-any-return]
    if isinstance(value, dict) and value.get("type") == "retention_ratio":
        return _object(value, path, {
            "type": _choice("retention_ratio"),
            "retention_ratio": _number(0, 1),
            "token_limits": lambda v, p: _object(v, p, {
                "post_instructions": _number(0, 1_000_000, integer=True)}),
        })
    raise _refuse(path, "must be auto, disabled or {\"type\": \"retention_ratio\", …}")


_SESSION: Final[dict[str, Check]] = {
    "type": _choice("realtime"),
    "instructions": _text(_MAX_INSTRUCTIONS),
    "tools": _tools,
    "tool_choice": _tool_choice,
    "output_modalities": _modalities,
    "max_output_tokens": _max_output_tokens,
    "truncation": _truncation,
    "audio": lambda v, p: _object(v, p, _AUDIO),
}
assert tuple(_SESSION) == FRONTEND_FIELDS


def vet_session(session: dict[str, Any], dropped: list[str]) -> dict[str, Any]:
    """The GA partial session ``session`` if a frontend may set all of it.

    Args:
        session: What :func:`~relay.messages.dialect.session_to_ga` made of
            the frontend's ``session`` object.
        dropped: The fields it could not translate: refused too (a field GA
            does not have, such as ``temperature`` or ``model``, as not
            allowed; a beta field with an unusable value as malformed).

    Raises:
        MalformedMessage: code ``field_not_allowed`` for a field a frontend may
            not set, ``malformed_message`` for a value of the wrong shape; the
            message names the field.
    """
    for key in dropped:
        if key in BETA_SESSION_FIELDS or key in _SESSION:
            raise _refuse(key, "has a value relay cannot translate to GA")
        raise _not_allowed(key)
    out = {}
    for key, value in session.items():
        check = _SESSION.get(key)
        if check is None:
            raise _not_allowed(key)
        out[key] = check(value, key)
    return out
