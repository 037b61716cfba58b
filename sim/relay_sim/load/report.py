"""The benchmark's printed tables: every run, relay's ratios to the baselines, the ramp."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from relay_sim.load.verdict import CRITERIA, fmt

COLUMNS = ("relay", "extras", "N", "p50 ms", "p99 ms", "max ms", "lost", "misrouted",
           "CPU-s/call-min", "KiB/session", "relay CPU%", "loadgen CPU%", "slip p99 ms", "verdict")
#: The minimal relays every other kind is compared with.
BASELINES = ("python", "node")
_RATIO_KEYS = ("cpu_s_per_call_min", "p99_ms", "kib_per_session")

EXTRAS_NOTE = {
    "frontends": "frontends: one /logs browser per call (relay only) and a transcript delta "
                 "per 100 ms of model audio (to every relay)",
    "marks": "marks: calls echo each mark once its audio has played; the baselines send a "
             "mark per 100 ms of audio as relay does",
    "tls": "tls: wss:// to a loopback TLS model (throw-away certificate)",
}


def row_cells(r: dict[str, Any]) -> list[str]:
    """One run as table cells."""
    live = f"{r['calls']}" if r["calls_live"] == r["calls"] else f"{r['calls_live']}/{r['calls']}"
    return [r["kind"], r.get("variant", "plain"), live, fmt(r["p50_ms"]), fmt(r["p99_ms"]),
            fmt(r["max_ms"]), f"{r['lost']}/{r['frames_sent']}", str(r["misrouted"]),
            fmt(r["cpu_s_per_call_min"], 3), fmt(r["kib_per_session"], 0),
            fmt(r["relay_cpu_pct"], 0), fmt(r["loadgen_cpu_pct"], 0), fmt(r["slip_p99_ms"], 2),
            r["verdict"]["text"]]


def format_row(r: dict[str, Any]) -> str:
    """One run on one line (the progress printed as the benchmark goes)."""
    return "  ".join(row_cells(r))


def _ratio(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None or y == 0 else x / y


def _medians(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in _RATIO_KEYS:
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = statistics.median(values) if values else None
    return out


def ratio_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each relay's figures over each baseline's, per N and extras (one benchmark's comparison).

    Ratios between runs of one benchmark are what holds on a noisy machine; absolute figures
    move ±25 % between identical runs. With several rounds, each figure is the median of its
    rounds before it is divided.
    """
    grouped: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in runs:
        grouped.setdefault((r["kind"], r.get("variant", "plain"), r["calls"]), []).append(r)
    by = {key: _medians(group) for key, group in grouped.items()}
    rows = []
    for (kind, variant, n), r in by.items():
        if kind in BASELINES:
            continue
        row: dict[str, Any] = {"kind": kind, "variant": variant, "calls": n,
                               "rounds": len(grouped[(kind, variant, n)])}
        for base in BASELINES:
            b = by.get((base, variant, n))
            for key in _RATIO_KEYS:
                row[f"{key}/{base}"] = _ratio(r[key], b[key]) if b else None
        if kind != "relay" and ("relay", variant, n) in by:
            now = by[("relay", variant, n)]
            for key in _RATIO_KEYS:
                row[f"{key}/relay"] = _ratio(now[key], r[key])
        rows.append(row)
    return rows


def _table(header: Iterable[str], rows: list[list[str]], markdown: bool) -> str:
    header = list(header)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    text = lambda i: i in (0, 1, len(header) - 1)  # noqa: E731  (left-aligned columns)
    fmt_row = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if text(i) else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()
    return "\n".join([fmt_row(header), fmt_row(["-" * w for w in widths]),
                      *(fmt_row(r) for r in rows)])


def _target(row: dict[str, Any]) -> str:
    ratio = row.get("cpu_s_per_call_min/node")
    if row["kind"] != "relay" or ratio is None:
        return ""
    return "meets" if ratio <= CRITERIA.node_cpu_ratio else "misses"


def ratio_tables(rows: list[dict[str, Any]], markdown: bool) -> list[str]:
    """relay (and other checkouts) over the baselines; then relay over each other checkout."""
    out = []
    if rows:
        header = ("relay", "extras", "N", "CPU ÷python", "CPU ÷node", "p99 ÷python",
                  "p99 ÷node", "KiB ÷python", "KiB ÷node",
                  f"CPU ≤ {CRITERIA.node_cpu_ratio:g}× node")
        cells = [[x["kind"], x["variant"], str(x["calls"]),
                  *(fmt(x[f"{key}/{base}"], 2) for key in _RATIO_KEYS for base in BASELINES),
                  _target(x)] for x in rows]
        rounds = max(x.get("rounds", 1) for x in rows)
        note = [f"each figure the median of its {rounds} rounds"] if rounds > 1 else []
        out.append("\n".join([*note, _table(header, cells, markdown)]))
    before = [x for x in rows if "cpu_s_per_call_min/relay" in x]
    if before:
        header = ("before", "extras", "N", "CPU relay÷before", "p99 relay÷before",
                  "KiB relay÷before")
        out.append(_table(header, [[x["kind"], x["variant"], str(x["calls"]),
                                    *(fmt(x[f"{key}/relay"], 2) for key in _RATIO_KEYS)]
                                   for x in before], markdown))
    return out


def format_ramp(result: dict[str, Any], markdown: bool) -> str:
    """The ramp's verdict lines."""
    hold, fail = result["largest_holding"], result["first_failing"]
    head = (f"ramp {result['kind']} ({result.get('variant', 'plain')}): holds up to N = {hold}"
            + (" (ceiling --ramp-max reached)" if result["ceiling_reached"] else f"; fails at N = {fail}")
            + (" — that failure was flagged HARNESS-LIMITED or NOISY"
               if result["harness_limited_failure"] else ""))
    steps = ", ".join(f"{s['calls']} {'✓' if s['holds'] else '✗'}{'*' if '[' in s['verdict'] else ''}"
                      for s in result["steps"])
    note = " (* flagged HARNESS-LIMITED or NOISY)" if "*" in steps else ""
    return f"**{head}** (steps: {steps}{note})" if markdown else f"{head}\n  steps: {steps}{note}"


def report(doc: dict[str, Any], markdown: bool) -> str:
    """The tables printed at the end (plain text, or Markdown for the README)."""
    meta = doc["meta"]
    lines = [(f"{meta['cpu']} · {meta['cores']} cores · Python {meta['python']} · "
              f"websockets {meta['websockets']} · {meta['node']} · load generator loop: "
              f"{meta['loop']} · {meta['pinning']}"),
             f"relay: {meta['relay_cmd']} with {meta['relay_env'].strip()}",
             f"baselines: {meta['baselines']}",
             *(EXTRAS_NOTE[e] for e in ("frontends", "marks", "tls")
               if any(e in v.split("+") for v in meta["variants"])),
             CRITERIA.describe()]
    if markdown:
        out = [f"`{meta['command']}`", "", *(f"- {line}" for line in lines), ""]
    else:
        out = [meta["command"], "", *lines, ""]
    out.append(_table(COLUMNS, [row_cells(r) for r in doc["runs"]], markdown))
    for table in ratio_tables(doc["ratios"], markdown):
        out += ["", table]
    for result in doc.get("ramp") or []:
        out += ["", format_ramp(result, markdown)]
    return "\n".join(out)
