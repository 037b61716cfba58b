"""The OpenAI Realtime client: one GA WebSocket per call, opened with retries.

Retry policy is two pure functions, :func:`backoff_delays` and
:func:`is_retryable`, so it can be tested without a network. Failures that
retrying cannot fix (a refused key, a wrong URL) fail at once; overload and
network errors are retried with bounded exponential back-off. One total budget
(``RELAY_UPSTREAM_CONNECT_BUDGET_S``) bounds every attempt, open timeout and
back-off together: a caller waits that long at most before the session ends
(``upstream_failed``) and hears the apology, not attempts × timeouts of silence.
"""

from __future__ import annotations

import asyncio
import functools
import random
import ssl
from collections.abc import Callable, Mapping

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from websockets.uri import parse_uri

from relay.errors import UpstreamConnectError
from relay.logs import Ev, get_logger
from relay.wire.connection import WireClientConnection

#: Largest model event accepted (a session.updated with long instructions).
MAX_EVENT_SIZE = 4 * 1024 * 1024


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The one client TLS context of every ``wss://`` model connection in this process.

    Left to itself, websockets makes a new default context for each connection,
    and each loads the system's CA bundle (``SSL_CERT_FILE`` honoured) and keeps it
    for as long as its call lasts: memory per live session and CPU per call start
    that one shared context spends once.
    """
    return ssl.create_default_context()


def backoff_delays(
    attempts: int,
    initial: float,
    maximum: float,
    *,
    jitter: Callable[[], float] = random.random,
) -> list[float]:
    """Delays to wait before each retry: ``attempts - 1`` of them.

    Doubling from ``initial``, capped at ``maximum``, each scaled by a factor
    in [0.5, 1.0) so that many sessions failing together do not retry in step.
    """
    delays = []
    delay = initial
    for _ in range(max(0, attempts - 1)):
        delays.append(min(delay, maximum) * (0.5 + jitter() / 2))
        delay *= 2
    return delays


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed connection attempt is worth repeating.

    HTTP 408, 429 and 5xx are; other HTTP refusals (401 bad key, 403, 404 wrong
    model or URL) are not. Timeouts and OS-level network errors are.
    """
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return status in (408, 429) or status >= 500
    if isinstance(exc, InvalidURI):
        return False
    return isinstance(exc, (OSError, TimeoutError, InvalidHandshake, EOFError))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


async def open_realtime(
    url: str,
    headers: Mapping[str, str],
    *,
    attempts: int,
    backoff_initial: float,
    backoff_max: float,
    open_timeout: float,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    close_timeout: float = 10.0,
    session_id: str = "",
    budget: float | None = None,
) -> WireClientConnection:
    """Open a Realtime WebSocket, retrying what is worth retrying, within ``budget`` seconds.

    Each attempt's open timeout is cut to what is left of the budget, and a
    retry whose back-off would outlast it is not made.

    ``headers`` authenticate (``Authorization: Bearer …`` for OpenAI,
    ``api-key`` for Azure; see :mod:`relay.providers.endpoints`); they are never logged.

    Raises:
        UpstreamConnectError: every attempt failed, one failed for good, or the
            budget ran out. Its message says why (no secrets).
    """
    log = get_logger(sessionId=session_id)
    delays = backoff_delays(attempts, backoff_initial, backoff_max)
    loop = asyncio.get_running_loop()
    deadline = None if budget is None else loop.time() + budget
    attempt = 0
    while True:
        attempt += 1
        left = open_timeout if deadline is None else min(open_timeout, deadline - loop.time())
        log.info(Ev.UPSTREAM_CONNECTING, attempt=attempt)
        try:
            conn = await connect(
                url,
                additional_headers=dict(headers),
                create_connection=WireClientConnection,
                open_timeout=max(left, 0.001),
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                close_timeout=close_timeout,
                max_size=MAX_EVENT_SIZE,
                compression=None,
                ssl=tls_context() if parse_uri(url).secure else None,
                # A websockets User-Agent is fine; the key must not be logged,
                # so the library's own logger stays out of DEBUG (see logs.py).
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = _describe(exc)
            if not is_retryable(exc) or attempt > len(delays):
                log.warning(Ev.UPSTREAM_FAILED, attempts=attempt, error=reason)
                raise UpstreamConnectError(
                    f"could not open the model session ({reason}) after {attempt} attempt(s)",
                    attempts=attempt,
                ) from exc
            delay = delays[attempt - 1]
            if deadline is not None and loop.time() + delay >= deadline:
                log.warning(Ev.UPSTREAM_FAILED, attempts=attempt, error=reason, budgetS=budget)
                raise UpstreamConnectError(
                    f"could not open the model session ({reason}) within {budget:g}s "
                    f"({attempt} attempt(s))", attempts=attempt,
                ) from exc
            log.info(Ev.UPSTREAM_RETRY, attempt=attempt, error=reason, retryInS=round(delay, 3))
            await asyncio.sleep(delay)
            continue
        log.info(Ev.UPSTREAM_OPEN, attempt=attempt)
        return conn
