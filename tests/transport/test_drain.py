"""Shutdown of a real `python -m relay`: every kind of connection, every signal pattern.

Whatever the signals (SIGTERM, SIGINT, a second one a moment after the first), every
connection is closed with 1001 within RELAY_DRAIN_S, every frontend is told first, every
call is hung up and every avatar stopped, and the process exits with 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from relay_sim.frontend import SimulatedFrontend
from relay_sim.heygen_api import FakeHeygenApi
from relay_sim.realtime_server import RealtimeServer
from relay_sim.twilio_api import FakeTwilioApi
from relay_sim.twilio_call import SimulatedCall

from relay.logs import Ev
from relay.messages.closecodes import CloseCode
from tests.conftest import API_KEY, HEYGEN_KEY, TWILIO_SID, TWILIO_TOKEN
from tests.processes import ROOT
from tests.timing import WAIT, t

DRAIN = t(3.0)
HANGUP = t(1.5)


@dataclass
class Process:
    proc: asyncio.subprocess.Process
    port: int = 0
    lines: list[dict] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def signal(self, signals: list[signal.Signals]) -> None:
        """Send the signals; each after the one before has started the drain.

        (Two signals sent back to back may reach the process as one: the kernel
        merges a signal with one still pending. The second is sent once the
        first was acted on, when it can only hurry the drain.)
        """
        for index, sig in enumerate(signals):
            if index:
                await self.logged(Ev.SERVER_STOPPING)
            self.proc.send_signal(sig)

    async def logged(self, event: str) -> None:
        async with asyncio.timeout(WAIT):
            while not any(r.get("event") == event for r in self.lines):
                await asyncio.sleep(0.001)


@contextlib.asynccontextmanager
async def relay_process(model: RealtimeServer, twilio: FakeTwilioApi,
                        heygen: FakeHeygenApi) -> AsyncIterator[Process]:
    """`python -m relay` with the fake model, Twilio and HeyGen; its stderr read as it runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "TWILIO_"))}
    env.update(PORT="0", LOG_FORMAT="json", RELAY_MODEL="openai", OPENAI_API_KEY=API_KEY,
               OPENAI_REALTIME_URL=model.url, TWILIO_ACCOUNT_SID=TWILIO_SID,
               TWILIO_AUTH_TOKEN=TWILIO_TOKEN, TWILIO_API_BASE_URL=twilio.base_url,
               RELAY_TWILIO_SIGNATURES="off", HEYGEN_API_KEY=HEYGEN_KEY,
               HEYGEN_API_BASE_URL=heygen.base_url, RELAY_GREET_FIRST="0",
               RELAY_DRAIN_S=str(DRAIN), RELAY_HANGUP_TIMEOUT_S=str(HANGUP),
               RELAY_CLOSE_TIMEOUT_S=str(t(1.0)), RELAY_CALL_START_TIMEOUT_S="60")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    relay = Process(proc)
    assert proc.stderr is not None

    async def read() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            record = json.loads(line)
            relay.lines.append(record)
            if record.get("event") == "🚀 Relay server listening":
                relay.port = record["port"]

    reader = asyncio.create_task(read())
    try:
        async with asyncio.timeout(WAIT):
            while not relay.port:
                await asyncio.sleep(0.01)
        yield relay
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await asyncio.wait_for(reader, WAIT)


@dataclass
class Peers:
    """One of each kind of connection a relay holds."""

    waiting_call: SimulatedCall  # a /call that never sent start: no session owns it
    bare: SimulatedFrontend  # a frontend waiting on a bare /logs
    configured: SimulatedFrontend  # a frontend with a job configuration, no call yet
    live: SimulatedFrontend  # a frontend on a live call, with an avatar
    call: SimulatedCall

    @property
    def frontends(self) -> list[SimulatedFrontend]:
        return [self.bare, self.configured, self.live]


async def connect_everything(url: str, model: RealtimeServer, heygen: FakeHeygenApi) -> Peers:
    waiting_call = await SimulatedCall.connect(url, "/call")
    await waiting_call.send_connected()
    bare = await SimulatedFrontend.connect(url, "/logs")
    configured = await SimulatedFrontend.connect(url, f"/logs/{uuid.uuid4()}?userId=carol")
    await configured.send_json({"type": "job_config", "config": {"role": "Chef"}})
    await configured.wait_for("job_config.ack")
    sid = str(uuid.uuid4())
    live = await SimulatedFrontend.connect(url, f"/logs/{sid}?userId=dave")
    call = await SimulatedCall.connect(url, f"/call/{sid}")
    await call.start()
    upstream = await model.next_connection()
    await upstream.wait_for("session.update")
    heygen.add_session("5d3e7c3a-1111-4a0e-9b7d-0c1d2e3f4a5b")
    await live.send_json({"type": "avatar.attach", "provider": "heygen",
                          "avatarSessionId": "5d3e7c3a-1111-4a0e-9b7d-0c1d2e3f4a5b"})
    await live.send_json({"type": "activity"})
    await live.wait_for("session.associated")
    return Peers(waiting_call, bare, configured, live, call)


PATTERNS = {
    "SIGTERM": [signal.SIGTERM],
    "SIGINT": [signal.SIGINT],
    "SIGTERM twice": [signal.SIGTERM, signal.SIGTERM],
    "SIGTERM then SIGINT": [signal.SIGTERM, signal.SIGINT],
    "SIGINT twice": [signal.SIGINT, signal.SIGINT],
}


@pytest.mark.parametrize("pattern", PATTERNS)
async def test_every_connection_gets_1001_and_nothing_is_skipped(
        model: RealtimeServer, twilio_api: FakeTwilioApi, heygen_api: FakeHeygenApi,
        pattern: str) -> None:
    """Each kind of connection is closed with 1001 in time; frontends told, call hung up,
    avatar stopped, exit 0, whether one signal came or two a moment apart."""
    async with relay_process(model, twilio_api, heygen_api) as relay:
        peers = await connect_everything(relay.url, model, heygen_api)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await relay.signal(PATTERNS[pattern])
        for fe in peers.frontends:
            ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
            assert ended["reason"] == "shutdown"
            code, _ = await fe.wait_closed(WAIT)
            assert code == CloseCode.GOING_AWAY and fe.closed_after("call.status_changed")
        for call in (peers.waiting_call, peers.call):
            code, _ = await call.wait_closed(WAIT)
            assert code == CloseCode.GOING_AWAY
        closed_by = loop.time() - started
        assert await asyncio.wait_for(relay.proc.wait(), WAIT) == 0
    assert closed_by < DRAIN, closed_by
    assert twilio_api.hangups(peers.call.call_sid) == 1
    assert heygen_api.stopped == ["5d3e7c3a-1111-4a0e-9b7d-0c1d2e3f4a5b"]
    assert all(conn.closed.is_set() for conn in model.connections)
    assert not [r for r in relay.lines if r.get("level") in ("error", "critical")]
    hurried = any(r.get("event") == Ev.SHUTDOWN_HURRIED for r in relay.lines)
    assert hurried is (len(PATTERNS[pattern]) > 1)


async def test_a_hurried_drain_still_waits_for_a_slow_hang_up(
        model: RealtimeServer, twilio_api: FakeTwilioApi, heygen_api: FakeHeygenApi) -> None:
    """Twilio not answering: a second signal closes sockets at once, but the hang-up is still
    tried, and the process exits within RELAY_HANGUP_TIMEOUT_S."""
    async with relay_process(model, twilio_api, heygen_api) as relay:
        peers = await connect_everything(relay.url, model, heygen_api)
        twilio_api.stall_next(peers.call.call_sid, times=10)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await relay.signal([signal.SIGTERM, signal.SIGTERM])
        code, _ = await peers.live.wait_closed(WAIT)
        assert code == CloseCode.GOING_AWAY
        closed_by = loop.time() - started
        assert await asyncio.wait_for(relay.proc.wait(), WAIT) == 0
        exited_by = loop.time() - started
    assert closed_by < HANGUP  # closed at once, not after the hang-up gave up
    assert twilio_api.requests_for(peers.call.call_sid)  # the hang-up was tried
    assert HANGUP * 0.5 < exited_by < HANGUP + t(3.0), exited_by
    assert heygen_api.stopped == ["5d3e7c3a-1111-4a0e-9b7d-0c1d2e3f4a5b"]
