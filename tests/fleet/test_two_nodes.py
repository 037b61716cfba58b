"""Two relay nodes sharing one real Redis, in one process: pairing, bridging and control fleet-wide.

Each node is a full RelayServer on its own port with its own node ID; only
Redis joins them. Process-level behaviour (SIGKILL, HAProxy) is tested in
test_processes.py.
"""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET

import aiohttp
from twilio.request_validator import RequestValidator

from relay.messages.closecodes import CloseCode
from tests.conftest import TWILIO_TOKEN, Relay, RelayFactory, wait_until

PUBLIC = "https://relay.example.com"
FAST = {"fleet_heartbeat_s": 0.1, "fleet_dead_after_s": 0.6}


async def two_nodes(make_relay: RelayFactory, redis_url: str, **overrides: object) -> tuple[Relay, Relay]:
    a = await make_relay(redis_url=redis_url, node_id="node-a", **FAST, **overrides)
    b = await make_relay(redis_url=redis_url, node_id="node-b", **FAST, **overrides)
    await wait_until(lambda: len(b.server.fleet.membership.alive_nodes()) == 2, what="two nodes")
    await wait_until(lambda: len(a.server.fleet.membership.alive_nodes()) == 2, what="two nodes")
    return a, b


async def test_a_call_on_another_node_takes_the_session_over(make_relay: RelayFactory,
                                                             redis_url: str) -> None:
    """Frontend on A, call on B: the session moves to B; A's frontend is bridged and hears all."""
    a, b = await two_nodes(make_relay, redis_url)
    sid = str(uuid.uuid4())
    fe = await a.frontend(f"/logs/{sid}")
    await fe.send_json({"type": "job_config", "config": {"role": "Site Reliability Engineer"}})
    await fe.wait_for("job_config.ack", lambda m: m["status"] == "queued")
    call = await b.call(f"/call/{sid}")
    await call.start()
    associated = await fe.wait_for("session.associated")
    assert associated["callSid"] == call.call_sid
    model = await b.model.next_connection()
    update = await model.wait_for("session.update")
    assert "Site Reliability Engineer" in update["session"]["instructions"]
    assert sid in b.server.registry.sessions and sid not in a.server.registry.sessions
    await model.transcript_done("item_1", "Tell me about an outage you handled.")
    done = await fe.wait_for("response.output_audio_transcript.done")
    assert done["transcript"] == "Tell me about an outage you handled."
    await fe.send_json({"type": "activity"})
    await call.hang_up()
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "caller_hung_up"
    assert (await fe.wait_closed())[0] == CloseCode.NORMAL
    await a.wait_idle()
    await b.wait_idle()


async def test_a_frontend_on_another_node_is_bridged(make_relay: RelayFactory,
                                                     redis_url: str) -> None:
    """A second frontend that lands on the non-owner node gets the same events and may end it."""
    a, b = await two_nodes(make_relay, redis_url)
    sid = str(uuid.uuid4())
    fe_a = await a.frontend(f"/logs/{sid}")
    call = await a.call(f"/call/{sid}")
    await call.start()
    model = await a.model.next_connection()
    await fe_a.wait_for("session.associated")
    fe_b = await b.frontend(f"/logs/{sid}")
    associated = await fe_b.wait_for("session.associated")
    assert associated["sessionId"] == sid
    await model.transcript_done("item_1", "hello both")
    for fe in (fe_a, fe_b):
        await fe.wait_for("response.output_audio_transcript.done")
    await fe_b.send_json({"type": "session.end"})
    for fe in (fe_a, fe_b):
        ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
        assert ended["reason"] == "frontend_ended"
        await fe.wait_closed()
    await a.wait_idle()
    await b.wait_idle()
    assert a.twilio.hangups(call.call_sid) == 1


async def test_bare_frontends_and_bare_calls_pair_exactly_once_across_nodes(
        make_relay: RelayFactory, redis_url: str) -> None:
    """Bare /logs waiters on both nodes and bare calls on both nodes: each call pairs once."""
    a, b = await two_nodes(make_relay, redis_url)
    frontends = [await (a if i % 2 else b).frontend("/logs") for i in range(6)]
    await wait_until(lambda: a.server.health()["waitingFrontends"]
                     + b.server.health()["waitingFrontends"] == 6, what="six waiting")
    calls = [await (b if i % 2 else a).call("/call") for i in range(6)]
    await asyncio.gather(*(call.start() for call in calls))
    associated = await asyncio.gather(*(fe.wait_for("session.associated") for fe in frontends))
    assert sorted(m["callSid"] for m in associated) == sorted(c.call_sid for c in calls)
    assert len({m["sessionId"] for m in associated}) == 6
    for call in calls:
        await call.hang_up()
    for fe in frontends:
        await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
        await fe.close()
    await a.wait_idle()
    await b.wait_idle()


def sign(url: str, params: dict[str, str] | None = None) -> str:
    return RequestValidator(TWILIO_TOKEN).compute_signature(url, params or {})


async def test_a_stream_token_minted_on_one_node_is_spent_on_another_once(
        make_relay: RelayFactory, redis_url: str) -> None:
    """/twiml on A mints the token; the stream on B spends it; replaying it on A is refused."""
    a, b = await two_nodes(make_relay, redis_url, twilio_signatures="on", public_url=PUBLIC)
    sid, call_sid = str(uuid.uuid4()), "CA" + uuid.uuid4().hex
    form = {"CallSid": call_sid, "sessionId": sid}
    async with aiohttp.ClientSession() as http, http.post(
            a.http + "/twiml", data=form,
            headers={"X-Twilio-Signature": sign(PUBLIC + "/twiml", form)}) as resp:
        root = ET.fromstring(await resp.text())
    token = {p.get("name"): p.get("value") for p in root.iter("Parameter")}["streamToken"]
    headers = {"X-Twilio-Signature": sign(f"wss://relay.example.com/call/{sid}")}
    call = await b.call(f"/call/{sid}", call_sid=call_sid, extra_headers=headers)
    await call.start({"streamToken": token})
    await b.model.next_connection()
    replay = await a.call(f"/call/{sid}", call_sid=call_sid, extra_headers=headers)
    await replay.start({"streamToken": token})
    assert (await replay.wait_closed())[0] == CloseCode.POLICY_VIOLATION
    await call.hang_up()
    await a.wait_idle()
    await b.wait_idle()


async def test_stop_all_supersede_reset_and_the_sessions_view_span_the_fleet(
        make_relay: RelayFactory, redis_url: str) -> None:
    """One user's sessions on two nodes: the sessions view shows both; stop-all on A ends both."""
    a, b = await two_nodes(make_relay, redis_url, admin_token="admin-token-0123456789",
                           max_sessions_per_user=5)
    s1, s2 = str(uuid.uuid4()), str(uuid.uuid4())
    fe1 = await a.frontend(f"/logs/{s1}?userId=alice")
    await fe1.send_json({"type": "job_config", "config": {"role": "A"}})
    # A second session of alice's on B supersedes the first, on A.
    fe2 = await b.frontend(f"/logs/{s2}?userId=alice")
    ended = await fe1.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "superseded"
    await fe2.send_json({"type": "job_config", "config": {"role": "B"}})
    fe3 = await a.frontend(f"/logs/{uuid.uuid4()}?userId=bob")
    await fe3.send_json({"type": "job_config", "config": {"role": "C"}})
    for fe in (fe2, fe3):
        await fe.wait_for("job_config.ack")
    auth = {"Authorization": "Bearer admin-token-0123456789"}
    async with aiohttp.ClientSession() as http:
        async with http.get(a.http + "/api/sessions", headers=auth) as resp:
            rows = (await resp.json())["sessions"]
        assert {(r["userId"], r["node"]) for r in rows} == {("alice", "node-b"), ("bob", "node-a")}
        async with http.post(a.http + "/api/sessions/stop_all?userId=alice",
                             headers={"Content-Type": "application/json"}) as resp:
            assert (await resp.json())["stopped"] == 1
        await fe2.wait_for("call.status_changed", lambda m: m["reason"] == "stopped")
        async with http.post(b.http + "/api/sessions/reset",
                             headers={**auth, "Content-Type": "application/json"}) as resp:
            assert (await resp.json())["ended"] == 1
    await fe3.wait_for("call.status_changed", lambda m: m["reason"] == "reset")
    await a.wait_idle()
    await b.wait_idle()


async def test_a_call_placed_through_one_node_for_a_session_on_another(
        make_relay: RelayFactory, redis_url: str) -> None:
    """POST /api/calls and Twilio's callbacks reach node A; the session runs on node B."""
    a, b = await two_nodes(make_relay, redis_url, twilio_from_number="+15557654321",
                           twilio_signatures="on", public_url=PUBLIC)
    sid = str(uuid.uuid4())
    fe = await b.frontend(f"/logs/{sid}?userId=alice")
    await fe.send_json({"type": "job_config", "config": {"role": "SRE"}})
    await fe.wait_for("job_config.ack")
    async with aiohttp.ClientSession() as http, http.post(
            a.http + "/api/calls?userId=alice", json={"to": "+15551234567", "sessionId": sid},
            headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 201, await resp.text()
        call_sid = (await resp.json())["callSid"]
    assert await a.twilio.outbound.progress(call_sid, "ringing", a.http) == 204
    ringing = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ringing")
    assert ringing["sessionId"] == sid
    await a.twilio.outbound.progress(call_sid, "no-answer", a.http)
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "no_answer"
    await a.wait_idle()
    await b.wait_idle()


async def test_health_shows_the_fleet_and_the_beacon_reaches_the_owner_node(
        make_relay: RelayFactory, redis_url: str) -> None:
    """/health names the node and every node's load; a beacon sent to A stops a session on B."""
    a, b = await two_nodes(make_relay, redis_url)
    sid = str(uuid.uuid4())
    fe = await b.frontend(f"/logs/{sid}?userId=alice")
    call = await b.call(f"/call/{sid}")
    await call.start()
    await b.model.next_connection()
    await fe.wait_for("session.associated")

    def b_load_seen_by_a() -> bool:
        nodes = {n["node"]: n for n in a.server.health()["fleet"]["nodes"]}
        return nodes.get("node-b", {}).get("calls") == 1

    await wait_until(b_load_seen_by_a, what="node A to see node B's call in its heartbeat")
    async with aiohttp.ClientSession() as http:
        async with http.get(a.http + "/health") as resp:
            health = await resp.json()
        assert health["node"] == "node-a"
        assert health["fleet"]["store"] == "ok"
        nodes = {n["node"]: n for n in health["fleet"]["nodes"]}
        assert set(nodes) == {"node-a", "node-b"}
        assert all(n["alive"] for n in nodes.values())
        assert (nodes["node-b"]["sessions"], nodes["node-b"]["calls"],
                nodes["node-b"]["frontends"]) == (1, 1, 1)
        assert nodes["node-a"]["sessions"] == 0
        # navigator.sendBeacon: a text body, no custom header, sent to whichever node.
        async with http.post(a.http + f"/api/sessions/{sid}/stop?userId=alice", data="bye",
                             headers={"Content-Type": "text/plain"}) as resp:
            assert resp.status == 200
            assert await resp.json() == {"stopped": True, "sessionId": sid}
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "stopped"
    await fe.wait_closed()
    await call.wait_closed()
    await b.wait_idle()
    assert b.twilio.hangups(call.call_sid) == 1
    await a.wait_idle()
