"""The processes of a benchmark: pinning to cores, children, readiness, CPU and memory.

Measuring a process means reading its CPU time (user + system, all its threads) and RSS with
psutil; pinning means a child starts on its core (set before ``exec``, so every thread it ever
creates — Node's and the Python runtime's alike — stays there).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil


class HarnessError(Exception):
    """The benchmark itself failed (not the relay under test)."""


@dataclass
class Pinning:
    """Which core the relay and the load (generator + fake model) run on, if pinned."""

    relay_core: int | None
    load_core: int | None
    note: str

    @classmethod
    def plan(cls, enabled: bool) -> Pinning:
        """The relay on the first core this process may use, the load on the second."""
        if not enabled:
            return cls(None, None, "not pinned (--no-pin)")
        if not hasattr(os, "sched_setaffinity"):
            return cls(None, None, "not pinned: no sched_setaffinity on this platform")
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            return cls(None, None, f"not pinned: only {len(cores)} core available")
        return cls(cores[0], cores[1], f"relay on core {cores[0]}; load generator and fake "
                                        f"model on core {cores[1]} ({len(cores)} cores available)")

    def pin(self, pid: int, core: int | None) -> None:
        """Move every thread of a running process to ``core`` (0: this process)."""
        if core is None:
            return
        tasks = Path(f"/proc/{pid or os.getpid()}/task")
        tids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [pid]
        for tid in tids:
            try:
                os.sched_setaffinity(tid, {core})
            except (ProcessLookupError, PermissionError):
                pass


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A subprocess of the benchmark; :meth:`stop` terminates it, then kills it."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: IO[bytes]) -> None:
        self.name, self.proc, self.log = name, proc, log
        self.ps = psutil.Process(proc.pid)

    @classmethod
    async def spawn(cls, name: str, argv: list[str], env: dict[str, str], *, cwd: Path,
                    core: int | None = None, stdout_pipe: bool = False) -> Child:
        """Start ``argv`` on ``core`` (if given), its output kept for :meth:`tail`."""
        log = tempfile.TemporaryFile()  # noqa: SIM115  (kept open for the child; closed in stop)

        def on_core() -> None:  # runs in the child, before exec
            if core is not None:
                os.sched_setaffinity(0, {core})

        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout_pipe else log, stderr=log,
            preexec_fn=on_core)
        return cls(name, proc, log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 15) -> str:
        """The last lines the child wrote."""
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    async def stop(self, timeout: float = 5.0) -> None:
        """Terminate, then kill after ``timeout`` (idempotent)."""
        if self.proc.returncode is None:
            try:
                self.proc.terminate()
                await asyncio.wait_for(self.proc.wait(), timeout)
            except (TimeoutError, ProcessLookupError):
                try:
                    self.proc.kill()
                except ProcessLookupError:
                    pass
                await self.proc.wait()
        if not self.log.closed:
            self.log.close()


async def wait_listening(port: int, child: Child | None, timeout: float = 15.0) -> None:
    """Wait until something accepts TCP connections on loopback ``port``.

    Raises:
        HarnessError: the child exited first, or nothing listened within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        if child is not None and child.proc.returncode is not None:
            raise HarnessError(f"{child.name} exited ({child.proc.returncode}):\n{child.tail()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise HarnessError(f"nothing listens on 127.0.0.1:{port} after {timeout:g}s") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


async def http_json(port: int, path: str, timeout: float = 2.0,
                    tls: ssl.SSLContext | None = None) -> Any:
    """GET a small JSON document over HTTP/1.1 on loopback (None if unavailable)."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            data = await reader.read()
            writer.close()
        return json.loads(data.split(b"\r\n\r\n", 1)[1])
    except (OSError, TimeoutError, ValueError, IndexError, ssl.SSLError):
        return None


def cpu_seconds(ps: psutil.Process | None) -> float | None:
    """User + system CPU time of a process and all its threads (None if gone)."""
    if ps is None:
        return None
    try:
        t = ps.cpu_times()
    except psutil.Error:
        return None
    return t.user + t.system


def rss(ps: psutil.Process | None) -> int | None:
    """Resident set size in bytes (None if gone)."""
    try:
        return ps.memory_info().rss if ps is not None else None
    except psutil.Error:
        return None


_BUSY = ("user", "nice", "system", "irq", "softirq", "steal")


def core_busy_pct(start: Any, end: Any) -> float:
    """How busy one core was between two ``psutil.cpu_times(percpu=True)`` entries."""
    busy = lambda t: sum(getattr(t, f, 0.0) for f in _BUSY)  # noqa: E731
    idle = lambda t: t.idle + getattr(t, "iowait", 0.0)  # noqa: E731
    total = busy(end) + idle(end) - busy(start) - idle(start)
    return 100.0 * (busy(end) - busy(start)) / total if total > 0 else 0.0


async def settle(pinning: Pinning, max_wait: float, idle_pct: float = 10.0) -> tuple[float, float]:
    """Wait (up to ``max_wait`` s) until the cores the benchmark uses are idle for a second.

    On a shared machine other work comes and goes; starting a run in a quiet moment makes its
    figures comparable. Returns (seconds waited, busiest core's % in the last second).
    """
    cores = [c for c in (pinning.relay_core, pinning.load_core) if c is not None] or None
    waited, busiest = 0.0, 0.0
    while True:
        before = psutil.cpu_times(percpu=True)
        await asyncio.sleep(1.0)
        after = psutil.cpu_times(percpu=True)
        busy = [core_busy_pct(b, a) for b, a in zip(before, after, strict=True)]
        busiest = max(busy[c] for c in cores) if cores else sum(busy) / len(busy)
        waited += 1.0
        if busiest <= idle_pct or waited >= max_wait:
            return waited, busiest


def raise_fd_limit() -> None:
    """Allow as many open sockets as the hard limit does (each call takes several)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
