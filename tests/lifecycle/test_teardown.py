"""Every way a session ends goes through one teardown: ended first, then closes, then forgotten."""

from __future__ import annotations

import asyncio
import uuid

from relay_sim.realtime_server import RealtimeServer

from relay.messages.closecodes import CloseCode
from tests.conftest import API_KEY, Relay, RelayFactory
from tests.timing import WAIT


async def assert_ended(fe, reason: str) -> None:  # type: ignore[no-untyped-def]
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == reason
    await fe.wait_closed()
    assert fe.closed_after("call.status_changed")


async def test_caller_hangs_up(relay: Relay) -> None:
    """Twilio's stop ends the session (caller_hung_up): frontend told, then everything closed."""
    sid, fe, call, upstream = await relay.live_session()
    await call.send_stop()
    await assert_ended(fe, "caller_hung_up")
    await asyncio.wait_for(upstream.closed.wait(), WAIT)
    code, _ = await call.wait_closed()
    assert code == CloseCode.NORMAL
    await relay.wait_idle()
    assert relay.server.health()["endedByReason"] == {"caller_hung_up": 1}


async def test_call_socket_drops(relay: Relay) -> None:
    """The stream socket closing without stop ends the session (call_dropped)."""
    sid, fe, call, upstream = await relay.live_session()
    await call.close()
    await assert_ended(fe, "call_dropped")
    await asyncio.wait_for(upstream.closed.wait(), WAIT)
    await relay.wait_idle()


async def test_frontend_ends_session(relay: Relay) -> None:
    """session.end from the frontend ends it (frontend_ended) and closes the call and model."""
    sid, fe, call, upstream = await relay.live_session()
    await fe.send_json({"type": "session.end"})
    await assert_ended(fe, "frontend_ended")
    code, _ = await call.wait_closed()
    assert code == CloseCode.NORMAL
    await asyncio.wait_for(upstream.closed.wait(), WAIT)
    await relay.wait_idle()


async def test_upstream_closes(relay: Relay) -> None:
    """The model closing its connection ends the session (upstream_closed)."""
    sid, fe, call, upstream = await relay.live_session()
    await upstream.close(1011, "server error")
    await assert_ended(fe, "upstream_closed")
    await call.wait_closed()
    await relay.wait_idle()


async def test_upstream_never_opens(make_relay: RelayFactory, model: RealtimeServer) -> None:
    """A model that refuses every connection is retried with back-off, then the session ends."""
    model.never_open = True
    relay = await make_relay()
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    err = await fe.wait_for("error")
    assert err["code"] == "upstream_failed" and "503" in err["message"]
    await assert_ended(fe, "upstream_failed")
    assert model.attempts == 3  # RELAY_UPSTREAM_CONNECT_ATTEMPTS in the test settings
    await call.wait_closed()
    await relay.wait_idle()


async def test_upstream_refused_key_is_not_retried(make_relay: RelayFactory,
                                                    model: RealtimeServer) -> None:
    """A 401 from the model (bad key) fails at once: retrying cannot fix it."""
    relay = await make_relay(openai_api_key="sk-wrong")
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    err = await fe.wait_for("error")
    assert "401" in err["message"]
    await assert_ended(fe, "upstream_failed")
    assert model.attempts == 1
    await relay.wait_idle()


async def test_upstream_retries_then_opens(make_relay: RelayFactory, model: RealtimeServer) -> None:
    """Two refused attempts, then the model opens and the session goes live."""
    model.refuse_first = 2
    relay = await make_relay()
    sid, fe, call, upstream = await relay.live_session()
    assert model.attempts == 3
    assert upstream.request_headers["Authorization"] == f"Bearer {API_KEY}"
    await call.hang_up()
    await assert_ended(fe, "caller_hung_up")
    await relay.wait_idle()


async def test_caller_hangs_up_while_model_connects(make_relay: RelayFactory) -> None:
    """A hang-up while the model handshake hangs closes that half-open connection too."""
    accepted: list[asyncio.StreamWriter] = []
    gone = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()  # never answers the handshake; returns on EOF
        gone.set()
        writer.close()

    tarpit = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = tarpit.sockets[0].getsockname()[1]
    try:
        relay = await make_relay(openai_realtime_url=f"ws://127.0.0.1:{port}/v1/realtime",
                                 upstream_open_timeout_s=30)
        sid = str(uuid.uuid4())
        fe = await relay.frontend(f"/logs/{sid}")
        call = await relay.call(f"/call/{sid}")
        await call.start()
        while not accepted:
            await asyncio.sleep(0.005)
        await call.send_stop()
        await assert_ended(fe, "caller_hung_up")
        await asyncio.wait_for(gone.wait(), WAIT)
        await relay.wait_idle()
    finally:
        tarpit.close()
        await tarpit.wait_closed()


async def test_reset_all_sessions(relay: Relay) -> None:
    """reset_all_sessions() ends every session (reason reset) and clears waiting frontends."""
    _, fe1, _, _ = await relay.live_session()
    _, fe2, _, _ = await relay.live_session()
    waiting = await relay.frontend("/logs")
    await relay.wait_until_waiting(1)
    ended = await relay.server.registry.reset_all_sessions()
    assert ended == 3
    for fe in (fe1, fe2, waiting):
        await assert_ended(fe, "reset")
    await relay.wait_idle()
    assert relay.server.health()["waitingFrontends"] == 0


async def test_reset_endpoint_requires_admin_token(make_relay: RelayFactory) -> None:
    """POST /api/sessions/reset needs the admin bearer token when one is set."""
    import aiohttp

    relay = await make_relay(admin_token="admin-secret")
    _, fe, _, _ = await relay.live_session()
    async with aiohttp.ClientSession() as http:
        async with http.post(relay.http + "/api/sessions/reset",
                             headers={"X-Relay-Request": "1"}) as resp:
            assert resp.status == 401
        headers = {"Authorization": "Bearer admin-secret", "X-Relay-Request": "1"}
        async with http.post(relay.http + "/api/sessions/reset", headers=headers) as resp:
            assert resp.status == 200 and (await resp.json()) == {"ended": 1}
    await assert_ended(fe, "reset")
    await relay.wait_idle()


async def test_shutdown_ends_sessions_with_1001(relay: Relay) -> None:
    """Closing the server ends sessions (reason shutdown) and closes sockets with 1001."""
    _, fe, call, upstream = await relay.live_session()
    await relay.server.close()
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "shutdown"
    code, _ = await fe.wait_closed()
    assert code == CloseCode.GOING_AWAY
    code, _ = await call.wait_closed()
    assert code == CloseCode.GOING_AWAY
    await asyncio.wait_for(upstream.closed.wait(), WAIT)


async def test_practice_again_starts_clean(relay: Relay) -> None:
    """After a session ends, a new one starts with no configuration from the old one."""
    sid, fe, call, upstream = await relay.live_session()
    await fe.send_json({"type": "job_config", "config": {"role": "Chef", "company": "Bistro"}})
    await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
    await fe.send_json({"type": "session.end"})
    await assert_ended(fe, "frontend_ended")
    sid2, fe2, call2, upstream2 = await relay.live_session()
    update = next(m for m in upstream2.received if m["type"] == "session.update")
    assert "Chef" not in update["session"]["instructions"]
    assert "job_config.ack" not in fe2.types()
    await fe2.send_json({"type": "session.end"})
    await assert_ended(fe2, "frontend_ended")
    await relay.wait_idle()


async def test_no_resume_means_grace_then_end(relay: Relay) -> None:
    """A configured session whose frontend leaves before any call ends after the grace window."""
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    await fe.send_json({"type": "job_config", "config": {"role": "Chef"}})
    await fe.wait_for("job_config.ack")
    await fe.close()
    assert sid in relay.server.registry.sessions  # kept for a refresh
    await relay.wait_idle()
    assert relay.server.health()["endedByReason"] == {"abandoned": 1}
