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
from typing import assert_never


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


#: What the interviewer is asked to do on a voicemail, when relay lets it leave a message.
VOICEMAIL_MESSAGE = (
    "You reached the candidate's voicemail, not the candidate. Leave one short, friendly "
    "message: who you are, that you called for the practice interview, and that they can "
    "start a new one whenever they like. Then call the end_interview tool."
)


@dataclass(frozen=True, slots=True)
class Placed:
    """Twilio accepted the call relay asked for."""

    call_sid: str
    status: CallStatus = CallStatus.QUEUED


@dataclass(frozen=True, slots=True)
class Progress:
    """A signed status callback."""

    call_sid: str
    status: CallStatus
    sequence: int | None = None


@dataclass(frozen=True, slots=True)
class AnsweredBy:
    """Answering-machine detection's verdict."""

    call_sid: str
    who: str


DialReport = Placed | Progress | AnsweredBy


def report_to_wire(report: DialReport) -> dict[str, object]:
    """A report as JSON-ready values (it travels to the session's node in a fleet)."""
    match report:
        case Placed(call_sid, status):
            return {"kind": "placed", "call": call_sid, "status": status.value}
        case Progress(call_sid, status, sequence):
            return {"kind": "progress", "call": call_sid, "status": status.value,
                    "seq": sequence}
        case AnsweredBy(call_sid, who):
            return {"kind": "answered_by", "call": call_sid, "who": who}
        case _ as unreachable:
            assert_never(unreachable)


def report_from_wire(data: dict[str, object]) -> DialReport | None:
    """The inverse of :func:`report_to_wire`; None for anything malformed."""
    call_sid, kind = data.get("call"), data.get("kind")
    if not isinstance(call_sid, str):
        return None
    status = parse_status(data.get("status"))
    if kind == "placed" and status is not None:
        return Placed(call_sid, status)
    if kind == "progress" and status is not None:
        seq = data.get("seq")
        return Progress(call_sid, status, seq if isinstance(seq, int) else None)
    if kind == "answered_by" and isinstance(data.get("who"), str):
        return AnsweredBy(call_sid, str(data["who"]))
    return None


@dataclass(frozen=True, slots=True)
class Step:
    """What one report about an outbound call means for its session."""

    #: The ``call.status_changed`` status to tell the frontends, if any.
    tell: str | None = None
    #: End the session with this reason (the call ended before it streamed, or a voicemail).
    end: str | None = None
    #: Ask the interviewer to leave a voicemail message.
    leave_message: bool = False


class Dialing:
    """The session's outbound call, if relay placed one (pure).

    Args:
        voicemail: ``hangup`` ends the session on a machine; ``message`` lets
            the interviewer leave a short message first.
    """

    __slots__ = ("call", "voicemail")

    def __init__(self, voicemail: str = "hangup") -> None:
        self.voicemail = voicemail
        self.call: OutboundCall | None = None

    @property
    def live(self) -> bool:
        """Whether a placed call is still going (a second one is refused)."""
        return self.call is not None and not self.call.final

    def report(self, report: DialReport, *, streamed: bool) -> Step:
        """What one report means (``streamed``: the call's stream has started)."""
        match report:
            case Placed(call_sid, status):
                return self.placed(call_sid, status)
            case Progress(call_sid, status, sequence):
                return self.progress(call_sid, status, sequence, streamed)
            case AnsweredBy(call_sid, who):
                return self.answered_by(call_sid, who)
            case _ as unreachable:
                assert_never(unreachable)

    def placed(self, call_sid: str, status: CallStatus) -> Step:
        """Twilio accepted the call."""
        self.call = OutboundCall(call_sid, status)
        return Step(tell=status.value)

    def progress(self, call_sid: str, status: CallStatus, sequence: int | None,
                 streamed: bool) -> Step:
        """A status callback arrived (``streamed``: the call's stream has started)."""
        call = self.call
        if call is None or call.call_sid != call_sid or not call.advance(status, sequence):
            return Step()
        if status in FINAL:
            # A call that streamed ends through its stream (stop, closed);
            # one that never did ends here, with Twilio's reason.
            return Step() if streamed else Step(end=UNSTREAMED_END[status])
        return Step(tell=status.value)

    def answered_by(self, call_sid: str, who: str) -> Step:
        """Answering-machine detection said who picked up."""
        call = self.call
        if call is None or call.call_sid != call_sid or call.answered_by is not None:
            return Step()
        call.answered_by = who
        if who not in MACHINES:
            return Step()
        if self.voicemail == "message" and who != "fax":
            return Step(leave_message=True)
        return Step(end="voicemail")
