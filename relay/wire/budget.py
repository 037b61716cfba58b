"""A connection's inbound budget: how much a peer may send, decided without I/O.

Every frame a peer sends costs one message from a token bucket (``burst`` at
once, refilled at ``messages_per_s``) and its size in bytes from another. Every
frame, not every message: fragments, pings and empty frames make relay work
too, and an empty frame costs nothing under a byte limit alone (four million
empty continuation frames used to pass). A message may also be split into at
most ``max_fragments`` frames, so an endless fragmented message is refused
early and never held in memory.

Budgets are sized per endpoint (:meth:`BudgetLimits.for_endpoint`): a Twilio
call sends 50 small frames a second, a browser a few a minute. The caller
passes the time; :class:`InboundBudget` never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["BudgetLimits", "InboundBudget", "Overrun"]

_CONT, _TEXT, _BINARY = 0x0, 0x1, 0x2


class Overrun(str, Enum):
    """Which part of the budget a peer exceeded."""

    MESSAGES = "messages"
    BYTES = "bytes"
    FRAGMENTS = "fragments"


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """One endpoint's budget. A rate of 0 turns that part off."""

    messages_per_s: float
    message_burst: int
    bytes_per_s: float
    #: Bytes that may arrive at once: as many seconds' worth as the message burst
    #: allows, and never less than two of the largest messages.
    byte_burst: float
    max_fragments: int

    @classmethod
    def for_endpoint(cls, *, messages_per_s: float, message_burst: int, bytes_per_s: float,
                     max_fragments: int, max_message: int) -> BudgetLimits:
        """The limits of an endpoint whose largest message is ``max_message`` bytes."""
        burst_s = message_burst / messages_per_s if messages_per_s > 0 else 1.0
        return cls(messages_per_s, max(1, message_burst), bytes_per_s,
                   max(bytes_per_s * burst_s, 2.0 * (max_message + 14)), max_fragments)


class InboundBudget:
    """What one connection may still send; charge every frame with :meth:`charge`."""

    __slots__ = ("limits", "_messages", "_bytes", "_last", "_fragments")

    def __init__(self, limits: BudgetLimits, now: float) -> None:
        self.limits = limits
        self._messages = float(limits.message_burst)
        self._bytes = limits.byte_burst
        self._last = now
        #: Frames of the message being received, 0 between messages.
        self._fragments = 0

    def charge(self, opcode: int, fin: bool, size: int, now: float) -> Overrun | None:
        """Spend one frame of ``size`` bytes (header included); the overrun, if any."""
        limits = self.limits
        elapsed = now - self._last
        if elapsed > 0:
            self._last = now
            self._messages = min(float(limits.message_burst),
                                 self._messages + elapsed * limits.messages_per_s)
            self._bytes = min(limits.byte_burst, self._bytes + elapsed * limits.bytes_per_s)
        if limits.messages_per_s > 0:
            if self._messages < 1.0:
                return Overrun.MESSAGES
            self._messages -= 1.0
        if limits.bytes_per_s > 0:
            if self._bytes < size:
                return Overrun.BYTES
            self._bytes -= size
        if opcode == _CONT or opcode == _TEXT or opcode == _BINARY:
            # Control frames may come between fragments and do not count as one.
            self._fragments = 0 if fin else self._fragments + 1
            if limits.max_fragments and self._fragments >= limits.max_fragments:
                return Overrun.FRAGMENTS
        return None
