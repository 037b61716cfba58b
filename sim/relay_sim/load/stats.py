"""What every simulated peer of one run records, and the percentile used to report it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay_sim.load.schedule import Scheduler


class LoadStats:
    """The counters and latencies of one run, shared by all its calls and frontends."""

    def __init__(self, lo: int, hi: int) -> None:
        #: Frame sequence numbers inside the measurement window.
        self.lo, self.hi = lo, hi
        self.latencies: list[float] = []
        #: The frame sequence number (= send tick + 1) of each latency, for the timeline.
        self.sent_ticks: list[int] = []
        self.received = 0
        self.misrouted = 0
        self.duplicates = 0
        self.untagged = 0
        self.wrong_stream_sid = 0
        self.marks = 0
        self.clears = 0
        self.other_call_messages = 0
        self.frontend_messages = 0
        self.frontend_transcripts = 0
        self.frontend_errors = 0
        self.protocol_errors = 0
        self.scheduler: Scheduler | None = None


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None if empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]
