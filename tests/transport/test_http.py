"""relay's HTTP endpoints on the WebSocket port: /twiml, /health, /public-url, /tools."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import aiohttp
from structlog.testing import capture_logs

from relay.logs import Ev
from tests.conftest import Relay, RelayFactory


async def test_twiml_get_with_session_id(make_relay: RelayFactory) -> None:
    """GET /twiml?sessionId= connects the call to wss://PUBLIC_URL/call/{id}, with the parameter."""
    relay = await make_relay(public_url="https://relay.example.com")
    sid = str(uuid.uuid4())
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{relay.http}/twiml?sessionId={sid}") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/xml")
            root = ET.fromstring(await resp.text())
    stream = root.find("./Connect/Stream")
    assert stream is not None and stream.get("url") == f"wss://relay.example.com/call/{sid}"
    param = stream.find("Parameter")
    assert param is not None and param.get("name") == "sessionId" and param.get("value") == sid


async def test_twiml_post_form_from_twilio(make_relay: RelayFactory) -> None:
    """Twilio's default POST webhook (form body) works, sessionId from the form."""
    relay = await make_relay(public_url="https://relay.example.com")
    form = {"CallSid": "CA" + "0" * 32, "AccountSid": "AC" + "1" * 32, "sessionId": "abc-123"}
    async with aiohttp.ClientSession() as http, http.post(relay.http + "/twiml", data=form) as resp:
        assert resp.status == 200
        root = ET.fromstring(await resp.text())
    param = root.find("./Connect/Stream/Parameter")
    assert param is not None and param.get("value") == "abc-123"


async def test_twiml_without_session_id_has_no_parameter(relay: Relay) -> None:
    """Without a sessionId the TwiML carries no Parameter (pairing falls back to other rules)."""
    async with aiohttp.ClientSession() as http, http.post(relay.http + "/twiml") as resp:
        root = ET.fromstring(await resp.text())
    assert root.find("./Connect/Stream/Parameter") is None


async def test_twiml_body_over_the_cap_is_refused(make_relay: RelayFactory) -> None:
    """A webhook body over RELAY_MAX_HTTP_BODY is refused with 413."""
    relay = await make_relay(max_http_body=1024)
    async with aiohttp.ClientSession() as http:
        async with http.post(relay.http + "/twiml", data={"x": "y" * 5000}) as resp:
            assert resp.status == 413


async def test_health_counts(relay: Relay) -> None:
    """/health reports sessions, waiting frontends and open connections by kind."""
    idle = await relay.get_json("/health")
    assert idle["status"] == "ok" and idle["sessions"] == 0 and idle["model"] == "openai"
    assert idle["connections"] == {"call": 0, "frontend": 0, "upstream": 0}
    waiting = await relay.frontend("/logs")
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    busy = await relay.get_json("/health")
    assert busy["sessions"] == 2 and busy["waitingFrontends"] == 1
    assert busy["connections"] == {"call": 1, "frontend": 2, "upstream": 1}
    await call.hang_up()
    await fe.wait_closed()
    await waiting.close()
    await relay.wait_idle()
    done = await relay.get_json("/health")
    assert done["endedByReason"] == {"caller_hung_up": 1, "frontend_left": 1}


async def test_public_url_and_tools(make_relay: RelayFactory) -> None:
    """/public-url and /tools answer as the reference demo's web app expects."""
    relay = await make_relay(public_url="https://relay.example.com")
    assert await relay.get_json("/public-url") == {"publicUrl": "https://relay.example.com"}
    tools = await relay.get_json("/tools")
    names = [tool["name"] for tool in tools]
    assert "end_interview" in names
    assert all(tool["type"] == "function" and "parameters" in tool for tool in tools)


async def test_public_url_without_public_url_is_where_relay_was_reached(relay: Relay) -> None:
    """With PUBLIC_URL unset, /public-url answers the URL of the request (the app's check then passes)."""
    assert await relay.get_json("/public-url") == {"publicUrl": f"http://127.0.0.1:{relay.server.port}"}
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "abc123.ngrok.app"}
    async with aiohttp.ClientSession() as http, \
            http.get(relay.http + "/public-url", headers=headers) as resp:
        assert await resp.json() == {"publicUrl": "https://abc123.ngrok.app"}


async def test_health_and_the_start_log_show_the_frontend_dialect(make_relay: RelayFactory) -> None:
    """/health names the dialect frontends get by default, and so does the start-up line."""
    with capture_logs() as logs:
        relay = await make_relay(frontend_dialect="beta")
    assert (await relay.get_json("/health"))["frontendDialect"] == "beta"
    [started] = [e for e in logs if e["event"] == Ev.SERVER_STARTED]
    assert started["frontendDialect"] == "beta"


async def test_a_plain_get_on_a_websocket_path_is_426(relay: Relay) -> None:
    """A proxy that drops the upgrade headers gets 426, never a session or a 500."""
    async with aiohttp.ClientSession() as http:
        for path in ("/logs", f"/logs/{uuid.uuid4()}", "/call", f"/call/{uuid.uuid4()}"):
            async with http.get(relay.http + path) as resp:
                assert resp.status == 426, path
    await relay.wait_idle()
    assert relay.server.health()["sessions"] == 0
