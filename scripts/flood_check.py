#!/usr/bin/env python
"""Flood a relay from one client and measure /health from another process, printing a table.

Usage::

    python scripts/flood_check.py [--seconds 3] [--interval 0.01] [--no-budget] [--only NAME]
        [--relay-dir DIR]

Starts an echo model and ``python -m relay`` on loopback, then a bystander call streaming
tagged frames in real time, a /health prober in its own process, and each flood of issue 9
in turn (relay_sim.flood). Prints, per flood: the connections it took, how the relay closed
them, how soon, the bytes sent, and /health latency (p50, p99, max, and whether every answer
came within 50 ms); then how many of the bystander's frames were lost. ``--no-budget`` runs
the same with every inbound budget off, to see what the budgets prevent; ``--relay-dir`` runs
another checkout of relay (``git worktree add /tmp/before <commit>``) the same way.

Exits 1 if a flood was not closed with 4029 (budgets on) or the bystander lost a frame.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from relay_sim import flood
from relay_sim.realtime_server import RealtimeServer


async def main_async(args: argparse.Namespace) -> int:
    model = RealtimeServer(echo_audio=True)
    await model.start()
    assert model.url is not None
    try:
        async with flood.relay_process(model.url, budgets=not args.no_budget,
                                       relay_dir=args.relay_dir) as url:
            report = await flood.run(url, model, seconds=args.seconds, interval=args.interval,
                                     only=lambda f: not args.only or f.name in args.only)
    finally:
        await model.stop()
    budgets = "inbound budgets off" if args.no_budget else "inbound budgets at their defaults"
    which = f"relay from {args.relay_dir} (its own defaults)" if args.relay_dir else f"relay, {budgets}"
    print(f"{which}; "
          f"{args.seconds:g} s per flood; /health every {args.interval * 1000:g} ms from "
          "another process")
    print(flood.table(report))
    failed = report.frames_lost or (not args.no_budget and not args.relay_dir and not all(
        r.closed_by_budget for r in report.results))
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long each flood lasts")
    parser.add_argument("--interval", type=float, default=0.01, help="between /health probes")
    parser.add_argument("--no-budget", action="store_true", help="turn the inbound budgets off")
    parser.add_argument("--only", action="append", help="run only this flood (repeatable)")
    parser.add_argument("--relay-dir", help="run the relay of another checkout, to compare")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
