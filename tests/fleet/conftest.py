"""Fleet fixtures: a real redis-server for in-process nodes, and whole fleets of processes.

``redis_url`` gives an empty Redis for nodes started in the test's own event
loop; ``fleet`` starts Redis, two relay processes and HAProxy in front, each a
real process on loopback, and checks afterwards that none is left.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from relay_sim.fleet import Fleet
from relay_sim.processes import group_members

from tests.timing import t

REDIS = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisProcess:
    """redis-server on loopback, no persistence; it can be killed and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS is not None
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def ready(self, timeout: float = 10.0) -> None:
        """Wait until this redis-server answers; if another process took its port, move."""
        async with asyncio.timeout(timeout):
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    # It could not bind: the free port was taken meanwhile.
                    self.port = free_port()
                    self.start()
                client = aioredis.from_url(self.url, socket_timeout=0.5)
                try:
                    if self.proc.poll() is None and await client.ping():
                        return
                except Exception:
                    await asyncio.sleep(0.02)
                finally:
                    await client.aclose()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    async def flush(self) -> None:
        client = aioredis.from_url(self.url)
        try:
            await client.flushall()
        finally:
            await client.aclose()


@pytest.fixture(scope="session")
def redis_process() -> Iterator[RedisProcess]:
    """One redis-server for the whole fleet test session."""
    if REDIS is None:
        pytest.skip("redis-server is not installed (./scripts/test installs it)")
    server = RedisProcess()
    server.start()
    yield server
    server.kill()


@pytest.fixture
async def redis_url(redis_process: RedisProcess) -> AsyncIterator[str]:
    """A running, empty Redis."""
    if redis_process.proc is None or redis_process.proc.poll() is not None:
        redis_process.start()
    await redis_process.ready()
    await redis_process.flush()
    yield redis_process.url


ADMIN_TOKEN = "fleet-admin-token-0123"
NODE_ENV = {
    "RELAY_CONN_RATE_PER_S": "0",
    "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
    "RELAY_RESUME_GRACE_S": str(t(0.5)),
    "RELAY_DRAIN_S": str(t(3.0)),
    "RELAY_FLEET_HEARTBEAT_S": str(t(0.2)),
    "RELAY_FLEET_DEAD_AFTER_S": str(t(1.5)),
}


def assert_no_process_left(groups: list[int]) -> None:
    """No process of these process groups runs any more."""
    left = {group: group_members(group) for group in groups}
    assert not any(left.values()), f"processes left behind: {left}"


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    """Redis, nodes n1 and n2 (plain relays until fleet mode exists) and HAProxy in front."""
    async with Fleet(2, env=NODE_ENV, ready_timeout=t(20), stop_timeout=t(10),
                     check_inter="200ms") as running:
        yield running
        groups = running.process_groups()
    assert_no_process_left(groups)
