"""Graceful shutdown: SIGTERM ends every session (calls hung up, avatars stopped) and exits."""

from __future__ import annotations

import asyncio
import signal
import uuid

from relay_sim.frontend import SimulatedFrontend
from relay_sim.heygen_api import FakeHeygenApi
from relay_sim.realtime_server import RealtimeServer
from relay_sim.twilio_api import FakeTwilioApi
from relay_sim.twilio_call import SimulatedCall

from relay.messages.closecodes import CloseCode
from tests.conftest import API_KEY, HEYGEN_KEY, TWILIO_SID, TWILIO_TOKEN, Relay
from tests.processes import start_relay
from tests.timing import WAIT, t

#: How long the drain may take (RELAY_DRAIN_S).
DRAIN = t(5.0)


async def test_sigterm_drains_live_sessions(model: RealtimeServer, twilio_api: FakeTwilioApi,
                                            heygen_api: FakeHeygenApi) -> None:
    """SIGTERM: frontends get ended (shutdown) then 1001, calls are hung up, avatars stopped."""
    proc, port = await start_relay(
        RELAY_MODEL="openai", OPENAI_API_KEY=API_KEY, OPENAI_REALTIME_URL=model.url,
        TWILIO_ACCOUNT_SID=TWILIO_SID, TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        TWILIO_API_BASE_URL=twilio_api.base_url, HEYGEN_API_KEY=HEYGEN_KEY,
        HEYGEN_API_BASE_URL=heygen_api.base_url, RELAY_DRAIN_S=str(DRAIN), RELAY_GREET_FIRST="0",
        RELAY_TWILIO_SIGNATURES="off",
    )
    url = f"ws://127.0.0.1:{port}"
    heygen_api.add_session("d4c3b2a1-1234-4abc-8def-0123456789ab")
    frontends, calls = [], []
    try:
        for _ in range(3):
            sid = str(uuid.uuid4())
            fe = await SimulatedFrontend.connect(url, f"/logs/{sid}")
            call = await SimulatedCall.connect(url, f"/call/{sid}")
            await call.start()
            upstream = await model.next_connection()
            await upstream.wait_for("session.update")
            frontends.append(fe)
            calls.append(call)
        await frontends[0].send_json({"type": "avatar.attach", "provider": "heygen",
                                      "avatarSessionId": "d4c3b2a1-1234-4abc-8def-0123456789ab"})
        await frontends[0].send_json({"type": "activity"})
        loop = asyncio.get_running_loop()
        started = loop.time()
        proc.send_signal(signal.SIGTERM)
        for fe in frontends:
            ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
            assert ended["reason"] == "shutdown"
            code, _ = await fe.wait_closed()
            assert code == CloseCode.GOING_AWAY
            assert fe.closed_after("call.status_changed")
        for call in calls:
            code, _ = await call.wait_closed()
            assert code == CloseCode.GOING_AWAY
        assert await asyncio.wait_for(proc.wait(), WAIT) == 0
        assert loop.time() - started < DRAIN
        for call in calls:
            assert twilio_api.hangups(call.call_sid) == 1
        assert heygen_api.stopped == ["d4c3b2a1-1234-4abc-8def-0123456789ab"]
        assert all(conn.closed.is_set() for conn in model.connections)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_one_failing_close_does_not_stop_the_others(relay: Relay) -> None:
    """A frontend whose close raises does not keep the other frontends, the call or the model open."""
    sid = str(uuid.uuid4())
    broken = await relay.frontend(f"/logs/{sid}")
    fine = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    runner = relay.server.registry.sessions[sid]
    first = next(iter(runner.frontends.values()))

    def explode(code: int, reason: str = "") -> None:
        raise RuntimeError("close failed")

    first.conn.close_soon = explode  # type: ignore[method-assign]
    await fine.send_json({"type": "session.end"})
    await fine.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    await fine.wait_closed()
    await call.wait_closed()
    await asyncio.wait_for(upstream.closed.wait(), WAIT)
    await broken.wait_closed()  # its transport was aborted instead
    await relay.wait_idle()
