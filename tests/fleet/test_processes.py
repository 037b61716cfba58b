"""The fleet as it runs: relay processes behind HAProxy, one real Redis, and failures.

Each node is a real ``python -m relay`` process talking to the fake model, Twilio
REST and HeyGen servers of this test process, so the hang-ups and avatar stops a
survivor makes for a dead node are counted, and every caller frame the model
receives is counted too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from relay_sim.fleet import Fleet
from relay_sim.frontend import SimulatedFrontend
from relay_sim.heygen_api import FakeHeygenApi
from relay_sim.processes import poll
from relay_sim.realtime_server import RealtimeConnection, RealtimeServer
from relay_sim.twilio_api import FakeTwilioApi
from relay_sim.twilio_call import SimulatedCall
from websockets.exceptions import InvalidStatus

from tests.conftest import API_KEY, HEYGEN_KEY, TWILIO_SID, TWILIO_TOKEN
from tests.fleet.conftest import NODE_ENV, assert_no_process_left
from tests.fleet.services import needs_fleet
from tests.timing import WAIT, t

pytestmark = needs_fleet

#: The documented bound on ending a dead node's sessions is dead-after plus one heartbeat.
LOST_WITHIN = t(15.0)


@pytest.fixture
async def providers() -> AsyncIterator[tuple[RealtimeServer, FakeTwilioApi, FakeHeygenApi]]:
    model = RealtimeServer(api_key=API_KEY)
    await model.start()
    async with FakeTwilioApi(TWILIO_SID, TWILIO_TOKEN) as twilio, \
            FakeHeygenApi(HEYGEN_KEY) as heygen:
        yield model, twilio, heygen
    await model.stop()


def node_env(model: RealtimeServer, twilio: FakeTwilioApi, heygen: FakeHeygenApi) -> dict[str, str]:
    return {
        **NODE_ENV,
        "RELAY_MODEL": "openai", "OPENAI_API_KEY": API_KEY, "OPENAI_REALTIME_URL": model.url,
        "RELAY_GREET_FIRST": "0", "RELAY_TWILIO_SIGNATURES": "off",
        "TWILIO_ACCOUNT_SID": TWILIO_SID, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "TWILIO_API_BASE_URL": twilio.base_url,
        "HEYGEN_API_KEY": HEYGEN_KEY, "HEYGEN_API_BASE_URL": heygen.base_url,
        "RELAY_HANGUP_TIMEOUT_S": str(t(3.0)),
    }


async def session_on(fleet: Fleet, node_id: str) -> tuple[str, SimulatedFrontend]:
    """A session (through HAProxy) whose ID hashes to ``node_id``, with its frontend."""
    for _ in range(64):
        sid = str(uuid.uuid4())
        fe = await SimulatedFrontend.connect(fleet.url, f"/logs/{sid}", open_timeout=WAIT)
        await fe.send_json({"type": "job_config", "config": {"role": "Platform Engineer"}})
        await fe.wait_for("job_config.ack", timeout=WAIT)
        if (await fleet.node(node_id).health())["connections"]["frontend"] >= 1 and any(
                row["sessionId"] == sid and row["node"] == node_id
                for row in await fleet.node(node_id).sessions()):
            return sid, fe
        await fe.close()
    raise AssertionError(f"no session ID hashed to {node_id}")


async def live_call(fleet: Fleet, model: RealtimeServer, sid: str) -> tuple[SimulatedCall, RealtimeConnection]:
    call = await SimulatedCall.connect(fleet.url, f"/call/{sid}", open_timeout=WAIT)
    await call.start()
    upstream = await model.next_connection(timeout=WAIT)
    await upstream.wait_for("session.update", timeout=WAIT)
    return call, upstream


async def test_sigkill_mid_call_the_survivor_hangs_up_stops_the_avatar_and_says_so(
        providers: tuple[RealtimeServer, FakeTwilioApi, FakeHeygenApi]) -> None:
    """n1 dies mid-call: its call is hung up, its avatar stopped, its page told relay_lost;
    a call on n2 streams on without losing a frame."""
    model, twilio, heygen = providers
    async with Fleet(2, env=node_env(model, twilio, heygen), ready_timeout=t(20),
                     stop_timeout=t(10)) as fleet:
        groups = fleet.process_groups()
        sid_a, fe_a = await session_on(fleet, "n1")
        avatar = "hg-" + uuid.uuid4().hex
        heygen.add_session(avatar)
        await fe_a.send_json({"type": "avatar.attach", "provider": "heygen",
                              "avatarSessionId": avatar})
        call_a, _ = await live_call(fleet, model, sid_a)
        sid_b, fe_b = await session_on(fleet, "n2")
        call_b, upstream_b = await live_call(fleet, model, sid_b)
        await fe_b.wait_for("session.associated", timeout=WAIT)

        streaming = asyncio.create_task(call_b.send_media_paced([b"\xff" * 160] * 150))
        await asyncio.sleep(0)  # the call streams while n1 dies
        assert await fleet.node("n1").kill() == -9
        await poll(lambda: twilio.hangups(call_a.call_sid) == 1, LOST_WITHIN,
                   "the dead node's call to be hung up", interval=0.05)
        await heygen.wait_for_request(lambda r: r.path.endswith("/v1/streaming.stop")
                                      and (r.body or {}).get("session_id") == avatar,
                                      timeout=WAIT)
        back = await SimulatedFrontend.connect(fleet.url, f"/logs/{sid_a}", open_timeout=WAIT)
        ended = await back.wait_for("call.status_changed", timeout=WAIT)
        assert (ended["status"], ended["reason"]) == ("ended", "relay_lost")
        await back.close()

        await streaming
        await poll(lambda: upstream_b.appended >= 150, WAIT, "n2's frames", interval=0.02)
        assert upstream_b.appended == 150  # not one frame of the survivor's call lost
        assert twilio.hangups(call_b.call_sid) == 0
        await call_b.hang_up()
        await fe_b.wait_for("call.status_changed", lambda m: m["status"] == "ended", timeout=WAIT)
        for peer in (fe_a, fe_b, call_a):
            await peer.close()
    assert_no_process_left(groups)


async def test_redis_away_live_calls_go_on_new_sessions_get_503_and_it_recovers(
        providers: tuple[RealtimeServer, FakeTwilioApi, FakeHeygenApi]) -> None:
    """Redis killed mid-call: the call keeps streaming; a new session is refused
    with 503 fleet_unavailable at once; when Redis returns, new sessions work again."""
    model, twilio, heygen = providers
    async with Fleet(2, env=node_env(model, twilio, heygen), ready_timeout=t(20),
                     stop_timeout=t(10)) as fleet:
        sid, fe = await session_on(fleet, "n1")
        call, upstream = await live_call(fleet, model, sid)
        assert fleet.redis is not None
        await fleet.redis.kill()
        await call.send_media_paced([b"\xff" * 160] * 50)
        await poll(lambda: upstream.appended >= 50, WAIT, "frames without Redis", interval=0.02)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(InvalidStatus) as refused:
            await SimulatedFrontend.connect(fleet.url, f"/logs/{uuid.uuid4()}", open_timeout=WAIT)
        assert refused.value.response.status_code == 503
        assert b"fleet_unavailable" in refused.value.response.body
        assert loop.time() - started < t(3.0)  # refused, never a hang
        await fleet.redis.restart()
        new_sid = str(uuid.uuid4())

        async def admitted() -> bool:
            try:
                again = await SimulatedFrontend.connect(fleet.url, f"/logs/{new_sid}",
                                                        open_timeout=WAIT)
            except InvalidStatus:
                return False
            await again.close()
            return True

        await poll(admitted, t(10), "new sessions after Redis returned", interval=0.1)
        await call.send_media_paced([b"\xff" * 160] * 10)
        await poll(lambda: upstream.appended >= 60, WAIT, "frames after Redis returned",
                   interval=0.02)
        await call.hang_up()
        await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended", timeout=WAIT)
        assert twilio.hangups(call.call_sid) == 0  # the caller hung up: nothing to end
        await fe.close()


async def test_bare_frontends_and_bare_calls_pair_exactly_once_through_haproxy(
        providers: tuple[RealtimeServer, FakeTwilioApi, FakeHeygenApi]) -> None:
    """Bare /logs and bare /call spread round-robin over the nodes; each call pairs once."""
    model, twilio, heygen = providers
    async with Fleet(2, env=node_env(model, twilio, heygen), ready_timeout=t(20),
                     stop_timeout=t(10)) as fleet:
        frontends = [await SimulatedFrontend.connect(fleet.url, "/logs", open_timeout=WAIT)
                     for _ in range(6)]

        async def all_waiting() -> bool:
            waiting = [(await node.health())["waitingFrontends"] for node in fleet.nodes]
            return sum(waiting) == 6

        await poll(all_waiting, WAIT, "six waiting frontends", interval=0.05)
        calls = [await SimulatedCall.connect(fleet.url, "/call", open_timeout=WAIT)
                 for _ in range(6)]
        await asyncio.gather(*(call.start() for call in calls))
        associated = await asyncio.gather(*(fe.wait_for("session.associated", timeout=WAIT)
                                            for fe in frontends))
        assert sorted(m["callSid"] for m in associated) == sorted(c.call_sid for c in calls)
        for call in calls:
            await call.hang_up()
        for fe in frontends:
            await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended",
                              timeout=WAIT)
            await fe.close()
