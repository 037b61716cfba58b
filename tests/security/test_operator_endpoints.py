"""Operator endpoints fail closed, take the admin token in a header only, and no POST is a
cross-site simple request (except the two a form or a beacon must be able to send)."""

from __future__ import annotations

import uuid

import aiohttp
import pytest
from websockets.exceptions import InvalidStatus

from relay.security.auth import mint_token
from tests.conftest import Relay, RelayFactory

ADMIN = "admin-secret-0123"
SECRET = "operator-test-secret-0123456789abcdef"
#: Every operator endpoint: method and path.
OPERATOR = [("GET", "/api/sessions"), ("GET", "/metrics"), ("POST", "/api/sessions/reset"),
            ("POST", "/api/heygen/stop_all_sessions")]
#: A POST a page on any site can make with a plain HTML form: no preflight.
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def request(relay: Relay, method: str, path: str, *, headers: dict[str, str] | None = None,
                  data: bytes | str | None = None) -> tuple[int, dict, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.request(
            method, relay.http + path, headers=headers, data=data) as resp:
        body = await resp.json() if resp.content_type == "application/json" else {}
        return resp.status, body, dict(resp.headers)


@pytest.mark.parametrize("auth", [False, True], ids=["development", "auth on"])
@pytest.mark.parametrize(("method", "path"), OPERATOR)
async def test_operator_endpoints_are_off_without_an_admin_token(
        make_relay: RelayFactory, auth: bool, method: str, path: str) -> None:
    """No RELAY_ADMIN_TOKEN: 403 whose message says how to turn the endpoint on."""
    relay = await make_relay(auth_secret=SECRET if auth else "")
    _, fe = await relay_with_a_session(relay, SECRET if auth else None)
    status, body, _ = await request(relay, method, path, headers={"X-Relay-Request": "1"})
    assert status == 403 and body["error"] == "admin_disabled"
    assert "RELAY_ADMIN_TOKEN" in body["message"] and "Authorization: Bearer" in body["message"]
    assert len(relay.server.registry.sessions) == 1  # nothing was reset
    await fe.close()
    await relay.wait_idle()


async def relay_with_a_session(relay: Relay, secret: str | None = None) -> tuple[str, object]:
    sid = str(uuid.uuid4())
    if secret is None:
        fe = await relay.frontend(f"/logs/{sid}?userId=alice")
    else:
        fe = await relay.frontend(f"/logs/{sid}",
                                  subprotocols=["relay.v1", mint_token(secret, "alice")])
    await fe.send_json({"type": "job_config", "config": {"role": "Chef"}})
    await fe.wait_for("job_config.ack")
    return sid, fe


@pytest.mark.parametrize(("method", "path"), OPERATOR)
async def test_the_admin_token_counts_only_in_the_authorization_header(
        make_relay: RelayFactory, method: str, path: str) -> None:
    """?token=<admin token> is refused (URLs land in proxy logs); the bearer header works."""
    relay = await make_relay(admin_token=ADMIN)
    status, _, _ = await request(relay, method, f"{path}?token={ADMIN}",
                                 headers={"X-Relay-Request": "1"})
    assert status == 401
    status, _, _ = await request(relay, method, path, headers={
        "Authorization": f"Bearer {ADMIN}", "X-Relay-Request": "1"})
    assert status in (200, 503)  # 503: HeyGen is configured in tests, so 200 there too


@pytest.mark.parametrize("path", ["/api/sessions/reset", "/api/sessions/stop_all?userId=alice",
                                  "/api/heygen/stop_all_sessions"])
async def test_cross_site_form_posts_are_refused(make_relay: RelayFactory, path: str) -> None:
    """A POST without JSON or X-Relay-Request (what a hidden form sends) changes nothing: 403."""
    relay = await make_relay(admin_token=ADMIN)
    _, fe = await relay_with_a_session(relay)
    headers = {**FORM, "Authorization": f"Bearer {ADMIN}", "Origin": "https://evil.example"}
    status, body, _ = await request(relay, "POST", path, headers=headers, data="a=1")
    assert status == 403 and body["error"] == "custom_header_required"
    assert len(relay.server.registry.sessions) == 1
    for allowed in ({"Content-Type": "application/json"}, {"X-Relay-Request": "1"}):
        status, _, _ = await request(relay, "POST", path, headers={
            "Authorization": f"Bearer {ADMIN}", **allowed}, data="{}")
        assert status == 200
    await fe.close()
    await relay.wait_idle()


async def test_the_stop_beacon_needs_no_header(relay: Relay) -> None:
    """navigator.sendBeacon sets neither header: the beacon endpoint takes a text/plain POST."""
    sid, fe = await relay_with_a_session(relay)
    status, body, _ = await request(relay, "POST", f"/api/sessions/{sid}/stop?userId=alice",
                                    headers={"Content-Type": "text/plain;charset=UTF-8"},
                                    data="bye")
    assert (status, body) == (200, {"stopped": True, "sessionId": sid})
    await relay.wait_idle()


async def test_preflight_allows_the_custom_header(make_relay: RelayFactory) -> None:
    """The CORS preflight lets an allowed origin send X-Relay-Request and JSON."""
    relay = await make_relay(allowed_origins=("https://app.example.com",))
    status, _, headers = await request(relay, "OPTIONS", "/api/sessions/stop_all", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-relay-request, content-type"})
    assert status == 204
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"x-relay-request", "content-type", "authorization"} <= allowed


async def test_the_live_sessions_page_cannot_be_framed(relay: Relay) -> None:
    """The dashboard forbids framing (X-Frame-Options and CSP frame-ancestors)."""
    async with aiohttp.ClientSession() as http, http.get(relay.http + "/") as resp:
        assert resp.status == 200
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("origin", "allowed"), [
    ("http://localhost:3000", True), ("http://127.0.0.1:8080", True), ("https://localhost", True),
    ("http://[::1]:5173", True), ("https://evil.example", False),
    ("http://localhost.evil.example", False), ("http://localhost:3000.evil.example", False),
])
async def test_development_mode_allows_only_local_origins(relay: Relay, origin: str,
                                                          allowed: bool) -> None:
    """In development mode CORS answers and /logs admits only pages served from this machine."""
    status, _, headers = await request(relay, "OPTIONS", "/api/sessions/stop_all", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST"})
    assert (status == 204) is allowed
    assert (headers.get("Access-Control-Allow-Origin") == origin) is allowed
    if allowed:
        fe = await relay.frontend(f"/logs/{uuid.uuid4()}", origin=origin)
        await fe.close()
    else:
        with pytest.raises(InvalidStatus) as refused:
            await relay.frontend(f"/logs/{uuid.uuid4()}", origin=origin)
        assert refused.value.response.status_code == 403
    await relay.wait_idle()
