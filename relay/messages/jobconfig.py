"""The job configuration a browser sends: ``{"type": "job_config", "config": {...}}``.

Apps send their own job objects, so relay reads them as they come
(:func:`read_job_config`): a field may go by a common synonym (``jobTitle``,
``title`` or ``position`` for the role, ``companyName`` for the company,
``description`` for the job description, ``style`` for the interview style, …);
any other scalar field (``seniority``, ``requirements``, ``location``, …) becomes
an extra detail of the job; objects, identifiers (``id``, ``jobId``, …),
timestamps and blanks are left out. Only a wrong type or size of a field relay
uses refuses the configuration. The reading says which wire keys were used
and which ignored, for the acknowledgement. :mod:`relay.core.instructions`
turns a :class:`JobConfig` into the model's instructions. Pure: no I/O, no
logging, no clock.

Errors::

    ValueError
     └── JobConfigError   the config is refused; str(err) is safe to show the user
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from relay.errors import JobConfigError

__all__ = [
    "GA_VOICES",
    "JobConfig",
    "JobConfigError",
    "JobConfigReading",
    "parse_job_config",
    "read_job_config",
]

#: Voices the GA Realtime API accepts (marin and cedar are recommended by OpenAI).
GA_VOICES: Final = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
)

_LONG_TEXT_CAP: Final = 8000
_SHORT_TEXT_CAP: Final = 200
_DURATION_RANGE: Final = (1, 60)
#: Extra details: how many, how long a label, how long a value, how many list items.
MAX_EXTRAS: Final = 20
_EXTRA_LABEL: Final = re.compile(r"[A-Za-z][A-Za-z0-9_ -]{0,39}\Z")
_EXTRA_CAP: Final = 2000
_EXTRA_ITEMS: Final = 20

# JobConfig field -> the wire keys that set it, best first: the first one given
# wins and any other is ignored. camelCase for the JavaScript apps, snake_case
# for scripts, then the synonyms apps' own job objects use.
_SYNONYMS: Final[dict[str, tuple[str, ...]]] = {
    "role": ("role", "jobTitle", "job_title", "title", "position", "jobRole", "job_role"),
    "company": ("company", "companyName", "company_name", "employer", "organization",
                "organisation"),
    "job_description": ("jobDescription", "job_description", "description", "jd"),
    "interview_style": ("interviewStyle", "interview_style", "style", "interviewType",
                        "interview_type"),
    "instructions": ("instructions", "systemPrompt", "system_prompt"),
    "voice": ("voice",),
    "candidate_name": ("candidateName", "candidate_name"),
    "language": ("language", "interviewLanguage", "interview_language", "lang"),
    "duration_minutes": ("durationMinutes", "duration_minutes", "duration", "interviewDuration",
                         "interview_duration"),
}
_FIELD_OF: Final[dict[str, str]] = {key: name for name, keys in _SYNONYMS.items() for key in keys}
#: The keys docs/protocol.md documents: a wrong type there is refused, not ignored.
_DOCUMENTED: Final = frozenset({
    "role", "company", "jobDescription", "job_description", "interviewStyle", "interview_style",
    "instructions", "voice", "candidateName", "candidate_name", "language", "durationMinutes",
    "duration_minutes",
})

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
#: Fields that are one line in the prompt: newlines and control characters become spaces.
_SINGLE_LINE: Final = frozenset({"role", "company", "interview_style", "voice", "candidate_name",
                                 "language"})
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_SPACES: Final = re.compile(r"\s+")
#: Bookkeeping fields of an app's job object (identifiers, links, timestamps):
#: nothing the interviewer should hear.
_BOOKKEEPING_NAMES: Final = frozenset({"id", "ids", "uuid", "guid", "slug", "url", "link", "href",
                                       "timestamp", "version", "status", "created", "updated"})
_BOOKKEEPING_SUFFIX: Final = re.compile(r"(?:[a-z0-9](?:Id|ID|Ids|IDs|Url|URL|At)|_(?i:ids?|url|at))\Z")
_DURATION_TEXT: Final = re.compile(r"(?i)\s*(\d{1,4})\s*(m|min|mins|minute|minutes)?\s*\Z")


@dataclass(frozen=True, slots=True)
class JobConfig:
    """One validated mock-interview configuration.

    Every field is optional; ``None`` means "not given". Strings are stripped and
    never empty; the short ones are single-line. ``extras`` holds the app's
    other details as ``(label, value)`` pairs. Build one with
    :func:`read_job_config` rather than directly so the limits are enforced.
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
    extras: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class JobConfigReading:
    """A job configuration and what relay made of the keys it came with."""

    config: JobConfig
    #: Wire keys relay used, in the order they came.
    used: tuple[str, ...]
    #: Wire keys relay left out (blanks, objects, identifiers, a synonym that lost).
    ignored: tuple[str, ...]


def read_job_config(obj: object) -> JobConfigReading:
    """Read the ``config`` object of a ``job_config`` message.

    ``null`` values and blank strings count as "not given". ``voice`` is matched
    case-insensitively and returned lower-case. ``duration_minutes`` may be an
    integer or a string such as ``"20"`` or ``"20 minutes"``.

    Raises:
        JobConfigError: If ``obj`` is not an object, a field relay uses has the
            wrong type, is too long or out of range, or nothing in it is usable.
    """
    if not isinstance(obj, dict):
        raise JobConfigError("The job configuration must be a JSON object.")
    values: dict[str, Any] = {}
    used: list[str] = []
    ignored = [str(key) for key, raw in obj.items() if _blank(raw)]
    for name, keys in _SYNONYMS.items():
        for key in (k for k in keys if k in obj and not _blank(obj[k])):
            if name in values:
                ignored.append(key)  # a spelling further down the list lost
                continue
            try:
                values[name] = _field(name, key, obj[key])
            except _WrongType:
                if key in _DOCUMENTED:
                    raise
                ignored.append(key)  # the app's own field of that name, not ours
                continue
            used.append(key)
    extras: list[tuple[str, str]] = []
    for key, raw in obj.items():
        key = str(key)
        if key in _FIELD_OF or _blank(raw):
            continue
        extra = _extra(key, raw)
        if extra is None or len(extras) >= MAX_EXTRAS:
            ignored.append(key)
        else:
            extras.append(extra)
            used.append(key)
    order = {str(key): index for index, key in enumerate(obj)}
    used.sort(key=order.__getitem__)
    ignored.sort(key=order.__getitem__)
    if "voice" in values:
        voice = values["voice"].lower()
        if voice not in GA_VOICES:
            raise JobConfigError(f"Field voice must be one of: {', '.join(sorted(GA_VOICES))}.")
        values["voice"] = voice
    if not values and not extras:
        raise JobConfigError("The job configuration is empty: give at least a role or instructions.")
    return JobConfigReading(JobConfig(**values, extras=tuple(extras)), tuple(used), tuple(ignored))


def parse_job_config(obj: object) -> JobConfig:
    """The :class:`JobConfig` of :func:`read_job_config` (same errors)."""
    return read_job_config(obj).config


def _blank(raw: object) -> bool:
    # Control characters alone are blank too: a one-line field turns them into spaces.
    return raw is None or (isinstance(raw, str) and not _CONTROL.sub("", raw).strip())


class _WrongType(JobConfigError):
    """A value of the wrong type: refused for a documented key, ignored for a synonym."""


def _field(name: str, key: str, raw: object) -> str | int:
    if name == "duration_minutes":
        return _duration(key, raw)
    return _text(key, raw, _CAPS[name], single_line=name in _SINGLE_LINE)


def _text(key: str, raw: object, cap: int, *, single_line: bool) -> str:
    if not isinstance(raw, str):
        raise _WrongType(f"Field {key} must be a string.")
    value = raw.strip()
    if single_line:
        # A short field is one line of the prompt: it cannot start a paragraph of its own.
        value = _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip()
    if len(value) > cap:
        raise JobConfigError(f"Field {key} is too long ({len(value)} characters, at most {cap}).")
    return value


def _duration(key: str, raw: object) -> int:
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, str):
        # ASCII digits only: str.isdigit() also accepts "²" and "①", which int() refuses.
        match = _DURATION_TEXT.fullmatch(raw) if raw.isascii() else None
        if match is None:
            raise _WrongType(f"Field {key} must be a whole number of minutes.")
        raw = int(match.group(1))
    # bool is an int subclass; true/false is never a meaningful duration.
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _WrongType(f"Field {key} must be a whole number of minutes.")
    low, high = _DURATION_RANGE
    if not low <= raw <= high:
        raise JobConfigError(f"Field {key} must be between {low} and {high} minutes.")
    return raw


def _extra(key: str, raw: object) -> tuple[str, str] | None:
    """An app's other field as a detail of the job, or None to leave it out."""
    if not _EXTRA_LABEL.match(key) or key.lower() in _BOOKKEEPING_NAMES \
            or _BOOKKEEPING_SUFFIX.search(key):
        return None
    if isinstance(raw, list):
        if not raw or len(raw) > _EXTRA_ITEMS or not all(_scalar(item) for item in raw):
            return None
        value = "; ".join(_scalar_text(item) for item in raw if not _blank(item))
    elif _scalar(raw):
        value = _scalar_text(raw)
    else:
        return None  # objects: nested app data, not a detail of the job
    value = _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip()
    if not value:
        return None
    if len(value) > _EXTRA_CAP:
        raise JobConfigError(f"Field {key} is too long ({len(value)} characters, at most {_EXTRA_CAP}).")
    return _label(key), value


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _scalar_text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).strip()


def _label(key: str) -> str:
    """``experienceLevel`` and ``experience_level`` read as ``experience level``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key).replace("_", " ").replace("-", " ")
    return _SPACES.sub(" ", words).strip().lower()
