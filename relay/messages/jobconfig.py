"""A job configuration from the browser -> the model's instructions and ``session.update``.

The frontend describes the mock interview it wants with
``{"type": "job_config", "config": {...}}``. This module validates that config
(:func:`parse_job_config`), turns it into interviewer instructions
(:func:`build_instructions`) and into the OpenAI Realtime GA ``session.update``
client event (:func:`build_session_update`). Everything here is pure: no I/O,
no logging, no clock.

Errors::

    ValueError
     └── JobConfigError   the config is refused; str(err) is safe to show the user
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "END_INTERVIEW_TOOL",
    "GA_VOICES",
    "JobConfig",
    "JobConfigError",
    "build_instructions",
    "build_session_update",
    "jobconfig_summary",
    "parse_job_config",
]

#: Name of the function the model calls to hang up; the prompt tells it to.
END_INTERVIEW_TOOL: Final = "end_interview"

#: Voices the GA Realtime API accepts (marin and cedar are recommended by OpenAI).
GA_VOICES: Final = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
)

# Phone audio is G.711 u-law 8 kHz end to end: Twilio sends it and plays it, and the
# relay never transcodes, so both directions must be audio/pcmu whatever else is asked.
_PCMU: Final = {"type": "audio/pcmu"}

_LONG_TEXT_CAP: Final = 8000
_SHORT_TEXT_CAP: Final = 200
_DURATION_RANGE: Final = (1, 60)

# Wire key -> JobConfig field. Both spellings are accepted because the reference
# frontend is JavaScript (camelCase) while scripts and tests tend to use snake_case.
_KEYS: Final[dict[str, str]] = {
    "role": "role",
    "company": "company",
    "jobDescription": "job_description",
    "job_description": "job_description",
    "interviewStyle": "interview_style",
    "interview_style": "interview_style",
    "instructions": "instructions",
    "voice": "voice",
    "candidateName": "candidate_name",
    "candidate_name": "candidate_name",
    "language": "language",
    "durationMinutes": "duration_minutes",
    "duration_minutes": "duration_minutes",
}

_CAPS: Final[dict[str, int]] = {
    "role": _SHORT_TEXT_CAP,
    "company": _SHORT_TEXT_CAP,
    "job_description": _LONG_TEXT_CAP,
    "interview_style": _SHORT_TEXT_CAP,
    "instructions": _LONG_TEXT_CAP,
    "voice": _SHORT_TEXT_CAP,
    "candidate_name": _SHORT_TEXT_CAP,
    "language": _SHORT_TEXT_CAP,
}


class JobConfigError(ValueError):
    """A job configuration was refused.

    The message is written for the person who filled in the form: it names the
    offending field and never echoes its (possibly long) value.
    """


@dataclass(frozen=True, slots=True)
class JobConfig:
    """One validated mock-interview configuration.

    Every field is optional; ``None`` means "not given". Strings are stripped and
    never empty. Build one with :func:`parse_job_config` rather than directly so
    the limits are enforced.
    """

    role: str | None = None
    company: str | None = None
    job_description: str | None = None
    interview_style: str | None = None
    instructions: str | None = None
    voice: str | None = None
    candidate_name: str | None = None
    language: str | None = None
    duration_minutes: int | None = None


def parse_job_config(obj: object) -> JobConfig:
    """Validate the ``config`` object of a ``job_config`` message.

    Accepts camelCase and snake_case keys. ``null`` values and blank strings
    count as "not given". ``voice`` is matched case-insensitively and returned
    lower-case. ``duration_minutes`` may be an integer or a string of digits (form
    inputs often send strings).

    Args:
        obj: The decoded JSON value of ``config`` (not the whole message).

    Returns:
        The validated configuration.

    Raises:
        JobConfigError: If ``obj`` is not an object, has unknown keys, a field has
            the wrong type, is too long or out of range, the same field is given
            twice with different values, or no field is usable.
    """
    if not isinstance(obj, dict):
        raise JobConfigError("The job configuration must be a JSON object.")
    unknown = sorted(str(key) for key in obj if key not in _KEYS)
    if unknown:
        raise JobConfigError(
            "Unknown job configuration field(s): "
            + ", ".join(unknown)
            + ". Known fields: "
            + ", ".join(sorted(_KEYS))
            + "."
        )
    values: dict[str, Any] = {}
    for key, raw in obj.items():
        name = _KEYS[key]
        value = _duration(key, raw) if name == "duration_minutes" else _text(key, raw, _CAPS[name])
        if value is None:
            continue
        if name in values and values[name] != value:
            raise JobConfigError(f"Field {name} is given twice with different values.")
        values[name] = value
    if "voice" in values:
        voice = values["voice"].lower()
        if voice not in GA_VOICES:
            raise JobConfigError(f"Field voice must be one of: {', '.join(sorted(GA_VOICES))}.")
        values["voice"] = voice
    if not values:
        raise JobConfigError("The job configuration is empty: give at least a role or instructions.")
    return JobConfig(**values)


def _text(key: str, raw: object, cap: int) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise JobConfigError(f"Field {key} must be a string.")
    value = raw.strip()
    if len(value) > cap:
        raise JobConfigError(f"Field {key} is too long ({len(value)} characters, at most {cap}).")
    return value or None


def _duration(key: str, raw: object) -> int | None:
    if raw is None:
        return None
    # bool is an int subclass; true/false is never a meaningful duration.
    if isinstance(raw, bool):
        raise JobConfigError(f"Field {key} must be a whole number of minutes.")
    if isinstance(raw, str):
        raw = raw.strip()
        if not raw:
            return None
        # ASCII digits only: str.isdigit() also accepts "²" and "①", which int() refuses.
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 4):
            raise JobConfigError(f"Field {key} must be a whole number of minutes.")
        raw = int(raw)
    if not isinstance(raw, int):
        raise JobConfigError(f"Field {key} must be a whole number of minutes.")
    low, high = _DURATION_RANGE
    if not low <= raw <= high:
        raise JobConfigError(f"Field {key} must be between {low} and {high} minutes.")
    return raw


_GENERIC_PROMPT: Final = (
    "You are a professional, friendly interviewer running a mock job interview over the "
    "phone. Greet the candidate first, briefly explain that this is a practice interview, "
    "and ask what role they are preparing for. Then ask realistic interview questions for "
    "that role, mixing behavioral and role-specific questions. Ask one question at a time "
    "and wait for the answer. This is a phone call: keep every turn short and "
    "conversational, never use lists, markdown or emoji. After a few questions, give brief, "
    "constructive feedback. "
)


def build_instructions(cfg: JobConfig | None) -> str:
    """Compose the interviewer's system instructions.

    Args:
        cfg: The job configuration, or ``None`` for a generic mock interview.

    Returns:
        ``cfg.instructions`` verbatim when it is set (an explicit override wins over
        everything); otherwise an interviewer prompt built from the other fields,
        which always tells the model to greet first and to call the
        ``end_interview`` tool after saying goodbye.
    """
    if cfg is not None and cfg.instructions:
        return cfg.instructions
    if cfg is None:
        return _GENERIC_PROMPT + _closing()
    role = cfg.role or "the role the candidate is applying for"
    at_company = f" at {cfg.company}" if cfg.company else ""
    parts = [
        f"You are a professional interviewer conducting a mock job interview for {role}"
        f"{at_company}. Stay in character as the interviewer for the whole call."
    ]
    if cfg.candidate_name:
        parts.append(f"The candidate's name is {cfg.candidate_name}.")
    if cfg.job_description:
        # Delimited so the model reads it as material about the job, not as orders.
        parts.append(
            "Base your questions on this job description:\n"
            "<job_description>\n"
            f"{cfg.job_description}\n"
            "</job_description>"
        )
    if cfg.interview_style:
        parts.append(f"Interview style: {cfg.interview_style}. Adapt your questions and tone to it.")
    if cfg.language:
        parts.append(f"Conduct the whole interview in {cfg.language}.")
    if cfg.duration_minutes:
        parts.append(
            f"The interview should last about {cfg.duration_minutes} minutes; "
            "start wrapping up when time is nearly over."
        )
    greeting = f"Greet {cfg.candidate_name} by name" if cfg.candidate_name else "Greet the candidate"
    parts.append(
        f"{greeting} first and introduce the interview in one or two sentences. "
        "This is a phone call: keep every turn short and conversational, never use lists, "
        "markdown or emoji. Ask one question at a time and wait for the answer; ask a "
        "follow-up when an answer is vague. Do not answer your own questions."
    )
    return "\n\n".join(parts) + "\n\n" + _closing()


def _closing() -> str:
    return (
        "When the interview is finished, or whenever the candidate asks to stop, thank them, "
        f"say goodbye, and then call the {END_INTERVIEW_TOOL} tool to hang up."
    )


def build_session_update(
    cfg: JobConfig | None,
    *,
    tools: list[dict[str, Any]],
    default_voice: str = "marin",
    transcription_model: str = "gpt-4o-mini-transcribe",
    include_voice: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the GA ``session.update`` client event for a job configuration.

    Args:
        cfg: The job configuration, or ``None`` for the generic interview.
        tools: GA function-tool definitions (e.g. ``end_interview``); sent as given.
        default_voice: Voice used when ``cfg`` names none.
        transcription_model: Model transcribing the caller's audio.
        include_voice: ``False`` omits ``audio.output.voice`` (also one coming from
            ``extra``). Pass ``False`` once the model has spoken: the API refuses a
            voice change after assistant audio exists and fails the whole update.
        extra: An already GA-shaped partial session (see
            :func:`relay.messages.dialect.session_to_ga`) deep-merged over the
            result: objects merge key by key, anything else (lists included)
            replaces. ``session.type`` stays ``"realtime"`` and both audio formats
            are forced back to ``audio/pcmu``.

    Returns:
        A new dict, ``{"type": "session.update", "session": {...}}``; the inputs
        are not mutated and the result shares no mutable state with them.
    """
    session: dict[str, Any] = {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": build_instructions(cfg),
        "audio": {
            "input": {
                "format": dict(_PCMU),
                "transcription": {"model": transcription_model},
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {
                "format": dict(_PCMU),
                "voice": (cfg.voice if cfg and cfg.voice else default_voice),
            },
        },
        "tools": _copy(tools),
        "tool_choice": "auto",
    }
    if extra:
        session = _deep_merge(session, extra)
    session["type"] = "realtime"
    audio = session.get("audio")
    if not isinstance(audio, dict):
        audio = session["audio"] = {}
    for direction in ("input", "output"):
        part = audio.get(direction)
        if not isinstance(part, dict):
            part = audio[direction] = {}
        part["format"] = dict(_PCMU)
    if not include_voice:
        audio["output"].pop("voice", None)
    return {"type": "session.update", "session": session}


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = _copy(value)
    return merged


def jobconfig_summary(cfg: JobConfig | None) -> dict[str, Any]:
    """Short, non-secret fields of a job configuration, for log context.

    Never includes the job description, instructions or the candidate's name.
    ``None`` gives the same keys, all unset.
    """
    if cfg is None:
        cfg = JobConfig()
    return {
        "role": cfg.role,
        "company": cfg.company,
        "interview_style": cfg.interview_style,
        "voice": cfg.voice,
        "has_instructions": cfg.instructions is not None,
    }
