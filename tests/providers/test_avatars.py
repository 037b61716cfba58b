"""Stopping HeyGen streaming avatar sessions, against a fake HeyGen on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from relay_sim.heygen_api import FakeHeygenApi
from structlog.testing import capture_logs

from relay.providers.heygen import (
    AVATAR_ALREADY_STOPPED,
    AVATAR_FAILED,
    AVATAR_NOT_CONFIGURED,
    AVATAR_REFUSED,
    AVATAR_RETRY,
    AVATAR_STOP_REQUESTED,
    AVATAR_STOPPED,
    AvatarApiError,
    AvatarSessions,
    StopResult,
    Verdict,
    classify,
)
from tests.timing import WAIT, t

API_KEY = "heygen-secret-key-9a8b7c6d"
SESSION_ID = "c1c484e3-be61-11ef-b598-3231faa3f986"


@pytest.fixture
async def heygen() -> AsyncIterator[FakeHeygenApi]:
    """A fake HeyGen Streaming API on loopback."""
    async with FakeHeygenApi(API_KEY) as api:
        yield api


def make_avatars(base_url: str, api_key: str = API_KEY, **overrides: Any) -> AvatarSessions:
    """A client with tiny back-off delays, so retries cost no test time."""
    options: dict[str, Any] = {
        "base_url": base_url,
        "attempts": 3,
        "backoff_initial": t(0.001),
        "backoff_max": t(0.005),
        "timeout": WAIT,
    }
    options.update(overrides)
    return AvatarSessions(api_key, **options)


@pytest.fixture
async def avatars(heygen: FakeHeygenApi) -> AsyncIterator[AvatarSessions]:
    """A configured client pointed at the fake."""
    async with make_avatars(heygen.base_url) as client:
        yield client


def events(logs: list[dict[str, Any]]) -> list[str]:
    return [entry["event"] for entry in logs]


async def test_stop_sends_the_session_id_with_the_key(
    heygen: FakeHeygenApi, avatars: AvatarSessions
) -> None:
    """A stop is one POST /v1/streaming.stop with the session ID and the X-Api-Key header."""
    heygen.add_session(SESSION_ID)
    with capture_logs() as logs:
        result = await avatars.stop(SESSION_ID)
    assert result is StopResult.STOPPED and result.ok
    [request] = heygen.requests
    assert (request.method, request.path, request.body) == (
        "POST", "/v1/streaming.stop", {"session_id": SESSION_ID}
    )
    assert request.api_key == API_KEY and request.answer == 200
    assert heygen.stopped == [SESSION_ID] and heygen.live == {}
    assert events(logs) == [AVATAR_STOP_REQUESTED, AVATAR_STOPPED]
    assert all(entry["avatarSessionId"] == SESSION_ID for entry in logs)


async def test_unknown_session_counts_as_already_stopped(
    heygen: FakeHeygenApi, avatars: AvatarSessions
) -> None:
    """"Session does not exist" (400, code 400004) is ALREADY_STOPPED, without a retry."""
    with capture_logs() as logs:
        result = await avatars.stop(SESSION_ID)
    assert result is StopResult.ALREADY_STOPPED and result.ok
    assert [r.answer for r in heygen.requests] == [400]
    assert events(logs) == [AVATAR_STOP_REQUESTED, AVATAR_ALREADY_STOPPED]


async def test_list_and_stop_all(heygen: FakeHeygenApi, avatars: AvatarSessions) -> None:
    """stop_all lists the live sessions, stops every one, and returns their IDs."""
    ids = [f"session-{n}" for n in range(7)]
    for session_id in ids:
        heygen.add_session(session_id)
    assert await avatars.list_sessions() == ids
    assert await avatars.stop_all() == ids
    assert heygen.live == {}
    assert sorted(heygen.stopped) == sorted(ids)
    assert [r.path for r in heygen.requests].count("/v1/streaming.list") == 2
    assert await avatars.stop_all() == []


async def test_list_leaves_out_malformed_ids(
    heygen: FakeHeygenApi, avatars: AvatarSessions
) -> None:
    """A listed ID that fails validation is never sent back to HeyGen."""
    heygen.add_session("good-1")
    heygen.add_session("bad id/../x")
    assert await avatars.stop_all() == ["good-1"]
    assert list(heygen.live) == ["bad id/../x"]


async def test_stop_all_leaves_out_sessions_it_could_not_stop(
    heygen: FakeHeygenApi, avatars: AvatarSessions
) -> None:
    """A session whose stop fails for good is not reported as stopped; the others are."""
    for session_id in ("a", "b", "c"):
        heygen.add_session(session_id)
    heygen.fail_next(503, times=10, session_id="b")
    assert await avatars.stop_all() == ["a", "c"]
    assert list(heygen.live) == ["b"]


async def test_server_errors_are_retried(heygen: FakeHeygenApi, avatars: AvatarSessions) -> None:
    """Two 503s then success: three requests, STOPPED."""
    heygen.add_session(SESSION_ID)
    heygen.fail_next(503, times=2)
    with capture_logs() as logs:
        assert await avatars.stop(SESSION_ID) is StopResult.STOPPED
    assert [r.answer for r in heygen.requests] == [503, 503, 200]
    assert events(logs).count(AVATAR_RETRY) == 2


async def test_persistent_server_errors_fail_after_all_attempts(
    heygen: FakeHeygenApi, avatars: AvatarSessions
) -> None:
    """503 forever: exactly `attempts` requests, then FAILED."""
    heygen.add_session(SESSION_ID)
    heygen.fail_next(502, times=10)
    with capture_logs() as logs:
        assert await avatars.stop(SESSION_ID) is StopResult.FAILED
    assert len(heygen.requests) == 3
    assert events(logs)[-1] == AVATAR_FAILED
    assert SESSION_ID in heygen.live


async def test_wrong_key_is_not_retried(heygen: FakeHeygenApi) -> None:
    """A 401 is final: one request, FAILED; listing raises AvatarApiError."""
    heygen.add_session(SESSION_ID)
    async with make_avatars(heygen.base_url, api_key="wrong-key") as client:
        assert await client.stop(SESSION_ID) is StopResult.FAILED
        with pytest.raises(AvatarApiError) as caught:
            await client.stop_all()
    assert caught.value.attempts == 1 and caught.value.reason == "HTTP 401"
    assert [r.answer for r in heygen.requests] == [401, 401]
    assert SESSION_ID in heygen.live


async def test_network_errors_are_retried_then_fail() -> None:
    """Connection refused on every attempt: retried, then FAILED."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with make_avatars(f"http://127.0.0.1:{port}") as client:
        with capture_logs() as logs:
            assert await client.stop(SESSION_ID) is StopResult.FAILED
    assert events(logs) == [AVATAR_STOP_REQUESTED, AVATAR_RETRY, AVATAR_RETRY, AVATAR_FAILED]


async def test_not_configured_sends_nothing_and_warns(heygen: FakeHeygenApi) -> None:
    """Without a key: NOT_CONFIGURED and empty lists, a warning each time, no request."""
    heygen.add_session(SESSION_ID)
    async with make_avatars(heygen.base_url, api_key="") as client:
        assert not client.configured
        with capture_logs() as logs:
            assert await client.stop(SESSION_ID) is StopResult.NOT_CONFIGURED
            assert await client.stop_all() == []
    assert [(e["event"], e["log_level"]) for e in logs] == [(AVATAR_NOT_CONFIGURED, "warning")] * 2
    assert heygen.requests == []


@pytest.mark.parametrize("session_id", ["", "a/b", "../v1/x", "id with space", "é", "x" * 129])
async def test_malformed_session_id_is_refused(
    heygen: FakeHeygenApi, avatars: AvatarSessions, session_id: str
) -> None:
    """A malformed session ID is refused before any request."""
    with capture_logs() as logs:
        assert await avatars.stop(session_id) is StopResult.FAILED
    assert events(logs) == [AVATAR_REFUSED]
    assert heygen.requests == []


async def test_api_key_never_logged(heygen: FakeHeygenApi, avatars: AvatarSessions) -> None:
    """The API key reaches neither a log line nor the client's repr."""
    heygen.add_session(SESSION_ID)
    heygen.fail_next(503)
    with capture_logs() as logs:
        await avatars.stop_all()
        await avatars.stop("missing")
    text = repr(logs) + repr(avatars)
    assert AVATAR_RETRY in text and AVATAR_STOPPED in text
    assert API_KEY not in text


async def test_fake_accepts_the_key_header_in_any_case(heygen: FakeHeygenApi) -> None:
    """The fake serves "x-api-key" like "X-Api-Key", as HTTP header names are case-insensitive."""
    heygen.add_session(SESSION_ID)
    async with aiohttp.ClientSession() as http, http.get(
        heygen.base_url + "/v1/streaming.list", headers={"x-api-key": API_KEY}
    ) as resp:
        body = await resp.json()
    assert body["code"] == 100
    assert [s["session_id"] for s in body["data"]["sessions"]] == [SESSION_ID]
    request = await heygen.wait_for_request(lambda r: r.path == "/v1/streaming.list", timeout=WAIT)
    assert request.answer == 200


async def test_closed_client_refuses_to_work(heygen: FakeHeygenApi) -> None:
    """Calls after close() are a programming error; close() is idempotent."""
    client = make_avatars(heygen.base_url)
    await client.close()
    await client.close()
    with pytest.raises(RuntimeError):
        await client.stop(SESSION_ID)


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, {"code": 100, "message": "success"}, Verdict.DONE),
        (200, None, Verdict.DONE),
        (400, {"code": 400004, "message": "Session does not exist. SessionID: x"}, Verdict.GONE),
        (404, {"message": "session not found"}, Verdict.GONE),
        (200, {"code": 400004, "message": "Session does not exist"}, Verdict.GONE),
        (404, {"message": "Not found"}, Verdict.FAIL),
        (404, None, Verdict.FAIL),
        (400, {"code": 400001, "message": "session_id is required"}, Verdict.FAIL),
        (401, {"message": "Unauthorized"}, Verdict.FAIL),
        (429, None, Verdict.RETRY),
        (500, None, Verdict.RETRY),
        (503, {"message": "Service temporarily unavailable"}, Verdict.RETRY),
    ],
)
def test_classify(status: int, body: Any, verdict: Verdict) -> None:
    """Each HeyGen answer maps to done, gone, retry or fail; a bare 404 is not "gone"."""
    assert classify(status, body) is verdict
