"""Abandoned sessions are reaped: inactivity warning then timeout, the hard cap, dead peers."""

from __future__ import annotations

import asyncio
import base64
import os

from relay.messages.closecodes import CloseCode
from tests.conftest import RelayFactory
from tests.timing import WAIT, t


async def test_inactivity_warning_then_timeout(make_relay: RelayFactory) -> None:
    """No activity: every frontend is warned with the time left, then the session ends (inactivity)."""
    relay = await make_relay(inactivity_warning_s=t(0.2), inactivity_timeout_s=t(0.5))
    sid, fe, call, upstream = await relay.live_session()
    other = await relay.frontend(f"/logs/{sid}")
    warning = await fe.wait_for("session.inactivity_warning")
    assert warning["sessionId"] == sid and 0 < warning["disconnectInMs"] <= t(0.3 + 0.05) * 1000
    await other.wait_for("session.inactivity_warning")
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "inactivity"
    await relay.twilio.wait_for_request(lambda r: r.call_sid == call.call_sid)
    await relay.wait_idle()
    assert relay.twilio.hangups(call.call_sid) == 1


async def test_activity_cancels_the_countdown(make_relay: RelayFactory) -> None:
    """Activity after a warning clears it and restarts the clock; caller speech counts too."""
    relay = await make_relay(inactivity_warning_s=t(0.3), inactivity_timeout_s=t(0.6))
    sid, fe, call, upstream = await relay.live_session()
    loop = asyncio.get_running_loop()
    await fe.wait_for("session.inactivity_warning")
    await fe.send_json({"type": "activity"})
    await fe.wait_for("session.inactivity_warning_cleared")
    await fe.wait_for("session.inactivity_warning")
    await upstream.speech_started()  # the caller talks: activity too
    await fe.wait_for("session.inactivity_warning_cleared")
    last_activity = loop.time()
    await call.send_dtmf("5")  # and so does a key press
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended",
                              timeout=WAIT)
    assert ended["reason"] == "inactivity"
    assert loop.time() - last_activity >= t(0.6 - 0.05)
    await relay.wait_idle()


async def test_hard_cap_with_warning(make_relay: RelayFactory) -> None:
    """A session is warned before the hard cap and ends at it (max_duration), activity or not."""
    relay = await make_relay(max_session_s=t(0.6), duration_warning_s=t(0.3))
    sid, fe, call, upstream = await relay.live_session()
    warning = await fe.wait_for("session.duration_warning")
    assert 0 < warning["endsInMs"] <= t(0.3 + 0.05) * 1000
    await fe.send_json({"type": "activity"})
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "max_duration"
    await relay.wait_idle()
    assert relay.server.health()["endedByReason"] == {"max_duration": 1}


async def test_waiting_frontend_is_reaped_too(make_relay: RelayFactory) -> None:
    """A frontend waiting for a call that never comes is reaped the same way."""
    relay = await make_relay(inactivity_warning_s=t(0.1), inactivity_timeout_s=t(0.3))
    fe = await relay.frontend("/logs")
    await fe.wait_for("session.inactivity_warning")
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "inactivity"
    await fe.wait_closed()
    await relay.wait_idle()


async def test_sweep_finds_what_timers_missed(make_relay: RelayFactory) -> None:
    """The periodic sweep ends a session whose deadline passed even if its timer never fired."""
    relay = await make_relay(inactivity_timeout_s=t(0.2), inactivity_warning_s=0,
                             sweep_interval_s=t(0.05))
    sid, fe, call, upstream = await relay.live_session()
    runner = relay.server.registry.sessions[sid]
    runner._rearm_timer = lambda: None  # type: ignore[method-assign]  # a timer that never fires
    if runner._timer is not None:
        runner._timer.cancel()
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "inactivity"
    await relay.wait_idle()


async def raw_frontend(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that completes the handshake and then never answers a ping."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .encode()
    )
    status = await asyncio.wait_for(reader.readline(), WAIT)
    assert b"101" in status
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    return reader, writer


async def test_frontend_that_stops_answering_pings_is_dropped(make_relay: RelayFactory) -> None:
    """A frontend that never answers pings is treated as gone within interval + timeout."""
    relay = await make_relay(ping_interval_s=t(0.1), ping_timeout_s=t(0.2))
    sid, fe, call, upstream = await relay.live_session()
    await fe.close()  # leave only the silent frontend
    loop = asyncio.get_running_loop()
    reader, writer = await raw_frontend(relay.server.port, f"/logs/{sid}")
    start = loop.time()
    await asyncio.wait_for(reader.read(), WAIT)  # EOF: relay dropped us
    assert loop.time() - start <= t(0.1 + 0.2 + 1.0 + 0.5)  # interval, timeout, close timeout, slack
    writer.close()
    # The call goes on without a frontend (a refresh may follow).
    assert sid in relay.server.registry.sessions
    await call.hang_up()
    await relay.wait_idle()


async def test_model_that_stops_answering_pings_ends_the_session(make_relay: RelayFactory) -> None:
    """A model connection that stops answering pings is treated as gone: upstream_closed."""
    relay = await make_relay(ping_interval_s=t(0.1), ping_timeout_s=t(0.2))
    sid, fe, call, upstream = await relay.live_session()
    upstream._ws.transport.pause_reading()  # type: ignore[attr-defined]  # the model hangs
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "upstream_closed"
    code, _ = await call.wait_closed()
    assert code == CloseCode.NORMAL
    upstream._ws.transport.resume_reading()  # type: ignore[attr-defined]
    await relay.wait_idle()
