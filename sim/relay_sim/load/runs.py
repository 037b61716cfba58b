"""Runs: one relay under one load and one set of extras, judged; and the ramp.

Each run gets a fresh relay process, pinned to the relay core, pointed at the fake model of its
variant. A variant is the load's realistic extras:

- ``frontends``: one browser per call on ``/logs`` (relay only: the minimal relays have no
  frontends), and the model streams transcript deltas that relay forwards to it. Every relay
  under test gets the same transcript events from the model; the baselines parse and drop them.
- ``marks``: the calls echo each mark once its audio has played (by default: at once), and the
  baselines send a mark after every 100 ms of audio (relay's ``RELAY_MARK_INTERVAL_MS``) as
  relay always does, so every relay does the same mark work.
- ``tls``: the model leg is ``wss://`` to a loopback TLS model with a throw-away certificate.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from relay_sim.load.drive import Observed, RunSpec, drive
from relay_sim.load.fakemodel import FakeModel
from relay_sim.load.processes import (
    Child,
    HarnessError,
    Pinning,
    free_port,
    rss,
    settle,
    wait_listening,
)
from relay_sim.load.report import format_row
from relay_sim.load.subjects import Subject
from relay_sim.load.verdict import judge

EXTRAS = ("frontends", "marks", "tls")
#: A transcript delta per this many audio deltas when frontends are on (one per 100 ms).
TRANSCRIPT_EVERY = 5
#: relay's default mark interval; the baselines match it in the ``marks`` variant.
MARK_INTERVAL_MS = 100


@dataclass(frozen=True)
class Variant:
    """Which realistic extras a run has on."""

    frontends: bool = False
    marks: bool = False
    tls: bool = False

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``plain`` or extras joined by ``+`` (``frontends+marks``).

        Raises:
            ValueError: an unknown extra.
        """
        names = [] if text == "plain" else text.split("+")
        unknown = [n for n in names if n not in EXTRAS]
        if unknown or not text:
            raise ValueError(f"{text!r}: a variant is 'plain' or extras of {'+'.join(EXTRAS)}")
        return cls(**{n: True for n in names})

    @property
    def name(self) -> str:
        return "+".join(n for n in EXTRAS if getattr(self, n)) or "plain"

    @property
    def model_key(self) -> tuple[int, bool]:
        """What the fake model must do differently for this variant."""
        return (TRANSCRIPT_EVERY if self.frontends else 0, self.tls)


@dataclass
class BenchContext:
    """What every run of one benchmark shares."""

    pinning: Pinning
    models: dict[tuple[int, bool], FakeModel]
    relay_env: Mapping[str, str] = field(default_factory=dict)
    settle_s: float = 0.0
    #: The throw-away certificate the relays trust for the TLS variant.
    ca_file: str | None = None
    #: An already running relay (``--target``) instead of starting one per run.
    target_port: int | None = None
    target_ps: Any = None
    runs: list[dict[str, Any]] = field(default_factory=list)

    def mark_interval_ms(self) -> int:
        return int(self.relay_env.get("RELAY_MARK_INTERVAL_MS", MARK_INTERVAL_MS))


async def start_subject(subject: Subject, model: FakeModel, variant: Variant, calls: int,
                        ctx: BenchContext) -> tuple[Child, int]:
    """Start one relay under test on a free port, on the relay core."""
    port = free_port()
    env = subject.environment(model.url, port, calls,
                              ca_file=ctx.ca_file if variant.tls else None, relay_env=ctx.relay_env)
    argv = subject.command(port, model.url, ctx.mark_interval_ms() if variant.marks else 0)
    child = await Child.spawn(subject.name, argv, env, cwd=subject.cwd, core=ctx.pinning.relay_core)
    try:
        await wait_listening(port, child)
    except BaseException:
        await child.stop()
        raise
    return child, port


async def run_once(subject: Subject, variant: Variant, spec: RunSpec,
                   ctx: BenchContext) -> dict[str, Any]:
    """Start the relay under test (unless targeting one), drive one run, stop it, judge."""
    print(f"… {subject.name} ({variant.name}): {spec.calls} calls, {spec.duration:g} s",
          file=sys.stderr, flush=True)
    settled = await settle(ctx.pinning, ctx.settle_s) if ctx.settle_s > 0 else (0.0, None)
    model = ctx.models[variant.model_key]
    spec = replace(spec, frontends=variant.frontends and not subject.baseline,
                   play_marks=variant.marks)
    child: Child | None = None
    budget = spec.connect_timeout + spec.warmup + spec.duration + spec.drain + 60
    try:
        async with asyncio.timeout(budget):
            if ctx.target_port is not None:
                port, ps = ctx.target_port, ctx.target_ps
            else:
                child, port = await start_subject(subject, model, variant, spec.calls, ctx)
                ps = child.ps
            await asyncio.sleep(0.5)  # let the process settle before the idle RSS
            rss_idle = rss(ps)
            observed = Observed(ctx.pinning, model.ps, model.stats, model.set_after_read)
            result = {"kind": subject.name, "variant": variant.name, "baseline": subject.baseline,
                      **await drive(port, spec, ps, observed)}
            result["relay_exit"] = child.proc.returncode if child is not None else None
            if child is not None and (result["relay_exit"] is not None
                                      or result["calls_live"] < result["calls"]):
                result["relay_log_tail"] = child.tail()
    except TimeoutError:
        raise HarnessError(f"{subject.name} run with {spec.calls} calls overran its "
                           f"{budget:g} s budget") from None
    finally:
        if child is not None:
            await child.stop()
    result["rss_idle_kib"] = None if rss_idle is None else rss_idle / 1024
    at_n, live = result["rss_at_n_kib"], result["calls_live"]
    result["kib_per_session"] = ((at_n - result["rss_idle_kib"]) / live
                                 if at_n is not None and rss_idle is not None and live else None)
    result["settle_wait_s"], result["busiest_core_before_pct"] = settled
    result["verdict"] = judge(result)
    print("  " + format_row(result), file=sys.stderr, flush=True)
    return result


async def ramp(subject: Subject, variant: Variant, base: RunSpec, ctx: BenchContext,
               start: int, maximum: int, max_bisect: int = 4) -> dict[str, Any]:
    """Largest N that holds: double from ``start`` up to ``maximum``, then bisect (bounded).

    A step that fails while flagged HARNESS-LIMITED or NOISY is run once more: one disturbed
    run must not decide the ramp. At most ``log2(maximum/start) + 1 + max_bisect`` steps, each
    run at most twice.
    """
    steps: list[dict[str, Any]] = []

    async def attempt(n: int) -> bool:
        for _ in range(2):
            r = await run_once(subject, variant, replace(base, calls=n), ctx)
            ctx.runs.append(r)
            v = r["verdict"]
            steps.append({"calls": n, "holds": v["holds"], "p99_ms": r["p99_ms"],
                          "lost": r["lost"], "verdict": v["text"]})
            if v["holds"] or not (v["harness_limited"] or v["noisy"]):
                break
        return v["holds"]

    hold, fail = 0, None
    n = min(start, maximum)
    while True:
        if await attempt(n):
            hold = n
            if n >= maximum:
                break
            n = min(n * 2, maximum)
        else:
            fail = n
            break
    for _ in range(max_bisect):
        if fail is None or fail - hold <= max(2, fail // 20):
            break
        mid = (hold + fail) // 2
        if await attempt(mid):
            hold = mid
        else:
            fail = mid
    last = [s for s in steps if s["calls"] == fail][-1:]
    return {"kind": subject.name, "variant": variant.name, "largest_holding": hold,
            "first_failing": fail, "ceiling_reached": fail is None,
            "harness_limited_failure": bool(last) and "[" in last[0]["verdict"],
            "steps": steps}
