"""A fake HeyGen Streaming API on loopback, for tests and demos.

:class:`FakeHeygenApi` is a real ``aiohttp.web`` server on ``127.0.0.1`` port 0
serving the two endpoints relay uses::

    GET  /v1/streaming.list   → {"code": 100, "data": {"sessions": [{"session_id", "status",
                                 "created_at", "api_key_type"}, …]}, "message": "success"}
    POST /v1/streaming.stop   {"session_id"} → {"code": 100, "data": null, "message": "success"}

- a missing or wrong ``X-Api-Key`` header (any case): 401;
- stopping a session it does not know: 400 with code 400004 and "Session does
  not exist. SessionID: …", the shape HeyGen answers with;
- scripted trouble: :meth:`fail_next` (503, 429, …) for the next requests.

Every request is recorded (:attr:`requests`); tests wait for one with
:meth:`wait_for_request`, never with a sleep.

References: https://docs.heygen.com/reference/close-session,
https://docs.heygen.com/reference/list-sessions
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web

from relay.sim.twilio_call import WaitTimeout


@dataclass
class RecordedRequest:
    """One request the fake received.

    Attributes:
        method: the HTTP method.
        path: the request path.
        body: the decoded JSON body (``None`` if absent or not JSON).
        api_key: the ``X-Api-Key`` header as sent ("" if absent), for tests to assert on.
        answer: the HTTP status answered.
    """

    method: str
    path: str
    body: Any
    api_key: str
    answer: int | None = None


def heygen_json(status: int, code: int, message: str, data: Any = None) -> web.Response:
    """A HeyGen-shaped JSON response."""
    return web.json_response({"code": code, "data": data, "message": message}, status=status)


class FakeHeygenApi:
    """A fake HeyGen Streaming API on loopback.

    Args:
        api_key: the key the ``X-Api-Key`` header must carry.
    """

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key
        #: Live sessions: ID → status (``new``, ``connecting``, ``connected``).
        self.live: dict[str, str] = {}
        #: IDs stopped through the API, in order.
        self.stopped: list[str] = []
        self.requests: list[RecordedRequest] = []
        self._failures: dict[str | None, list[int]] = {}
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._base_url = ""

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:{port}`` once started."""
        if not self._base_url:
            raise RuntimeError("FakeHeygenApi is not started")
        return self._base_url

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

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def add_session(self, session_id: str, status: str = "connected") -> None:
        """Make ``session_id`` a live session."""
        self.live[session_id] = status

    def fail_next(
        self, status: int = 503, times: int = 1, *, session_id: str | None = None
    ) -> None:
        """Answer the next ``times`` requests with ``status``.

        With ``session_id``, only stops of that session fail; otherwise any request does.
        """
        self._failures.setdefault(session_id, []).extend([status] * times)

    async def wait_for_request(
        self, predicate: Callable[[RecordedRequest], bool] = lambda _: True, timeout: float = 5.0
    ) -> RecordedRequest:
        """Return the first recorded request matching ``predicate``, waiting for one if needed.

        Raises:
            WaitTimeout: none arrived within ``timeout`` seconds.
        """

        def first() -> RecordedRequest | None:
            return next((r for r in self.requests if predicate(r)), None)

        try:
            async with asyncio.timeout(timeout), self._arrived:
                await self._arrived.wait_for(lambda: first() is not None)
        except TimeoutError:
            raise WaitTimeout(f"no matching HeyGen API request within {timeout}s") from None
        found = first()
        assert found is not None
        return found

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        # CIMultiDict: "X-Api-Key" and "x-api-key" are the same header.
        record = RecordedRequest(request.method, request.path, body,
                                 request.headers.get("X-Api-Key", ""))
        self.requests.append(record)
        async with self._arrived:
            self._arrived.notify_all()
        response = self._answer(request, record)
        record.answer = response.status
        return response

    def _answer(self, request: web.Request, record: RecordedRequest) -> web.Response:
        target = record.body.get("session_id") if isinstance(record.body, dict) else None
        for key in (target, None):
            failures = self._failures.get(key) if isinstance(key, str) or key is None else None
            if failures:
                status = failures.pop(0)
                return heygen_json(status, status, "Service temporarily unavailable")
        if record.api_key != self._api_key:
            return heygen_json(401, 400112, "Unauthorized")
        route = (request.method, request.path)
        if route == ("GET", "/v1/streaming.list"):
            now = int(time.time())
            sessions = [
                {"session_id": sid, "status": status, "created_at": now, "api_key_type": "regular"}
                for sid, status in self.live.items()
            ]
            return heygen_json(200, 100, "success", {"sessions": sessions})
        if route == ("POST", "/v1/streaming.stop"):
            return self._stop(record.body)
        return heygen_json(404, 404, "Not found")

    def _stop(self, body: Any) -> web.Response:
        session_id = body.get("session_id") if isinstance(body, dict) else None
        if not isinstance(session_id, str) or not session_id:
            return heygen_json(400, 400001, "session_id is required")
        if self.live.pop(session_id, None) is None:
            return heygen_json(400, 400004, f"Session does not exist. SessionID: {session_id}")
        self.stopped.append(session_id)
        return heygen_json(200, 100, "success")
