"""The fleet benchmark: the same load through HAProxy across N relay nodes sharing one Redis.

``scripts/bench.py --fleet N`` starts Redis, N relay nodes (fleet mode) and HAProxy, and runs
the benchmark's calls (and one frontend per call) three ways in one run:

- ``haproxy``: calls on ``/call/{id}`` and frontends on ``/logs/{id}`` through HAProxy, which
  hashes both to one node: the normal, direct case;
- ``direct``: calls and frontends on node 1 itself (the fleet's per-node cost);
- ``bridged``: calls on node 1, their frontends on node 2, so every session's events cross
  Redis (the cost of a bridged session against a direct one).

For each: the round trips, loss and misrouting as the benchmark measures them, the CPU of every
node over the run, and the Redis commands it caused — per session (setup and teardown) and per
second (heartbeats; audio never touches Redis). On one machine this shows correctness under
load, the per-session Redis cost and the bridging overhead, not the fleet's capacity: every
process shares the same cores.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psutil
import redis.asyncio as aioredis

from relay_sim.fleet import HAProxy, RedisServer
from relay_sim.load.drive import Observed, RunSpec, drive
from relay_sim.load.fakemodel import start_fake_model
from relay_sim.load.processes import Pinning, cpu_seconds
from relay_sim.load.subjects import bench_relay_settings
from relay_sim.node import RelayNode


async def _commands(url: str) -> int:
    client = aioredis.from_url(url)
    try:
        stats = await client.info("stats")
        return int(stats.get("total_commands_processed", 0))
    finally:
        await client.aclose()


async def fleet_bench(repo: Path, nodes: int, spec: RunSpec, pinning: Pinning) -> dict[str, Any]:
    """Run the three modes once each; every figure, for the report."""
    model = await start_fake_model(pinning, cwd=repo, transcript_every=5)
    redis = RedisServer()
    await redis.start()
    env = {**bench_relay_settings(spec.calls), "OPENAI_REALTIME_URL": model.url,
           "RELAY_FLEET_HEARTBEAT_S": "2", "LOG_LEVEL": "WARNING"}
    relays = [RelayNode(f"n{i + 1}", redis_url=redis.url, env=env) for i in range(nodes)]
    haproxy = None
    try:
        for node in relays:
            await node.start()
        haproxy = HAProxy({node.node_id: node.address for node in relays}, maxconn=4 * spec.calls + 100)
        await haproxy.start()
        procs = [psutil.Process(node.pid) for node in relays if node.pid]
        observed = Observed(pinning, model.ps, model.stats, model.set_after_read)
        modes = {
            "haproxy": (_port(haproxy.url), None),
            "direct": (relays[0].port, None),
            "bridged": (relays[0].port, relays[1 % nodes].port),
        }
        # The fleet's own traffic with no session at all: heartbeats and node loads.
        idle_before, t0 = await _commands(redis.url), time.monotonic()
        await asyncio.sleep(4.0)
        idle_rate = (await _commands(redis.url) - idle_before) / (time.monotonic() - t0)
        rows = []
        for mode, (port, frontend_port) in modes.items():
            await _idle(relays)
            await asyncio.sleep(1.0)  # releases of the last run's sessions reach Redis
            before_cmds = await _commands(redis.url)
            before_cpu = [cpu_seconds(p) or 0.0 for p in procs]
            started = time.monotonic()
            run = RunSpec(**{**spec.__dict__, "frontends": True, "call_path_session": True,
                             "frontend_port": frontend_port})
            figures = await drive(port, run, None, observed)
            elapsed = time.monotonic() - started
            cpu = [(cpu_seconds(p) or 0.0) - b for p, b in zip(procs, before_cpu, strict=True)]
            commands = await _commands(redis.url) - before_cmds
            heartbeat_commands = idle_rate * elapsed
            per_session = max(0.0, commands - heartbeat_commands) / max(1, spec.calls)
            call_minutes = spec.calls * elapsed / 60
            rows.append({
                "mode": mode, "calls": spec.calls, "p50_ms": figures.get("p50_ms"),
                "p99_ms": figures.get("p99_ms"), "lost": figures.get("lost"),
                "misrouted": figures.get("misrouted"), "received": figures.get("frames_received"),
                "expected": figures.get("frames_sent"),
                "frontend_messages": figures.get("frontend_messages"),
                "cpu_s_per_call_min": sum(cpu) / call_minutes if call_minutes else None,
                "cpu_by_node": [round(c, 2) for c in cpu],
                "redis_commands": commands, "redis_per_session": round(per_session, 1),
                "redis_idle_per_s": round(idle_rate, 1),
            })
        return {"nodes": nodes, "rows": rows}
    finally:
        if haproxy is not None:
            await haproxy.stop()
        for node in relays:
            await node.terminate()
        await redis.kill()
        await model.close()


async def _idle(relays: list[RelayNode], timeout: float = 30.0) -> None:
    # The last run's sessions are torn down (and released in Redis) before anything is measured.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        docs = [await node.health() for node in relays]
        if all(doc.get("sessions") == 0 for doc in docs):
            return
        await asyncio.sleep(0.2)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def format_fleet(doc: dict[str, Any]) -> str:
    """The fleet table, as the benchmark prints it."""
    head = ("mode", "N", "p50 ms", "p99 ms", "lost", "misrouted", "frontend msgs",
            "CPU-s/call-min (all nodes)", "CPU-s by node", "Redis cmds/session", "Redis idle cmds/s")
    lines = ["  ".join(head)]
    for r in doc["rows"]:
        lost = f"{r['lost']}/{r['expected']}" if r.get("expected") is not None else str(r["lost"])
        cpu = r["cpu_s_per_call_min"]
        lines.append("  ".join(str(x) for x in (
            r["mode"], r["calls"], _f(r["p50_ms"]), _f(r["p99_ms"]), lost, r["misrouted"],
            r["frontend_messages"], _f(cpu, 3), r["cpu_by_node"], r["redis_per_session"],
            r["redis_idle_per_s"])))
    return "\n".join(lines)


def _f(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
