"""What a run must show, and the verdict on one run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Criteria:
    """The performance targets; ``holds`` means the latency and loss ones."""

    calls: int = 300
    p99_ms: float = 50.0
    cpu_s_per_call_min: float = 0.25
    kib_per_session: float = 100.0
    #: relay's CPU per call-minute as a multiple of the minimal Node relay's, same run.
    node_cpu_ratio: float = 0.8
    #: Above these the harness, not the relay, may be what was measured.
    harness_cpu_pct: float = 90.0
    harness_slip_p99_ms: float = 5.0
    #: Above this, processes outside the benchmark competed for a pinned core.
    other_load_pct: float = 15.0

    def describe(self) -> str:
        """One line for the report."""
        return (f"target: {self.calls} calls on one core, p99 ≤ {self.p99_ms:g} ms, zero loss and "
                f"misrouted, ≤ {self.cpu_s_per_call_min:g} CPU-s per call-minute and "
                f"≤ {self.node_cpu_ratio:g}× the Node relay's, "
                f"≤ {self.kib_per_session:g} KiB per live session")


CRITERIA = Criteria()


def fmt(value: float | None, digits: int = 1) -> str:
    """A figure for a table cell (``n/a`` when unknown)."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def judge(r: dict[str, Any], c: Criteria = CRITERIA) -> dict[str, Any]:
    """Verdict of one run: whether it holds, what failed, what is over budget, harness doubts."""
    fails = []
    if r["relay_exit"] is not None:
        fails.append(f"relay exited ({r['relay_exit']})")
    if r["calls_live"] < r["calls"]:
        fails.append(f"{r['calls'] - r['calls_live']} calls not live")
    if r["lost"]:
        fails.append(f"loss {r['lost']}")
    if r["misrouted"]:
        fails.append(f"misrouted {r['misrouted']}")
    if r["p99_ms"] is None or r["p99_ms"] > c.p99_ms:
        fails.append(f"p99 {fmt(r['p99_ms'])}>{c.p99_ms:g} ms")
    budget = []
    cpu, kib = r["cpu_s_per_call_min"], r["kib_per_session"]
    if cpu is not None and cpu > c.cpu_s_per_call_min:
        budget.append(f"CPU {cpu:.3g}>{c.cpu_s_per_call_min:g}")
    if kib is not None and kib > c.kib_per_session:
        budget.append(f"KiB {kib:.0f}>{c.kib_per_session:g}")
    harness = []
    if r["loadgen_cpu_pct"] >= c.harness_cpu_pct:
        harness.append(f"loadgen CPU {r['loadgen_cpu_pct']:.0f}%")
    core1 = r["loadgen_cpu_pct"] + (r["model_cpu_pct"] or 0.0)
    if r["pinned"] and core1 >= c.harness_cpu_pct:
        harness.append(f"load core {core1:.0f}% busy")
    if r["slip_p99_ms"] is not None and r["slip_p99_ms"] > c.harness_slip_p99_ms:
        harness.append(f"tick slip p99 {r['slip_p99_ms']:.1f} ms")
    noisy = []
    for key, core in (("other_load_relay_core_pct", "relay"), ("other_load_load_core_pct", "load")):
        other = r.get(key)
        if other is not None and other >= c.other_load_pct:
            noisy.append(f"other processes used {other:.0f}% of the {core} core")
    text = "holds" if not fails else "fails: " + ", ".join(fails)
    if budget:
        text += " (over budget: " + ", ".join(budget) + ")"
    if harness:
        text += " [HARNESS-LIMITED: " + ", ".join(harness) + "]"
    if noisy:
        text += " [NOISY: " + ", ".join(noisy) + "]"
    return {"holds": not fails, "fails": fails, "over_budget": budget,
            "harness_limited": harness, "noisy": noisy, "text": text}
