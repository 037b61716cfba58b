"""Translation between the OpenAI Realtime *beta* dialect and the GA dialect.

The reference demo's web app was written against the beta Realtime API: it sends
beta-shaped ``session.update`` objects and renders beta event names. relay always
talks GA to the model, so:

- client -> model: :func:`session_to_ga` turns a beta, GA or mixed ``session``
  object into a GA partial session, reporting what it had to drop;
- model -> client: :func:`event_to_beta` renames GA server events and content
  types back to beta for a frontend that asked for the beta dialect.

All functions are pure and never mutate their arguments. Field names follow the
GA migration notes ("Realtime API beta -> GA": ``modalities`` became
``output_modalities``, audio settings moved under ``audio.input`` /
``audio.output``, formats became objects, ``response.audio.*`` became
``response.output_audio.*``, ``conversation.item.created`` became
``conversation.item.added``).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "BETA_SESSION_FIELDS",
    "GA_SESSION_FIELDS",
    "event_name_to_beta",
    "event_to_beta",
    "session_to_ga",
]

#: Top-level GA session fields passed through unchanged. Anything else in a
#: ``session`` object is either a beta field (translated) or dropped.
GA_SESSION_FIELDS: Final = frozenset(
    {
        "type",
        "instructions",
        "tools",
        "tool_choice",
        "output_modalities",
        "audio",
        "max_output_tokens",
        "tracing",
        "truncation",
        "prompt",
        "include",
    }
)

#: Beta session fields that have a GA home (see :func:`session_to_ga`).
BETA_SESSION_FIELDS: Final = frozenset(
    {
        "modalities",
        "voice",
        "speed",
        "input_audio_format",
        "output_audio_format",
        "input_audio_transcription",
        "turn_detection",
        "input_audio_noise_reduction",
        "max_response_output_tokens",
    }
)

_BETA_FORMATS: Final[dict[str, dict[str, Any]]] = {
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
    # Beta pcm16 was always 24 kHz mono little-endian; GA spells the rate out.
    "pcm16": {"type": "audio/pcm", "rate": 24000},
}

# Beta field -> (audio direction, GA key) for settings whose value is copied as is.
_AUDIO_MOVES: Final[dict[str, tuple[str, str]]] = {
    "voice": ("output", "voice"),
    "speed": ("output", "speed"),
    "input_audio_transcription": ("input", "transcription"),
    "turn_detection": ("input", "turn_detection"),
    "input_audio_noise_reduction": ("input", "noise_reduction"),
}

_EVENT_NAMES_TO_BETA: Final[dict[str, str]] = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}

# GA content-part types that beta spelled differently; input_* kept their names.
_CONTENT_TYPES_TO_BETA: Final[dict[str, str]] = {
    "output_audio": "audio",
    "output_text": "text",
}

# GA-only events a beta client must not see. conversation.item.done has no beta
# counterpart: GA announces every item twice (conversation.item.added when it enters
# the conversation, conversation.item.done when it is final), while beta announced it
# once (conversation.item.created, which .added is already renamed to). The reference
# frontend appends a transcript entry for every item-carrying event it sees, so passing
# .done through would render each item twice.
_GA_ONLY_EVENTS: Final = frozenset({"conversation.item.done"})


def session_to_ga(session: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Translate a beta, GA or mixed ``session`` object into a GA partial session.

    Beta fields are moved to their GA place (``modalities`` -> ``output_modalities``,
    ``voice`` -> ``audio.output.voice``, ``input_audio_format: "g711_ulaw"`` ->
    ``audio.input.format: {"type": "audio/pcmu"}``, ...). GA fields in
    :data:`GA_SESSION_FIELDS` pass through. When a setting is given both ways, the
    GA spelling wins. ``["text", "audio"]`` modalities become ``["audio"]`` because
    GA accepts exactly one modality and audio output always carries a transcript.

    Args:
        session: The ``session`` value of a client ``session.update``.

    Returns:
        ``(ga_session, dropped)``: a new GA partial session (only the fields that were
        given) and the names of top-level fields that were dropped because GA has no
        equivalent (e.g. ``temperature``, ``model``) or their value was unusable.

    Raises:
        TypeError: If ``session`` is not a dict.
    """
    if not isinstance(session, dict):
        raise TypeError(f"session must be a dict, not {type(session).__name__}")
    dropped: list[str] = []
    beta_audio: dict[str, dict[str, Any]] = {}
    ga: dict[str, Any] = {}

    for key, value in session.items():
        if key in GA_SESSION_FIELDS:
            if key == "output_modalities":
                modalities = _one_modality(value)
                if modalities is None:
                    dropped.append(key)
                    continue
                value = modalities
            ga[key] = _copy(value)
        elif key == "modalities":
            modalities = _one_modality(value)
            if modalities is None:
                dropped.append(key)
            else:
                ga.setdefault("output_modalities", modalities)
        elif key == "max_response_output_tokens":
            ga.setdefault("max_output_tokens", value)
        elif key in ("input_audio_format", "output_audio_format"):
            fmt = _BETA_FORMATS.get(value) if isinstance(value, str) else None
            if fmt is None:
                dropped.append(key)
            else:
                direction = "input" if key == "input_audio_format" else "output"
                beta_audio.setdefault(direction, {})["format"] = dict(fmt)
        elif key in _AUDIO_MOVES:
            direction, ga_key = _AUDIO_MOVES[key]
            beta_audio.setdefault(direction, {})[ga_key] = _copy(value)
        else:
            dropped.append(key)

    # GA wins: "output_modalities"/"max_output_tokens" used setdefault above (a GA key
    # seen later overwrites), and beta audio settings only fill gaps in GA "audio".
    if beta_audio:
        audio = ga.get("audio")
        if not isinstance(audio, dict):
            if "audio" in ga:
                # An unusable GA "audio" loses to usable beta settings.
                dropped.append("audio")
            audio = ga["audio"] = {}
        for direction, settings in beta_audio.items():
            target = audio.get(direction)
            if not isinstance(target, dict):
                target = audio[direction] = {}
            for ga_key, value in settings.items():
                target.setdefault(ga_key, value)
    return ga, dropped


def _one_modality(value: object) -> list[str] | None:
    if not isinstance(value, list) or not value:
        return None
    if "audio" in value:
        return ["audio"]
    if value == ["text"]:
        return ["text"]
    return None


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def event_name_to_beta(ga_type: str) -> str:
    """The beta name of a GA server event type; names that did not change pass through."""
    return _EVENT_NAMES_TO_BETA.get(ga_type, ga_type)


def event_to_beta(event: dict[str, Any]) -> dict[str, Any] | None:
    """Translate one GA server event for a client that speaks the beta dialect.

    Renames the event type (:func:`event_name_to_beta`) and the GA content types
    ``output_audio``/``output_text`` back to ``audio``/``text`` in ``part``,
    ``item.content[*]`` and ``response.output[*].content[*]``. Audio deltas, the
    hot path, cost one dict lookup and one shallow copy.

    Args:
        event: A decoded GA server event. It is not mutated.

    Returns:
        A new event dict (unchanged nested values are shared with ``event``, so
        treat it as read-only), or ``None`` for a GA-only event a beta client must not see
        (``conversation.item.done``: beta had no such event, and the reference
        frontend would render the item a second time).
    """
    ga_type = event.get("type")
    if not isinstance(ga_type, str):
        return dict(event)
    if ga_type in _GA_ONLY_EVENTS:
        return None
    out = dict(event)
    out["type"] = _EVENT_NAMES_TO_BETA.get(ga_type, ga_type)
    part = out.get("part")
    if isinstance(part, dict):
        out["part"] = _part_to_beta(part)
    item = out.get("item")
    if isinstance(item, dict):
        out["item"] = _item_to_beta(item)
    response = out.get("response")
    if isinstance(response, dict) and isinstance(response.get("output"), list):
        out["response"] = {
            **response,
            "output": [
                _item_to_beta(item) if isinstance(item, dict) else item for item in response["output"]
            ],
        }
    return out


def _part_to_beta(part: dict[str, Any]) -> dict[str, Any]:
    ga_type = part.get("type")
    beta_type = _CONTENT_TYPES_TO_BETA.get(ga_type) if isinstance(ga_type, str) else None
    return part if beta_type is None else {**part, "type": beta_type}


def _item_to_beta(item: dict[str, Any]) -> dict[str, Any]:
    content = item.get("content")
    if not isinstance(content, list):
        return item
    return {
        **item,
        "content": [_part_to_beta(part) if isinstance(part, dict) else part for part in content],
    }
