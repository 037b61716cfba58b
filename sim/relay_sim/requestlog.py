"""What a fake provider API was asked, with a race-free wait for a request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, Self, TypeVar

from aiohttp import web

from relay_sim.inbox import WaitTimeout

R = TypeVar("R")


class RequestLog(Generic[R]):
    """Recorded requests in arrival order.

    Args:
        provider: named in timeout errors ("Twilio API", "HeyGen API").
    """

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.requests: list[R] = []
        self._arrived = asyncio.Condition()

    async def record(self, request: R) -> None:
        """Add a request and wake whoever waits for one."""
        self.requests.append(request)
        async with self._arrived:
            self._arrived.notify_all()

    async def wait_for(self, predicate: Callable[[R], bool], timeout: float) -> R:
        """The first recorded request matching ``predicate``, waiting for one if needed.

        Raises:
            WaitTimeout: none arrived within ``timeout`` seconds.
        """

        def first() -> R | None:
            return next((r for r in self.requests if predicate(r)), None)

        try:
            async with asyncio.timeout(timeout), self._arrived:
                await self._arrived.wait_for(lambda: first() is not None)
        except TimeoutError:
            raise WaitTimeout(f"no matching {self.provider} request within {timeout}s") from None
        found = first()
        assert found is not None
        return found


class LoopbackApp:
    """An aiohttp app on 127.0.0.1, port 0, that routes every request to ``_handle``.

    Subclasses implement ``_handle``; ``start``/``stop`` and ``async with`` come from here.
    """

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._base_url = ""

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:{port}`` once started."""
        if not self._base_url:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._base_url

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def start(self) -> str:
        """Start listening on 127.0.0.1, port 0; return the base URL."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self._base_url = f"http://{host}:{port}"
        return self._base_url

    async def stop(self) -> None:
        """Stop listening; idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
