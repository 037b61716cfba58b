"""Pairing calls with frontends, by every rule of DESIGN.md, in both arrival orders."""

from __future__ import annotations

import uuid

import pytest

from relay.messages.closecodes import CloseCode
from tests.conftest import Relay


def new_id() -> str:
    return str(uuid.uuid4())


async def test_frontend_first_then_call_on_path(relay: Relay) -> None:
    """A frontend on /logs/{id} and then a call on /call/{id} are paired."""
    sid = new_id()
    fe = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    msg = await fe.wait_for("session.associated")
    assert msg == {"type": "session.associated", "sessionId": sid,
                   "callSid": call.call_sid, "streamSid": call.stream_sid}
    status = await fe.wait_for("call.status_changed")
    assert status["status"] == "connected" and status["streamSid"] == call.stream_sid
    await relay.model.next_connection()
    await call.close()
    await fe.close()
    await relay.wait_idle()


async def test_call_first_then_frontend_on_path(relay: Relay) -> None:
    """A call that arrives first is joined by its frontend, which learns of the call at once."""
    sid = new_id()
    call = await relay.call(f"/call/{sid}")
    await call.start()
    await relay.model.next_connection()
    fe = await relay.frontend(f"/logs/{sid}")
    msg = await fe.wait_for("session.associated")
    assert msg["callSid"] == call.call_sid and msg["sessionId"] == sid
    await call.hang_up()
    await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    await relay.wait_idle()


@pytest.mark.parametrize("frontend_first", [True, False])
async def test_session_id_custom_parameter(relay: Relay, frontend_first: bool) -> None:
    """The sessionId custom parameter of Twilio's start pairs the call, in either order."""
    sid = new_id()
    fe = await relay.frontend(f"/logs?sessionId={sid}") if frontend_first else None
    call = await relay.call("/call")
    await call.start({"sessionId": sid})
    if fe is None:
        fe = await relay.frontend(f"/logs/{sid}")
    msg = await fe.wait_for("session.associated")
    assert msg["sessionId"] == sid and msg["callSid"] == call.call_sid
    await fe.send_json({"type": "session.end"})
    await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    await relay.wait_idle()


@pytest.mark.parametrize("frontend_first", [True, False])
async def test_registered_call_sid(relay: Relay, frontend_first: bool) -> None:
    """A frontend that registered the callSid (/logs?callSid=) gets that call, in either order."""
    call_sid = "CA" + uuid.uuid4().hex
    fe = await relay.frontend(f"/logs?callSid={call_sid}") if frontend_first else None
    # A frontend waiting on a bare /logs must not take a registered call (when
    # the call comes first, rule 4 rightly gives it to such a waiter instead).
    decoy = await relay.frontend("/logs") if frontend_first else None
    call = await relay.call("/call", call_sid=call_sid)
    await call.start()
    if fe is None:
        fe = await relay.frontend(f"/logs?callSid={call_sid}")
    msg = await fe.wait_for("session.associated")
    assert msg["callSid"] == call_sid
    await call.hang_up()
    await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    if decoy is not None:
        assert "session.associated" not in decoy.types()
        await decoy.close()
    await relay.wait_idle()


async def test_bare_logs_waiters_are_claimed_oldest_first(relay: Relay) -> None:
    """Calls with no session ID take the frontends waiting on a bare /logs, oldest first."""
    first = await relay.frontend("/logs")
    second = await relay.frontend("/logs")
    await relay.wait_until_waiting(2)
    call_a = await relay.call("/call")
    await call_a.start()
    a = await first.wait_for("session.associated")
    assert a["callSid"] == call_a.call_sid
    call_b = await relay.call("/call")
    await call_b.start()
    b = await second.wait_for("session.associated")
    assert b["callSid"] == call_b.call_sid and b["sessionId"] != a["sessionId"]
    for call in (call_a, call_b):
        await call.hang_up()
    for fe in (first, second):
        await fe.close()
    await relay.wait_idle()


async def test_bare_call_first_then_bare_logs(relay: Relay) -> None:
    """A call with no session ID starts a session keyed by its callSid; a bare /logs joins it."""
    call = await relay.call("/call")
    await call.start()
    await relay.model.next_connection()
    assert call.call_sid in relay.server.registry.sessions
    fe = await relay.frontend("/logs")
    msg = await fe.wait_for("session.associated")
    assert msg["sessionId"] == call.call_sid
    await call.hang_up()
    await fe.close()
    await relay.wait_idle()


async def test_second_call_for_a_session_is_refused(relay: Relay) -> None:
    """A second call for a session that has one is closed with 4009; the first carries on."""
    sid = new_id()
    fe = await relay.frontend(f"/logs/{sid}")
    first = await relay.call(f"/call/{sid}")
    await first.start()
    await fe.wait_for("session.associated")
    second = await relay.call(f"/call/{sid}")
    await second.start()
    code, _ = await second.wait_closed()
    assert code == CloseCode.SESSION_BUSY
    conn = await relay.model.next_connection()
    await first.send_media(b"\x01" * 160)
    appended = await conn.wait_for("input_audio_buffer.append")
    assert appended["audio"]
    assert relay.server.registry.sessions[sid].session.call.call_sid == first.call_sid
    await first.hang_up()
    await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    await relay.wait_idle()
