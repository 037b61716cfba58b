"""The interviewer calls the candidate: POST /api/calls, Twilio's progress, every way it ends.

A fake Twilio REST API records the Calls.json create and plays the call's life
as Twilio would: signed status callbacks (and the answering-machine verdict)
sent to relay, then a simulated stream on the URL of the TwiML relay gave.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from relay_sim.twilio_outbound import PlacedCall
from twilio.request_validator import RequestValidator

from relay.security.auth import SUBPROTOCOL, mint_token
from tests.conftest import TWILIO_TOKEN, Relay, RelayFactory, wait_until
from tests.timing import t

PUBLIC = "https://relay.example.com"
FROM = "+15557654321"
TO = "+15551234567"
SECRET = "relay-test-secret-0123456789-abcdefgh"


async def dialing(make_relay: RelayFactory, **overrides: Any) -> Relay:
    overrides.setdefault("twilio_from_number", FROM)
    overrides.setdefault("twilio_signatures", "on")
    overrides.setdefault("public_url", PUBLIC)
    return await make_relay(**overrides)


async def place(relay: Relay, body: Any, *, user: str | None = "alice",
                token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    query = f"?userId={user}" if user is not None and token is None else ""
    async with aiohttp.ClientSession() as http, http.post(
            f"{relay.http}/api/calls{query}", json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def progress(relay: Relay, call_sid: str, status: str, **kwargs: Any) -> int:
    return await relay.twilio.outbound.progress(call_sid, status, relay.http, **kwargs)


async def stream(relay: Relay, placed: PlacedCall):  # type: ignore[no-untyped-def]
    """Twilio opens the stream the call's TwiML names, signed, with its parameters."""
    url, params = placed.stream()
    path = urlsplit(url).path
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, {})
    call = await relay.call(path, call_sid=placed.sid,
                            extra_headers={"X-Twilio-Signature": signature})
    await call.start(params)
    return call


async def page(relay: Relay, sid: str, user: str = "alice"):  # type: ignore[no-untyped-def]
    fe = await relay.frontend(f"/logs/{sid}?userId={user}")
    await fe.send_json({"type": "job_config", "config": {"role": "Staff Engineer"}})
    await fe.wait_for("job_config.ack")
    return fe


async def paged_and_placed(relay: Relay):  # type: ignore[no-untyped-def]
    """A page with its job configuration, and the call relay placed for its session."""
    sid = str(uuid.uuid4())
    fe = await page(relay, sid)
    _, body = await place(relay, {"to": TO, "sessionId": sid})
    return sid, fe, body["callSid"]


async def test_the_rest_request_has_every_field(make_relay: RelayFactory) -> None:
    """To, From, inline TwiML on /call/{id} with a token, signed callbacks, ring and time limits."""
    relay = await dialing(make_relay, ring_timeout_s=25, max_session_s=600)
    sid = str(uuid.uuid4())
    fe = await page(relay, sid)
    status, body = await place(relay, {"to": TO, "sessionId": sid})
    assert status == 201 and body["sessionId"] == sid and body["status"] == "queued"
    placed = relay.twilio.outbound.placed[body["callSid"]]
    assert (placed.to, placed.from_) == (TO, FROM)
    url, params = placed.stream()
    assert url == f"wss://relay.example.com/call/{sid}"
    assert params["sessionId"] == sid and params["streamToken"]
    assert placed.status_callback == f"{PUBLIC}/api/calls/status?sessionId={sid}"
    assert placed.status_events == ["initiated", "ringing", "answered", "completed"]
    assert placed.timeout == "25" and placed.time_limit == "660"
    assert placed.machine_detection is None
    queued = await fe.wait_for("call.status_changed")
    assert queued["status"] == "queued" and queued["streamSid"] is None
    await fe.send_json({"type": "session.end"})
    await relay.wait_idle()


async def test_ringing_answered_streamed_completed(make_relay: RelayFactory) -> None:
    """The page sees every step; the interview runs on the stream; the end is the caller's."""
    relay = await dialing(make_relay)
    _, fe, call_sid = await paged_and_placed(relay)
    placed = relay.twilio.outbound.placed[call_sid]
    for step in ("initiated", "ringing", "in-progress"):
        assert await progress(relay, call_sid, step) == 204
    seen = [m["status"] for m in [await fe.wait_for("call.status_changed") for _ in range(4)]]
    assert seen == ["queued", "initiated", "ringing", "in-progress"]
    call = await stream(relay, placed)
    associated = await fe.wait_for("session.associated")
    assert associated["callSid"] == call_sid
    model = await relay.model.next_connection()
    update = await model.wait_for("session.update")
    assert "Staff Engineer" in update["session"]["instructions"]
    await call.hang_up()
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "caller_hung_up"
    await relay.wait_idle()
    assert await progress(relay, call_sid, "completed") == 204  # after the end: nothing left
    assert relay.twilio.hangups(call_sid) == 0


@pytest.mark.parametrize(("final", "reason"), [
    ("no-answer", "no_answer"), ("busy", "busy"), ("failed", "call_failed"),
    ("canceled", "canceled")])
async def test_a_call_that_never_streams_ends_with_its_reason(
        make_relay: RelayFactory, final: str, reason: str) -> None:
    """no-answer, busy, failed, canceled: the session ends with the matching reason, page first."""
    relay = await dialing(make_relay)
    sid = str(uuid.uuid4())
    fe = await page(relay, sid)
    _, body = await place(relay, {"to": TO, "sessionId": sid})
    await progress(relay, body["callSid"], "ringing")
    await progress(relay, body["callSid"], final)
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == reason
    assert (await fe.wait_closed())[0] == 1000
    await relay.wait_idle()
    assert relay.twilio.hangups(body["callSid"]) == 0  # Twilio said it is over: nothing to end


@pytest.mark.parametrize("how", ["session.end", "beacon", "stop_all"])
async def test_ending_before_the_answer_cancels_the_call(make_relay: RelayFactory, how: str) -> None:
    """The page ends it, the unload beacon or stop-all while it rings: the call is canceled."""
    relay = await dialing(make_relay)
    sid, fe, call_sid = await paged_and_placed(relay)
    await progress(relay, call_sid, "ringing")
    await fe.wait_for("call.status_changed", lambda m: m["status"] == "ringing")
    if how == "session.end":
        await fe.send_json({"type": "session.end"})
    else:
        path = (f"/api/sessions/{sid}/stop?userId=alice" if how == "beacon"
                else "/api/sessions/stop_all?userId=alice")
        # The beacon as navigator.sendBeacon sends it; stop-all as the browser client does.
        headers = {"Content-Type": "text/plain" if how == "beacon" else "application/json"}
        async with aiohttp.ClientSession() as http, http.post(
                relay.http + path, data="bye" if how == "beacon" else "{}", headers=headers) as resp:
            assert resp.status == 200
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == ("frontend_ended" if how == "session.end" else "stopped")
    await relay.wait_idle()
    assert [r.form for r in relay.twilio.requests_for(call_sid)] == [{"Status": "canceled"}]
    assert relay.twilio.calls[call_sid].status == "canceled"


async def test_reaping_while_it_rings_never_leaves_the_call_ringing(
        make_relay: RelayFactory) -> None:
    """Any teardown before the answer (here: the hard cap) cancels the call."""
    relay = await dialing(make_relay, max_session_s=t(0.6), duration_warning_s=0)
    sid = str(uuid.uuid4())
    fe = await page(relay, sid)
    _, body = await place(relay, {"to": TO, "sessionId": sid})
    await progress(relay, body["callSid"], "ringing")
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended",
                              timeout=t(5))
    assert ended["reason"] == "max_duration"
    await relay.wait_idle()
    assert relay.twilio.calls[body["callSid"]].status == "canceled"


@pytest.mark.parametrize("how", ["unsigned", "forged"])
async def test_a_forged_or_unsigned_callback_is_refused_and_changes_nothing(
        make_relay: RelayFactory, how: str) -> None:
    """Only Twilio's signed callbacks count: anything else is 403 and the call goes on."""
    relay = await dialing(make_relay)
    sid = str(uuid.uuid4())
    fe = await page(relay, sid)
    _, body = await place(relay, {"to": TO, "sessionId": sid})
    answer = await progress(relay, body["callSid"], "busy", signed=how == "forged",
                            forge=how == "forged")
    assert answer == 403
    assert await progress(relay, body["callSid"], "ringing") == 204
    ringing = await fe.wait_for("call.status_changed", lambda m: m["status"] != "queued")
    assert ringing["status"] == "ringing"
    await fe.send_json({"type": "session.end"})
    await relay.wait_idle()


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"to": "5551234567", "sessionId": "s-1"}, 400, "invalid_number"),
    ({"to": "+1555", "sessionId": "s-1"}, 400, "invalid_number"),
    ({"to": "+4420123456789", "sessionId": "s-1"}, 403, "destination_not_allowed"),
    ({"to": TO, "sessionId": "../etc"}, 400, "bad_session_id"),
    ([1, 2], 400, "bad_request"),
])
async def test_bad_numbers_and_prefixes_are_refused_before_twilio(
        make_relay: RelayFactory, body: Any, status: int, code: str) -> None:
    """Not E.164, outside the allowed prefixes, a bad body: a clear 4xx, no request to Twilio."""
    relay = await dialing(make_relay, dial_allowed_prefixes=("+1",))
    answer = await place(relay, body)
    assert answer == (status, {"error": code, "message": answer[1]["message"]})
    assert relay.twilio.outbound.placed == {}
    await relay.wait_idle()


async def test_one_live_call_per_session_and_a_rate_per_user(make_relay: RelayFactory) -> None:
    """A second call for the session is 409; past the user's burst, 429; neither reaches Twilio."""
    relay = await dialing(make_relay, dial_burst=2, dial_rate_per_hour=1)
    sid = str(uuid.uuid4())
    fe = await page(relay, sid)
    first = await place(relay, {"to": TO, "sessionId": sid})
    assert first[0] == 201
    assert (await place(relay, {"to": TO, "sessionId": sid}))[0] == 409
    assert (await place(relay, {"to": TO, "sessionId": str(uuid.uuid4())}))[0] == 429
    assert len(relay.twilio.outbound.placed) == 1
    await fe.send_json({"type": "session.end"})
    await relay.wait_idle()


async def test_with_auth_on_a_token_is_needed_and_only_for_ones_own_session(
        make_relay: RelayFactory) -> None:
    """No token: 401. Bob's token for alice's session: 403. Alice's: 201."""
    relay = await dialing(make_relay, auth_secret=SECRET)
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}",
                              subprotocols=[SUBPROTOCOL, mint_token(SECRET, "alice")])
    await fe.send_json({"type": "job_config", "config": {"role": "x"}})
    await fe.wait_for("job_config.ack")
    assert (await place(relay, {"to": TO, "sessionId": sid}, user=None))[0] == 401
    assert (await place(relay, {"to": TO, "sessionId": sid},
                        token=mint_token(SECRET, "bob")))[0] == 403
    assert (await place(relay, {"to": TO, "sessionId": sid},
                        token=mint_token(SECRET, "alice")))[0] == 201
    await fe.send_json({"type": "session.end"})
    await relay.wait_idle()


@pytest.mark.parametrize(("code", "status", "key"), [
    (21211, 400, "invalid_number"), (21219, 403, "unverified_number"),
    (21215, 403, "number_not_allowed")])
async def test_twilio_refusals_say_what_to_fix(make_relay: RelayFactory, code: int,
                                               status: int, key: str) -> None:
    """Twilio's error codes come back to the browser as advice, and the session stays."""
    relay = await dialing(make_relay)
    relay.twilio.outbound.refuse_next(400, code, "refused")
    sid = str(uuid.uuid4())
    fe = await page(relay, sid)
    answer = await place(relay, {"to": TO, "sessionId": sid})
    assert answer[0] == status and answer[1]["error"] == key
    assert len(answer[1]["message"]) > 20
    await fe.send_json({"type": "session.end"})
    await relay.wait_idle()


async def test_twilio_overload_is_retried(make_relay: RelayFactory) -> None:
    """A 503 from Twilio is tried again; the call is placed once."""
    relay = await dialing(make_relay)
    relay.twilio.outbound.refuse_next(503, 20503, "Service Unavailable")
    sid = str(uuid.uuid4())
    fe = await page(relay, sid)
    status, _ = await place(relay, {"to": TO, "sessionId": sid})
    assert status == 201 and len(relay.twilio.outbound.placed) == 1
    await fe.send_json({"type": "session.end"})
    await relay.wait_idle()


async def test_a_voicemail_ends_the_session_and_a_person_goes_on(make_relay: RelayFactory) -> None:
    """AMD on: a machine ends the call (voicemail, hung up); a human changes nothing."""
    relay = await dialing(make_relay, machine_detection=True)
    human, machine = str(uuid.uuid4()), str(uuid.uuid4())
    pages = {sid: await page(relay, sid, user=f"u-{sid[:4]}") for sid in (human, machine)}
    placed = {}
    for sid in (human, machine):
        status, body = await place(relay, {"to": TO, "sessionId": sid}, user=f"u-{sid[:4]}")
        assert status == 201
        placed[sid] = relay.twilio.outbound.placed[body["callSid"]]
        assert placed[sid].machine_detection == "Enable"
        assert parse_qs(urlsplit(placed[sid].amd_callback or "").query)["sessionId"] == [sid]
        await progress(relay, body["callSid"], "in-progress")
    calls = {sid: await stream(relay, placed[sid]) for sid in (human, machine)}
    for sid in (human, machine):
        await pages[sid].wait_for("session.associated")
    assert await relay.twilio.outbound.amd(placed[human].sid, "human", relay.http) == 204
    assert await relay.twilio.outbound.amd(placed[machine].sid, "machine_start", relay.http) == 204
    ended = await pages[machine].wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "voicemail"
    await wait_until(lambda: relay.twilio.hangups(placed[machine].sid) == 1, what="hang-up")
    assert human in relay.server.registry.sessions
    await calls[human].hang_up()
    await relay.wait_idle()


async def test_on_a_voicemail_the_interviewer_may_leave_a_message(make_relay: RelayFactory) -> None:
    """RELAY_VOICEMAIL=message: after the beep the model is asked for a short message."""
    relay = await dialing(make_relay, machine_detection=True, voicemail="message")
    sid = str(uuid.uuid4())
    fe = await page(relay, sid)
    _, body = await place(relay, {"to": TO, "sessionId": sid})
    placed = relay.twilio.outbound.placed[body["callSid"]]
    assert placed.machine_detection == "DetectMessageEnd"
    await progress(relay, body["callSid"], "in-progress")
    call = await stream(relay, placed)
    model = await relay.model.next_connection()
    await model.wait_for("session.update")
    await relay.twilio.outbound.amd(placed.sid, "machine_end_beep", relay.http)
    create = await model.wait_for("response.create")
    assert "voicemail" in create["response"]["instructions"]
    assert sid in relay.server.registry.sessions
    await call.hang_up()
    await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    await relay.wait_idle()


async def test_two_requests_at_once_place_one_call(make_relay: RelayFactory) -> None:
    """Two tabs asking at the same moment: one call is placed, the other request gets 409."""
    import asyncio

    relay = await dialing(make_relay)
    sid = str(uuid.uuid4())
    fe = await page(relay, sid)
    answers = await asyncio.gather(*(place(relay, {"to": TO, "sessionId": sid}) for _ in range(2)))
    assert sorted(status for status, _ in answers) == [201, 409]
    assert len(relay.twilio.outbound.placed) == 1
    await fe.send_json({"type": "session.end"})
    await relay.wait_idle()


async def test_an_answered_call_is_completed_not_canceled(make_relay: RelayFactory) -> None:
    """session.end after the answer: relay completes the call (canceling would do nothing)."""
    relay = await dialing(make_relay)
    _, fe, call_sid = await paged_and_placed(relay)
    await progress(relay, call_sid, "in-progress")
    call = await stream(relay, relay.twilio.outbound.placed[call_sid])
    await fe.wait_for("session.associated")
    await relay.model.next_connection()
    await fe.send_json({"type": "session.end"})
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "frontend_ended"
    await call.wait_closed()
    await relay.wait_idle()
    assert [r.form for r in relay.twilio.requests_for(call_sid)] == [{"Status": "completed"}]


@pytest.mark.parametrize("answered_by", ["fax", "machine_end_beep"])
async def test_a_fax_or_a_machine_ends_the_session_as_voicemail(make_relay: RelayFactory,
                                                                answered_by: str) -> None:
    relay = await dialing(make_relay, machine_detection=True)
    _, fe, call_sid = await paged_and_placed(relay)
    placed = relay.twilio.outbound.placed[call_sid]
    await progress(relay, placed.sid, "in-progress")
    call = await stream(relay, placed)
    await fe.wait_for("session.associated")
    assert await relay.twilio.outbound.amd(placed.sid, answered_by, relay.http) == 204
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "voicemail"
    await call.wait_closed()
    await relay.wait_idle()
    assert relay.twilio.hangups(placed.sid) == 1
