"""The send schedule: one timer chain sends every call's frame each 20 ms."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from relay_sim.load.peers import FRAME_S, SimCall

_perf = time.perf_counter


class Scheduler:
    """Sends each call's next frame every 20 ms, calls staggered evenly across the period.

    Independent phones do not send in step: calls are spread over ``slots`` evenly spaced
    instants of the 20 ms period, and each instant's callback sends the frames of its calls.
    How late each callback ran against its ideal time (the slip) is recorded for the measured
    ticks, so a load generator that falls behind is seen, not mistaken for the relay.
    """

    def __init__(self, calls: list[SimCall], warmup_ticks: int, measure_ticks: int,
                 on_window_start: Callable[[], None], on_window_end: Callable[[], None],
                 slots: int = 20) -> None:
        n = len(calls)
        slots = max(1, min(slots, n))
        groups: list[list[SimCall]] = [[] for _ in range(slots)]
        for i, call in enumerate(calls):
            groups[i * slots // max(1, n)].append(call)
        self._slots = [(k * FRAME_S / slots, group) for k, group in enumerate(groups) if group]
        self._warmup, self._measure = warmup_ticks, measure_ticks
        self._on_start, self._on_end = on_window_start, on_window_end
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self._loop.create_future()
        self.slips: list[float] = []
        self._tick = 0
        self._slot = 0
        self._t0 = 0.0
        #: When the next slot is due (perf_counter seconds); infinity when none is.
        self.next_at = math.inf
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> asyncio.Future[None]:
        """Begin sending; the future is done after the last measured tick."""
        self._t0 = _perf() + 0.05
        self._arm()
        return self.done

    def _ideal(self) -> float:
        return self._t0 + self._tick * FRAME_S + self._slots[self._slot][0]

    def _arm(self) -> None:
        self.next_at = self._ideal()
        self._handle = self._loop.call_later(max(0.0, self.next_at - _perf()), self._fire)

    def poll(self) -> None:
        """Send now if a slot is due (called between reads; cheap when none is)."""
        if not self.done.done() and _perf() >= self.next_at:
            self._handle.cancel()  # type: ignore[union-attr]
            self._fire()

    def cancel(self) -> None:
        """Stop sending (idempotent)."""
        self.next_at = math.inf
        if self._handle is not None:
            self._handle.cancel()
        if not self.done.done():
            self.done.cancel()

    def _fire(self) -> None:
        if self.done.done():
            return
        ideal = self.next_at
        now = _perf()
        if now < ideal - 0.0003:  # libuv timers have millisecond resolution: never early
            self._handle = self._loop.call_later(ideal - now, self._fire)
            return
        tick = self._tick
        if self._slot == 0:
            if tick == self._warmup:
                self._on_start()
            elif tick == self._warmup + self._measure:
                self._on_end()
                self.next_at = math.inf
                self.done.set_result(None)
                return
        if tick >= self._warmup:
            self.slips.append(now - ideal)
        for call in self._slots[self._slot][1]:
            call.send_media()
        self._slot += 1
        if self._slot == len(self._slots):
            self._slot = 0
            self._tick += 1
        self._arm()
