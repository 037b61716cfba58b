"""Stopping HeyGen streaming avatar sessions, which bill per minute until stopped.

A browser that closes or crashes leaves its avatar session running, so relay
stops sessions itself: one by one when an interview ends, and all of a user's
sessions when the app loads ("stop all"). HeyGen's Streaming API (v1)::

    POST {base}/v1/streaming.stop   {"session_id": "…"}     → {"code": 100, "message": "success"}
    GET  {base}/v1/streaming.list                            → {"code": 100, "data": {"sessions":
                                         [{"session_id", "status", "created_at"}, …]}, "message": "success"}

authenticated with an ``X-Api-Key`` header (header names are case-insensitive,
so accounts documented with ``x-api-key`` are served the same).
References: https://docs.heygen.com/reference/close-session,
https://docs.heygen.com/reference/list-sessions

Stopping a session HeyGen no longer knows counts as success: it answers with a
message such as "Session does not exist. SessionID: …" (code 400004) or "session
not found". Overload (429, 5xx) and network failures are retried with bounded
exponential back-off; other refusals (401 bad key) are final. The API key never
reaches a log.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any, NamedTuple, Self

import aiohttp
import structlog

from relay.calls import json_or_none, retry_after
from relay.errors import RelayError
from relay.logs import get_logger
from relay.upstream.openai import backoff_delays

# Event strings (to join relay.logs.Ev): one emoji, a fixed sentence.
AVATAR_STOP_REQUESTED = "🎭 Stopping HeyGen avatar session"
AVATAR_STOPPED = "✅ HeyGen avatar session stopped"
AVATAR_ALREADY_STOPPED = "💤 HeyGen avatar session was already gone"
AVATAR_RETRY = "🔁 HeyGen request failed, retrying"
AVATAR_FAILED = "🔴 HeyGen request failed for good: avatar sessions may keep billing"
AVATAR_NOT_CONFIGURED = "⚠️ No HeyGen API key: avatar sessions may keep running"
AVATAR_REFUSED = "🚫 Refused a malformed avatar session ID"
AVATAR_STOP_ALL = "🧯 Stopping every live HeyGen avatar session"

#: HeyGen session IDs are UUIDs; allow any short token of this charset and refuse the rest.
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")

#: HeyGen's "success" code in a JSON body.
HEYGEN_OK = 100
#: HeyGen's code for "Session does not exist" (seen on streaming.stop).
HEYGEN_NO_SESSION = 400004


class AvatarApiError(RelayError):
    """HeyGen could not be asked (listing sessions failed).

    Attributes:
        attempts: how many requests were made.
        reason: what failed (``HTTP 503``, ``ClientConnectorError``, …), no secrets.
    """

    def __init__(self, message: str, *, attempts: int, reason: str) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.reason = reason


class StopResult(enum.Enum):
    """What :meth:`AvatarSessions.stop` achieved."""

    #: HeyGen accepted the stop.
    STOPPED = "stopped"
    #: HeyGen did not know the session: it is not running (not billed).
    ALREADY_STOPPED = "already_stopped"
    #: Every attempt failed, a refusal was final (401), or the ID was malformed.
    FAILED = "failed"
    #: No API key is configured; no request was sent.
    NOT_CONFIGURED = "not_configured"

    @property
    def ok(self) -> bool:
        """Whether the session is known not to be running (STOPPED or ALREADY_STOPPED)."""
        return self in (StopResult.STOPPED, StopResult.ALREADY_STOPPED)


class Verdict(enum.Enum):
    """How one HTTP answer from HeyGen is handled."""

    DONE = "done"
    GONE = "gone"
    RETRY = "retry"
    FAIL = "fail"


class _Answer(NamedTuple):
    verdict: Verdict
    body: Any
    attempts: int
    error: str


def _says_no_session(body: Any) -> bool:
    if not isinstance(body, Mapping):
        return False
    if body.get("code") == HEYGEN_NO_SESSION:
        return True
    # "session" must be named: a bare "Not found" is as likely a wrong URL.
    message = str(body.get("message", "")).lower()
    return "session" in message and ("not exist" in message or "not found" in message)


def classify(status: int, body: Any) -> Verdict:
    """Decide what one HeyGen answer means; pure, for tests.

    GONE only when the body says the session does not exist: a bare 404 may
    just as well be a wrong base URL, which retrying or ignoring would hide.

    Args:
        status: the HTTP status code.
        body: the decoded JSON body, or ``None``.
    """
    if _says_no_session(body) and (200 <= status < 300 or status in (400, 404)):
        return Verdict.GONE
    if 200 <= status < 300:
        return Verdict.DONE
    if status in (408, 429) or status >= 500:
        return Verdict.RETRY
    return Verdict.FAIL


class AvatarSessions:
    """Stops and lists HeyGen streaming avatar sessions.

    One instance serves the whole relay; calls may run concurrently. Use it as
    an async context manager, or call :meth:`close`.

    Args:
        api_key: the HeyGen API key; empty means not configured. Never logged.
        base_url: HeyGen's API origin; tests point it at :class:`relay.sim.heygen_api.FakeHeygenApi`.
        session: an aiohttp session to use and leave open; by default one is
            created on first use and closed by :meth:`close`.
        attempts: requests per operation at most (1 disables retries).
        backoff_initial: seconds before the first retry; doubles each time.
        backoff_max: cap on one back-off delay, also on an honoured ``Retry-After``.
        timeout: seconds one request may take in total.
        concurrency: how many stops :meth:`stop_all` runs at once.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://api.heygen.com",
        session: aiohttp.ClientSession | None = None,
        attempts: int = 3,
        backoff_initial: float = 0.2,
        backoff_max: float = 2.0,
        timeout: float = 5.0,
        concurrency: int = 4,
    ) -> None:
        if attempts < 1 or concurrency < 1:
            raise ValueError("attempts and concurrency must be at least 1")
        self._headers = {"X-Api-Key": api_key} if api_key else None
        self._base_url = base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._attempts = attempts
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._concurrency = concurrency

    def __repr__(self) -> str:
        return f"AvatarSessions(base_url={self._base_url!r}, configured={self.configured})"

    @property
    def configured(self) -> bool:
        """Whether an API key was given."""
        return self._headers is not None

    async def stop(self, session_id: str) -> StopResult:
        """Stop one avatar session; never raises for provider or network failures.

        Args:
            session_id: HeyGen's session ID. A malformed one is refused (FAILED)
                without a request.

        Raises:
            RuntimeError: after :meth:`close`.
        """
        self._check_open()
        log = get_logger(avatarSessionId=session_id[:128])
        if self._headers is None:
            log.warning(AVATAR_NOT_CONFIGURED)
            return StopResult.NOT_CONFIGURED
        if not SESSION_ID_PATTERN.fullmatch(session_id):
            log.warning(AVATAR_REFUSED)
            return StopResult.FAILED
        log.info(AVATAR_STOP_REQUESTED)
        answer = await self._request("POST", "/v1/streaming.stop", {"session_id": session_id}, log)
        if answer.verdict is Verdict.DONE:
            log.info(AVATAR_STOPPED)
            return StopResult.STOPPED
        if answer.verdict is Verdict.GONE:
            log.info(AVATAR_ALREADY_STOPPED)
            return StopResult.ALREADY_STOPPED
        return StopResult.FAILED

    async def list_sessions(self) -> list[str]:
        """The IDs of the account's live sessions, as HeyGen lists them.

        Returns an empty list (and logs a warning) when not configured. IDs
        that fail validation are left out.

        Raises:
            AvatarApiError: HeyGen could not be asked, or its answer was not a list.
            RuntimeError: after :meth:`close`.
        """
        self._check_open()
        log = get_logger()
        if self._headers is None:
            log.warning(AVATAR_NOT_CONFIGURED)
            return []
        answer = await self._request("GET", "/v1/streaming.list", None, log)
        body = answer.body if isinstance(answer.body, Mapping) else {}
        if answer.verdict is not Verdict.DONE or body.get("code", HEYGEN_OK) != HEYGEN_OK:
            raise AvatarApiError("could not list HeyGen sessions", attempts=answer.attempts,
                                 reason=answer.error)
        data = body.get("data")
        sessions = data.get("sessions") if isinstance(data, Mapping) else None
        if not isinstance(sessions, list):
            raise AvatarApiError("HeyGen's session list has an unexpected shape",
                                 attempts=answer.attempts, reason="unexpected body")
        ids = [s.get("session_id") for s in sessions if isinstance(s, Mapping)]
        return [i for i in ids if isinstance(i, str) and SESSION_ID_PATTERN.fullmatch(i)]

    async def stop_all(self) -> list[str]:
        """Stop every live session, a few at a time.

        Returns:
            The IDs now known not to run (stopped or already gone), in listed
            order; a session whose stop failed is left out.

        Raises:
            AvatarApiError: the sessions could not be listed.
            RuntimeError: after :meth:`close`.
        """
        ids = await self.list_sessions()
        if not ids:
            return []
        get_logger().info(AVATAR_STOP_ALL, count=len(ids))
        bound = asyncio.Semaphore(self._concurrency)

        async def stop_one(session_id: str) -> StopResult:
            async with bound:
                return await self.stop(session_id)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(stop_one(i)) for i in ids]
        return [i for i, task in zip(ids, tasks) if task.result().ok]

    async def _request(
        self, method: str, path: str, payload: Any, log: structlog.stdlib.BoundLogger
    ) -> _Answer:
        """Send one request, retrying what is worth retrying; return the final answer."""
        delays = backoff_delays(self._attempts, self._backoff_initial, self._backoff_max)
        attempt = 0
        while True:
            attempt += 1
            hint: float | None = None
            try:
                async with self._http().request(
                    method, self._base_url + path, json=payload, headers=self._headers,
                    timeout=self._timeout,
                ) as resp:
                    body = await json_or_none(resp)
                    verdict = classify(resp.status, body)
                    error = f"HTTP {resp.status}"
                    hint = retry_after(resp.headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                # Only the exception's type: its text is not sure to be free of secrets.
                verdict, error, body = Verdict.RETRY, type(exc).__name__, None
            if verdict in (Verdict.DONE, Verdict.GONE):
                return _Answer(verdict, body, attempt, error)
            if verdict is Verdict.FAIL or attempt > len(delays):
                log.warning(AVATAR_FAILED, path=path, attempts=attempt, error=error)
                return _Answer(Verdict.FAIL, body, attempt, error)
            delay = delays[attempt - 1]
            if hint is not None:
                delay = max(delay, min(hint, self._backoff_max))
            log.info(AVATAR_RETRY, path=path, attempt=attempt, error=error, retryInS=round(delay, 3))
            await asyncio.sleep(delay)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("AvatarSessions is closed")

    def _http(self) -> aiohttp.ClientSession:
        # Created lazily: a ClientSession must be made inside the running loop.
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        """Close the HTTP session if this object created it; idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

