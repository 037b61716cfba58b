"""What relay's outbound HTTP clients share: one provider API, retried with care.

A :class:`RestClient` owns (or borrows) one aiohttp session, created lazily
inside the running loop, and makes each request with bounded exponential
back-off on what retrying can fix (408, 429, 5xx, network errors), honouring
``Retry-After``. What an answer *means* is the provider's: each subclass
supplies a pure ``classify(status, body) -> Verdict``. Redirects are never
followed (that would resend credentials) and exception texts are never logged
(only their type is sure to hold no secret).
"""

from __future__ import annotations

import asyncio
import base64
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self

import aiohttp
import structlog

from relay.providers.openai import backoff_delays


class Verdict(enum.Enum):
    """What one provider answer means."""

    DONE = "done"  # the request did what was asked
    GONE = "gone"  # the thing was already gone: as good as done
    RETRY = "retry"  # worth another attempt
    FAIL = "fail"  # retrying cannot help


@dataclass(frozen=True, slots=True)
class Answer:
    """The outcome of one request, after retries."""

    verdict: Verdict
    body: Any
    attempts: int
    error: str
    #: The last HTTP status, or None when no answer came (network error).
    status: int | None = None


def basic_auth(login: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP basic auth (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a numeric ``Retry-After`` header (429/503), if there is one."""
    try:
        seconds = float(headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


async def json_or_none(resp: aiohttp.ClientResponse) -> Any:
    """The response's JSON body, or ``None`` if it has none or it is not JSON."""
    try:
        return await resp.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return None


class RestClient:
    """Base of a provider client; subclasses set the events and ``classify``."""

    #: Log events for a retry and for giving up (fixed strings, see relay.logs).
    retry_event: ClassVar[str]
    fail_event: ClassVar[str]

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str] | None,
        *,
        session: aiohttp.ClientSession | None,
        attempts: int,
        backoff_initial: float,
        backoff_max: float,
        timeout: float,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._base_url = base_url.rstrip("/")
        self._headers = dict(headers) if headers is not None else None
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._attempts = attempts
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def configured(self) -> bool:
        """Whether credentials were given."""
        return self._headers is not None

    @staticmethod
    def classify(status: int, body: Any) -> Verdict:
        """What one answer means; pure."""
        raise NotImplementedError

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")

    async def _call(
        self,
        method: str,
        path: str,
        log: structlog.stdlib.BoundLogger,
        *,
        data: Mapping[str, str] | list[tuple[str, str]] | None = None,
        json: Any = None,
    ) -> Answer:
        """One request with retries; never raises for provider or network failures."""
        delays = backoff_delays(self._attempts, self._backoff_initial, self._backoff_max)
        attempt = 0
        while True:
            attempt += 1
            hint: float | None = None
            status: int | None = None
            try:
                async with self._http().request(
                    method, self._base_url + path, data=data, json=json,
                    headers=self._headers, timeout=self._timeout, allow_redirects=False,
                ) as resp:
                    body = await json_or_none(resp)
                    status = resp.status
                    verdict = self.classify(resp.status, body)
                    error = f"HTTP {resp.status}"
                    hint = retry_after(resp.headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                verdict, error, body = Verdict.RETRY, type(exc).__name__, None
            if verdict in (Verdict.DONE, Verdict.GONE):
                return Answer(verdict, body, attempt, error, status)
            code = body.get("code") if isinstance(body, Mapping) else None
            if verdict is Verdict.FAIL or attempt > len(delays):
                log.warning(self.fail_event, attempts=attempt, error=error, providerCode=code)
                return Answer(Verdict.FAIL, body, attempt, error, status)
            delay = delays[attempt - 1]
            if hint is not None:
                delay = max(delay, min(hint, self._backoff_max))
            log.info(self.retry_event, attempt=attempt, error=error, providerCode=code,
                     retryInS=round(delay, 3))
            await asyncio.sleep(delay)

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
