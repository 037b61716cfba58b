"""Barge-in against a model that behaves as the real one: late audio, several items per response.

The real API keeps sending a response's audio for a moment after
``input_audio_buffer.speech_started``; none of the cut-off item's audio may
reach the caller after the ``clear``, while the next item's audio plays. A
response may hold several audio items, and a new item's audio may arrive while
Twilio still plays the last one: the truncation names the item the caller was
hearing, at the offset heard.
"""

from __future__ import annotations

import base64
import uuid

from relay_sim.frontend import SimulatedFrontend
from relay_sim.realtime_server import RealtimeConnection
from relay_sim.twilio_call import SimulatedCall

from tests.conftest import Relay

HUNDRED_MS = 800  # μ-law bytes


def audio(byte: int, nbytes: int = HUNDRED_MS) -> bytes:
    return bytes([byte]) * nbytes


async def live_call(relay: Relay, *, auto_ack_marks: bool,
                    ) -> tuple[SimulatedFrontend, SimulatedCall, RealtimeConnection]:
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}?audio=1")
    call = await relay.call(f"/call/{sid}", auto_ack_marks=auto_ack_marks)
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    return fe, call, upstream


def payloads_after_clear(call: SimulatedCall) -> list[bytes]:
    events = call.received
    clear = next(i for i, m in enumerate(events) if m["event"] == "clear")
    return [base64.b64decode(m["media"]["payload"]) for m in events[clear:] if m["event"] == "media"]


async def test_late_audio_of_the_interrupted_item_never_plays(relay: Relay) -> None:
    """Deltas of the truncated item after speech_started are dropped; the next item's audio plays."""
    fe, call, upstream = await live_call(relay, auto_ack_marks=True)
    response = await upstream.response_created()
    await upstream.audio_delta("item_old", audio(0x11), response)
    await call.wait_for("media")
    await upstream.speech_started()
    assert (await upstream.wait_for("conversation.item.truncate"))["item_id"] == "item_old"
    await call.wait_for("clear")
    for _ in range(3):  # the model has not stopped yet
        await upstream.audio_delta("item_old", audio(0x22), response)
    await upstream.audio_done("item_old", response)
    await upstream.response_done(response, status="cancelled")
    answer = await upstream.response_created()
    await upstream.audio_delta("item_new", audio(0x33), answer)
    await call.wait_for("media", lambda m: base64.b64decode(m["media"]["payload"]) == audio(0x33))
    assert payloads_after_clear(call) == [audio(0x33)]
    # Frontends that take audio do not get the stale deltas either.
    await fe.wait_for("response.output_audio.delta", lambda m: m["item_id"] == "item_new")
    stale = [m for m in fe.received if m["type"] == "response.output_audio.delta"
             and base64.b64decode(m["delta"]) == audio(0x22)]
    assert stale == []
    await call.hang_up()
    await relay.wait_idle()


async def test_a_barge_in_truncates_the_item_being_heard_not_the_newest(relay: Relay) -> None:
    """Item A still plays when item B's audio arrives: a barge-in truncates A where it was heard."""
    fe, call, upstream = await live_call(relay, auto_ack_marks=False)
    response = await upstream.response_created()
    for _ in range(4):  # 400 ms of A, a mark after each 100 ms
        await upstream.audio_delta("item_a", audio(0x44), response)
    await upstream.audio_done("item_a", response)
    await upstream.audio_delta("item_b", audio(0x55), response)
    await call.wait_for("media", lambda m: base64.b64decode(m["media"]["payload"]) == audio(0x55))
    first = call.pending_marks[0]
    await call.send_mark(first)  # Twilio has played the first 100 ms of A
    # A key press reaches the model after the echo on the same socket: relay has read the echo.
    await call.send_dtmf("1")
    await upstream.wait_for("conversation.item.create")
    await upstream.speech_started()
    truncate = await upstream.wait_for("conversation.item.truncate")
    assert truncate["item_id"] == "item_a"
    assert 100 <= truncate["audio_end_ms"] <= 400
    await call.wait_for("clear")
    await call.hang_up()
    await relay.wait_idle()


async def test_every_item_of_a_response_plays_before_the_goodbye_ends_the_call(relay: Relay) -> None:
    """A two-item goodbye: the call ends after the second item's final mark, not the first's."""
    fe, call, upstream = await live_call(relay, auto_ack_marks=False)
    response = await upstream.response_created()
    await upstream.audio_delta("bye_1", audio(0x66), response)
    await upstream.audio_done("bye_1", response)
    await upstream.audio_delta("bye_2", audio(0x77), response)
    await upstream.audio_done("bye_2", response)
    await upstream.function_call("end_interview", {}, response_id=response)
    await call.wait_for("mark")
    await call.wait_for("mark")
    await call.wait_for("mark")
    await call.wait_for("mark")  # two per item: the interval mark and the final one
    assert len(call.pending_marks) == 4
    await call.send_mark(call.pending_marks[1])  # bye_1 has played
    await call.send_dtmf("2")  # read after the echo (same socket), yet nothing ends
    await upstream.wait_for("conversation.item.create")
    assert not call.is_closed and "ended" not in [m.get("status") for m in fe.received]
    await call.ack_pending_marks()  # bye_2 has played
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "interview_completed"
    await relay.wait_idle()
