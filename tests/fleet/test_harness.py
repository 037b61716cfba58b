"""The fleet harness and the shipped HAProxy configuration, with real processes on loopback.

Fleet mode is not in relay yet, so the nodes run as independent relays: a session lives on the
node its connections reached, which is what proves the routing. Each node is asked directly
(``GET /api/sessions`` on its own port) what it holds.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import web
from relay_sim.fleet import Fleet, HAProxy, RedisServer
from relay_sim.frontend import SimulatedFrontend
from relay_sim.processes import ProcessError, free_port, group_members, poll
from relay_sim.twilio_call import SimulatedCall

from tests.fleet.conftest import NODE_ENV, assert_no_process_left
from tests.fleet.services import needs_fleet, needs_haproxy, needs_redis
from tests.timing import WAIT, t

pytestmark = needs_fleet

Peer = SimulatedFrontend | SimulatedCall


async def holders(fleet: Fleet) -> dict[str, dict[str, dict[str, Any]]]:
    """Session ID → node ID → that node's row for the session.

    A row that names its node (a fleet-wide view) counts for that node, not for the one asked.
    """
    names = {alias: node.node_id for node in fleet.nodes
             for alias in (node.node_id, node.address)}
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for node in fleet.nodes:
        if node.running:
            for row in await node.sessions():
                owner = names.get(row.get("node", node.node_id), row.get("node"))
                found.setdefault(row["sessionId"], {})[owner] = row
    return found


async def connections(fleet: Fleet) -> dict[str, dict[str, int]]:
    """Node ID → the connections it holds itself, by kind (its /health)."""
    return {node.node_id: (await node.health())["connections"]
            for node in fleet.nodes if node.running}


async def wait_placed(fleet: Fleet, sids: Iterable[str], frontends: int,
                      call: bool) -> dict[str, str]:
    """Wait until each session is on exactly one node with these peers; sid → node ID."""
    sids = list(sids)
    seen: dict[str, dict[str, dict[str, Any]]] = {}

    async def placed() -> bool:
        nonlocal seen
        seen = await holders(fleet)
        return all(len(seen.get(sid, {})) == 1 and all(
            row["frontends"] == frontends and (row["call"] == "connected") == call
            for row in seen[sid].values()) for sid in sids)

    try:
        await poll(placed, WAIT, "every session on one node", interval=0.05)
    except TimeoutError:
        wrong = {sid: seen.get(sid) for sid in sids if len(seen.get(sid, {})) != 1}
        raise AssertionError(f"sessions not on exactly one node: {wrong}") from None
    return {sid: next(iter(seen[sid])) for sid in sids}


@pytest.fixture
async def peers() -> AsyncIterator[list[Peer]]:
    """Simulated calls and frontends, all closed after the test."""
    opened: list[Peer] = []
    yield opened
    await asyncio.gather(*(peer.close() for peer in opened))


async def open_session(url: str, sid: str, peers: list[Peer]) -> SimulatedCall:
    """A frontend on /logs/{sid}, one on /logs?sessionId={sid} and a call on /call/{sid}."""
    for path in (f"/logs/{sid}", f"/logs?sessionId={sid}"):
        peers.append(await SimulatedFrontend.connect(url, path, open_timeout=WAIT))
    call = await SimulatedCall.connect(url, f"/call/{sid}", open_timeout=WAIT)
    peers.append(call)
    await call.start()
    return call


async def test_a_call_and_its_frontends_meet_on_one_node(fleet: Fleet, peers: list[Peer]) -> None:
    """/logs/{id}, /logs?sessionId={id} and /call/{id} reach one node through HAProxy (24 IDs)."""
    sids = [str(uuid.uuid4()) for _ in range(24)]
    calls = {sid: await open_session(fleet.url, sid, peers) for sid in sids}
    where = await wait_placed(fleet, sids, frontends=2, call=True)
    assert set(where.values()) == {"n1", "n2"}, where  # both nodes take sessions
    # Each connection landed on its session's node itself (none was bridged from another).
    held = await connections(fleet)
    for node_id in ("n1", "n2"):
        placed = sum(1 for sid in sids if where[sid] == node_id)
        assert held[node_id]["frontend"] == 2 * placed and held[node_id]["call"] == placed, held
    sessions = await holders(fleet)
    for sid, call in calls.items():
        assert sessions[sid][where[sid]]["callSid"] == call.call_sid
    frontend = peers[0]
    assert isinstance(frontend, SimulatedFrontend)
    associated = await frontend.wait_for("session.associated", timeout=WAIT)
    assert associated["callSid"] == calls[sids[0]].call_sid


async def test_callsid_parameter_routes_like_the_path_segment(fleet: Fleet) -> None:
    """/logs?callSid=X reaches the node that /logs/X reaches."""
    for _ in range(8):
        value = "CA" + uuid.uuid4().hex
        reached = []
        for path in (f"/logs?callSid={value}", f"/logs/{value}"):
            async with await SimulatedFrontend.connect(fleet.url, path):
                reached.append(await the_node_with_a_frontend(fleet))
            # Its session gone too: a page that comes back while the session it named is
            # still being torn down joins it, hears "ended" and is closed.
            await poll(functools.partial(_nothing_held, fleet), WAIT,
                       "the frontend and its session to go", interval=0.05)
        assert reached[0] == reached[1], (value, reached)


async def the_node_with_a_frontend(fleet: Fleet) -> str:
    """Wait until exactly one node holds a frontend connection; its ID."""
    found: list[str] = []
    seen: dict[str, object] = {}

    async def one() -> bool:
        nonlocal found
        for node in fleet.nodes:
            seen[node.node_id] = (await node.health())["connections"]
        found = [n for n, held in seen.items() if held["frontend"] == 1]  # type: ignore[index]
        return len(found) == 1

    try:
        await poll(one, WAIT, "one node with the frontend", interval=0.05)
    except TimeoutError as exc:
        raise AssertionError(f"no single node held the frontend; last seen: {seen}") from exc
    return found[0]


async def _nothing_held(fleet: Fleet) -> bool:
    answers = [await node.health() for node in fleet.nodes]
    return not any(a["connections"]["frontend"] or a["sessions"] for a in answers)


async def test_a_killed_node_is_marked_down_and_its_sessions_go_to_the_survivor(
        fleet: Fleet, peers: list[Peer]) -> None:
    """After SIGKILL of n1, HAProxy marks it DOWN, the survivor ends n1's sessions, new ones reach n2.

    A page that comes back for one of n1's sessions is told it ended (``relay_lost``)
    instead of waiting for a call that will never come.
    """
    sids = [str(uuid.uuid4()) for _ in range(16)]
    for sid in sids:
        peers.append(await SimulatedFrontend.connect(fleet.url, f"/logs/{sid}"))
    where = await wait_placed(fleet, sids, frontends=1, call=False)
    on_n1 = [sid for sid in sids if where[sid] == "n1"]
    assert on_n1, where
    assert await fleet.node("n1").kill() == -9
    assert fleet.haproxy is not None
    await fleet.haproxy.wait_servers({"n1": "DOWN", "n2": "UP"}, timeout=t(10))
    await poll(functools.partial(_owned_only_by, fleet, "n2"), t(15), "n1 sessions to end",
               interval=0.1)
    for sid in on_n1:
        back = await SimulatedFrontend.connect(fleet.url, f"/logs/{sid}")
        peers.append(back)
        ended = await back.wait_for("call.status_changed", timeout=WAIT)
        assert ended["status"] == "ended" and ended["reason"] == "relay_lost"
    fresh = [str(uuid.uuid4()) for _ in range(8)]
    for sid in fresh:
        await open_session(fleet.url, sid, peers)
    where = await wait_placed(fleet, fresh, frontends=2, call=True)
    assert set(where.values()) == {"n2"}
    assert (await connections(fleet))["n2"]["call"] == len(fresh)


async def _owned_only_by(fleet: Fleet, node_id: str) -> bool:
    rows = await fleet.node(node_id).sessions()
    return all(row.get("node") == node_id for row in rows)


async def test_a_node_that_just_died_is_skipped_before_its_check_fails(peers: list[Peer]) -> None:
    """A connection the dead node refuses goes to another node, while HAProxy still says UP."""
    async with Fleet(2, env=NODE_ENV, check_inter="60s", ready_timeout=t(20)) as fleet:
        await fleet.node("n1").kill()
        # Enough IDs that some hash to n1, which refuses them at once.
        fresh = [str(uuid.uuid4()) for _ in range(12)]
        for sid in fresh:
            await open_session(fleet.url, sid, peers)
        where = await wait_placed(fleet, fresh, frontends=2, call=True)
        assert set(where.values()) == {"n2"}
        assert fleet.haproxy is not None
        assert (await fleet.haproxy.server_states())["n1"] == "UP"  # no check ran yet
        await asyncio.gather(*(peer.close() for peer in peers))


async def test_a_restarted_node_is_marked_up_again_on_its_port(fleet: Fleet) -> None:
    """A node killed and restarted keeps its port, and HAProxy sends it sessions again."""
    node = fleet.node("n2")
    port, pid = node.port, node.pid
    assert fleet.haproxy is not None
    await node.kill()
    await fleet.haproxy.wait_servers({"n2": "DOWN"}, timeout=t(10))
    await node.restart()
    assert node.port == port and node.pid != pid
    await fleet.haproxy.wait_servers({"n2": "UP"}, timeout=t(10))
    listening = await node.wait_log("🚀 Relay server listening", timeout=WAIT)
    assert listening["port"] == port


async def test_a_reload_adds_a_node(fleet: Fleet, peers: list[Peer]) -> None:
    """add_node starts n3 and reloads HAProxy; new sessions then reach all three nodes."""
    node = await fleet.add_node()
    assert node.node_id == "n3" and node.redis_url == fleet.redis.url  # type: ignore[union-attr]
    assert fleet.haproxy is not None
    await fleet.haproxy.wait_servers({"n1": "UP", "n2": "UP", "n3": "UP"}, timeout=t(10))
    assert set(await fleet.haproxy.server_states()) == {"n1", "n2", "n3"}
    sids = [str(uuid.uuid4()) for _ in range(30)]
    for sid in sids:
        peers.append(await SimulatedFrontend.connect(fleet.url, f"/logs/{sid}"))
    where = await wait_placed(fleet, sids, frontends=1, call=False)
    assert set(where.values()) == {"n1", "n2", "n3"}, where


async def test_nodes_get_the_fleet_environment(fleet: Fleet) -> None:
    """Each node runs the local model with its RELAY_NODE_ID, the Redis URL, JSON logs, a token."""
    assert fleet.redis is not None
    for node in fleet.nodes:
        env = psutil.Process(node.pid).environ()
        assert env["RELAY_NODE_ID"] == node.node_id
        assert env["RELAY_REDIS_URL"] == fleet.redis.url
        assert env["PORT"] == str(node.port) and env["HOST"] == "127.0.0.1"
        assert "OPENAI_API_KEY" not in env
        assert (await node.health())["model"] == "local"
        listening = await node.wait_log("🚀 Relay server listening", timeout=WAIT)
        assert listening["port"] == node.port
        # The admin token goes in the Authorization header.
        assert (await node.request("POST", "/api/sessions/reset", token=""))[0] == 401
        assert (await node.request("POST", "/api/sessions/reset"))[0] == 200


@needs_redis
async def test_redis_restarts_empty_on_the_same_port() -> None:
    """RedisServer answers PING; after kill() it does not; restart() brings it back on its port."""
    redis = RedisServer(ready_timeout=WAIT)
    await redis.start()
    try:
        url = redis.url
        assert await redis.ping()
        await redis.kill()
        assert not await redis.ping()
        await redis.restart()
        assert redis.url == url and await redis.ping()
    finally:
        await redis.stop()
    assert redis.child is not None and not redis.child.group_alive()


@needs_haproxy
async def test_haproxy_tells_relay_only_the_real_client_address() -> None:
    """A client's own X-Forwarded-For is dropped; relay sees HAProxy's, and the proto and host."""
    seen: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        if request.path != "/health":
            seen.append(dict(request.headers))
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    haproxy = HAProxy({"echo": f"127.0.0.1:{port}"}, ready_timeout=WAIT)
    try:
        await haproxy.start()
        async with aiohttp.ClientSession() as http, http.get(
                haproxy.url + "/twiml?sessionId=abc",
                headers={"X-Forwarded-For": "203.0.113.9", "Host": "relay.example.com"}) as r:
            assert r.status == 200
    finally:
        await haproxy.stop()
        await runner.cleanup()
    assert haproxy.child is not None and not haproxy.child.group_alive()
    (headers,) = seen
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert headers["X-Forwarded-Proto"] == "http"
    assert headers["X-Forwarded-Host"] == "relay.example.com"


async def test_the_fleet_leaves_no_process_behind_when_the_body_fails() -> None:
    """An exception inside `async with Fleet(...)` still stops Redis, every node and HAProxy."""
    groups: list[int] = []
    with pytest.raises(RuntimeError, match="the test failed"):
        async with Fleet(2, env=NODE_ENV, ready_timeout=t(20)) as fleet:
            groups = fleet.process_groups()
            assert len(groups) == 4
            assert all(psutil.pid_exists(pid) for pid in groups)
            raise RuntimeError("the test failed")
    assert_no_process_left(groups)


async def test_a_node_that_cannot_start_stops_the_whole_fleet() -> None:
    """A node that exits at once fails the fleet's start, and nothing started is left running."""
    fleet = Fleet(2, env=NODE_ENV, node_env={"n2": {"RELAY_MAX_HTTP_BODY": "lots"}},
                  ready_timeout=t(20))
    with pytest.raises(ProcessError, match="relay n2 did not start") as failure:
        await fleet.start()
    assert_no_process_left(fleet.process_groups())
    assert any("RELAY_MAX_HTTP_BODY" in line for line in failure.value.output)


_FORGETFUL = """
import asyncio
from relay_sim.redis_server import RedisServer

async def main():
    redis = RedisServer()
    await redis.start()
    print(redis.pid, flush=True)  # and never stopped

asyncio.run(main())
"""


@needs_redis
async def test_a_forgotten_process_is_killed_when_python_exits() -> None:
    """A child its program never stopped is SIGKILLed, with its group, when Python exits."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _FORGETFUL, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), t(30))
    assert proc.returncode == 0
    pid = int(out.split()[0])
    await poll(lambda: not group_members(pid), WAIT, "the forgotten Redis to be gone")
