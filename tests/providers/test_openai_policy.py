"""Unit tests for the Realtime reconnect policy: backoff_delays and is_retryable.

Both are pure functions, so no socket is opened: refusals are built as the
``InvalidStatus`` exceptions websockets raises, around real
``websockets.http11.Response`` objects.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosedError,
    InvalidHeader,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.http11 import Response

from relay.providers.openai import backoff_delays, is_retryable


def no_jitter() -> float:
    """The largest factor's lower end: jitter() == 0 scales each delay by 0.5."""
    return 0.0


def refused(status: int, reason: str = "") -> InvalidStatus:
    """The exception websockets raises when the handshake answers ``status``."""
    return InvalidStatus(Response(status, reason, Headers({"Content-Type": "application/json"})))


# -- backoff_delays --------------------------------------------------------------------------


@pytest.mark.parametrize(("attempts", "count"), [(-1, 0), (0, 0), (1, 0), (2, 1), (3, 2), (10, 9)])
def test_one_delay_fewer_than_attempts(attempts: int, count: int) -> None:
    """There is one delay between each pair of attempts, and none for one attempt or fewer."""
    assert len(backoff_delays(attempts, 0.5, 8.0)) == count


def test_delays_double_from_initial() -> None:
    """Without jitter, delays are initial/2 doubled each time (the jitter floor is 0.5x)."""
    assert backoff_delays(5, 1.0, 100.0, jitter=no_jitter) == [0.5, 1.0, 2.0, 4.0]


def test_delays_are_capped_at_maximum() -> None:
    """Once doubling passes ``maximum``, every delay is based on ``maximum``."""
    assert backoff_delays(7, 1.0, 4.0, jitter=no_jitter) == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]


def test_initial_above_maximum_is_capped() -> None:
    """An initial delay larger than the cap is capped from the first retry."""
    assert backoff_delays(3, 10.0, 2.0, jitter=no_jitter) == [1.0, 1.0]


def test_jitter_scales_each_delay_independently() -> None:
    """Each delay draws its own jitter: factor 0.5 + jitter/2."""
    draws = iter([0.0, 0.5, 0.998])
    delays = backoff_delays(4, 1.0, 100.0, jitter=lambda: next(draws))
    assert delays == [0.5, 2.0 * 0.75, 4.0 * 0.999]


@given(
    attempts=st.integers(min_value=0, max_value=30),
    initial=st.floats(min_value=0.001, max_value=10.0),
    maximum=st.floats(min_value=0.001, max_value=60.0),
    seed=st.randoms(use_true_random=False),
)
def test_jitter_bounds(attempts: int, initial: float, maximum: float, seed: object) -> None:
    """Every delay is within [0.5, 1.0] times min(initial * 2**i, maximum), whatever the draws."""
    # The upper end is exclusive in exact arithmetic only: for random.random()'s largest
    # value, 1 - 2**-53, the factor 0.5 + jitter/2 rounds to exactly 1.0.
    delays = backoff_delays(attempts, initial, maximum, jitter=seed.random)  # type: ignore[attr-defined]
    assert len(delays) == max(0, attempts - 1)
    for i, delay in enumerate(delays):
        base = min(initial * 2**i, maximum)
        assert 0.5 * base <= delay <= base


def test_default_jitter_bounds() -> None:
    """With the default random jitter, delays still stay within [0.5, 1.0) of their base."""
    for i, delay in enumerate(backoff_delays(8, 0.25, 4.0)):
        base = min(0.25 * 2**i, 4.0)
        assert 0.5 * base <= delay <= base


# -- is_retryable ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"),
    [(400, "Bad Request"), (401, "Unauthorized"), (403, "Forbidden"), (404, "Not Found")],
)
def test_client_refusals_are_not_retried(status: int, reason: str) -> None:
    """A bad key, a forbidden key, or a wrong model or URL fails at once."""
    assert is_retryable(refused(status, reason)) is False


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (408, "Request Timeout"),
        (429, "Too Many Requests"),
        (500, "Internal Server Error"),
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
        (504, "Gateway Timeout"),
    ],
)
def test_overload_and_server_errors_are_retried(status: int, reason: str) -> None:
    """A timeout, rate limit or server error is worth another attempt."""
    assert is_retryable(refused(status, reason)) is True


@pytest.mark.parametrize(
    "exc",
    [
        OSError("network unreachable"),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        EOFError("connection closed while reading HTTP status line"),
        InvalidMessage("did not receive a valid HTTP response"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_network_errors_and_timeouts_are_retried(exc: BaseException) -> None:
    """OS-level network errors, timeouts and broken handshakes are worth another attempt."""
    assert is_retryable(exc) is True


def test_invalid_uri_is_not_retried() -> None:
    """A malformed URL fails at once."""
    assert is_retryable(InvalidURI("http//api.openai.com", "scheme isn't ws or wss")) is False


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad"), RuntimeError("bug"), KeyError("x"), ConnectionClosedError(None, None)],
    ids=lambda e: type(e).__name__,
)
def test_other_errors_are_not_retried(exc: BaseException) -> None:
    """Errors that are not network, timeout or handshake failures are not retried."""
    assert is_retryable(exc) is False


def test_invalid_header_is_a_handshake_error_and_retried() -> None:
    """A garbled handshake header (a proxy hiccup) counts as a broken handshake, retried."""
    assert is_retryable(InvalidHeader("Upgrade", "h2c")) is True
