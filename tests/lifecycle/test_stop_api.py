"""Stop-all on app load, the unload beacon, and one session per user."""

from __future__ import annotations

import uuid

import aiohttp
import pytest
from websockets.exceptions import InvalidStatus

from relay.messages.closecodes import CloseCode
from tests.conftest import Relay, RelayFactory


async def user_session(relay: Relay, user: str, *, with_call: bool = True):  # type: ignore[no-untyped-def]
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}?userId={user}")
    call = None
    if with_call:
        call = await relay.call(f"/call/{sid}")
        await call.start()
        upstream = await relay.model.next_connection()
        await upstream.wait_for("session.update")
    await fe.send_json({"type": "job_config", "config": {"role": "Chef"}})
    await fe.wait_for("job_config.ack")
    return sid, fe, call


async def post(relay: Relay, path: str, *, headers: dict[str, str] | None = None, **kwargs):  # type: ignore[no-untyped-def]
    # As the browser client sends its POSTs (a cross-site form could not).
    headers = {"X-Relay-Request": "1", **(headers or {})}
    async with aiohttp.ClientSession() as http, http.post(relay.http + path, headers=headers,
                                                          **kwargs) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def test_stop_all_ends_only_the_callers_sessions(relay: Relay) -> None:
    """POST /api/sessions/stop_all ends the caller's sessions and leaves other users' alone."""
    sid_a, fe_a, call_a = await user_session(relay, "alice")
    sid_b, fe_b, call_b = await user_session(relay, "bob")
    status, body, _ = await post(relay, "/api/sessions/stop_all?userId=alice")
    assert (status, body) == (200, {"stopped": 1})
    ended = await fe_a.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "stopped"
    assert sid_b in relay.server.registry.sessions
    status, body, _ = await post(relay, "/api/sessions/stop_all?userId=alice")
    assert body == {"stopped": 0}
    status, body, _ = await post(relay, "/api/sessions/stop_all")
    assert status == 401
    assert call_b is not None
    await call_b.hang_up()
    await relay.wait_idle()


async def test_admin_stop_all_ends_every_session(make_relay: RelayFactory) -> None:
    """With the admin token, stop_all ends every session."""
    relay = await make_relay(admin_token="admin-secret")
    await user_session(relay, "alice")
    await user_session(relay, "bob", with_call=False)
    status, body, _ = await post(relay, "/api/sessions/stop_all",
                                 headers={"Authorization": "Bearer admin-secret"})
    assert (status, body) == (200, {"stopped": 2})
    await relay.wait_idle()


async def test_beacon_stops_one_session(relay: Relay) -> None:
    """The unload beacon (POST, credentials in the query, text body) ends that one session."""
    sid, fe, call = await user_session(relay, "alice")
    # navigator.sendBeacon sends a POST with a text/plain body and no custom headers.
    status, body, _ = await post(relay, f"/api/sessions/{sid}/stop?userId=alice",
                                 data="bye", headers={"Content-Type": "text/plain"})
    assert (status, body) == (200, {"stopped": True, "sessionId": sid})
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "stopped"
    await relay.wait_idle()
    assert relay.twilio.hangups(call.call_sid) == 1


async def test_beacon_cannot_stop_another_users_session(relay: Relay) -> None:
    """A stop for someone else's session is refused (403); unknown sessions get 404."""
    sid, fe, call = await user_session(relay, "alice")
    status, body, _ = await post(relay, f"/api/sessions/{sid}/stop?userId=mallory")
    assert status == 403 and body["error"] == "forbidden"
    status, _, _ = await post(relay, f"/api/sessions/{uuid.uuid4()}/stop?userId=alice")
    assert status == 404
    status, _, _ = await post(relay, "/api/sessions/bad%20id/stop?userId=alice")
    assert status == 400
    assert sid in relay.server.registry.sessions
    await call.hang_up()
    await relay.wait_idle()


async def test_a_new_session_supersedes_the_users_old_one(relay: Relay) -> None:
    """Starting a new session ends the user's old one first (superseded, close 4010)."""
    old_sid, old_fe, old_call = await user_session(relay, "alice")
    new_sid = str(uuid.uuid4())
    new_fe = await relay.frontend(f"/logs/{new_sid}?userId=alice")
    ended = await old_fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "superseded"
    code, _ = await old_fe.wait_closed()
    assert code == CloseCode.SUPERSEDED
    await old_call.wait_closed()
    assert relay.twilio.hangups(old_call.call_sid) == 1
    assert new_sid in relay.server.registry.sessions
    await new_fe.send_json({"type": "session.end"})
    await relay.wait_idle()


async def test_a_user_cannot_join_another_users_session(relay: Relay) -> None:
    """A frontend naming another user's session is refused; the owner is unharmed."""
    sid, fe, call = await user_session(relay, "alice")
    with pytest.raises(InvalidStatus) as refused:
        await relay.frontend(f"/logs/{sid}?userId=mallory")
    assert refused.value.response.status_code == 403  # refused on the handshake
    await call.hang_up()
    await relay.wait_idle()


async def test_api_answers_cors_preflight(make_relay: RelayFactory) -> None:
    """Browsers calling the API cross-origin get CORS headers for allowed origins only."""
    relay = await make_relay(allowed_origins=("https://app.example.com",))
    async with aiohttp.ClientSession() as http:
        headers = {"Origin": "https://app.example.com",
                   "Access-Control-Request-Method": "POST"}
        async with http.options(relay.http + "/api/sessions/stop_all", headers=headers) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        headers["Origin"] = "https://evil.example.com"
        async with http.options(relay.http + "/api/sessions/stop_all", headers=headers) as resp:
            assert resp.status == 403
    status, _, response_headers = await post(
        relay, "/api/sessions/stop_all?userId=alice",
        headers={"Origin": "https://app.example.com"})
    assert status == 200
    assert response_headers["Access-Control-Allow-Origin"] == "https://app.example.com"
