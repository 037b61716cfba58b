"""Ending phone calls through Twilio's REST API, against a fake Twilio on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from relay_sim.twilio_api import FakeTwilioApi
from structlog.testing import capture_logs

from relay.providers.twilio_rest import (
    HANGUP_ALREADY_ENDED,
    HANGUP_ENDED,
    HANGUP_FAILED,
    HANGUP_NOT_CONFIGURED,
    HANGUP_REFUSED,
    HANGUP_REQUESTED,
    HANGUP_RETRY,
    CallHangUp,
    HangUpResult,
    Verdict,
    classify,
)
from tests.timing import WAIT, t

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-secret-token-5f1e2d3c"
CALL_SID = "CA" + "fedcba9876543210" * 2
CALL_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{CALL_SID}.json"
NOT_IN_PROGRESS = "Call is not in-progress. Cannot redirect."


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilioApi]:
    """A fake Twilio REST API on loopback."""
    async with FakeTwilioApi(ACCOUNT_SID, AUTH_TOKEN) as api:
        yield api


def make_client(base_url: str, **overrides: Any) -> CallHangUp:
    """A client with tiny back-off delays, so retries cost no test time."""
    options: dict[str, Any] = {
        "base_url": base_url,
        "attempts": 3,
        "backoff_initial": t(0.001),
        "backoff_max": t(0.005),
        "timeout": WAIT,
    }
    options.update(overrides)
    account_sid = options.pop("account_sid", ACCOUNT_SID)
    auth_token = options.pop("auth_token", AUTH_TOKEN)
    return CallHangUp(account_sid, auth_token, **options)


@pytest.fixture
async def client(twilio: FakeTwilioApi) -> AsyncIterator[CallHangUp]:
    """A configured hang-up client pointed at the fake."""
    async with make_client(twilio.base_url) as hang_up:
        yield hang_up


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def events(logs: list[dict[str, Any]]) -> list[str]:
    return [entry["event"] for entry in logs]


async def test_hang_up_sends_one_authenticated_update(
    twilio: FakeTwilioApi, client: CallHangUp
) -> None:
    """A hang-up is one POST of Status=completed to the call's resource, with basic auth."""
    with capture_logs() as logs:
        result = await client.hang_up(CALL_SID)
    assert result is HangUpResult.ENDED and result.ok
    [request] = twilio.requests
    assert (request.method, request.path) == ("POST", CALL_PATH)
    assert request.form == {"Status": "completed"}
    assert request.auth_ok and request.answer == 200
    assert twilio.calls[CALL_SID].status == "completed"
    assert twilio.hangups(CALL_SID) == 1
    assert events(logs) == [HANGUP_REQUESTED, HANGUP_ENDED]
    assert all(entry["callSid"] == CALL_SID for entry in logs)


async def test_unanswered_call_is_canceled(twilio: FakeTwilioApi, client: CallHangUp) -> None:
    """A call not yet answered is ended with Status=canceled."""
    twilio.add_call(CALL_SID, "ringing")
    assert await client.hang_up(CALL_SID, answered=False) is HangUpResult.ENDED
    assert [r.form for r in twilio.requests] == [{"Status": "canceled"}]
    assert twilio.calls[CALL_SID].status == "canceled"


async def test_cancel_of_a_call_answered_meanwhile_completes_it(
    twilio: FakeTwilioApi, client: CallHangUp
) -> None:
    """If Twilio reports the call in progress after a cancel, Status=completed follows."""
    twilio.add_call(CALL_SID, "in-progress")
    assert await client.hang_up(CALL_SID, answered=False) is HangUpResult.ENDED
    assert [r.form["Status"] for r in twilio.requests] == ["canceled", "completed"]
    assert twilio.calls[CALL_SID].status == "completed"


async def test_unknown_call_counts_as_already_ended(
    twilio: FakeTwilioApi, client: CallHangUp
) -> None:
    """A 404 with error 20404 means the call is over: ALREADY_ENDED, no retry."""
    twilio.mark_ended(CALL_SID)
    with capture_logs() as logs:
        result = await client.hang_up(CALL_SID)
    assert result is HangUpResult.ALREADY_ENDED and result.ok
    assert [r.answer for r in twilio.requests] == [404]
    assert events(logs) == [HANGUP_REQUESTED, HANGUP_ALREADY_ENDED]


async def test_second_hang_up_is_already_ended(twilio: FakeTwilioApi, client: CallHangUp) -> None:
    """Updating a call that already ended (400, error 21220) counts as ALREADY_ENDED, no retry."""
    assert await client.hang_up(CALL_SID) is HangUpResult.ENDED
    assert await client.hang_up(CALL_SID) is HangUpResult.ALREADY_ENDED
    assert [r.answer for r in twilio.requests] == [200, 400]
    assert twilio.hangups(CALL_SID) == 1


async def test_server_errors_are_retried(twilio: FakeTwilioApi, client: CallHangUp) -> None:
    """Two 503s then success: three requests, ENDED."""
    twilio.fail_next(CALL_SID, 503, times=2)
    with capture_logs() as logs:
        assert await client.hang_up(CALL_SID) is HangUpResult.ENDED
    assert [r.answer for r in twilio.requests] == [503, 503, 200]
    assert events(logs).count(HANGUP_RETRY) == 2


async def test_rate_limit_is_retried_honouring_retry_after(
    twilio: FakeTwilioApi, client: CallHangUp
) -> None:
    """A 429 with Retry-After is retried (the wait capped by backoff_max)."""
    twilio.fail_next(CALL_SID, 429, retry_after=3600)
    with capture_logs() as logs:
        assert await client.hang_up(CALL_SID) is HangUpResult.ENDED
    assert [r.answer for r in twilio.requests] == [429, 200]
    [retry] = [entry for entry in logs if entry["event"] == HANGUP_RETRY]
    assert retry["retryInS"] <= t(0.005)


async def test_persistent_server_errors_fail_after_all_attempts(
    twilio: FakeTwilioApi, client: CallHangUp
) -> None:
    """503 forever: exactly `attempts` requests, then FAILED."""
    twilio.fail_next(CALL_SID, 503, times=10)
    with capture_logs() as logs:
        result = await client.hang_up(CALL_SID)
    assert result is HangUpResult.FAILED and not result.ok
    assert len(twilio.requests) == 3
    assert events(logs)[-1] == HANGUP_FAILED


async def test_bad_credentials_are_not_retried(twilio: FakeTwilioApi) -> None:
    """A 401 (error 20003) is final: one request, FAILED."""
    async with make_client(twilio.base_url, auth_token="wrong-token") as client:
        assert await client.hang_up(CALL_SID) is HangUpResult.FAILED
    [request] = twilio.requests
    assert not request.auth_ok and request.answer == 401
    assert twilio.calls.get(CALL_SID) is None


async def test_other_client_errors_are_not_retried(
    twilio: FakeTwilioApi, client: CallHangUp
) -> None:
    """A 400 that does not say the call is over is final: one request, FAILED."""
    twilio.fail_next(CALL_SID, 400)
    assert await client.hang_up(CALL_SID) is HangUpResult.FAILED
    assert len(twilio.requests) == 1


async def test_network_errors_are_retried_then_fail() -> None:
    """Connection refused on every attempt: retried, then FAILED."""
    async with make_client(f"http://127.0.0.1:{closed_port()}") as client:
        with capture_logs() as logs:
            assert await client.hang_up(CALL_SID) is HangUpResult.FAILED
    assert events(logs) == [HANGUP_REQUESTED, HANGUP_RETRY, HANGUP_RETRY, HANGUP_FAILED]
    assert logs[-1]["attempts"] == 3


async def test_timeouts_are_retried(twilio: FakeTwilioApi) -> None:
    """A request Twilio never answers times out and is retried."""
    twilio.stall_next(CALL_SID)
    async with make_client(twilio.base_url, timeout=t(0.2)) as client:
        assert await client.hang_up(CALL_SID) is HangUpResult.ENDED
    assert [r.answer for r in twilio.requests] == [None, 200]


async def test_not_configured_sends_nothing_and_warns(twilio: FakeTwilioApi) -> None:
    """Without credentials: NOT_CONFIGURED, a warning that the call may stay up, no request."""
    async with make_client(twilio.base_url, account_sid="", auth_token="") as client:
        assert not client.configured
        with capture_logs() as logs:
            assert await client.hang_up(CALL_SID) is HangUpResult.NOT_CONFIGURED
    assert [(e["event"], e["log_level"]) for e in logs] == [(HANGUP_NOT_CONFIGURED, "warning")]
    assert twilio.requests == []


@pytest.mark.parametrize(
    "call_sid", ["", "C", "../../Accounts/AC1/Calls/CA2", "CA12/34", "CA 12", "CA12?x=1", "a" * 65]
)
async def test_malformed_call_sid_is_refused_without_a_request(
    twilio: FakeTwilioApi, client: CallHangUp, call_sid: str
) -> None:
    """A call SID that could change the URL is refused before any request."""
    with capture_logs() as logs:
        assert await client.hang_up(call_sid) is HangUpResult.FAILED
    assert events(logs) == [HANGUP_REFUSED]
    assert twilio.requests == []


async def test_auth_token_never_logged(twilio: FakeTwilioApi) -> None:
    """Neither the auth token nor the Authorization header reaches a log line or the repr."""
    twilio.fail_next(CALL_SID, 503)
    async with make_client(twilio.base_url) as client:
        with capture_logs() as logs:
            await client.hang_up(CALL_SID)
            await client.hang_up(CALL_SID)
        async with make_client(f"http://127.0.0.1:{closed_port()}") as offline:
            with capture_logs() as more:
                await offline.hang_up(CALL_SID)
        text = repr(logs + more) + repr(client)
    assert HANGUP_RETRY in text and HANGUP_FAILED in text
    assert AUTH_TOKEN not in text
    assert "Basic " not in text and "authorization" not in text.lower()


def test_malformed_account_sid_is_refused_at_construction() -> None:
    """The Account SID goes into every URL, so a malformed one fails fast."""
    with pytest.raises(ValueError):
        CallHangUp("AC/../x", AUTH_TOKEN)


async def test_wait_for_request_sees_the_hang_up(twilio: FakeTwilioApi, client: CallHangUp) -> None:
    """The fake lets a test wait for a hang-up request instead of sleeping."""
    await client.hang_up(CALL_SID)
    request = await twilio.wait_for_request(lambda r: r.call_sid == CALL_SID, timeout=WAIT)
    assert request.form == {"Status": "completed"}


async def test_given_session_is_left_open(twilio: FakeTwilioApi) -> None:
    """A caller's ClientSession is used and not closed by close()."""
    async with aiohttp.ClientSession() as session:
        client = make_client(twilio.base_url, session=session)
        assert await client.hang_up(CALL_SID) is HangUpResult.ENDED
        await client.close()
        assert not session.closed


async def test_closed_client_refuses_to_work(twilio: FakeTwilioApi) -> None:
    """hang_up after close() is a programming error; close() is idempotent."""
    client = make_client(twilio.base_url)
    await client.hang_up(CALL_SID)
    await client.close()
    await client.close()
    with pytest.raises(RuntimeError):
        await client.hang_up(CALL_SID)


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, {"status": "completed"}, Verdict.DONE),
        (204, None, Verdict.DONE),
        (404, None, Verdict.GONE),
        (404, {"code": 20404}, Verdict.GONE),
        (400, {"code": 21220, "message": NOT_IN_PROGRESS}, Verdict.GONE),
        (400, {"message": NOT_IN_PROGRESS}, Verdict.GONE),
        (400, {"code": 20001, "message": "Invalid parameter"}, Verdict.FAIL),
        (401, {"code": 20003}, Verdict.FAIL),
        (403, None, Verdict.FAIL),
        (408, None, Verdict.RETRY),
        (429, {"code": 20429}, Verdict.RETRY),
        (500, "not json", Verdict.RETRY),
        (503, None, Verdict.RETRY),
    ],
)
def test_classify(status: int, body: Any, verdict: Verdict) -> None:
    """Each Twilio answer maps to ended, already ended, retry or fail."""
    assert classify(status, body) is verdict
