"""``scripts/fleet``: Redis, N relay nodes and HAProxy on this machine, for a demo.

    scripts/fleet up [--nodes 3] [--port 8080]   start them; print their URLs
    scripts/fleet status                          is each one up, and what does it say
    scripts/fleet down                            stop them all

``up`` starts the processes in the background (each in its own process group, its output in
``.fleet/<name>.log``), writes their PIDs to ``.fleet/state.json`` and returns; ``status`` and
``down`` read that file. The nodes inherit this shell's environment (without
``OPENAI_API_KEY`` they run the built-in local model) plus ``--env NAME=VALUE``; the harness
sets ``PORT``, ``HOST``, ``RELAY_NODE_ID`` and ``RELAY_REDIS_URL`` itself.

Exit status: 0 when it did what was asked (``status``: everything is up), 1 when something
failed or is down, 2 on a bad argument, 3 from ``status`` when no fleet is up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from relay_sim.fleet import Fleet
from relay_sim.haproxy import server_rows
from relay_sim.processes import ProcessError, group_members, kill_group, poll
from relay_sim.redis_server import ping

STATE = "state.json"


# -- processes named in the state file ------------------------------------------------------------


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[19]) if len(fields) > 19 and fields[0] != "Z" else None


def alive(entry: dict[str, Any]) -> bool:
    """Whether the process ``entry`` names still runs (and is the one that was started)."""
    ticks = start_ticks(entry["pid"])
    return ticks is not None and ticks == entry.get("startTicks", ticks)


def left(entry: dict[str, Any]) -> list[int]:
    """The processes left in the group of ``entry`` (its leader may be gone, its forks not)."""
    if not alive(entry) and start_ticks(entry["pid"]) is not None:
        return []  # the pid now belongs to another process: not ours to stop
    return group_members(entry["pid"])


def entries(state: dict[str, Any]) -> list[dict[str, Any]]:
    """HAProxy, the nodes and Redis."""
    return [e for e in (state.get("haproxy"), *state.get("nodes", []), state.get("redis")) if e]


def read_state(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / STATE).read_text())
    except FileNotFoundError:
        return None


def _entry(name: str, pid: int | None, **fields: Any) -> dict[str, Any]:
    assert pid is not None
    return {"name": name, "pid": pid, "startTicks": start_ticks(pid), **fields}


# -- commands -------------------------------------------------------------------------------------


async def up(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir
    state = read_state(run_dir)
    if state is not None and any(left(e) for e in entries(state)):
        print(f"fleet: already up ({run_dir / STATE}); see scripts/fleet status, or "
              "scripts/fleet down first", file=sys.stderr)
        return 1
    try:
        check_port_free(args.port)
    except OSError as exc:
        print(f"fleet: port {args.port} is taken ({exc.strerror}); pick another with --port",
              file=sys.stderr)
        return 1
    run_dir.mkdir(parents=True, exist_ok=True)
    for old_log in run_dir.glob("*.log"):  # each log tells of this fleet alone
        old_log.unlink()
    env = dict(pair.split("=", 1) for pair in args.env)
    fleet = Fleet(args.nodes, env=env, base_env=os.environ, haproxy_port=args.port,
                  stats_port=args.stats_port or None, check_inter="1s",
                  ready_timeout=args.timeout, run_dir=run_dir, detached=True)
    try:
        await fleet.start()
    except (ProcessError, TimeoutError) as exc:
        print(f"fleet: could not start: {exc}\n(logs in {run_dir}/)", file=sys.stderr)
        return 1
    assert fleet.redis is not None and fleet.haproxy is not None
    state = {
        "startedAt": time.time(),
        "runDir": str(run_dir),
        "redis": _entry("redis", fleet.redis.pid, url=fleet.redis.url, port=fleet.redis.port,
                        log=str(run_dir / "redis.log")),
        "nodes": [_entry(node.node_id, node.pid, url=node.url, port=node.port,
                         log=str(run_dir / f"{node.node_id}.log")) for node in fleet.nodes],
        "haproxy": _entry("haproxy", fleet.haproxy.pid, url=fleet.haproxy.ws_url,
                          http=fleet.haproxy.url, port=fleet.haproxy.port,
                          stats=fleet.haproxy.stats_url, config=str(fleet.haproxy.config_path),
                          log=str(run_dir / "haproxy.log")),
    }
    (run_dir / STATE).write_text(json.dumps(state, indent=2) + "\n")
    print(f"fleet up: {len(fleet.nodes)} relay nodes behind HAProxy, one Redis")
    print(f"  HAProxy    {fleet.haproxy.ws_url}   (/call/{{id}}, /logs/{{id}}; "
          f"{fleet.haproxy.url}/health)")
    print(f"  stats      {fleet.haproxy.stats_url}")
    for node in fleet.nodes:
        print(f"  node {node.node_id:<5} {node.url}   (pid {node.pid})")
    print(f"  Redis      {fleet.redis.url}   (pid {fleet.redis.pid})")
    again = "" if run_dir == Path(".fleet") else f" --run-dir {run_dir}"
    print(f"state and logs in {run_dir}/; stop them with scripts/fleet down{again}")
    return 0


def check_port_free(port: int) -> None:
    """Raise OSError if ``127.0.0.1:port`` cannot be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(
            url, timeout=aiohttp.ClientTimeout(total=2)) as response:
        return response.status, await response.text()


async def status(args: argparse.Namespace) -> int:
    state = read_state(args.run_dir)
    if state is None:
        print(f"fleet: no fleet is up (no {args.run_dir / STATE})")
        return 3
    healthy = True

    def line(label: str, entry: dict[str, Any], ok: bool, detail: str) -> None:
        nonlocal healthy
        healthy = healthy and ok
        print(f"  {label:<10} pid {entry['pid']:<7} {'up' if ok else 'DOWN':<5} "
              f"{entry['url']}   {detail}")

    hap = state["haproxy"]
    detail, ok = "not running", alive(hap)
    if ok:
        try:
            code, text = await _get(hap["stats"] + ";csv")
            detail = "servers: " + ", ".join(f"{row['svname']} {row['status']}"
                                              for row in server_rows(text))
            ok = code == 200
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            detail, ok = f"stats page unreachable ({exc!r})", False
    line("HAProxy", hap, ok, detail)
    for node in state["nodes"]:
        detail, ok = "not running", alive(node)
        if ok:
            try:
                code, text = await _get(node["url"].replace("ws://", "http://") + "/health")
                doc = json.loads(text)
                detail = f"/health {code} {doc.get('status')}, {doc.get('sessions')} sessions"
                ok = code == 200
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                detail, ok = f"/health unreachable ({exc!r})", False
        line(f"node {node['name']}", node, ok, detail)
    redis = state["redis"]
    ok = alive(redis) and await ping(redis["port"])
    line("Redis", redis, ok, "PONG" if ok else "no answer to PING")
    return 0 if healthy else 1


async def down(args: argparse.Namespace) -> int:
    state = read_state(args.run_dir)
    if state is None:
        print("fleet: no fleet is up")
        return 0
    # The nodes drain first, while HAProxy still carries their sockets and Redis answers.
    phases = [(state.get("nodes", []), args.timeout), ([state.get("haproxy")], 5.0),
              ([state.get("redis")], 5.0)]
    stopped = 0
    for group, timeout in phases:
        targets = [entry for entry in group if entry and left(entry)]
        stopped += len(targets)
        await stop(targets, timeout)
    (args.run_dir / STATE).unlink(missing_ok=True)
    print(f"fleet down: stopped {stopped} of {len(entries(state))} processes")
    return 0


async def stop(targets: list[dict[str, Any]], timeout: float) -> None:
    """SIGTERM each target's process group; SIGKILL what still runs after ``timeout``."""
    for entry in targets:
        kill_group(entry["pid"], signal.SIGTERM)
    try:
        await poll(lambda: not any(left(e) for e in targets), timeout, "the fleet to stop",
                   interval=0.05)
    except TimeoutError:
        for entry in targets:
            if left(entry):
                print(f"fleet: {entry['name']} did not stop in {timeout:g} s: killed",
                      file=sys.stderr)
                kill_group(entry["pid"])
        await poll(lambda: not any(left(e) for e in targets), 5.0, "the fleet to die")


def parser() -> argparse.ArgumentParser:
    """The command line's parser: ``up``, ``status`` and ``down``, each with ``--run-dir``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--run-dir", type=Path, default=Path(".fleet"),
                        help="where the state file and the logs go (default .fleet)")
    p = argparse.ArgumentParser(prog="scripts/fleet", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", parents=[common], help="start Redis, the nodes and HAProxy")
    start.add_argument("--nodes", type=int, default=3, help="relay nodes (default 3)")
    start.add_argument("--port", type=int, default=8080, help="HAProxy's port (default 8080)")
    start.add_argument("--stats-port", type=int, default=0,
                       help="HAProxy's stats page (default: a free port)")
    start.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                       help="set on every node (repeat)")
    start.add_argument("--timeout", type=float, default=30.0,
                       help="seconds each process may take to start")
    sub.add_parser("status", parents=[common], help="show whether each process is up")
    stop = sub.add_parser("down", parents=[common], help="stop them all")
    stop.add_argument("--timeout", type=float, default=15.0,
                      help="seconds the nodes may drain before they are killed")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status."""
    cli = parser()
    args = cli.parse_args(argv)
    if args.command == "up":
        if args.nodes < 1:
            cli.error("--nodes must be at least 1")
        if any("=" not in pair for pair in args.env):
            cli.error("--env takes NAME=VALUE")
    command = {"up": up, "status": status, "down": down}[args.command]
    return asyncio.run(command(args))


if __name__ == "__main__":
    sys.exit(main())
