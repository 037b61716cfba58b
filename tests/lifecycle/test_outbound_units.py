"""Outbound calls without sockets: the REST request's fields, Twilio's refusals, call progress."""

from __future__ import annotations

import pytest

from relay.core.outbound import CallStatus, OutboundCall, parse_status
from relay.lifecycle.memory import MemoryDirectory
from relay.providers.rest import Verdict
from relay.providers.twilio_dial import Dial, classify, explain


def test_the_form_asks_for_every_progress_event_and_both_limits() -> None:
    """StatusCallbackEvent is repeated once per event; Timeout and TimeLimit are set."""
    form = Dial("+15551234567", "+15557654321", "<Response/>", "https://r/x", 25, 1860,
                "DetectMessageEnd", "https://r/amd").form()
    assert [v for k, v in form if k == "StatusCallbackEvent"] == [
        "initiated", "ringing", "answered", "completed"]
    fields = dict(form)
    assert fields["Timeout"] == "25" and fields["TimeLimit"] == "1860"
    assert fields["MachineDetection"] == "DetectMessageEnd" and fields["AsyncAmd"] == "true"
    assert fields["AsyncAmdStatusCallback"] == "https://r/amd"
    plain = dict(Dial("+15551234567", "+15557654321", "<Response/>", "https://r/x", 25, 60).form())
    assert "MachineDetection" not in plain and "AsyncAmd" not in plain


@pytest.mark.parametrize(("status", "code", "http", "key"), [
    (400, 21211, 400, "invalid_number"),
    (400, 21219, 403, "unverified_number"),
    (400, 21215, 403, "number_not_allowed"),
    (401, 20003, 502, "twilio_auth"),
    (401, None, 502, "twilio_auth"),
    (503, None, 503, "twilio_unavailable"),
    (None, None, 503, "twilio_unavailable"),
    (400, 99999, 502, "twilio_refused"),
])
def test_refusals_say_what_to_fix(status: int | None, code: int | None, http: int,
                                  key: str) -> None:
    """Each Twilio refusal maps to a browser-facing status, code and advice."""
    error = explain(status, {"code": code, "message": "x"} if code else None)
    assert (error.status, error.code) == (http, key)
    assert error.message.endswith(".")


def test_only_overload_is_retried() -> None:
    """429 and 5xx are retried; a created call is done; refusals are final."""
    assert classify(201, {"sid": "CA1"}) is Verdict.DONE
    assert classify(503, None) is Verdict.RETRY and classify(429, None) is Verdict.RETRY
    assert classify(400, {"code": 21211}) is Verdict.FAIL


def test_progress_ignores_stale_and_repeated_callbacks() -> None:
    """Callbacks out of order or after the end change nothing."""
    call = OutboundCall("CA1")
    assert call.advance(CallStatus.RINGING, 2)
    assert not call.advance(CallStatus.INITIATED, 1)  # older sequence number
    assert not call.advance(CallStatus.RINGING, 3) or call.status is CallStatus.RINGING
    assert call.advance(CallStatus.IN_PROGRESS, 4) and call.answered
    assert call.advance(CallStatus.COMPLETED, 5) and call.final
    assert not call.advance(CallStatus.RINGING, 6)
    assert parse_status("no-answer") is CallStatus.NO_ANSWER and parse_status("x") is None


async def test_a_dial_token_binds_to_the_call_once() -> None:
    """A token minted before the call exists is bound to its SID later, once, and spent once."""
    directory = MemoryDirectory("n")
    token = await directory.mint_dial_token("s1", ttl_s=60)
    assert not await directory.spend_stream_token(token, "CA1", "s1")  # not bound yet
    await directory.bind_dial_token(token, "CA1")
    await directory.bind_dial_token(token, "CA2")  # binding never moves a token
    assert not await directory.spend_stream_token(token, "CA2", "s1")
    assert not await directory.spend_stream_token(token, "CA1", "other")
    assert await directory.spend_stream_token(token, "CA1", "s1")
    assert not await directory.spend_stream_token(token, "CA1", "s1")
