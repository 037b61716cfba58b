"""Audio both ways in the providers' exact shapes, marks, barge-in, and end_interview."""

from __future__ import annotations

import base64
import uuid

from relay_sim.realtime_server import RealtimeConnection

from tests.conftest import Relay

# The relay under test marks every 100 ms of model audio (800 bytes at 8 kHz).
CHUNK = bytes(range(256)) * 3 + bytes(32)  # 800 bytes, recognisable


async def live_call(relay: Relay, *, auto_ack_marks: bool = True):  # type: ignore[no-untyped-def]
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}", auto_ack_marks=auto_ack_marks)
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    return fe, call, upstream


async def test_caller_audio_reaches_the_model_untouched(relay: Relay) -> None:
    """Each Twilio media payload becomes one input_audio_buffer.append with the same base64."""
    fe, call, upstream = await live_call(relay)
    frames = [bytes([i]) * 160 for i in range(5)]
    for frame in frames:
        await call.send_media(frame)
    for frame in frames:
        event = await upstream.wait_for("input_audio_buffer.append")
        assert event == {"type": "input_audio_buffer.append",
                         "audio": base64.b64encode(frame).decode()}
    await call.hang_up()
    await relay.wait_idle()


async def test_audio_before_the_model_opens_is_held_in_order(relay: Relay) -> None:
    """Caller audio that arrives while the model connects is sent, in order, once it opens."""
    relay.model.refuse_first = 2
    sid = str(uuid.uuid4())
    call = await relay.call(f"/call/{sid}")
    await call.start()
    frames = [bytes([i]) * 160 for i in range(10)]
    for frame in frames:
        await call.send_media(frame)
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    got = [base64.b64decode((await upstream.wait_for("input_audio_buffer.append"))["audio"])
           for _ in frames]
    assert got == frames
    # The session.update (pcmu) came before any audio.
    kinds = [m["type"] for m in upstream.received]
    assert kinds.index("session.update") < kinds.index("input_audio_buffer.append")
    await call.hang_up()
    await relay.wait_idle()


async def test_model_audio_reaches_the_caller_with_named_marks(relay: Relay) -> None:
    """Model audio deltas become Twilio media messages, followed by named marks."""
    fe, call, upstream = await live_call(relay)
    item = "item_audio_1"
    await upstream.audio_delta(item, CHUNK)
    media = await call.wait_for("media")
    assert media == {"event": "media", "streamSid": call.stream_sid,
                     "media": {"payload": base64.b64encode(CHUNK).decode()}}
    mark = await call.wait_for("mark")
    assert mark["streamSid"] == call.stream_sid and mark["mark"]["name"]
    await upstream.audio_done(item)
    final = await call.wait_for("mark")
    assert final["mark"]["name"] != mark["mark"]["name"]
    assert call.audio_received() == CHUNK
    assert not call.protocol_errors
    await call.hang_up()
    await relay.wait_idle()


async def test_barge_in_truncates_at_what_was_heard(relay: Relay) -> None:
    """Speech over played audio truncates the item at the audio acknowledged, and clears Twilio."""
    fe, call, upstream = await live_call(relay, auto_ack_marks=True)
    item = "item_barge_1"
    for _ in range(2):  # 200 ms, each 100 ms acknowledged by its mark echo
        await upstream.audio_delta(item, CHUNK)
        await call.wait_for("mark")
    await upstream.speech_started()
    truncate = await upstream.wait_for("conversation.item.truncate")
    assert truncate["item_id"] == item and truncate["content_index"] == 0
    # Everything sent was acknowledged as played; never more than was sent.
    assert truncate["audio_end_ms"] == 200
    clear = await call.wait_for("clear")
    assert clear == {"event": "clear", "streamSid": call.stream_sid}
    await call.hang_up()
    await relay.wait_idle()


async def test_barge_in_without_acknowledgement_never_exceeds_sent_audio(relay: Relay) -> None:
    """Without mark echoes, audio_end_ms is estimated from time but capped at what was sent."""
    fe, call, upstream = await live_call(relay, auto_ack_marks=False)
    item = "item_barge_2"
    await upstream.audio_delta(item, CHUNK[:400])  # 50 ms
    await call.wait_for("media")
    await upstream.speech_started()
    truncate = await upstream.wait_for("conversation.item.truncate")
    assert 0 <= truncate["audio_end_ms"] <= 50
    await call.wait_for("clear")
    await call.hang_up()
    await relay.wait_idle()


async def test_no_truncation_when_nothing_plays(relay: Relay) -> None:
    """Caller speech with no model audio in flight sends no truncate and no clear."""
    fe, call, upstream = await live_call(relay)
    await upstream.speech_started()
    started = await fe.wait_for("input_audio_buffer.speech_started")
    assert started
    await call.hang_up()
    await relay.wait_idle()
    assert "conversation.item.truncate" not in [m["type"] for m in upstream.received]
    assert "clear" not in [m["event"] for m in call.received]


async def say_goodbye_and_end(upstream: RealtimeConnection, item: str) -> str:
    response_id = await upstream.response_created()
    await upstream.audio_delta(item, CHUNK, response_id=response_id)
    await upstream.audio_done(item, response_id=response_id)
    return await upstream.function_call("end_interview", {"reason": "done"},
                                        response_id=response_id)


async def test_end_interview_waits_for_the_goodbye_to_play(relay: Relay) -> None:
    """end_interview ends the call only after the final mark of the goodbye comes back."""
    fe, call, upstream = await live_call(relay, auto_ack_marks=False)
    call_id = await say_goodbye_and_end(upstream, "item_bye")
    output = await upstream.wait_for("conversation.item.create")
    assert output["item"]["type"] == "function_call_output"
    assert output["item"]["call_id"] == call_id
    # Turn detection is switched off so the caller's next words start no new answer.
    off = await upstream.wait_for("session.update")
    assert off["session"]["audio"]["input"]["turn_detection"] is None
    await call.wait_for("mark")
    await call.wait_for("mark")  # the final mark, not echoed yet
    assert relay.server.registry.sessions  # still live: the goodbye is playing
    assert "response.create" not in [m["type"] for m in upstream.received]
    await call.ack_pending_marks()
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "interview_completed"
    await fe.wait_closed()
    assert fe.closed_after("call.status_changed")
    await relay.wait_idle()


async def test_end_interview_without_goodbye_asks_for_one(relay: Relay) -> None:
    """If the model ends without speaking, relay asks it for a goodbye and ends after it plays."""
    fe, call, upstream = await live_call(relay)
    await upstream.function_call("end_interview", {})
    request = await upstream.wait_for("response.create")
    assert "goodbye" in request["response"]["instructions"].lower()
    response_id = await upstream.response_created()
    await upstream.audio_delta("item_late_bye", CHUNK, response_id=response_id)
    await upstream.audio_done("item_late_bye", response_id=response_id)
    await upstream.response_done(response_id)
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "interview_completed"
    await relay.wait_idle()


async def test_other_tools_answer_and_continue(relay: Relay) -> None:
    """A regular tool call gets its output and a response.create so the model carries on."""
    fe, call, upstream = await live_call(relay)
    call_id = await upstream.function_call("get_interview_time", {})
    output = await upstream.wait_for("conversation.item.create")
    assert output["item"]["call_id"] == call_id and "elapsed_seconds" in output["item"]["output"]
    await upstream.wait_for("response.create")
    await upstream.function_call("no_such_tool", {})
    output = await upstream.wait_for("conversation.item.create")
    assert "error" in output["item"]["output"]
    await call.hang_up()
    await relay.wait_idle()


async def test_frontend_function_result_is_forwarded(relay: Relay) -> None:
    """A function result from the frontend (the reference demo's way) reaches the model."""
    fe, call, upstream = await live_call(relay)
    await fe.send_json({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "call_1", "output": "{\"ok\":true}"}})
    event = await upstream.wait_for("conversation.item.create")
    assert event["item"] == {"type": "function_call_output", "call_id": "call_1",
                             "output": "{\"ok\":true}"}
    await call.hang_up()
    await relay.wait_idle()




async def test_a_key_press_reaches_the_model_as_words(relay: Relay) -> None:
    """DTMF from Twilio becomes "The caller pressed 5" for the model, and resets inactivity."""
    fe, call, upstream = await live_call(relay)
    await call.send_dtmf("5")
    item = (await upstream.wait_for("conversation.item.create"))["item"]
    assert item == {"type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": "The caller pressed 5"}]}
    await call.hang_up()
    await relay.wait_idle()
