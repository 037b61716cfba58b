"""What a session is made with, and how it can end: its options, a frontend's wishes, end reasons.

Plain values shared by the session (:mod:`relay.core.session`), the registry
and the runner; :class:`SessionOptions` comes from :class:`~relay.config.Settings`
(``relay/transport/server.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from relay.core.deadlines import Limits
from relay.core.instructions import PhoneSettings


class EndReason(StrEnum):
    """Why a session ended; sent to frontends and counted in /health."""

    CALLER_HUNG_UP = "caller_hung_up"
    CALL_DROPPED = "call_dropped"
    FRONTEND_ENDED = "frontend_ended"
    FRONTEND_LEFT = "frontend_left"
    ABANDONED = "abandoned"
    INTERVIEW_COMPLETED = "interview_completed"
    UPSTREAM_FAILED = "upstream_failed"
    UPSTREAM_CLOSED = "upstream_closed"
    RESET = "reset"
    SHUTDOWN = "shutdown"
    STOPPED = "stopped"
    SUPERSEDED = "superseded"
    INACTIVITY = "inactivity"
    MAX_DURATION = "max_duration"
    INTERNAL_ERROR = "internal_error"
    #: The node running the session stopped; another node ended it.
    RELAY_LOST = "relay_lost"
    #: An outbound call ended before it streamed: nobody picked up, the line was
    #: busy, the call failed, or it was cancelled before it was answered.
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    CALL_FAILED = "call_failed"
    CANCELED = "canceled"
    #: An answering machine (or a fax) took the outbound call.
    VOICEMAIL = "voicemail"


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """Per-session knobs, taken from :class:`~relay.config.Settings`."""

    tools: tuple[dict[str, Any], ...] = ()
    phone: PhoneSettings = PhoneSettings()
    greet_first: bool = True
    mark_interval_ms: int = 100
    pre_open_audio_frames: int = 250
    limits: Limits = Limits()
    resume_buffer_events: int = 500
    max_avatars: int = 4
    #: Tell the model about the caller's key presses (a short user text item).
    dtmf_to_model: bool = True
    #: What an outbound call that reaches a voicemail does: ``hangup`` or ``message``.
    voicemail: str = "hangup"


@dataclass(frozen=True, slots=True)
class FrontendInfo:
    """How one frontend wants its events."""

    dialect: str = "ga"  # or "beta"
    wants_audio: bool = False
    #: Connected to a bare ``/logs`` (no session ID, no call SID).
    bare: bool = False
