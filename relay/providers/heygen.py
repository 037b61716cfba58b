"""Stopping HeyGen streaming avatar sessions, which bill per minute until stopped.

A browser that closes or crashes leaves its avatar session running, so relay
stops sessions itself: one by one when an interview ends, and all of a user's
sessions when the app loads ("stop all"). HeyGen's Streaming API (v1)::

    POST {base}/v1/streaming.stop  {"session_id": "…"}
         → {"code": 100, "message": "success"}
    GET  {base}/v1/streaming.list
         → {"code": 100, "message": "success",
            "data": {"sessions": [{"session_id", "status", "created_at"}, …]}}

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
from typing import Any

import aiohttp

from relay.errors import AvatarApiError
from relay.logs import get_logger
from relay.providers.rest import RestClient, Verdict

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


class AvatarSessions(RestClient):
    """Stops and lists HeyGen streaming avatar sessions.

    One instance serves the whole relay; calls may run concurrently. Use it as
    an async context manager, or call :meth:`close`.

    Args:
        api_key: the HeyGen API key; empty means not configured. Never logged.
        base_url: HeyGen's API origin; tests use :class:`relay_sim.heygen_api.FakeHeygenApi`.
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
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        super().__init__(base_url, {"X-Api-Key": api_key} if api_key else None, session=session,
                         attempts=attempts, backoff_initial=backoff_initial,
                         backoff_max=backoff_max, timeout=timeout)
        self._concurrency = concurrency

    def __repr__(self) -> str:
        return f"AvatarSessions(base_url={self._base_url!r}, configured={self.configured})"

    retry_event = AVATAR_RETRY
    fail_event = AVATAR_FAILED
    classify = staticmethod(classify)

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
        answer = await self._call("POST", "/v1/streaming.stop", log, json={"session_id": session_id})
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
        answer = await self._call("GET", "/v1/streaming.list", log)
        body = answer.body if isinstance(answer.body, Mapping) else {}
        code = body.get("code", HEYGEN_OK)
        if answer.verdict is not Verdict.DONE or code != HEYGEN_OK:
            reason = answer.error if answer.verdict is not Verdict.DONE else f"HeyGen code {code}"
            raise AvatarApiError("could not list HeyGen sessions", attempts=answer.attempts,
                                 reason=reason)
        data = body.get("data")
        sessions = data.get("sessions") if isinstance(data, Mapping) else None
        if not isinstance(sessions, list):
            raise AvatarApiError("HeyGen's session list has an unexpected shape",
                                 attempts=answer.attempts, reason="unexpected body")
        ids = [s.get("session_id") for s in sessions if isinstance(s, Mapping)]
        valid = (i for i in ids if isinstance(i, str) and SESSION_ID_PATTERN.fullmatch(i))
        # Unique, in listed order, so that stop_all stops each session once.
        return list(dict.fromkeys(valid))

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
        return [i for i, task in zip(ids, tasks, strict=True) if task.result().ok]
