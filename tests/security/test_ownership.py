"""With frontend auth on, every session has an owner before anyone sees one of its events.

Calls that named no session, bare /logs pairing, and stream tokens bound to
(CallSid, session): no signed-in user can watch, claim or steer another
user's interview.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import aiohttp
import pytest
from twilio.request_validator import RequestValidator
from websockets.exceptions import InvalidStatus

from relay.messages.closecodes import CloseCode
from relay.security.auth import SUBPROTOCOL, mint_token
from tests.conftest import TWILIO_TOKEN, Relay, RelayFactory

SECRET = "relay-test-secret-0123456789-abcdefgh"
PUBLIC = "https://relay.example.com"


def offer(user: str, session_id: str | None = None) -> list[str]:
    return [SUBPROTOCOL, mint_token(SECRET, user, session_id=session_id)]


async def secured(make_relay: RelayFactory, **overrides: object) -> Relay:
    return await make_relay(auth_secret=SECRET, **overrides)


async def refused_status(relay: Relay, path: str, subprotocols: list[str]) -> int:
    with pytest.raises(InvalidStatus) as info:
        await relay.frontend(path, subprotocols=subprotocols)
    return info.value.response.status_code


async def test_an_ownerless_call_is_not_given_to_a_bare_frontend(make_relay: RelayFactory) -> None:
    """A call that named no session never pairs with a signed-in user's bare /logs."""
    relay = await secured(make_relay)
    call = await relay.call("/call")
    await call.start()
    await relay.model.next_connection()
    stranger = await relay.frontend("/logs", subprotocols=offer("mallory"))
    assert "session.associated" not in stranger.types()
    await relay.wait_until_waiting(0)  # bare pairing is off: no waiting queue either
    assert call.call_sid in relay.server.registry.sessions
    assert stranger.types() == []
    await stranger.close()
    await call.hang_up()
    await relay.wait_idle()


@pytest.mark.parametrize("path", ["/logs/{sid}", "/logs?callSid={sid}", "/logs?sessionId={sid}"])
async def test_an_ownerless_call_is_claimed_only_by_a_token_naming_it(
        make_relay: RelayFactory, path: str) -> None:
    """/logs/{CallSid} or ?callSid= with a token without that sid is 403; with it, the owner joins."""
    relay = await secured(make_relay)
    call = await relay.call("/call")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.transcript_done("item_1", "hello from the call")
    sid = call.call_sid
    assert await refused_status(relay, path.format(sid=sid), offer("mallory")) == 403
    owner = await relay.frontend(path.format(sid=sid), subprotocols=offer("alice", sid))
    associated = await owner.wait_for("session.associated")
    assert associated["callSid"] == sid
    await owner.wait_for("session.resumed")  # the transcript so far, to its owner only
    # Now owned by alice: mallory's token naming the session is still another user's.
    assert await refused_status(relay, path.format(sid=sid), offer("mallory", sid)) == 403
    await call.hang_up()
    await owner.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    await relay.wait_idle()


async def test_a_strangers_call_does_not_pair_with_a_waiting_bare_frontend(
        make_relay: RelayFactory) -> None:
    """alice's bare /logs keeps waiting when someone else's call arrives without a session."""
    relay = await secured(make_relay)
    alice = await relay.frontend("/logs", subprotocols=offer("alice"))
    call = await relay.call("/call")
    await call.start()
    await relay.model.next_connection()
    assert call.call_sid in relay.server.registry.sessions
    await call.hang_up()
    await relay.wait_until_waiting(0)
    assert "session.associated" not in alice.types()
    await alice.close()
    await relay.wait_idle()


async def test_bare_pairing_can_be_turned_on_for_a_single_tenant_app(
        make_relay: RelayFactory) -> None:
    """RELAY_BARE_PAIRING=on restores the reference app's pairing with auth on."""
    relay = await secured(make_relay, bare_pairing="on")
    alice = await relay.frontend("/logs", subprotocols=offer("alice"))
    await relay.wait_until_waiting(1)
    call = await relay.call("/call")
    await call.start()
    associated = await alice.wait_for("session.associated")
    assert associated["callSid"] == call.call_sid
    await call.hang_up()
    await alice.close()
    await relay.wait_idle()


# -- stream tokens bind (CallSid, session) -------------------------------------------------------


def sign(url: str, params: dict[str, str] | None = None) -> str:
    return RequestValidator(TWILIO_TOKEN).compute_signature(url, params or {})


async def stream_token(relay: Relay, call_sid: str, session_id: str) -> str:
    form = {"CallSid": call_sid, "sessionId": session_id}
    headers = {"X-Twilio-Signature": sign(PUBLIC + "/twiml", form)}
    async with aiohttp.ClientSession() as http, http.post(
            relay.http + "/twiml", data=form, headers=headers) as resp:
        assert resp.status == 200
        root = ET.fromstring(await resp.text())
    return {p.get("name"): p.get("value") for p in root.iter("Parameter")}["streamToken"]


async def signed_call(relay: Relay, call_sid: str, path: str = "/call"):  # type: ignore[no-untyped-def]
    return await relay.call(path, call_sid=call_sid,
                            extra_headers={"X-Twilio-Signature": sign(f"wss://relay.example.com{path}")})


async def test_a_token_streams_only_into_its_own_session(make_relay: RelayFactory) -> None:
    """A start naming another session is refused, and does not use up the real stream's token."""
    relay = await make_relay(twilio_signatures="on", public_url=PUBLIC)
    session_a, session_b = str(uuid.uuid4()), str(uuid.uuid4())
    call_sid = "CA" + uuid.uuid4().hex
    token = await stream_token(relay, call_sid, session_a)
    intruder = await signed_call(relay, call_sid)
    await intruder.start({"sessionId": session_b, "streamToken": token})
    assert (await intruder.wait_closed())[0] == CloseCode.POLICY_VIOLATION
    assert session_b not in relay.server.registry.sessions
    real = await signed_call(relay, call_sid, f"/call/{session_a}")
    await real.start({"sessionId": session_a, "streamToken": token})
    await relay.model.next_connection()
    assert session_a in relay.server.registry.sessions
    await real.hang_up()
    await relay.wait_idle()


async def test_a_replayed_webhook_revokes_the_last_token(make_relay: RelayFactory) -> None:
    """One live token per CallSid: minting again makes the earlier token useless."""
    relay = await make_relay(twilio_signatures="on", public_url=PUBLIC)
    sid, call_sid = str(uuid.uuid4()), "CA" + uuid.uuid4().hex
    first = await stream_token(relay, call_sid, sid)
    second = await stream_token(relay, call_sid, sid)
    assert first != second
    old = await signed_call(relay, call_sid)
    await old.start({"sessionId": sid, "streamToken": first})
    assert (await old.wait_closed())[0] == CloseCode.POLICY_VIOLATION
    fresh = await signed_call(relay, call_sid)
    await fresh.start({"sessionId": sid, "streamToken": second})
    await relay.model.next_connection()
    await fresh.hang_up()
    await relay.wait_idle()
