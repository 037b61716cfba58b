"""No one hears another user's interview or spends the model credits; refusals come first."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
import uuid
import xml.etree.ElementTree as ET

import aiohttp
import jwt
import pytest
from twilio.request_validator import RequestValidator
from websockets.exceptions import InvalidStatus

from relay.messages.closecodes import CloseCode
from relay.security.auth import mint_token
from tests.conftest import TWILIO_TOKEN, Relay, RelayFactory
from tests.timing import WAIT, t

SECRET = "relay-test-secret-0123456789-abcdefgh"


def token(user: str, **kwargs) -> str:  # type: ignore[no-untyped-def]
    return mint_token(SECRET, user, **kwargs)


async def secured(make_relay: RelayFactory, **overrides) -> Relay:  # type: ignore[no-untyped-def]
    return await make_relay(auth_secret=SECRET, **overrides)


async def refused(relay: Relay, path: str, **kwargs) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidStatus) as info:
        await relay.frontend(path, **kwargs)
    return info.value.response.status_code


# -- frontend tokens ------------------------------------------------------------------------

async def test_valid_token_as_subprotocol_is_accepted(make_relay: RelayFactory) -> None:
    """A token offered beside relay.v1 is accepted and only relay.v1 is selected."""
    relay = await secured(make_relay)
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}", subprotocols=["relay.v1", token("alice")])
    assert fe.subprotocol == "relay.v1"
    await fe.send_json({"type": "job_config", "config": {"role": "Chef"}})
    assert (await fe.wait_for("job_config.ack"))["status"] == "queued"
    assert relay.server.registry.sessions[sid].session.user_id == "alice"
    await fe.send_json({"type": "session.end"})
    await relay.wait_idle()


@pytest.mark.parametrize("bad", ["missing", "expired", "audience", "alg-none", "wrong-key",
                                 "garbage", "no-sub"])
async def test_bad_tokens_are_refused_before_any_state(make_relay: RelayFactory, bad: str) -> None:
    """Missing, expired, foreign-audience, unsigned, wrongly signed tokens: 401, nothing created."""
    relay = await secured(make_relay)
    now = int(time.time())
    tokens = {
        "missing": None,
        "expired": jwt.encode({"sub": "a", "aud": "relay", "exp": now - 60}, SECRET, "HS256"),
        "audience": jwt.encode({"sub": "a", "aud": "other", "exp": now + 60}, SECRET, "HS256"),
        "alg-none": jwt.encode({"sub": "a", "aud": "relay", "exp": now + 60}, None, "none"),
        "wrong-key": jwt.encode({"sub": "a", "aud": "relay", "exp": now + 60},
                                "another-secret-0123456789-abcdefghijkl", "HS256"),
        "garbage": "not.a.jwt",
        "no-sub": jwt.encode({"aud": "relay", "exp": now + 60}, SECRET, "HS256"),
    }
    value = tokens[bad]
    protocols = ["relay.v1", value] if value else ["relay.v1"]
    assert await refused(relay, f"/logs/{uuid.uuid4()}", subprotocols=protocols) == 401
    assert await refused(relay, "/logs", subprotocols=protocols) == 401
    assert relay.server.registry.sessions == {}
    assert relay.server.health()["connections"]["frontend"] == 0


async def test_token_for_another_session_is_forbidden(make_relay: RelayFactory) -> None:
    """A token limited to one session (sid) cannot open another."""
    relay = await secured(make_relay)
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    limited = token("alice", session_id=mine)
    assert await refused(relay, f"/logs/{other}", subprotocols=["relay.v1", limited]) == 403
    assert await refused(relay, "/logs", subprotocols=["relay.v1", limited]) == 403
    fe = await relay.frontend(f"/logs/{mine}", subprotocols=["relay.v1", limited])
    await fe.close()
    await relay.wait_idle()


async def test_user_cannot_join_another_users_session(make_relay: RelayFactory) -> None:
    """Mallory's valid token does not open Alice's session: 403 on the handshake."""
    relay = await secured(make_relay)
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}", subprotocols=["relay.v1", token("alice")])
    await fe.send_json({"type": "job_config", "config": {"role": "Chef"}})
    await fe.wait_for("job_config.ack")
    assert await refused(relay, f"/logs/{sid}", subprotocols=["relay.v1", token("mallory")]) == 403
    # userId in the query is ignored once auth is on.
    assert await refused(relay, f"/logs/{sid}?userId=alice",
                         subprotocols=["relay.v1", token("mallory")]) == 403
    assert len(relay.server.registry.sessions[sid].frontends) == 1
    await fe.send_json({"type": "session.end"})
    await relay.wait_idle()


async def test_api_needs_a_token(make_relay: RelayFactory) -> None:
    """The API takes a bearer token or (for beacons) ?token=; none at all is 401."""
    relay = await secured(make_relay)
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}", subprotocols=["relay.v1", token("alice")])
    await fe.send_json({"type": "job_config", "config": {"role": "Chef"}})
    await fe.wait_for("job_config.ack")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{relay.http}/api/sessions/stop_all?userId=alice",
                             headers={"X-Relay-Request": "1"}) as resp:
            assert resp.status == 401
        async with http.post(f"{relay.http}/api/sessions/{sid}/stop?token={token('bob')}") as resp:
            assert resp.status == 403
        async with http.post(f"{relay.http}/api/sessions/{sid}/stop?token={token('alice')}",
                             data="bye") as resp:
            assert resp.status == 200
    await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {token('alice')}", "X-Relay-Request": "1"}
        async with http.post(f"{relay.http}/api/sessions/stop_all", headers=headers) as resp:
            assert resp.status == 200 and (await resp.json()) == {"stopped": 0}
    await relay.wait_idle()


# -- Twilio signatures and stream tokens ---------------------------------------------------------

PUBLIC = "https://relay.example.com"


def sign(url: str, params: dict[str, str] | None = None) -> str:
    return RequestValidator(TWILIO_TOKEN).compute_signature(url, params or {})


async def twiml_stream_token(relay: Relay, call_sid: str, session_id: str) -> str:
    form = {"CallSid": call_sid, "AccountSid": "AC" + "5" * 32, "sessionId": session_id}
    headers = {"X-Twilio-Signature": sign(PUBLIC + "/twiml", form)}
    async with aiohttp.ClientSession() as http:
        async with http.post(relay.http + "/twiml", data=form, headers=headers) as resp:
            assert resp.status == 200
            root = ET.fromstring(await resp.text())
    params = {p.get("name"): p.get("value") for p in root.iter("Parameter")}
    assert params["sessionId"] == session_id
    return params["streamToken"]


async def test_twiml_needs_a_valid_signature(make_relay: RelayFactory) -> None:
    """/twiml with a missing or forged signature is 403; a signed one gets a stream token."""
    relay = await make_relay(twilio_signatures="on", public_url=PUBLIC)
    form = {"CallSid": "CA" + "1" * 32}
    async with aiohttp.ClientSession() as http:
        async with http.post(relay.http + "/twiml", data=form) as resp:
            assert resp.status == 403
        forged = {"X-Twilio-Signature": sign(PUBLIC + "/twiml", {"CallSid": "CA" + "2" * 32})}
        async with http.post(relay.http + "/twiml", data=form, headers=forged) as resp:
            assert resp.status == 403
    assert await twiml_stream_token(relay, "CA" + "1" * 32, "s1")


async def test_unsigned_stream_is_refused_before_any_model_session(make_relay: RelayFactory) -> None:
    """A /call upgrade without a valid signature is refused (403); no model connection is tried."""
    relay = await make_relay(twilio_signatures="on", public_url=PUBLIC)
    for headers in ({}, {"X-Twilio-Signature": sign("wss://relay.example.com/other")}):
        with pytest.raises(InvalidStatus) as info:
            await relay.call("/call", extra_headers=headers)
        assert info.value.response.status_code == 403
    assert relay.model.attempts == 0


@pytest.mark.parametrize("case", ["missing", "forged", "reused", "other-call", "expired"])
async def test_stream_token_must_be_fresh_and_unused(make_relay: RelayFactory, case: str) -> None:
    """A signed stream whose start lacks a valid one-time token is closed 1008, no model opened."""
    ttl = t(0.2) if case == "expired" else 30.0
    relay = await make_relay(twilio_signatures="on", public_url=PUBLIC, stream_token_ttl_s=ttl)
    sid, call_sid = str(uuid.uuid4()), "CA" + uuid.uuid4().hex
    stream_token = await twiml_stream_token(relay, call_sid, sid)
    signed = {"X-Twilio-Signature": sign("wss://relay.example.com/call")}
    if case == "reused":
        first = await relay.call("/call", call_sid=call_sid, extra_headers=signed)
        await first.start({"sessionId": sid, "streamToken": stream_token})
        await relay.model.next_connection()
    params = {"sessionId": sid, "streamToken": stream_token}
    if case == "missing":
        del params["streamToken"]
    elif case == "forged":
        params["streamToken"] = "forged-token"
    elif case == "reused":
        params["sessionId"] = str(uuid.uuid4())
    elif case == "expired":
        await asyncio.sleep(t(0.3))  # the token's TTL runs out (a wall-clock rule by design)
    call = await relay.call("/call", call_sid="CA" + uuid.uuid4().hex if case == "other-call"
                            else call_sid, extra_headers=signed)
    await call.start(params)
    code, _ = await call.wait_closed()
    assert code == CloseCode.POLICY_VIOLATION
    assert relay.model.attempts == (1 if case == "reused" else 0)
    if case == "reused":
        await first.hang_up()
    await relay.wait_idle()


async def test_signed_stream_with_token_goes_live(make_relay: RelayFactory) -> None:
    """The full secured path: signed webhook, token, signed upgrade, start → live call."""
    relay = await make_relay(twilio_signatures="on", public_url=PUBLIC)
    sid, call_sid = str(uuid.uuid4()), "CA" + uuid.uuid4().hex
    stream_token = await twiml_stream_token(relay, call_sid, sid)
    call = await relay.call(f"/call/{sid}", call_sid=call_sid, extra_headers={
        "X-Twilio-Signature": sign(f"wss://relay.example.com/call/{sid}")})
    await call.start({"streamToken": stream_token})
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    await call.hang_up()
    await relay.wait_idle()


# -- origins, limits -------------------------------------------------------------------------------

async def test_connection_rate_limit(make_relay: RelayFactory) -> None:
    """Past the burst, handshakes from one address get 429 until the bucket refills."""
    relay = await make_relay(conn_rate_per_s=0.001, conn_burst=3)
    statuses = []
    for _ in range(5):
        async with aiohttp.ClientSession() as http, http.get(relay.http + "/health") as resp:
            statuses.append(resp.status)
    assert statuses == [200, 200, 200, 429, 429]


async def test_session_caps(make_relay: RelayFactory) -> None:
    """Overall session cap (503) and frontends-per-session cap (409) refuse on the handshake."""
    relay = await make_relay(max_sessions=2, max_frontends_per_session=2)
    sid = str(uuid.uuid4())
    a = await relay.frontend(f"/logs/{sid}")
    b = await relay.frontend(f"/logs/{sid}")
    assert await refused(relay, f"/logs/{sid}") == 409
    await a.send_json({"type": "job_config", "config": {"role": "Chef"}})
    other = await relay.frontend(f"/logs/{uuid.uuid4()}")
    await other.send_json({"type": "job_config", "config": {"role": "Chef"}})
    assert await refused(relay, f"/logs/{uuid.uuid4()}") == 503
    call = await relay.call("/call")
    await call.start()
    code, _ = await call.wait_closed()
    assert code == 1013
    for fe in (a, b, other):
        await fe.send_json({"type": "session.end"})
    await relay.wait_idle()


async def test_per_user_cap(make_relay: RelayFactory) -> None:
    """A user cannot hold more sessions than RELAY_MAX_SESSIONS_PER_USER, ending ones included."""
    relay = await make_relay(max_sessions_per_user=1)
    fe = await relay.frontend(f"/logs/{uuid.uuid4()}?userId=alice")
    await fe.send_json({"type": "job_config", "config": {"role": "Chef"}})
    await fe.wait_for("job_config.ack")
    assert await refused(relay, f"/logs/{uuid.uuid4()}?userId=alice") == 429
    await fe.send_json({"type": "session.end"})
    await relay.wait_idle()


async def test_slow_reader_is_closed_not_buffered(make_relay: RelayFactory) -> None:
    """A frontend that stops reading is closed (1013) once its send buffer passes the bound."""
    relay = await make_relay(max_send_buffer=64 * 1024)
    sid = str(uuid.uuid4())
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    # A peer that never reads, with a small receive window so the kernel
    # cannot absorb what relay sends: the bytes pile up in relay's buffer.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", relay.server.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /logs/{sid} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    runner = relay.server.registry.sessions[sid]
    await asyncio.wait_for(_until(lambda: len(runner.frontends) == 1), WAIT)
    for _ in range(2000):  # up to 10 MB of transcript the frontend never reads
        await upstream.transcript_delta("item_1", "x" * 5000)
        if not runner.frontends:
            break
    await asyncio.wait_for(_until(lambda: not runner.frontends), WAIT)
    assert runner.session.state.name == "LIVE"  # the call goes on without that frontend
    writer.close()
    await call.hang_up()
    await relay.wait_idle()


async def _until(predicate) -> None:  # type: ignore[no-untyped-def]
    while not predicate():
        await asyncio.sleep(0.005)
