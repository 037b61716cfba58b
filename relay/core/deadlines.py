"""A session's clocks: inactivity, the hard cap, the resume grace, the farewell.

Pure: times are passed in (monotonic seconds). Activity only records a time —
no timer is rescheduled per event — and :attr:`Deadlines.version` changes
whenever a deadline may have moved, so the runner recomputes :meth:`next` (and
re-arms its one timer) only then, never per audio frame.

Abandoned sessions (the seed "WebSocket Session Management for Abandoned
Interviews"): warn after ``inactivity_warning_s`` without activity, end at
``inactivity_timeout_s``; warn ``duration_warning_s`` before the hard cap
``max_session_s``, end at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Due(Enum):
    """What a passed deadline asks for."""

    INACTIVITY_WARNING = "inactivity_warning"
    INACTIVITY = "inactivity"
    DURATION_WARNING = "duration_warning"
    MAX_DURATION = "max_duration"
    GRACE = "grace"
    FAREWELL = "farewell"
    #: A tool call a frontend owns went unanswered too long.
    TOOL = "tool"


_ENDS = frozenset({Due.INACTIVITY, Due.MAX_DURATION, Due.GRACE, Due.FAREWELL})


@dataclass(frozen=True, slots=True)
class Limits:
    """The durations, in seconds; 0 disables a warning."""

    inactivity_warning_s: float = 480.0
    inactivity_timeout_s: float = 600.0
    max_session_s: float = 1800.0
    duration_warning_s: float = 120.0
    resume_grace_s: float = 30.0
    farewell_timeout_s: float = 15.0
    frontend_tool_timeout_s: float = 30.0


class Deadlines:
    """When each of a session's clocks runs out."""

    __slots__ = (
        "_duration_warned",
        "_farewell_at",
        "_grace_at",
        "_inactivity_warned",
        "_tool_at",
        "last_activity",
        "limits",
        "started_at",
        "version",
    )

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        self.started_at = now
        self.last_activity = now
        #: Changes whenever a deadline may have moved (see the module docstring).
        self.version = 0
        self._grace_at: float | None = None
        self._farewell_at: float | None = None
        self._tool_at: float | None = None
        self._inactivity_warned = False
        self._duration_warned = False

    @property
    def grace_at(self) -> float | None:
        """When the resume grace window ends, if one is running."""
        return self._grace_at

    @grace_at.setter
    def grace_at(self, at: float | None) -> None:
        self._grace_at = at
        self.version += 1

    @property
    def farewell_at(self) -> float | None:
        """When the goodbye has had long enough, if the interview is ending."""
        return self._farewell_at

    @farewell_at.setter
    def farewell_at(self, at: float | None) -> None:
        self._farewell_at = at
        self.version += 1

    @property
    def tool_at(self) -> float | None:
        """When the oldest unanswered frontend tool call times out, if there is one."""
        return self._tool_at

    @tool_at.setter
    def tool_at(self, at: float | None) -> None:
        self._tool_at = at
        self.version += 1

    @property
    def warnings(self) -> list[str]:
        """The warnings currently in force (``inactivity``, ``duration``)."""
        return [name for name, on in (("inactivity", self._inactivity_warned),
                                      ("duration", self._duration_warned)) if on]

    def touch(self, now: float) -> bool:
        """Record activity. Returns True if this cancels an inactivity warning."""
        self.last_activity = now
        self.version += 1
        warned, self._inactivity_warned = self._inactivity_warned, False
        return warned

    def start_grace(self, now: float) -> None:
        """Nobody is left: end unless someone returns within the grace window."""
        self.grace_at = now + self.limits.resume_grace_s

    def start_farewell(self, now: float) -> None:
        """The interview is ending: give the goodbye this long to play."""
        self.farewell_at = now + self.limits.farewell_timeout_s

    def _candidates(self) -> list[tuple[float, Due]]:
        lim = self.limits
        out = [
            (self.last_activity + lim.inactivity_timeout_s, Due.INACTIVITY),
            (self.started_at + lim.max_session_s, Due.MAX_DURATION),
        ]
        warn_at = self.last_activity + lim.inactivity_warning_s
        if not self._inactivity_warned and 0 < lim.inactivity_warning_s < lim.inactivity_timeout_s:
            out.append((warn_at, Due.INACTIVITY_WARNING))
        cap_warn_at = self.started_at + lim.max_session_s - lim.duration_warning_s
        if not self._duration_warned and 0 < lim.duration_warning_s < lim.max_session_s:
            out.append((cap_warn_at, Due.DURATION_WARNING))
        if self.grace_at is not None:
            out.append((self.grace_at, Due.GRACE))
        if self.farewell_at is not None:
            out.append((self.farewell_at, Due.FAREWELL))
        if self._tool_at is not None:
            out.append((self._tool_at, Due.TOOL))
        return out

    def next(self) -> float:
        """The earliest time :meth:`due` will have something to say."""
        return min(at for at, _ in self._candidates())

    def due(self, now: float) -> list[Due]:
        """Every deadline that has passed, ends last; warnings are given once."""
        # Warnings first, then ends, each in time order: a late check must
        # never warn about a session it has just ended.
        passed = sorted(
            ((at, due) for at, due in self._candidates() if at <= now),
            key=lambda pair: (pair[1] in _ENDS, pair[0]),
        )
        result = []
        for _, due in passed:
            if due is Due.INACTIVITY_WARNING:
                self._inactivity_warned = True
            elif due is Due.DURATION_WARNING:
                self._duration_warned = True
            elif due is Due.GRACE:
                self.grace_at = None
            elif due is Due.FAREWELL:
                self.farewell_at = None
            elif due is Due.TOOL:
                self._tool_at = None
            result.append(due)
        if result:
            self.version += 1
        return result

    def inactivity_left_ms(self, now: float) -> int:
        """Milliseconds until the inactivity timeout."""
        return max(0, round((self.last_activity + self.limits.inactivity_timeout_s - now) * 1000))

    def duration_left_ms(self, now: float) -> int:
        """Milliseconds until the hard cap."""
        return max(0, round((self.started_at + self.limits.max_session_s - now) * 1000))
