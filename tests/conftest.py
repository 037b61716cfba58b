"""Shared fixtures: a real relay on 127.0.0.1 port 0, a fake Realtime model, peers.

Every test that starts a relay also checks, after it stops, that nothing was
left behind (no session, no open connection, no task) and that every event it
sent the fake model is a GA client event by the ``openai`` package's types.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from relay_sim.frontend import SimulatedFrontend
from relay_sim.heygen_api import FakeHeygenApi
from relay_sim.realtime_server import RealtimeServer
from relay_sim.twilio_api import FakeTwilioApi
from relay_sim.twilio_call import SimulatedCall

from relay.config import Settings
from relay.transport.server import RelayServer
from tests.ga_types import check_client_event
from tests.timing import WAIT, t

API_KEY = "sk-test-0123456789abcdef"
TWILIO_SID = "AC" + "5" * 32
TWILIO_TOKEN = "twilio-test-token-0123"
HEYGEN_KEY = "heygen-test-key-0123"


def relay_settings(**overrides: Any) -> Settings:
    """Settings for a relay under test: loopback, port 0, sub-second timers."""
    base = Settings(
        host="127.0.0.1",
        port=0,
        model="openai",
        openai_api_key=API_KEY,
        upstream_connect_attempts=3,
        upstream_backoff_initial_s=t(0.01),
        upstream_backoff_max_s=t(0.02),
        upstream_open_timeout_s=t(2.0),
        resume_grace_s=t(0.3),
        farewell_timeout_s=t(3.0),
        call_start_timeout_s=t(1.0),
        close_timeout_s=t(1.0),
        hangup_timeout_s=t(2.0),
        apology_s=t(0.2),
        greet_first=False,
        # Many connections come from 127.0.0.1 in a test: the per-IP limit and
        # Twilio signatures are tested on their own.
        conn_rate_per_s=0,
        twilio_signatures="off",
    )
    return base.replace(**overrides)


@dataclass
class Relay:
    """A running relay under test and helpers to reach it."""

    server: RelayServer
    model: RealtimeServer
    twilio: FakeTwilioApi
    heygen: FakeHeygenApi

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def frontend(self, path: str = "/logs", **kwargs: Any) -> SimulatedFrontend:
        return await SimulatedFrontend.connect(self.url, path, **kwargs)

    async def call(self, path: str = "/call", **kwargs: Any) -> SimulatedCall:
        return await SimulatedCall.connect(self.url, path, **kwargs)

    async def live_session(self) -> tuple[str, SimulatedFrontend, SimulatedCall, Any]:
        """A session with a frontend, a started call and a configured model connection."""
        sid = str(uuid.uuid4())
        fe = await self.frontend(f"/logs/{sid}")
        call = await self.call(f"/call/{sid}")
        await call.start()
        upstream = await self.model.next_connection()
        await upstream.wait_for("session.update")
        await fe.wait_for("session.associated")
        return sid, fe, call, upstream

    async def get_json(self, path: str) -> Any:
        async with aiohttp.ClientSession() as http, http.get(self.http + path) as resp:
            return await resp.json()

    async def health(self) -> dict[str, Any]:
        return self.server.health()

    async def wait_until_waiting(self, count: int, timeout: float = WAIT) -> None:
        """Wait until ``count`` frontends wait on a bare /logs."""
        await wait_until(lambda: self.server.health()["waitingFrontends"] == count, timeout,
                         f"{count} waiting frontends")

    async def wait_idle(self, timeout: float = WAIT) -> None:
        """Wait until no session and no connection is left."""
        await wait_until(lambda: _idle(self.server.health()), timeout, "relay to be idle")


def _idle(health: dict[str, Any]) -> bool:
    return health["sessions"] == 0 and not any(health["connections"].values())


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    """Poll ``predicate`` on every loop turn until it holds or ``timeout`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.005)


RelayFactory = Callable[..., Awaitable[Relay]]


@pytest.fixture
async def model() -> AsyncIterator[RealtimeServer]:
    """A fake OpenAI Realtime (GA) server on loopback."""
    server = RealtimeServer(api_key=API_KEY)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def twilio_api() -> AsyncIterator[FakeTwilioApi]:
    """A fake Twilio REST API (Calls) on loopback."""
    async with FakeTwilioApi(TWILIO_SID, TWILIO_TOKEN) as api:
        yield api


@pytest.fixture
async def heygen_api() -> AsyncIterator[FakeHeygenApi]:
    """A fake HeyGen streaming API on loopback."""
    async with FakeHeygenApi(HEYGEN_KEY) as api:
        yield api


@pytest.fixture
async def make_relay(model: RealtimeServer, twilio_api: FakeTwilioApi,
                     heygen_api: FakeHeygenApi) -> AsyncIterator[RelayFactory]:
    """Start relays with settings overrides; stop them and check for leaks after."""
    started: list[RelayServer] = []

    async def factory(**overrides: Any) -> Relay:
        overrides.setdefault("openai_realtime_url", model.url)
        overrides.setdefault("twilio_account_sid", TWILIO_SID)
        overrides.setdefault("twilio_auth_token", TWILIO_TOKEN)
        overrides.setdefault("twilio_api_base_url", twilio_api.base_url)
        overrides.setdefault("heygen_api_key", HEYGEN_KEY)
        overrides.setdefault("heygen_api_base_url", heygen_api.base_url)
        server = RelayServer(relay_settings(**overrides))
        await server.start()
        started.append(server)
        return Relay(server, model, twilio_api, heygen_api)

    yield factory
    for server in started:
        await asyncio.wait_for(server.close(), WAIT)
        health = server.health()
        assert health["sessions"] == 0, health
        assert not any(health["connections"].values()), health
    await model.stop()
    await _no_tasks_left()
    # Everything relay said to the model is a GA client event the real API accepts,
    # and (unless a test provoked it on purpose) the fake model refused nothing.
    for connection in model.connections:
        for event in connection.received:
            check_client_event(event)
        if not getattr(model, "refusals_expected", False):
            assert not connection.refused, [e["type"] for e in connection.refused]


@pytest.fixture
async def relay(make_relay: RelayFactory) -> Relay:
    """A relay with test settings, talking to the fake model."""
    return await make_relay()


async def _no_tasks_left() -> None:
    current = asyncio.current_task()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        others = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
        if not others:
            return
        if loop.time() > deadline:
            raise AssertionError(f"tasks left running: {others}")
        await asyncio.sleep(0.01)
