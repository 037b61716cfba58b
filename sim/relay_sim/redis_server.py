"""``redis-server`` on an ephemeral loopback port, for the fleet harness.

Persistence is off (``--save '' --appendonly no``): a restarted server is empty, as after the
loss of a Redis without disks. :func:`ping` speaks just enough RESP to ask whether it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from relay_sim.processes import Child, ProcessError, launch, poll, require_binary

LOOPBACK = "127.0.0.1"


class RedisServer:
    """``redis-server`` on loopback with no persistence (``--save '' --appendonly no``).

    Args:
        port: Fixed port; by default a free one.
        ready_timeout: How long :meth:`start` waits for PING to answer.
        log_file, detached: See :class:`~relay_sim.processes.Child`.
    """

    def __init__(self, *, port: int | None = None, binary: str | None = None,
                 ready_timeout: float = 10.0, log_file: str | Path | None = None,
                 detached: bool = False) -> None:
        self.port = port
        self.binary = binary
        self.ready_timeout = ready_timeout
        self.log_file = log_file
        self.detached = detached
        self.child: Child | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{LOOPBACK}:{self._port()}/0"

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child else None

    def _port(self) -> int:
        if self.port is None:
            raise ProcessError("Redis has not started yet")
        return self.port

    def _child(self, port: int) -> Child:
        argv = [require_binary("redis-server", self.binary), "--port", str(port),
                "--bind", LOOPBACK, "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--logfile", ""]
        return Child("redis", argv, log_file=self.log_file, detached=self.detached)

    async def _ready(self, child: Child, port: int) -> None:
        async def answers() -> bool:
            # Still running once PING answered: then the port is its own, not another's.
            return await ping(port) and child.running

        await poll(answers, self.ready_timeout, f"Redis PING on port {port}",
                   alive=lambda: child.running)

    async def start(self) -> None:
        """Start it (on its old port after the first time) and wait until PING answers."""
        if self.child is not None and self.child.running:
            return
        self.child, self.port = await launch("redis-server", self.port, self._child,
                                              self._ready)

    async def ping(self, timeout: float = 1.0) -> bool:
        """Whether Redis answers PING right now."""
        return self.port is not None and await ping(self.port, timeout)

    async def kill(self) -> None:
        """SIGKILL it (the port stays this server's for :meth:`restart`)."""
        if self.child is not None:
            await self.child.kill()

    async def restart(self) -> None:
        """Kill it if it runs, then start it again on the same port (empty: nothing is saved)."""
        await self.kill()
        await self.start()

    async def stop(self) -> None:
        """Stop it for good; idempotent."""
        await self.kill()


async def ping(port: int, timeout: float = 1.0) -> bool:
    """Whether the Redis on ``127.0.0.1:port`` answers PING with PONG."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
            writer.write(b"*1\r\n$4\r\nPING\r\n")
            return await reader.readline() == b"+PONG\r\n"
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
