"""An outbound call's progress, from Twilio's status callbacks. Pure.

relay places the interview call (``POST /api/calls``) and Twilio reports its
life in status callbacks, possibly out of order (``SequenceNumber`` orders
them)::

    queued ─▶ initiated ─▶ ringing ─▶ in-progress ─▶ completed
                  │            │            │
                  └────────────┴────────────┴──▶ busy | no-answer | failed | canceled

The stream (``start`` on ``/call``) normally arrives once the call is in
progress; a call that reaches a final status without ever streaming ends its
session with the matching reason. Answering-machine detection reports who
answered (``AnsweredBy``): a machine or a fax is a voicemail.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CallStatus(StrEnum):
    """Twilio's ``CallStatus`` values."""

    QUEUED = "queued"
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"


_ORDER = {CallStatus.QUEUED: 0, CallStatus.INITIATED: 1, CallStatus.RINGING: 2,
          CallStatus.IN_PROGRESS: 3}
FINAL = frozenset({CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.NO_ANSWER,
                   CallStatus.FAILED, CallStatus.CANCELED})

#: The end reason of a call that ended before it streamed.
UNSTREAMED_END = {
    CallStatus.NO_ANSWER: "no_answer",
    CallStatus.BUSY: "busy",
    CallStatus.FAILED: "call_failed",
    CallStatus.CANCELED: "canceled",
    CallStatus.COMPLETED: "call_failed",
}

#: ``AnsweredBy`` values that mean nobody will take the interview.
MACHINES = frozenset({"machine_start", "machine_end_beep", "machine_end_silence",
                      "machine_end_other", "fax"})


def parse_status(value: object) -> CallStatus | None:
    """A ``CallStatus`` value, or None for anything else."""
    try:
        return CallStatus(str(value))
    except ValueError:
        return None


@dataclass(slots=True)
class OutboundCall:
    """What relay knows of a call it placed."""

    call_sid: str
    status: CallStatus = CallStatus.QUEUED
    #: The highest ``SequenceNumber`` applied (callbacks can arrive out of order).
    sequence: int = -1
    answered_by: str | None = None

    @property
    def final(self) -> bool:
        """Whether Twilio reported the call over."""
        return self.status in FINAL

    @property
    def answered(self) -> bool:
        """Whether someone (or something) picked up."""
        return self.status is CallStatus.IN_PROGRESS or self.answered_by is not None

    def advance(self, status: CallStatus, sequence: int | None) -> bool:
        """Apply one status callback; False if it changes nothing (stale, repeated, after the end)."""
        if self.final:
            return False
        if sequence is not None:
            if sequence <= self.sequence:
                return False
            self.sequence = sequence
        if status not in FINAL and _ORDER[status] <= _ORDER.get(self.status, -1):
            return False
        self.status = status
        return True
