"""The phone call and avatars really end: Twilio REST hang-up and HeyGen stop at teardown."""

from __future__ import annotations

import uuid

import aiohttp

from tests.conftest import HEYGEN_KEY, Relay, RelayFactory


async def test_frontend_end_hangs_up_the_call_once(relay: Relay) -> None:
    """Ending the session hangs the live call up through Twilio's REST API, exactly once."""
    sid, fe, call, upstream = await relay.live_session()
    await fe.send_json({"type": "session.end"})
    await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    await relay.wait_idle()
    requests = relay.twilio.requests_for(call.call_sid)
    assert len(requests) == 1
    assert requests[0].method == "POST" and requests[0].auth_ok
    assert requests[0].form == {"Status": "completed"}
    assert requests[0].path == (f"/2010-04-01/Accounts/{relay.twilio.account_sid}"
                                f"/Calls/{call.call_sid}.json")
    assert relay.twilio.hangups(call.call_sid) == 1


async def test_caller_hang_up_needs_no_rest_call(relay: Relay) -> None:
    """When Twilio says the caller hung up (stop), relay does not call its API."""
    sid, fe, call, upstream = await relay.live_session()
    await call.hang_up()
    await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    await relay.wait_idle()
    assert relay.twilio.requests_for(call.call_sid) == []


async def test_dropped_stream_still_hangs_up(relay: Relay) -> None:
    """A stream socket that drops without stop may leave the call up: relay hangs it up."""
    sid, fe, call, upstream = await relay.live_session()
    await call.close()
    await relay.wait_idle()
    assert relay.twilio.hangups(call.call_sid) == 1


async def test_hang_up_is_retried_on_503(relay: Relay) -> None:
    """A 503 from Twilio is retried; the call is ended once."""
    sid, fe, call, upstream = await relay.live_session()
    relay.twilio.fail_next(call.call_sid, 503, times=2)
    await fe.send_json({"type": "session.end"})
    await relay.wait_idle()
    statuses = [r.answer for r in relay.twilio.requests_for(call.call_sid)]
    assert statuses == [503, 503, 200]
    assert relay.twilio.hangups(call.call_sid) == 1


async def test_already_ended_call_counts_as_success(relay: Relay) -> None:
    """A call Twilio already ended (404/20404) is not retried."""
    sid, fe, call, upstream = await relay.live_session()
    relay.twilio.mark_ended(call.call_sid)
    await fe.send_json({"type": "session.end"})
    await relay.wait_idle()
    assert [r.answer for r in relay.twilio.requests_for(call.call_sid)] == [404]


async def test_registered_call_that_never_streamed_is_canceled(relay: Relay) -> None:
    """A frontend that registered a ringing call Twilio told relay of, and leaves, gets it canceled."""
    call_sid = "CA" + uuid.uuid4().hex
    relay.twilio.add_call(call_sid, "ringing")
    async with aiohttp.ClientSession() as http, http.post(
            relay.http + "/twiml", data={"CallSid": call_sid}) as resp:
        assert resp.status == 200
    fe = await relay.frontend(f"/logs?callSid={call_sid}")
    await fe.send_json({"type": "session.end"})
    await relay.wait_idle()
    requests = relay.twilio.requests_for(call_sid)
    assert [r.form for r in requests] == [{"Status": "canceled"}]


async def test_a_call_sid_relay_never_learned_is_never_canceled(relay: Relay) -> None:
    """A browser naming someone else's CallSid cannot make relay cancel that call."""
    call_sid = "CA" + uuid.uuid4().hex
    relay.twilio.add_call(call_sid, "ringing")
    fe = await relay.frontend(f"/logs?callSid={call_sid}")
    await fe.send_json({"type": "session.end"})
    await relay.wait_idle()
    assert relay.twilio.requests_for(call_sid) == []


async def test_without_credentials_the_risk_is_logged(make_relay: RelayFactory) -> None:
    """Without Twilio credentials relay logs that the call may stay up, and makes no request."""
    from structlog.testing import capture_logs

    relay = await make_relay(twilio_account_sid="", twilio_auth_token="")
    sid, fe, call, upstream = await relay.live_session()
    with capture_logs() as logs:
        await fe.send_json({"type": "session.end"})
        await relay.wait_idle()
    assert any("may stay up" in entry["event"] for entry in logs)
    assert relay.twilio.requests == []


async def test_avatar_is_stopped_at_teardown(relay: Relay) -> None:
    """An attached HeyGen avatar session is stopped when the interview ends."""
    relay.heygen.add_session("5a0f4c3e-9d2b-4e61-8f7a-1c2d3e4f5a60")
    relay.heygen.add_session("someone-elses")
    sid, fe, call, upstream = await relay.live_session()
    await fe.send_json({"type": "avatar.attach", "provider": "heygen",
                        "avatarSessionId": "5a0f4c3e-9d2b-4e61-8f7a-1c2d3e4f5a60"})
    await fe.send_json({"type": "session.end"})
    await relay.wait_idle()
    assert relay.heygen.stopped == ["5a0f4c3e-9d2b-4e61-8f7a-1c2d3e4f5a60"]
    assert "someone-elses" in relay.heygen.live


async def test_bad_avatar_attach_is_refused(relay: Relay) -> None:
    """avatar.attach with an unknown provider or a bad ID gets an error."""
    fe = await relay.frontend(f"/logs/{uuid.uuid4()}")
    await fe.send_json({"type": "avatar.attach", "provider": "acme", "avatarSessionId": "x"})
    assert (await fe.wait_for("error"))["code"] == "malformed_message"
    await fe.send_json({"type": "avatar.attach", "provider": "heygen",
                        "avatarSessionId": "../etc"})
    assert (await fe.wait_for("error"))["code"] == "malformed_message"
    await fe.close()
    await relay.wait_idle()


async def test_heygen_stop_all_sessions(make_relay: RelayFactory) -> None:
    """POST /api/heygen/stop_all_sessions lists the account's sessions and stops each."""
    relay = await make_relay(admin_token="admin-secret")
    for avatar in ("a1", "a2", "a3"):
        relay.heygen.add_session(avatar)
    async with aiohttp.ClientSession() as http:
        async with http.post(relay.http + "/api/heygen/stop_all_sessions") as resp:
            assert resp.status == 401
        headers = {"Authorization": "Bearer admin-secret", "X-Relay-Request": "1"}
        async with http.post(relay.http + "/api/heygen/stop_all_sessions",
                             headers=headers) as resp:
            assert resp.status == 200
            assert sorted((await resp.json())["stopped"]) == ["a1", "a2", "a3"]
    assert sorted(relay.heygen.stopped) == ["a1", "a2", "a3"] and not relay.heygen.live
    assert all(r.api_key == HEYGEN_KEY for r in relay.heygen.requests)
