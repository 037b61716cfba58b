"""The job configuration a browser sends: ``{"type": "job_config", "config": {...}}``.

This module validates that config (:func:`parse_job_config`) into a
:class:`JobConfig`; :mod:`relay.core.instructions` turns one into the model's
instructions and ``session.update``. Pure: no I/O, no logging, no clock.

Errors::

    ValueError
     └── JobConfigError   the config is refused; str(err) is safe to show the user
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from relay.errors import JobConfigError

__all__ = [
    "GA_VOICES",
    "JobConfig",
    "JobConfigError",
    "jobconfig_summary",
    "parse_job_config",
]

#: Voices the GA Realtime API accepts (marin and cedar are recommended by OpenAI).
GA_VOICES: Final = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
)

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
