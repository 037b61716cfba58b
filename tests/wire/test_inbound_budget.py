"""Each endpoint's inbound budget on a real relay: floods are closed with 4029, calls are not."""

from __future__ import annotations

import uuid

import pytest
from relay_sim.rawsocket import RawSocket, frame
from structlog.testing import capture_logs
from websockets.frames import Opcode

from relay.logs import Ev
from relay.messages.closecodes import CloseCode
from tests.conftest import Relay, RelayFactory
from tests.timing import WAIT


def budget_lines(logs: list[dict]) -> list[dict]:
    return [entry for entry in logs if entry["event"] == Ev.INBOUND_BUDGET]


@pytest.mark.parametrize("message", ['{"type": "activity"}', "{not json", ""])
async def test_a_frontend_flooding_messages_is_closed_with_4029(relay: Relay, message: str) -> None:
    """activity, malformed JSON or empty frames as fast as possible: 4029, one log line."""
    sid = str(uuid.uuid4())
    with capture_logs() as logs:
        peer = await RawSocket.connect(relay.url, f"/logs/{sid}")
        await peer.send(frame(Opcode.TEXT, message.encode()) * 2_000)
        assert await peer.wait_closed(WAIT) == CloseCode.INBOUND_BUDGET
        await peer.close()
        await relay.wait_idle()
    [line] = budget_lines(logs)
    assert line["kind"] == "frontend" and line["part"] == "messages" and line["sessionId"] == sid
    refused = [entry for entry in logs if entry["event"] == Ev.BAD_INPUT]
    # Errors are answered for what got through, but logged sampled, never one line each.
    assert len(refused) <= relay.server.settings.refusal_log_first + 3


async def test_empty_continuation_frames_that_never_end_are_closed(relay: Relay) -> None:
    """A message that never ends, in empty continuation frames, is refused by its fragment count."""
    with capture_logs() as logs:
        peer = await RawSocket.connect(relay.url, f"/logs/{uuid.uuid4()}")
        await peer.send(frame(Opcode.TEXT, b"", fin=False)
                        + frame(Opcode.CONT, b"", fin=False) * 500_000)
        assert await peer.wait_closed(WAIT) == CloseCode.INBOUND_BUDGET
        await peer.close()
        await relay.wait_idle()
    assert [line["part"] for line in budget_lines(logs)] == ["fragments"]


async def test_a_call_at_ten_times_real_time_is_closed_and_hung_up(relay: Relay) -> None:
    """A call sending media 10× faster than Twilio does is closed with 4029 and hung up."""
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    with capture_logs() as logs:
        # 10 s of audio in one go: far past the burst (250 frames, 5 s) Twilio might send
        # after a network stall, and at 10× real time the rate never catches up.
        for _ in range(500):
            await call.send_media(b"\xff" * 160)
        code, _ = await call.wait_closed(WAIT)
        assert code == CloseCode.INBOUND_BUDGET
        ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
        await relay.wait_idle()
    assert ended["reason"] == "call_dropped"
    assert relay.twilio.hangups(call.call_sid) == 1
    [line] = budget_lines(logs)
    assert line["kind"] == "call"


async def test_a_call_catching_up_after_a_stall_is_not_closed(relay: Relay) -> None:
    """Five seconds of audio at once (Twilio catching up after a stall) is within the budget."""
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    for _ in range(240):
        await call.send_media(b"\xff" * 160)
    for _ in range(240):
        await upstream.wait_for("input_audio_buffer.append")
    assert not call.is_closed
    await call.hang_up()
    await fe.wait_closed()
    await relay.wait_idle()


async def test_budgets_are_sized_per_endpoint(make_relay: RelayFactory) -> None:
    """The frontend budget applies to /logs and the call budget to /call, from their variables."""
    relay = await make_relay(frontend_messages_per_s=1, frontend_message_burst=3,
                             call_messages_per_s=1, call_message_burst=10)
    peer = await RawSocket.connect(relay.url, f"/logs/{uuid.uuid4()}")
    await peer.send(frame(Opcode.TEXT, b'{"type": "activity"}') * 5)
    assert await peer.wait_closed(WAIT) == CloseCode.INBOUND_BUDGET
    await peer.close()
    call = await relay.call("/call")
    await call.start()
    for _ in range(5):
        await call.send_media(b"\xff" * 160)  # five frames: within the call's burst of ten
    await relay.model.next_connection()
    assert not call.is_closed
    await call.hang_up()
    await relay.wait_idle()
