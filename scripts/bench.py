#!/usr/bin/env python
"""relay's benchmark: how many phone calls one core carries, and what each one costs.

Usage (from the repository root, with the project's virtualenv)::

    .venv/bin/python scripts/bench.py --calls 1,50,200,250 --duration 10 [--markdown] [--json FILE]
    .venv/bin/python scripts/bench.py --calls 200 --frontends --marks --tls
    .venv/bin/python scripts/bench.py --calls 200 --relay-ref 21e8cb2
    .venv/bin/python scripts/bench.py --ramp [--ramp-max 500] --relays relay

For each run it starts the relay under test on a free loopback port, pointed at a lean echoing
fake model (:mod:`relay_sim.echo_model`), and drives N simulated Twilio calls. Each call sends
real-shaped ``media`` frames every 20 ms; the calls' schedules are staggered evenly across one
20 ms period, as independent phones would be. After a warm-up (``--warmup``, default 2 s) the
measurement window runs for ``--duration`` seconds; then every call sends ``stop``, the echoes
still in flight get ``--drain`` seconds, and the relay process is stopped. Each run gets a
fresh relay. Every frame is tagged, so its round trip, loss and misrouting are measured.

The relays under test (``--relays``, default ``relay,python,node``), one after the other under
identical load at each N: relay (``python -m relay``), the minimal Python relay
(``scripts/baseline_relay.py``: websockets, orjson, uvloop) and the minimal Node relay
(``scripts/node-baseline/``: ``ws``; installed with ``npm ci`` when missing). The report prints
relay's ratios to both baselines: on a noisy machine only ratios from one run are comparable.
``--relay-ref REF`` adds another commit of relay (checked out with ``git worktree`` into a
temporary directory) as a row of the same run, for before-and-after; ``--relay-dir PATH`` adds
a checkout that already exists.

The realistic extras, each a row of its own next to the plain one (``--variants`` names any
combination, e.g. ``plain,frontends+marks,tls``):

- ``--frontends``: one browser per call on ``/logs`` (relay only: the baselines have none); the
  model streams a transcript delta per 100 ms of audio, which relay forwards to it.
- ``--marks``: calls echo relay's marks once the audio before them has played, as Twilio does
  (plain: at once); the baselines then send a mark per 100 ms of audio too.
- ``--tls``: the model leg is ``wss://`` to a loopback TLS model with a throw-away certificate
  (made with ``openssl``), trusted through ``SSL_CERT_FILE`` (Python) or
  ``NODE_EXTRA_CA_CERTS`` (Node).

Measured per run: p50/p99/max round-trip latency; frames sent/received/lost/misrouted; the relay
process's CPU time (user+system, psutil) over the window, as CPU-seconds per call-minute and as %
of its core; its RSS idle and with N live calls, as KiB per session; and the harness itself, so a
harness limit is never misread as the relay's: the load generator's CPU (``loadgen CPU%``, which
includes the fake model when it shares the event loop, the default), the send-schedule slip, and
how much of each pinned core other processes used. A verdict says ``holds`` (every call live,
zero lost and misrouted, p99 ≤ 50 ms) or which criterion failed, then what is over budget, then
``[HARNESS-LIMITED: …]`` or ``[NOISY: …]`` when the figures should not be trusted. With two or
more cores the relay is pinned to the first core and the load generator and fake model to the
second.

``--ramp`` finds the largest N that holds by doubling from 25 up to ``--ramp-max``, then
bisecting (bounded). ``--target ws://127.0.0.1:PORT`` measures a relay that is already running
(start ``python -m relay_sim.echo_model --port P``, point its ``OPENAI_REALTIME_URL`` there, then
pass ``--model-url``); only loopback is ever contacted.

Exit status: 0 when the benchmark ran (whatever the verdicts), 2 on a harness error (a process
did not start, a run overran its time budget, bad arguments, a bug in the harness).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil
from relay_sim.load.drive import RunSpec
from relay_sim.load.fakemodel import FakeModel, external_model, start_fake_model
from relay_sim.load.fleetbench import fleet_bench, format_fleet
from relay_sim.load.processes import HarnessError, Pinning, raise_fd_limit, wait_listening
from relay_sim.load.report import ratio_rows, report
from relay_sim.load.runs import BenchContext, Variant, ramp, run_once
from relay_sim.load.subjects import (
    Subject,
    Worktree,
    bench_relay_settings,
    checkout,
    node_baseline,
    python_baseline,
    this_relay,
)
from relay_sim.load.tlscert import throwaway_certificate, trust_bundle
from relay_sim.load.verdict import CRITERIA

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent
KINDS = ("relay", "python", "node")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--relays", default=",".join(KINDS),
                   help="what to measure, in order: any of relay,python,node (default all three)")
    p.add_argument("--relay-ref", metavar="REF", action="append", default=[],
                   help="also measure relay at this git commit (repeatable), e.g. 21e8cb2")
    p.add_argument("--relay-dir", metavar="PATH", action="append", default=[],
                   help="also measure the relay checked out in PATH (repeatable)")
    p.add_argument("--calls", default="1,50,200,250",
                   help="concurrent calls: N or a list like 1,50,200,250 (default)")
    p.add_argument("--duration", type=float, default=20.0, help="measurement window, s (default 20)")
    p.add_argument("--warmup", type=float, default=None,
                   help="streaming before the window, s (default: min(2, duration))")
    p.add_argument("--drain", type=float, default=2.0,
                   help="grace after the window for echoes still in flight, s (default 2)")
    p.add_argument("--connect-timeout", type=float, default=None,
                   help="time for all calls to go live, s (default 10 + N/25)")
    p.add_argument("--frontends", action="store_true",
                   help="add a row with one /logs frontend per call and transcript events")
    p.add_argument("--marks", action="store_true",
                   help="add a row where calls echo marks after their audio played")
    p.add_argument("--tls", action="store_true", help="add a row with TLS on the model leg")
    p.add_argument("--variants", metavar="LIST",
                   help="the rows' extras, e.g. plain,frontends+marks,tls (default: plain, each "
                        "extra flag given, and all of them together when two or more are)")
    p.add_argument("--rounds", type=int, default=1, metavar="R",
                   help="measure every relay R times at each N and extras, alternating their "
                        "order; ratios divide the medians (default 1)")
    p.add_argument("--fleet", type=int, default=0, metavar="N",
                   help="the fleet benchmark instead: Redis, N relay nodes and HAProxy; the "
                        "calls (with frontends) through HAProxy, direct on one node, and "
                        "bridged across two; Redis commands per session and per second")
    p.add_argument("--ramp", action="store_true", help="find the largest N that holds")
    p.add_argument("--ramp-start", type=int, default=25, help="first N of the ramp (default 25)")
    p.add_argument("--ramp-max", type=int, default=500, help="largest N the ramp tries (default 500)")
    p.add_argument("--settle", type=float, default=30.0, metavar="S",
                   help="before each run, wait up to S seconds for the cores in use to be idle "
                        "(≤ 10%% busy for a second), for a shared machine; 0: don't (default 30)")
    p.add_argument("--json", metavar="FILE", help="write every figure to FILE as JSON")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables (for the README)")
    p.add_argument("--relay-cmd", metavar="CMD",
                   help="command that starts relay instead of 'python -m relay' (to measure a "
                        "variant; it gets the same environment, PORT included)")
    p.add_argument("--relay-env", metavar="KEY=VALUE", action="append", default=[],
                   help="extra environment for relay (repeatable), e.g. RELAY_MARK_INTERVAL_MS=200")
    p.add_argument("--target", metavar="URL",
                   help="an already running relay on loopback (ws://127.0.0.1:PORT) instead of "
                        "starting one; point its OPENAI_REALTIME_URL at the fake model "
                        "(see --model-port / --model-url); it is pinned to the relay core")
    p.add_argument("--target-pid", type=int, help="its process ID, for CPU and RSS")
    p.add_argument("--model-port", type=int, default=0,
                   help="port of the fake model this benchmark starts (default: a free one)")
    p.add_argument("--model-url", help="use an already running fake model (python -m relay_sim.echo_model)")
    p.add_argument("--model-process", action="store_true",
                   help="run the fake model as its own process on the load core instead of in "
                        "the load generator's event loop (default: same loop, which keeps the "
                        "send schedule on time; the load core's CPU%% then includes the model)")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--no-uvloop", action="store_true", help="load generator on asyncio's own loop")
    args = p.parse_args(argv)
    args.argv = argv
    try:
        args.call_counts = [int(x) for x in args.calls.split(",") if x.strip()]
    except ValueError:
        p.error("--calls takes N or a comma-separated list of N")
    if not args.call_counts or min(args.call_counts) < 1:
        p.error("--calls must be positive")
    if args.rounds < 1:
        p.error("--rounds must be positive")
    if args.duration <= 0 or args.ramp_start < 1 or args.ramp_max < args.ramp_start:
        p.error("--duration must be positive and --ramp-start ≤ --ramp-max")
    if any("=" not in kv for kv in args.relay_env):
        p.error("--relay-env takes KEY=VALUE")
    args.kinds = [k.strip() for k in args.relays.split(",") if k.strip()]
    if not args.kinds and not (args.relay_ref or args.relay_dir) or set(args.kinds) - set(KINDS):
        p.error(f"--relays takes a list of {','.join(KINDS)}")
    try:
        args.variant_list = _variants(args)
    except ValueError as exc:
        p.error(str(exc))
    if args.warmup is None:
        args.warmup = min(2.0, args.duration)
    for url in (args.target, args.model_url):
        if url is not None and not url.startswith(("ws://127.0.0.1:", "ws://localhost:")):
            p.error(f"{url}: the benchmark only talks to loopback (ws://127.0.0.1:PORT)")
    if (args.target or args.model_url) and (len(args.variant_list) > 1
                                            or args.variant_list[0].tls):
        p.error("--target and --model-url measure one variant without tls (the model is not "
                "ours: start it with --transcript-every for frontends)")
    return args


def _variants(args: argparse.Namespace) -> list[Variant]:
    if args.variants:
        return [Variant.parse(v.strip()) for v in args.variants.split(",") if v.strip()]
    flags = [e for e in ("frontends", "marks", "tls") if getattr(args, e)]
    variants = [Variant(), *(Variant(**{e: True}) for e in flags)]
    if len(flags) >= 2:
        variants.append(Variant(**{e: True for e in flags}))
    return variants


def metadata(args: argparse.Namespace, pinning: Pinning, loop_name: str,
             subjects: list[Subject]) -> dict[str, Any]:
    """What the report says about the machine and the configuration."""
    import websockets

    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    node = shutil.which("node")
    node_version = (subprocess.run([node, "--version"], capture_output=True, text=True,
                                   check=False).stdout.strip() if node else "")
    ws = SCRIPTS / "node-baseline" / "node_modules" / "ws" / "package.json"
    ws_version = json.loads(ws.read_text())["version"] if ws.is_file() else "not installed"
    relay_env = (" ".join(f"{k}={v}" for k, v in bench_relay_settings(0).items()
                          if k != "RELAY_MAX_SESSIONS")
                 + " RELAY_MAX_SESSIONS=max(1000,N) " + " ".join(args.relay_env))
    return {
        "command": "scripts/bench.py " + " ".join(shlex.quote(a) for a in args.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "websockets": websockets.__version__,
        "node": f"Node {node_version.lstrip('v')} ws {ws_version}" if node else "no Node",
        "loop": loop_name, "pinning": pinning.note,
        "criteria": asdict(CRITERIA),
        "duration_s": args.duration, "warmup_s": args.warmup,
        "variants": [v.name for v in args.variant_list],
        "subjects": [{"name": s.name, "argv": list(s.argv), "cwd": str(s.cwd)} for s in subjects],
        "relay_cmd": f"the relay at {args.target}" if args.target else args.relay_cmd or "python -m relay",
        "relay_env": relay_env if not args.target else "its own configuration",
        "baselines": "python = scripts/baseline_relay.py (websockets, orjson, uvloop); "
                     "node = scripts/node-baseline/relay.js (ws)",
        "model": ("external " + args.model_url) if args.model_url else
                 ("own process" if args.model_process else "in the load generator's event loop"),
    }


async def _subjects(args: argparse.Namespace, stack: contextlib.AsyncExitStack) -> list[Subject]:
    subjects = []
    for kind in args.kinds:
        if kind == "relay":
            subjects.append(this_relay(REPO, shlex.split(args.relay_cmd) if args.relay_cmd else None))
        elif kind == "python":
            subjects.append(python_baseline(SCRIPTS))
        else:
            subjects.append(node_baseline(SCRIPTS))
    for ref in args.relay_ref:
        tree = await stack.enter_async_context(Worktree(REPO, ref))
        subjects.append(checkout(tree.path, tree.label))
    for directory in args.relay_dir:
        path = Path(directory).resolve()
        if not (path / "relay" / "__main__.py").is_file():
            raise HarnessError(f"{path}: no relay package there (relay/__main__.py)")
        subjects.append(checkout(path, path.name))
    return subjects


async def _models(args: argparse.Namespace, pinning: Pinning,
                  stack: contextlib.AsyncExitStack) -> tuple[dict[tuple[int, bool], FakeModel], str | None]:
    if args.model_url:
        return {v.model_key: external_model(args.model_url) for v in args.variant_list}, None
    tls = bundle = None
    if any(v.tls for v in args.variant_list):
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="relay-bench-tls-")))
        tls = throwaway_certificate(directory)
        bundle = trust_bundle(tls[0], directory)
    models: dict[tuple[int, bool], FakeModel] = {}
    for variant in args.variant_list:
        key = variant.model_key
        if key not in models:
            models[key] = await start_fake_model(
                pinning, cwd=REPO, process=args.model_process,
                port=0 if models else args.model_port,
                transcript_every=key[0], tls=tls if key[1] else None)
            stack.push_async_callback(models[key].close)
    return models, str(bundle) if bundle else None


async def bench(args: argparse.Namespace, pinning: Pinning, loop_name: str) -> dict[str, Any]:
    """Run every requested measurement; return the JSON document of results."""
    async with contextlib.AsyncExitStack() as stack:
        models, ca_file = await _models(args, pinning, stack)
        subjects = [Subject("target", (), REPO)] if args.target else await _subjects(args, stack)
        ctx = BenchContext(pinning, models, dict(kv.split("=", 1) for kv in args.relay_env),
                           args.settle, ca_file)
        if args.target:
            ctx.target_port = int(args.target.rstrip("/").rsplit(":", 1)[1])
            pid = args.target_pid or _listener_pid(ctx.target_port)
            ctx.target_ps = psutil.Process(pid) if pid else None
            if pid:
                ctx.pinning.pin(pid, ctx.pinning.relay_core)
            await wait_listening(ctx.target_port, None, 5)

        def spec(n: int) -> RunSpec:
            timeout = args.connect_timeout if args.connect_timeout is not None else 10 + n / 25
            return RunSpec(n, args.duration, args.warmup, args.drain, timeout)

        doc: dict[str, Any] = {"meta": metadata(args, pinning, loop_name, subjects), "runs": ctx.runs}
        if args.ramp:
            doc["ramp"] = [await ramp(s, v, spec(args.ramp_start), ctx, args.ramp_start, args.ramp_max)
                           for v in args.variant_list for s in subjects]
        else:
            for n in args.call_counts:
                for variant in args.variant_list:
                    for round_ in range(args.rounds):
                        # Alternate the order, so that no relay always runs first.
                        for subject in subjects if round_ % 2 == 0 else subjects[::-1]:
                            ctx.runs.append(await run_once(subject, variant, spec(n), ctx))
        doc["ratios"] = ratio_rows(ctx.runs)
        return doc


def _listener_pid(port: int) -> int | None:
    """The process listening on a loopback port, if this user may see it."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return conn.pid
    except psutil.Error:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    raise_fd_limit()
    pinning = Pinning.plan(not args.no_pin)
    pinning.pin(0, pinning.load_core)  # this process, before its loop starts
    loop_name = "asyncio"
    runner: Callable[[Any], Any] = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            runner, loop_name = uvloop.run, "uvloop"
    if args.fleet:
        return fleet_main(args, pinning, runner)
    try:
        doc = runner(bench(args, pinning, loop_name))
    except HarnessError as exc:
        print(f"bench: harness error: {exc}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001  (a bug in the harness: report it, never a result)
        traceback.print_exc()
        print("bench: harness error (see the traceback above)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 2
    print(report(doc, args.markdown))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return 0


def fleet_main(args: argparse.Namespace, pinning: Pinning, runner: Callable[[Any], Any]) -> int:
    """``--fleet N``: one run of each mode at the first ``--calls`` value."""
    calls = args.call_counts[0]
    warmup = args.warmup if args.warmup is not None else min(2.0, args.duration)
    spec = RunSpec(calls=calls, duration=args.duration, warmup=warmup, drain=args.drain,
                   connect_timeout=args.connect_timeout or 10 + calls / 25)
    try:
        doc = runner(fleet_bench(REPO, max(2, args.fleet), spec, pinning))
    except HarnessError as exc:
        print(f"bench: harness error: {exc}", file=sys.stderr)
        return 2
    print(f"scripts/bench.py --fleet {args.fleet} --calls {calls} --duration {args.duration:g}")
    print(f"{platform.processor() or platform.machine()} · {os.cpu_count()} cores · "
          f"Python {platform.python_version()} · {pinning.note}")
    print(format_fleet(doc))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
