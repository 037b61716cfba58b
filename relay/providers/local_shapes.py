"""The shapes the built-in local model answers with, as the Realtime API (GA) writes them.

Pure data builders for :class:`~relay.providers.local.LocalModel`: its default
session, the events of one spoken response, and client errors. Kept apart so
the model itself is only its behaviour (the turn detection, the conversation).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, Final

import orjson

_PCMU: Final = {"type": "audio/pcmu"}


class ClientError(Exception):
    """A client event the real API would answer with an ``error`` event."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param



def default_session(session_id: str, greeting: str) -> dict[str, Any]:
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": "relay-local",
        "output_modalities": ["audio"],
        "instructions": greeting,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "include": None,
        "audio": {
            "input": {
                "format": dict(_PCMU),
                # On by default (the real API's default is null) so an offline demo
                # shows caller turns even before relay configures the session.
                "transcription": {"model": "relay-local"},
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": dict(_PCMU), "voice": "marin", "speed": 1.0},
        },
    }


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = orjson.loads(orjson.dumps(value))  # a deep copy of JSON data
    return merged


def path(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


NO_USAGE: Final = {
    "total_tokens": 0,
    "input_tokens": 0,
    "output_tokens": 0,
    "input_token_details": {"text_tokens": 0, "audio_tokens": 0, "cached_tokens": 0},
    "output_token_details": {"text_tokens": 0, "audio_tokens": 0},
}


def response_events(new_id: Callable[[str], str], *, transcript: str, audio: bytes,
                    chunk_bytes: int, conversation_id: str, voice: Any,
                    previous_item_id: str | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every event of one spoken response, in the API's order, and its finished item."""
    def event(event_type: str, **fields: Any) -> dict[str, Any]:
        return {"type": event_type, "event_id": new_id("event"), **fields}

    response_id, item_id = new_id("resp"), new_id("item")
    where = {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
    part = {"type": "output_audio", "transcript": transcript}
    item: dict[str, Any] = {"id": item_id, "object": "realtime.item", "type": "message",
                            "status": "in_progress", "role": "assistant", "content": []}
    response: dict[str, Any] = {
        "object": "realtime.response", "id": response_id, "status": "in_progress",
        "status_details": None, "output": [], "conversation_id": conversation_id,
        "output_modalities": ["audio"], "max_output_tokens": "inf",
        "audio": {"output": {"format": dict(_PCMU), "voice": voice}},
        "usage": None, "metadata": None,
    }
    events = [
        event("response.created", response=dict(response)),
        event("response.output_item.added", response_id=response_id, output_index=0,
              item=dict(item)),
        event("conversation.item.added", previous_item_id=previous_item_id, item=dict(item)),
        event("response.content_part.added", **where, part={**part, "transcript": ""}),
        event("response.output_audio_transcript.delta", **where, delta=transcript),
        event("response.output_audio_transcript.done", **where, transcript=transcript),
    ]
    for start in range(0, len(audio), chunk_bytes):
        chunk = audio[start : start + chunk_bytes]
        events.append(event("response.output_audio.delta", **where,
                            delta=base64.b64encode(chunk).decode()))
    done_item = {**item, "status": "completed", "content": [dict(part)]}
    events += [
        event("response.output_audio.done", **where),
        event("response.content_part.done", **where, part=dict(part)),
        event("response.output_item.done", response_id=response_id, output_index=0,
              item=done_item),
        event("conversation.item.done", previous_item_id=previous_item_id, item=done_item),
        event("response.done", response={**response, "status": "completed",
                                         "output": [done_item], "usage": NO_USAGE}),
    ]
    return events, done_item
