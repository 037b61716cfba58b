"""The simulated peers against each other and against tiny loopback servers, without the relay."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from relay_sim.frontend import SimulatedFrontend
from relay_sim.inbox import PeerClosed, WaitTimeout
from relay_sim.realtime_server import RealtimeServer, session_update_error
from relay_sim.twilio_call import (
    FRAME_BYTES,
    SimulatedCall,
    linear_to_ulaw,
    ulaw_silence,
    ulaw_tone,
)
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidStatus

from tests.timing import WAIT, t

SILENCE_FRAME = b"\xff" * FRAME_BYTES


@dataclass
class TinyServer:
    """A loopback server that hands each accepted connection to the test."""

    url: str
    accepted: asyncio.Queue[ServerConnection]

    async def next(self) -> ServerConnection:
        async with asyncio.timeout(WAIT):
            return await self.accepted.get()


@pytest.fixture
async def tiny() -> AsyncIterator[TinyServer]:
    accepted: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        accepted.put_nowait(ws)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield TinyServer(f"ws://127.0.0.1:{port}", accepted)


async def recv_json(ws: Any) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        message = orjson.loads(await ws.recv())
    assert isinstance(message, dict)
    return message


async def send_json(ws: Any, message: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(message).decode())


async def call_and_server(
    tiny: TinyServer, **kwargs: Any
) -> tuple[SimulatedCall, ServerConnection]:
    call = await SimulatedCall.connect(tiny.url, **kwargs)
    return call, await tiny.next()


def outbound(stream_sid: str, event: str, **fields: Any) -> dict[str, Any]:
    return {"event": event, "streamSid": stream_sid, **fields}


# --- SimulatedCall ----------------------------------------------------------------------------


async def test_call_start_sends_connected_then_start_exactly(tiny: TinyServer) -> None:
    """start() sends Twilio's connected and start messages with the exact provider shapes."""
    call, ws = await call_and_server(tiny, custom_parameters={"sessionId": "s-1"})
    async with call:
        await call.start()
        assert await recv_json(ws) == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        assert await recv_json(ws) == {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": call.account_sid,
                "streamSid": call.stream_sid,
                "callSid": call.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": {"sessionId": "s-1"},
            },
            "streamSid": call.stream_sid,
        }


async def test_call_sids_are_random_and_well_formed_unless_given(tiny: TinyServer) -> None:
    """SIDs are CA/MZ/AC plus 32 hex characters, random per call, or exactly those given."""
    first, _ = await call_and_server(tiny)
    second, _ = await call_and_server(tiny, call_sid="CA" + "1" * 32, stream_sid="MZ" + "2" * 32)
    async with first, second:
        sids = {"CA": first.call_sid, "MZ": first.stream_sid, "AC": first.account_sid}
        for prefix, sid in sids.items():
            assert re.fullmatch(prefix + "[0-9a-f]{32}", sid)
        assert second.call_sid == "CA" + "1" * 32 and second.stream_sid == "MZ" + "2" * 32
        assert first.account_sid != second.account_sid


async def test_call_media_advances_sequence_chunk_and_timestamp(tiny: TinyServer) -> None:
    """Each media frame advances sequenceNumber and chunk by 1 and timestamp by 20 ms."""
    call, ws = await call_and_server(tiny)
    async with call:
        await call.start()
        tone = ulaw_tone(20)
        await call.send_media()
        await call.send_media(tone)
        await call.send_media(tone)
        await recv_json(ws)
        await recv_json(ws)
        frames = [await recv_json(ws) for _ in range(3)]
        assert [f["sequenceNumber"] for f in frames] == ["2", "3", "4"]
        assert [f["media"]["chunk"] for f in frames] == ["1", "2", "3"]
        assert [f["media"]["timestamp"] for f in frames] == ["0", "20", "40"]
        assert frames[0] == {
            "event": "media",
            "sequenceNumber": "2",
            "media": {
                "track": "inbound",
                "chunk": "1",
                "timestamp": "0",
                "payload": base64.b64encode(SILENCE_FRAME).decode(),
            },
            "streamSid": call.stream_sid,
        }
        assert base64.b64decode(frames[1]["media"]["payload"]) == tone


async def test_call_dtmf_mark_and_stop_shapes(tiny: TinyServer) -> None:
    """dtmf, mark and stop carry the provider's fields and keep counting sequence numbers."""
    call, ws = await call_and_server(tiny)
    async with call:
        await call.start()
        await call.send_dtmf("7")
        await call.send_mark("greeting")
        await call.send_stop()
        await recv_json(ws)
        await recv_json(ws)
        sid = call.stream_sid
        assert await recv_json(ws) == {
            "event": "dtmf",
            "streamSid": sid,
            "sequenceNumber": "2",
            "dtmf": {"track": "inbound_track", "digit": "7"},
        }
        assert await recv_json(ws) == {
            "event": "mark",
            "sequenceNumber": "3",
            "streamSid": sid,
            "mark": {"name": "greeting"},
        }
        assert await recv_json(ws) == {
            "event": "stop",
            "sequenceNumber": "4",
            "streamSid": sid,
            "stop": {"accountSid": call.account_sid, "callSid": call.call_sid},
        }


async def test_call_echoes_outbound_marks_after_recording_the_audio_before_them(
    tiny: TinyServer,
) -> None:
    """An outbound mark is echoed back by name once the media before it is recorded."""
    call, ws = await call_and_server(tiny)
    async with call:
        await call.start()
        await recv_json(ws)
        await recv_json(ws)
        audio = ulaw_tone(40)
        payload = base64.b64encode(audio).decode()
        await send_json(ws, outbound(call.stream_sid, "media", media={"payload": payload}))
        await send_json(ws, outbound(call.stream_sid, "mark", mark={"name": "turn-1"}))
        echo = await recv_json(ws)
        assert echo == {
            "event": "mark",
            "sequenceNumber": "2",
            "streamSid": call.stream_sid,
            "mark": {"name": "turn-1"},
        }
        assert call.audio_received() == audio
        assert [m["event"] for m in call.received] == ["media", "mark"]
        assert call.protocol_errors == []


async def test_call_clear_echoes_pending_marks_when_auto_ack_is_off(tiny: TinyServer) -> None:
    """With auto_ack_marks off, marks wait until a clear, which echoes them all in order."""
    call, ws = await call_and_server(tiny, auto_ack_marks=False)
    async with call:
        for name in ("a", "b"):
            await send_json(ws, outbound(call.stream_sid, "mark", mark={"name": name}))
        await call.wait_for("mark", lambda m: m["mark"]["name"] == "b", timeout=WAIT)
        assert call.pending_marks == ["a", "b"]
        await call.send_dtmf("1")  # the next frame the server sees proves no mark was echoed
        assert (await recv_json(ws))["event"] == "dtmf"
        await send_json(ws, outbound(call.stream_sid, "clear"))
        names = [(await recv_json(ws))["mark"]["name"] for _ in range(2)]
        assert names == ["a", "b"]
        assert call.pending_marks == []


async def test_call_wait_for_keeps_a_cursor_over_earlier_and_skipped_messages(
    tiny: TinyServer,
) -> None:
    """wait_for returns messages that arrived before the wait, each once, skipped ones later."""
    call, ws = await call_and_server(tiny)
    async with call:
        for n in (1, 2):
            media = {"payload": base64.b64encode(bytes([n]) * 4).decode()}
            await send_json(ws, outbound(call.stream_sid, "media", media=media))
        await send_json(ws, outbound(call.stream_sid, "clear"))
        await call.wait_for("clear", timeout=WAIT)
        first = await call.wait_for("media", timeout=WAIT)
        second = await call.wait_for("media", timeout=WAIT)
        assert base64.b64decode(first["media"]["payload"]) == b"\x01" * 4
        assert base64.b64decode(second["media"]["payload"]) == b"\x02" * 4
        with pytest.raises(WaitTimeout):
            await call.wait_for("media", timeout=t(0.05))
        assert call.audio_received() == b"\x01" * 4 + b"\x02" * 4


async def test_call_wait_closed_reports_the_close_and_waits_fail_fast(tiny: TinyServer) -> None:
    """When the server closes, wait_closed returns its code and pending waits raise PeerClosed."""
    call, ws = await call_and_server(tiny)
    waiting = asyncio.create_task(call.wait_for("clear", timeout=WAIT))
    await ws.close(4000, "bye")
    assert await call.wait_closed(WAIT) == (4000, "bye")
    with pytest.raises(PeerClosed) as caught:
        await waiting
    assert caught.value.code == 4000
    assert call.is_closed
    await call.close()  # idempotent after the peer closed


async def test_call_records_protocol_errors_and_unparsed_frames(tiny: TinyServer) -> None:
    """Outbound media for another stream, bad base64 and non-JSON frames are recorded, not fatal."""
    call, ws = await call_and_server(tiny)
    async with call:
        await send_json(ws, outbound("MZother", "media", media={"payload": "AAAA"}))
        await send_json(ws, outbound(call.stream_sid, "media", media={"payload": "!!"}))
        await ws.send(b"\x00\x01")
        await ws.send("not json")
        await send_json(ws, outbound(call.stream_sid, "clear"))
        await call.wait_for("clear", timeout=WAIT)
        assert len(call.protocol_errors) == 2
        assert call.unparsed == [b"\x00\x01", "not json"]


async def test_call_connects_to_the_path_with_extra_headers(tiny: TinyServer) -> None:
    """connect() opens base_url + path and sends the extra headers (e.g. a signature)."""
    call, ws = await call_and_server(
        tiny, path="/call/s-9", extra_headers={"X-Twilio-Signature": "sig"}
    )
    async with call:
        assert ws.request is not None
        assert ws.request.path == "/call/s-9"
        assert ws.request.headers["X-Twilio-Signature"] == "sig"


async def test_call_speak_and_paced_media_send_tone_and_silence_frames(tiny: TinyServer) -> None:
    """speak() sends a continuous tone or silence; send_media_paced sends every frame in order."""
    call, ws = await call_and_server(tiny)
    async with call:
        await call.speak(2)
        await call.speak(1, loud=False)
        await call.send_media_paced([b"\x01" * 160, b"\x02" * 160], interval=0)
        payloads = [base64.b64decode((await recv_json(ws))["media"]["payload"]) for _ in range(5)]
        assert payloads[0] + payloads[1] == ulaw_tone(40)
        assert payloads[2] == SILENCE_FRAME
        assert payloads[3:] == [b"\x01" * 160, b"\x02" * 160]
        await call.send_raw("{broken")
        async with asyncio.timeout(WAIT):
            assert await ws.recv() == "{broken"


def test_ulaw_encoding_matches_g711() -> None:
    """The μ-law encoder maps 0 to 0xFF, full scale to 0x80/0x00, and the tone is audible."""
    assert linear_to_ulaw(0) == 0xFF
    assert linear_to_ulaw(32767) == 0x80
    assert linear_to_ulaw(-32768) == 0x00
    assert linear_to_ulaw(-1) == 0x7F
    tone = ulaw_tone(20)
    assert len(tone) == 160 and len(set(tone)) > 10
    assert ulaw_silence(20) == SILENCE_FRAME


# --- SimulatedFrontend ------------------------------------------------------------------------


async def test_frontend_sends_json_and_waits_by_type(tiny: TinyServer) -> None:
    """The frontend sends JSON, waits by type with a cursor, and keeps binary frames raw."""
    frontend = await SimulatedFrontend.connect(tiny.url, "/logs/s-1")
    ws = await tiny.next()
    async with frontend:
        await frontend.send_json({"type": "job_config", "config": {"role": "Engineer"}})
        assert await recv_json(ws) == {"type": "job_config", "config": {"role": "Engineer"}}
        await ws.send(b"\x00binary")
        await send_json(ws, {"type": "session.associated", "sessionId": "s-1"})
        await send_json(ws, {"type": "job_config.ack", "status": "queued"})
        await send_json(ws, {"type": "job_config.ack", "status": "applied"})
        applied = await frontend.wait_for(
            "job_config.ack", lambda m: m["status"] == "applied", timeout=WAIT
        )
        assert applied["status"] == "applied"
        queued = await frontend.wait_for_any(["job_config.ack", "error"], timeout=WAIT)
        assert queued["status"] == "queued"
        assert (await frontend.wait_for_any(timeout=WAIT))["type"] == "session.associated"
        assert frontend.types() == ["session.associated", "job_config.ack", "job_config.ack"]
        assert frontend.unparsed == [b"\x00binary"]
        await frontend.send_raw("not json")
        async with asyncio.timeout(WAIT):
            assert await ws.recv() == "not json"


async def test_frontend_closed_after_proves_a_message_preceded_the_close(
    tiny: TinyServer,
) -> None:
    """closed_after is true only once closed, for types that arrived before the close."""
    frontend = await SimulatedFrontend.connect(tiny.url, "/logs?callSid=CA1")
    ws = await tiny.next()
    await send_json(ws, {"type": "call.status_changed", "status": "ended"})
    await frontend.wait_for("call.status_changed", timeout=WAIT)
    assert not frontend.closed_after("call.status_changed")
    await ws.close(1000, "session ended")
    assert await frontend.wait_closed(WAIT) == (1000, "session ended")
    assert frontend.closed_after("call.status_changed")
    assert not frontend.closed_after("error")
    with pytest.raises(PeerClosed):
        await frontend.wait_for("error", timeout=WAIT)


async def test_frontend_offers_subprotocols_and_origin(tiny: TinyServer) -> None:
    """connect() sends Origin and Sec-WebSocket-Protocol, as a browser would."""
    frontend = await SimulatedFrontend.connect(
        tiny.url, "/logs", subprotocols=["relay.v1"], origin="https://app.example"
    )
    ws = await tiny.next()
    async with frontend:
        assert ws.request is not None
        assert ws.request.headers["Origin"] == "https://app.example"
        assert ws.request.headers["Sec-WebSocket-Protocol"] == "relay.v1"
        assert frontend.subprotocol is None  # the tiny server selects none


# --- RealtimeServer ---------------------------------------------------------------------------


async def open_client(url: str, headers: dict[str, str] | None = None) -> SimulatedFrontend:
    """A GA client for the fake server: the simulated frontend is a fine JSON peer."""
    parts = urlsplit(url)
    path = f"{parts.path}?{parts.query}" if parts.query else parts.path
    return await SimulatedFrontend.connect(f"ws://{parts.netloc}", path, extra_headers=headers)


@pytest.fixture
async def realtime() -> AsyncIterator[RealtimeServer]:
    async with RealtimeServer() as server:
        yield server


async def test_realtime_greets_with_a_ga_session_created(realtime: RealtimeServer) -> None:
    """On connect the server sends a GA session.created and records the request path."""
    assert realtime.url is not None and re.fullmatch(
        r"ws://127\.0\.0\.1:\d+/v1/realtime\?model=gpt-realtime", realtime.url
    )
    async with await open_client(realtime.url) as client:
        created = await client.wait_for("session.created", timeout=WAIT)
        assert created["event_id"].startswith("event_")
        session = created["session"]
        assert session["type"] == "realtime" and session["model"] == "gpt-realtime"
        assert session["id"].startswith("sess_")
        connection = await realtime.next_connection(WAIT)
        assert connection.path == "/v1/realtime?model=gpt-realtime"
        assert realtime.connections == [connection] and realtime.attempts == 1


async def test_realtime_answers_session_update_with_the_merged_session(
    realtime: RealtimeServer,
) -> None:
    """A GA session.update is recorded and answered with session.updated showing the change."""
    async with await open_client(realtime.url or "") as client:
        update = {
            "type": "realtime",
            "instructions": "Interview for Backend Engineer",
            "audio": {"output": {"voice": "marin", "format": {"type": "audio/pcmu"}}},
        }
        await client.send_json({"type": "session.update", "session": update})
        session = (await client.wait_for("session.updated", timeout=WAIT))["session"]
        assert session["instructions"] == "Interview for Backend Engineer"
        output = {"voice": "marin", "format": {"type": "audio/pcmu"}, "speed": 1}
        assert session["audio"]["output"] == output
        assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        connection = await realtime.next_connection(WAIT)
        received = await connection.wait_for("session.update", timeout=WAIT)
        assert received["session"] == update


async def test_realtime_rejects_beta_shaped_session_updates(realtime: RealtimeServer) -> None:
    """A session.update without session.type or with beta fields gets a GA error, not applied."""
    async with await open_client(realtime.url or "") as client:
        await client.send_json({"type": "session.update", "event_id": "e1", "session": {}})
        await client.send_json(
            {"type": "session.update", "session": {"type": "realtime", "modalities": ["audio"]}}
        )
        first = (await client.wait_for("error", timeout=WAIT))["error"]
        assert first["code"] == "missing_required_parameter" and first["event_id"] == "e1"
        second = (await client.wait_for("error", timeout=WAIT))["error"]
        assert second["param"] == "session.modalities"
        assert client.types().count("session.updated") == 0
    assert session_update_error({"type": "realtime", "audio": {}}) is None


async def test_realtime_echoes_audio_and_counts_appends() -> None:
    """With echo_audio each append comes back as an output_audio.delta with the same base64."""
    async with RealtimeServer(echo_audio=True, auto_session_updated=False) as server:
        async with await open_client(server.url or "") as client:
            await client.send_json({"type": "session.update", "session": {"type": "realtime"}})
            for n in range(3):
                audio = base64.b64encode(bytes([n]) * 160).decode()
                await client.send_json({"type": "input_audio_buffer.append", "audio": audio})
            kind = "response.output_audio.delta"
            deltas = [await client.wait_for(kind, timeout=WAIT) for _ in range(3)]
            echoed = [base64.b64decode(d["delta"]) for d in deltas]
            assert echoed == [bytes([n]) * 160 for n in range(3)]
            fields = ["type", "event_id", "response_id", "item_id", "output_index"]
            assert list(deltas[0]) == fields + ["content_index", "delta"]
            # The first reply after session.created was an echo: session.update went unanswered.
            assert client.types()[:2] == ["session.created", "response.output_audio.delta"]
            connection = await server.next_connection(WAIT)
            assert (connection.appended, connection.echoed) == (3, 3)
            assert [m["type"] for m in connection.received] == ["session.update"]


async def test_realtime_records_appends_unless_echoing(realtime: RealtimeServer) -> None:
    """Without echo_audio, appended audio is kept in received for the test to inspect."""
    async with await open_client(realtime.url or "") as client:
        await client.send_json({"type": "input_audio_buffer.append", "audio": "//8="})
        connection = await realtime.next_connection(WAIT)
        append = await connection.wait_for("input_audio_buffer.append", timeout=WAIT)
        assert append["audio"] == "//8=" and connection.appended == 1 and connection.echoed == 0


async def test_realtime_refuses_the_first_handshakes_and_counts_attempts() -> None:
    """refuse_first=N answers N handshakes with the refuse status, then accepts; all counted."""
    async with RealtimeServer(refuse_first=2, refuse_status=502) as server:
        for _ in range(2):
            with pytest.raises(InvalidStatus) as caught:
                await connect(server.url or "")
            assert caught.value.response.status_code == 502
        await server.wait_attempts(2, WAIT)
        async with await open_client(server.url or "") as client:
            await client.wait_for("session.created", timeout=WAIT)
        assert server.attempts == 3 and len(server.connections) == 1


async def test_realtime_never_open_refuses_every_handshake() -> None:
    """never_open answers every handshake with 503 and accepts no connection."""
    async with RealtimeServer(never_open=True) as server:
        for _ in range(3):
            with pytest.raises(InvalidStatus) as caught:
                await connect(server.url or "")
            assert caught.value.response.status_code == 503
        assert server.attempts == 3 and server.connections == []
        with pytest.raises(WaitTimeout):
            await server.next_connection(t(0.05))


async def test_realtime_requires_the_api_key_when_set() -> None:
    """With api_key set, a missing or wrong bearer token gets 401; the right one connects."""
    async with RealtimeServer(api_key="sk-test") as server:
        for headers in (None, {"Authorization": "Bearer wrong"}):
            with pytest.raises(InvalidStatus) as caught:
                await connect(server.url or "", additional_headers=headers)
            assert caught.value.response.status_code == 401
        async with await open_client(server.url or "", {"Authorization": "Bearer sk-test"}):
            connection = await server.next_connection(WAIT)
            assert connection.request_headers["Authorization"] == "Bearer sk-test"


async def test_realtime_function_call_script_has_ga_shapes(realtime: RealtimeServer) -> None:
    """function_call sends the item added, arguments done, item done and response.done."""
    async with await open_client(realtime.url or "") as client:
        connection = await realtime.next_connection(WAIT)
        call_id = await connection.function_call("end_interview", {"reason": "done"})
        kinds = [
            "response.created",
            "response.output_item.added",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.done",
        ]
        events = [await client.wait_for(kind, timeout=WAIT) for kind in kinds]
        assert client.types()[1:] == kinds
        response_id = events[0]["response"]["id"]
        assert all(e["response_id"] == response_id for e in events[1:4])
        arguments = events[2]
        assert (arguments["name"], arguments["call_id"]) == ("end_interview", call_id)
        assert orjson.loads(arguments["arguments"]) == {"reason": "done"}
        item = events[3]["item"]
        assert {k: item[k] for k in ("type", "name", "call_id", "arguments", "status")} == {
            "type": "function_call",
            "name": "end_interview",
            "call_id": call_id,
            "arguments": arguments["arguments"],
            "status": "completed",
        }
        assert events[4]["response"]["output"] == [item]
        assert events[4]["response"]["id"] == response_id


async def test_realtime_scripts_a_spoken_turn(realtime: RealtimeServer) -> None:
    """speech events, the caller's transcript and respond_with_audio arrive in the API's order."""
    async with await open_client(realtime.url or "") as client:
        connection = await realtime.next_connection(WAIT)
        item_id = await connection.speech_started()
        await connection.speech_stopped(item_id, audio_end_ms=900)
        await connection.input_transcript(item_id, "Hello")
        audio = ulaw_tone(200)
        response_id, reply_id = await connection.respond_with_audio(audio, "Hi there")
        done = await client.wait_for("response.done", timeout=WAIT)
        assert done["response"]["id"] == response_id
        assert client.types()[1:4] == [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "conversation.item.input_audio_transcription.completed",
        ]
        deltas = [m for m in client.received if m["type"] == "response.output_audio.delta"]
        assert b"".join(base64.b64decode(d["delta"]) for d in deltas) == audio
        assert {d["item_id"] for d in deltas} == {reply_id}
        transcript = await client.wait_for("response.output_audio_transcript.done", timeout=WAIT)
        assert transcript["transcript"] == "Hi there"


async def test_realtime_connection_waits_and_closes_from_either_side(
    realtime: RealtimeServer,
) -> None:
    """Client events wait with a cursor; closed is set whether the client or server closes."""
    url = realtime.url or ""
    first = await open_client(url)
    conn_first = await realtime.next_connection(WAIT)
    await first.send_json({"type": "conversation.item.create", "item": {"type": "message"}})
    await first.send_raw("garbage")
    assert (await conn_first.wait_for("conversation.item.create", timeout=WAIT))["item"]
    assert (await first.wait_for("error", timeout=WAIT))["error"]["code"] == "invalid_json"
    assert conn_first.unparsed == ["garbage"]
    await first.close()
    async with asyncio.timeout(WAIT):
        await conn_first.closed.wait()
    assert conn_first.close_code == 1000

    second = await open_client(url)
    conn_second = await realtime.next_connection(WAIT)
    await conn_second.close(4001, "test")
    assert await second.wait_closed(WAIT) == (4001, "test")
    assert conn_second.closed.is_set()

    third = await open_client(url)
    conn_third = await realtime.next_connection(WAIT)
    await realtime.stop()
    assert (await third.wait_closed(WAIT))[0] == 1001
    assert conn_third.closed.is_set()
    await realtime.stop()  # idempotent
