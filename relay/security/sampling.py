"""Sampled refusal logging: the first few refusals of a client in full, then only counts.

A client that keeps sending what relay refuses (a handshake with a forged
token, malformed JSON on an open socket) used to cost one log line per
refusal: megabytes a minute from one address. :class:`RefusalSampler` keys
refusals by client address (handshakes) or by connection (messages): the first
``first`` of a key are logged in full; after that one line reports the count
when it reaches 1, 10, 100, 1000, ... A key quiet for ``window_s`` starts over,
and its first line says how many went unreported before.

Pure, with an injected clock; the table of keys is bounded so spoofed
addresses cannot grow it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["RefusalSampler", "Sample"]


@dataclass(frozen=True, slots=True)
class Sample:
    """What to log for one refusal.

    ``full``: log the refusal itself. Otherwise log one count line saying
    ``suppressed`` refusals of this key went unlogged so far in this episode.
    ``earlier``: refusals of the key's previous episode that were never reported.
    """

    full: bool
    suppressed: int = 0
    earlier: int = 0


@dataclass(slots=True)
class _Episode:
    count: int
    last: float
    reported: int = 0


class RefusalSampler:
    """Decides which refusals of each key are logged."""

    def __init__(self, first: int, window_s: float, clock: Callable[[], float], *,
                 max_keys: int = 10_000) -> None:
        self.first = max(0, first)
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._episodes: OrderedDict[Hashable, _Episode] = OrderedDict()

    def note(self, key: Hashable) -> Sample | None:
        """Record one refusal of ``key``; what to log, or None to log nothing."""
        now = self._clock()
        episode = self._episodes.pop(key, None)
        earlier = 0
        if episode is not None and now - episode.last > self.window_s:
            earlier = episode.count - self.first - episode.reported if episode.count > self.first else 0
            episode = None
        if episode is None:
            episode = _Episode(0, now)
        episode.count += 1
        episode.last = now
        self._episodes[key] = episode
        if len(self._episodes) > self._max_keys:
            self._episodes.popitem(last=False)  # the longest quiet
        if episode.count <= self.first:
            return Sample(full=True, earlier=max(0, earlier))
        suppressed = episode.count - self.first
        if _is_power_of_ten(suppressed):
            episode.reported = suppressed
            return Sample(full=False, suppressed=suppressed)
        return None

    def forget(self, key: Hashable) -> int:
        """Drop ``key`` (its connection closed); the refusals it never reported."""
        episode = self._episodes.pop(key, None)
        if episode is None or episode.count <= self.first:
            return 0
        return episode.count - self.first - episode.reported


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1
