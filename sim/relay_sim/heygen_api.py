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

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from relay_sim.requestlog import LoopbackApp, RequestLog


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


class FakeHeygenApi(LoopbackApp):
    """A fake HeyGen Streaming API on loopback.

    Args:
        api_key: the key the ``X-Api-Key`` header must carry.
    """

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self._api_key = api_key
        #: Live sessions: ID → status (``new``, ``connecting``, ``connected``).
        self.live: dict[str, str] = {}
        #: IDs stopped through the API, in order.
        self.stopped: list[str] = []
        self._log: RequestLog[RecordedRequest] = RequestLog("HeyGen API")
        self._failures: dict[str | None, list[int]] = {}

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

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in arrival order."""
        return self._log.requests

    async def wait_for_request(
        self, predicate: Callable[[RecordedRequest], bool] = lambda _: True, timeout: float = 5.0
    ) -> RecordedRequest:
        """Return the first recorded request matching ``predicate``, waiting for one if needed.

        Raises:
            WaitTimeout: none arrived within ``timeout`` seconds.
        """
        return await self._log.wait_for(predicate, timeout)

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        # CIMultiDict: "X-Api-Key" and "x-api-key" are the same header.
        record = RecordedRequest(request.method, request.path, body,
                                 request.headers.get("X-Api-Key", ""))
        await self._log.record(record)
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
