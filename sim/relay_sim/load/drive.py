"""Drive one run against a listening relay: connect, stream, measure, hang up.

A run opens N calls (and, with frontends, one browser per call first), waits until every call's
probe frame came back, then starts the send schedule: a warm-up, the measurement window, then
``stop`` on every call and a drain for echoes still in flight. The figures it returns are not
yet judged (:func:`relay_sim.load.verdict.judge`).
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psutil

from relay_sim.load.client import WsClient, open_client
from relay_sim.load.peers import FRAME_S, SimCall, SimFrontend
from relay_sim.load.processes import Pinning, core_busy_pct, cpu_seconds, rss
from relay_sim.load.schedule import Scheduler
from relay_sim.load.stats import LoadStats, percentile

_perf = time.perf_counter


@dataclass(frozen=True)
class RunSpec:
    """The load of one run."""

    calls: int
    duration: float
    warmup: float
    drain: float
    connect_timeout: float
    #: One /logs frontend per call (only where the relay under test serves /logs).
    frontends: bool = False
    #: Calls echo marks once the audio before them has played, not at once.
    play_marks: bool = False
    #: Calls open ``/call/{sessionId}`` (as /twiml's TwiML names it), not a bare ``/call``.
    call_path_session: bool = False
    #: Frontends connect here instead of the calls' port (a fleet: another node).
    frontend_port: int | None = None
    connect_concurrency: int = 64


@dataclass
class Observed:
    """The processes a run watches besides the relay, and the fake model's counters."""

    pinning: Pinning
    model_ps: psutil.Process | None
    model_stats: Callable[[], Awaitable[dict[str, int] | None]]
    #: The fake model's ``after_read`` hook, when it shares this event loop.
    set_after_read: Callable[[Callable[[], None] | None], None] | None = None


async def _bounded(coros: Iterable[Awaitable[Any]], limit: int) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(coro: Awaitable[Any]) -> Any:
        async with sem:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)


async def drive(port: int, spec: RunSpec, relay_ps: psutil.Process | None,
                observed: Observed) -> dict[str, Any]:
    """Drive one run against the relay on loopback ``port``; return its figures."""
    n = spec.calls
    warmup_ticks = max(1, round(spec.warmup / FRAME_S))
    measure_ticks = max(1, round(spec.duration / FRAME_S))
    stats = LoadStats(warmup_ticks + 1, warmup_ticks + measure_ticks)
    frames = warmup_ticks + measure_ticks + 1
    host = f"127.0.0.1:{port}"
    me = psutil.Process()
    model_before = await observed.model_stats()
    session_ids = [str(uuid.uuid4()) for _ in range(n)]

    frontends: list[SimFrontend] = []
    if spec.frontends:
        fport = spec.frontend_port or port
        opened = await _bounded((open_client(lambda sid=sid: SimFrontend(
            f"127.0.0.1:{fport}", sid, stats), fport, 10) for sid in session_ids),
            spec.connect_concurrency)
        frontends = [f for f in opened if isinstance(f, SimFrontend)]
        for f in frontends:
            f.send_text(SimFrontend.JOB_CONFIG)

    async def open_call(i: int) -> SimCall:
        path = f"/call/{session_ids[i]}" if spec.call_path_session else "/call"
        call = await open_client(lambda: SimCall(host, i, session_ids[i], stats, frames,
                                                 play_marks=spec.play_marks, path=path), port, 10)
        call.start()
        return call

    t_connect = time.monotonic()
    opened_calls = await _bounded((open_call(i) for i in range(n)), spec.connect_concurrency)
    calls = [c for c in opened_calls if isinstance(c, SimCall)]
    connect_errors = sorted({f"{type(e).__name__}: {e}"[:120] for e in opened_calls
                             if isinstance(e, BaseException)})
    if calls:
        await asyncio.wait([c.live for c in calls], timeout=spec.connect_timeout)
    live = [c for c in calls if c.live.done()]
    connect_s = time.monotonic() - t_connect
    rss_live = rss(relay_ps)

    window: dict[str, Any] = {}

    def snapshot() -> dict[str, Any]:
        try:
            kernel = relay_ps.cpu_times().system if relay_ps is not None else None
        except psutil.Error:
            kernel = None
        return {"t": _perf(), "relay": cpu_seconds(relay_ps), "me": cpu_seconds(me),
                "model": cpu_seconds(observed.model_ps), "relay_system": kernel,
                "cores": psutil.cpu_times(percpu=True)}

    loop = asyncio.get_running_loop()
    seconds: list[dict[str, Any]] = []  # a snapshot per second of the window, for the timeline

    def every_second() -> None:
        if "end" not in window:
            seconds.append(snapshot())
            window["sampler"] = loop.call_later(1.0, every_second)

    def on_start() -> None:
        window["start"] = snapshot()
        seconds.append(window["start"])
        window["sampler"] = loop.call_later(1.0, every_second)

    def on_end() -> None:
        window["end"] = snapshot()
        window["rss"] = rss(relay_ps)
        window["sampler"].cancel()

    gc.collect()
    gc.freeze()  # the setup's objects never need scanning again
    scheduler = stats.scheduler = Scheduler(live, warmup_ticks, measure_ticks, on_start, on_end)
    if observed.set_after_read is not None:
        observed.set_after_read(scheduler.poll)
    try:
        if live:
            await asyncio.wait_for(scheduler.start(), spec.warmup + spec.duration + 30)
            expected = measure_ticks * len(live)
            deadline = time.monotonic() + spec.drain
            while stats.received < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
    finally:
        scheduler.cancel()
        stats.scheduler = None
        if observed.set_after_read is not None:
            observed.set_after_read(None)
        gc.unfreeze()
        await _hang_up(calls, frontends)
    model_after = await observed.model_stats()
    return _figures(stats, live, scheduler.slips, window, seconds, observed.pinning,
                    measure_ticks, n, connect_errors, connect_s, len(frontends), rss_live,
                    _delta(model_before, model_after))


def _figures(stats: LoadStats, live: list[SimCall], slips_raw: list[float],
             window: dict[str, Any], seconds: list[dict[str, Any]], pinning: Pinning,
             measure_ticks: int, n: int, connect_errors: list[str], connect_s: float,
             frontends: int, rss_live: int | None,
             model_stats: dict[str, int] | None) -> dict[str, Any]:
    lat = sorted(stats.latencies)
    start, end = window.get("start"), window.get("end")
    wall = (end["t"] - start["t"]) if start and end else None

    def pct(key: str) -> float | None:
        if not wall or start[key] is None or end[key] is None:
            return None
        return 100.0 * (end[key] - start[key]) / wall

    relay_cpu = (end["relay"] - start["relay"]) if pct("relay") is not None else None
    kernel = (end["relay_system"] - start["relay_system"]) if pct("relay_system") is not None else None
    rss_end = window.get("rss")
    known = [v for v in (rss_live, rss_end) if v is not None]
    rss_at_n = max(known) if known else None
    slips = sorted(slips_raw)
    ms = lambda v: None if v is None else v * 1000.0  # noqa: E731
    kib = lambda v: None if v is None else v / 1024  # noqa: E731
    load_pct = (pct("me") or 0.0) + (pct("model") or 0.0)
    return {
        "calls": n,
        "calls_live": len(live),
        "connect_errors": connect_errors,
        "connect_s": round(connect_s, 2),
        "frontends": frontends,
        "duration_s": wall,
        "frames_sent": measure_ticks * len(live),
        "frames_received": stats.received,
        "lost": sum(c.lost_in_window() for c in live),
        "misrouted": stats.misrouted,
        "duplicates": stats.duplicates,
        "untagged": stats.untagged,
        "wrong_stream_sid": stats.wrong_stream_sid,
        "marks_echoed": stats.marks,
        "clears": stats.clears,
        "other_call_messages": stats.other_call_messages,
        "frontend_messages": stats.frontend_messages,
        "frontend_transcripts": stats.frontend_transcripts,
        "frontend_errors": stats.frontend_errors,
        "protocol_errors": stats.protocol_errors,
        "p50_ms": ms(percentile(lat, 0.50)),
        "p90_ms": ms(percentile(lat, 0.90)),
        "p99_ms": ms(percentile(lat, 0.99)),
        "p999_ms": ms(percentile(lat, 0.999)),
        "max_ms": ms(lat[-1]) if lat else None,
        "relay_cpu_s": relay_cpu,
        "relay_cpu_system_s": kernel,
        "relay_cpu_pct": pct("relay"),
        "cpu_s_per_call_min": (relay_cpu / (len(live) * wall / 60.0))
        if relay_cpu is not None and live else None,
        "rss_live_kib": kib(rss_live),
        "rss_end_kib": kib(rss_end),
        "rss_at_n_kib": kib(rss_at_n),
        "loadgen_cpu_pct": pct("me") or 0.0,
        "model_cpu_pct": pct("model"),
        **foreign_load(start, end, pinning, pct("relay"), load_pct),
        "slip_p50_ms": ms(percentile(slips, 0.50)),
        "slip_p99_ms": ms(percentile(slips, 0.99)),
        "slip_max_ms": ms(slips[-1]) if slips else None,
        "latency_by_second": _timeline(stats, seconds, pinning),
        "model_stats": model_stats,
        "pinned": pinning.relay_core is not None,
    }


def _timeline(stats: LoadStats, snapshots: list[dict[str, Any]],
              pinning: Pinning) -> list[dict[str, Any]]:
    """Each second of the window: latency (by send time) and who used the cores meanwhile.

    A p99 says how bad the worst 1 % was; this says when, and whether the relay was saturated
    (``relay_cpu_pct``) or something else ran on its core (``other_relay_core_pct``) then.
    """
    per_second = 1.0 / FRAME_S
    buckets: dict[int, list[float]] = {}
    for seq, latency in zip(stats.sent_ticks, stats.latencies, strict=True):
        buckets.setdefault(int((seq - stats.lo) / per_second), []).append(latency)
    out = []
    for second in sorted(buckets):
        values = sorted(buckets[second])
        entry: dict[str, Any] = {
            "second": second, "frames": len(values),
            "p50_ms": round(percentile(values, 0.5) * 1000, 2),  # type: ignore[operator]
            "p99_ms": round(percentile(values, 0.99) * 1000, 2),  # type: ignore[operator]
            "max_ms": round(values[-1] * 1000, 2)}
        if second + 1 < len(snapshots):
            a, b = snapshots[second], snapshots[second + 1]
            wall = b["t"] - a["t"]
            relay = (b["relay"] - a["relay"]) * 100 / wall if a["relay"] is not None else None
            load = ((b["me"] - a["me"]) + ((b["model"] or 0) - (a["model"] or 0))) * 100 / wall
            entry["relay_cpu_pct"] = None if relay is None else round(relay)
            for key, value in foreign_load(a, b, pinning, relay, load).items():
                entry[key.replace("other_load_", "other_")] = None if value is None else round(value)
        out.append(entry)
    return out


def foreign_load(start: dict[str, Any] | None, end: dict[str, Any] | None, pinning: Pinning,
                 relay_pct: float | None, load_pct: float) -> dict[str, float | None]:
    """CPU% of each pinned core used by processes other than the benchmark's own.

    Other work on the machine (another test suite, a build) skews every figure; this says how
    much there was. Kernel work done for the benchmark's sockets outside its processes' own
    accounting (softirqs) is counted as other load too, so a few % is normal.
    """
    out: dict[str, float | None] = {"other_load_relay_core_pct": None,
                                    "other_load_load_core_pct": None}
    if not start or not end or pinning.relay_core is None or pinning.load_core is None:
        return out
    relay_core = core_busy_pct(start["cores"][pinning.relay_core], end["cores"][pinning.relay_core])
    load_core = core_busy_pct(start["cores"][pinning.load_core], end["cores"][pinning.load_core])
    if relay_pct is not None:
        out["other_load_relay_core_pct"] = max(0.0, relay_core - relay_pct)
    out["other_load_load_core_pct"] = max(0.0, load_core - load_pct)
    return out


def _delta(before: Any, after: Any) -> dict[str, int] | None:
    if not isinstance(before, dict) or not isinstance(after, dict):
        return None
    return {k: after[k] - before.get(k, 0) if k != "open" else after[k] for k in after}


async def _hang_up(calls: list[SimCall], frontends: list[SimFrontend]) -> None:
    """Send ``stop`` on every call; wait for the relay to close everything; abort what is left."""
    for call in calls:
        call.stop()
    everything: list[WsClient] = [*calls, *frontends]
    pending = [c.closed for c in everything if not c.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=5.0)
    for c in everything:
        if not c.closed.done():
            c.send_close(1000)
    pending = [c.closed for c in everything if not c.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=1.0)
    for c in everything:
        c.abort()
