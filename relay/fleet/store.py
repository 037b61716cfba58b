"""The fleet's connection to Redis: short timeouts, few retries, and who is healthy.

A fleet node must never hang on Redis: every command fails fast when Redis is
away (:class:`~relay.errors.FleetUnavailable`), so new sessions are refused
with a clear 503 while live calls, whose audio never touches Redis, go on.
:class:`Store` also remembers since when Redis has answered, which the
membership uses so that no node is declared dead merely because Redis was.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from relay.errors import FleetUnavailable
from relay.logs import Ev, get_logger

T = TypeVar("T")

#: Every key relay writes starts with this.
PREFIX = "relay:"


def reraise_if_cancelled() -> None:
    """Re-raise a cancellation that redis-py turned into a connection error.

    redis-py may answer a task's cancellation during a read with a
    ``ConnectionError``; a loop that retries on that error would swallow the
    cancellation and never stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_task(task: asyncio.Task[None] | None, stop: asyncio.Event, timeout: float) -> None:
    """Stop a loop that watches ``stop``: ask, wait ``timeout``, and only then cancel.

    The loops of the fleet stop on their event rather than on cancellation
    alone, because a cancellation can be lost inside a Redis client call.
    """
    stop.set()
    if task is None or task.done():
        return
    await asyncio.wait({task}, timeout=timeout)
    if not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=timeout)


class Store:
    """One Redis client for commands and one for the node's subscriptions."""

    def __init__(self, url: str, *, timeout_s: float = 1.0) -> None:
        common: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": timeout_s,
            "health_check_interval": 5,
            "retry": Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), retries=1),
        }
        self.redis = aioredis.from_url(url, socket_timeout=timeout_s, **common)
        # Subscriptions block in reads by design; they get no read timeout.
        self.subscriber = aioredis.from_url(url, **common)
        self._healthy_since: float | None = None
        self._log = get_logger(component="fleet")

    @property
    def healthy_for(self) -> float:
        """Seconds Redis has answered without a failure (0 when it is away)."""
        if self._healthy_since is None:
            return 0.0
        return time.monotonic() - self._healthy_since

    @property
    def healthy(self) -> bool:
        """Whether the last command reached Redis."""
        return self._healthy_since is not None

    def ok(self) -> None:
        """A command reached Redis."""
        if self._healthy_since is None:
            self._healthy_since = time.monotonic()
            self._log.info(Ev.FLEET_STORE_BACK)

    def failed(self, exc: BaseException) -> None:
        """A command did not reach Redis."""
        if self._healthy_since is not None:
            self._healthy_since = None
            self._log.warning(Ev.FLEET_STORE_LOST, error=type(exc).__name__)

    async def run(self, awaitable: Awaitable[T]) -> T:
        """Await one Redis operation; a failure becomes :class:`FleetUnavailable`."""
        try:
            result = await awaitable
        except RedisError as exc:
            self.failed(exc)
            raise FleetUnavailable("the fleet's shared store is unreachable; try again shortly") \
                from exc
        self.ok()
        return result

    async def close(self) -> None:
        """Close both clients."""
        for client in (self.redis, self.subscriber):
            try:
                await client.aclose()
            except RedisError:
                pass
