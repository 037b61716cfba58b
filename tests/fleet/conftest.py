"""A real redis-server for fleet tests, on a free loopback port, flushed between tests."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

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
