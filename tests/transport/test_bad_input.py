"""Bad input of any kind gets a clear error or close code, and harms no session."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest
from websockets.exceptions import InvalidStatus

from relay.messages.closecodes import CloseCode
from tests.conftest import Relay, RelayFactory


async def still_works(fe, call, upstream) -> None:  # type: ignore[no-untyped-def]
    await call.send_media(b"\x42" * 160)
    await upstream.wait_for("input_audio_buffer.append")
    await fe.send_json({"type": "activity"})
    await call.hang_up()
    await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")


@pytest.mark.parametrize("raw, code", [
    ("{not json", "malformed_message"),
    ("[1, 2, 3]", "malformed_message"),
    ('{"type": "rm -rf"}', "unknown_message_type"),
    ('{"no_type": true}', "unknown_message_type"),
    ('{"type": "input_audio_buffer.append", "audio": "AAAA"}', "unknown_message_type"),
    ('{"type": "session.update", "session": "x"}', "malformed_message"),
    ('{"type": "response.create", "response": {"tools": []}}', "malformed_message"),
    ('{"type": "conversation.item.create", "item": {"type": "function_call"}}',
     "unknown_message_type"),
])
async def test_frontend_bad_messages_get_errors(relay: Relay, raw: str, code: str) -> None:
    """Malformed or undocumented frontend messages get an error and nothing is forwarded."""
    bystander = (await relay.live_session())[1:]
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    await fe.send_raw(raw)
    err = await fe.wait_for("error")
    assert err["code"] == code and err["message"]
    await fe.send_json({"type": "job_config", "config": {"role": "Chef"}})
    assert (await fe.wait_for("job_config.ack"))["status"] == "queued"
    await fe.send_json({"type": "session.end"})
    await fe.wait_closed()
    await still_works(*bystander)
    await relay.wait_idle()


async def test_oversized_frontend_message_closes_with_1009(relay: Relay) -> None:
    """A frontend message over the size limit closes that connection with 1009 only."""
    bystander = (await relay.live_session())[1:]
    fe = await relay.frontend(f"/logs/{uuid.uuid4()}")
    await fe.send_raw('{"type":"activity","pad":"' + "x" * 100_000 + '"}')
    code, _ = await fe.wait_closed()
    assert code == CloseCode.MESSAGE_TOO_BIG
    await still_works(*bystander)
    await relay.wait_idle()


@pytest.mark.parametrize("first", [
    '{"event":"media","media":{"payload":"AAAA"},"streamSid":"MZ1"}',
    '{"event":"stop","stop":{"callSid":"CA1"}}',
    "not json at all",
    '{"event":"teleport"}',
    '{"event":"start","start":{"streamSid":"MZ 1; drop","callSid":"CA1"}}',
])
async def test_call_bad_first_messages_close_with_1008(relay: Relay, first: str) -> None:
    """Media before start, unknown or malformed messages close the stream with 1008."""
    bystander = (await relay.live_session())[1:]
    call = await relay.call("/call")
    await call.send_connected()
    await call.send_raw(first)
    code, _ = await call.wait_closed()
    assert code == CloseCode.POLICY_VIOLATION
    await still_works(*bystander)
    await relay.wait_idle()


async def test_call_without_start_times_out(relay: Relay) -> None:
    """A stream that never sends start is closed with 4008 after the start timeout."""
    call = await relay.call("/call")
    await call.send_connected()
    code, _ = await call.wait_closed()
    assert code == CloseCode.START_TIMEOUT
    await relay.wait_idle()


async def test_malformed_frames_mid_call_are_dropped(relay: Relay) -> None:
    """After start, bad frames are logged and dropped: the interview carries on."""
    fe, call, upstream = (await relay.live_session())[1:]
    await call.send_raw("garbage")
    await call.send_raw('{"event":"media","media":{}}')
    await call.send_raw('{"event":"dtmf","dtmf":{"digit":"12"}}')
    await still_works(fe, call, upstream)
    await relay.wait_idle()


async def test_oversized_call_frame_closes_with_1009(relay: Relay) -> None:
    """A Twilio frame over the /call limit closes the stream with 1009 and ends its session."""
    fe, call, upstream = (await relay.live_session())[1:]
    await call.send_raw('{"event":"media","media":{"payload":"' + "A" * 40_000 + '"}}')
    code, _ = await call.wait_closed()
    assert code == CloseCode.MESSAGE_TOO_BIG
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "call_dropped"
    await relay.wait_idle()


@pytest.mark.parametrize("path, status", [
    ("/call/a/b", 404),
    ("/logs/a/b", 404),
    ("/logs/bad%20id%3B", 400),
    ("/logs?dialect=klingon", 400),
])
async def test_bad_websocket_paths_are_refused(relay: Relay, path: str, status: int) -> None:
    """WebSocket paths relay does not serve are refused with a clear HTTP status."""
    with pytest.raises(InvalidStatus) as info:
        await relay.frontend(path)
    assert info.value.response.status_code == status


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/nope", 404),
    ("POST", "/health/../../etc", 404),
    ("DELETE", "/twiml", 405),
    ("GET", "/api/sessions/reset", 405),
])
async def test_bad_http_requests(relay: Relay, method: str, path: str, status: int) -> None:
    """Unknown HTTP paths and wrong methods get 404 / 405 with a JSON error."""
    async with aiohttp.ClientSession() as http, http.request(method, relay.http + path) as resp:
        assert resp.status == status
        body = await resp.json()
        assert body["error"] and body["message"]


async def test_unknown_session_id_for_call_creates_it(relay: Relay) -> None:
    """A call naming an unknown session starts that session; its frontend may come later."""
    sid = str(uuid.uuid4())
    call = await relay.call(f"/call/{sid}")
    await call.start()
    await relay.model.next_connection()
    assert sid in relay.server.registry.sessions
    await call.hang_up()
    await relay.wait_idle()


async def test_many_bad_connections_leave_nothing_behind(make_relay: RelayFactory) -> None:
    """A burst of connections that misbehave in different ways leaves no session or socket."""
    relay = await make_relay()

    async def misbehave(i: int) -> None:
        if i % 3 == 0:
            call = await relay.call("/call")
            await call.send_raw("{}")
            await call.wait_closed()
        elif i % 3 == 1:
            fe = await relay.frontend("/logs")
            await fe.send_raw("{")
            await fe.wait_for("error")
            await fe.close()
        else:
            fe = await relay.frontend(f"/logs/{uuid.uuid4()}")
            await fe.close()

    await asyncio.gather(*(misbehave(i) for i in range(30)))
    await relay.wait_idle()
