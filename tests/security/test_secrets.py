"""No key, token, JWT or audio ever reaches a log line, even at DEBUG."""

from __future__ import annotations

import base64
import uuid

import aiohttp
from relay_sim.frontend import SimulatedFrontend
from relay_sim.heygen_api import FakeHeygenApi
from relay_sim.realtime_server import RealtimeServer
from relay_sim.twilio_api import FakeTwilioApi
from relay_sim.twilio_call import SimulatedCall

from relay.security.auth import mint_token
from tests.conftest import API_KEY, HEYGEN_KEY, TWILIO_SID, TWILIO_TOKEN
from tests.processes import start_relay, stop_relay

AUTH_SECRET = "debug-run-auth-secret-0123456789-abcdef"
ADMIN = "debug-run-admin-token-0123456789"


async def test_debug_logs_hold_no_secrets(model: RealtimeServer, twilio_api: FakeTwilioApi,
                                          heygen_api: FakeHeygenApi) -> None:
    """A full session at DEBUG: the printed logs contain no credential, token or audio."""
    proc, port = await start_relay(
        LOG_LEVEL="DEBUG", RELAY_MODEL="openai", OPENAI_API_KEY=API_KEY,
        OPENAI_REALTIME_URL=model.url, TWILIO_ACCOUNT_SID=TWILIO_SID,
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN, TWILIO_API_BASE_URL=twilio_api.base_url,
        RELAY_TWILIO_SIGNATURES="off", HEYGEN_API_KEY=HEYGEN_KEY,
        HEYGEN_API_BASE_URL=heygen_api.base_url, RELAY_AUTH_SECRET=AUTH_SECRET,
        RELAY_ADMIN_TOKEN=ADMIN, RELAY_GREET_FIRST="0",
    )
    url = f"ws://127.0.0.1:{port}"
    sid = str(uuid.uuid4())
    jwt_token = mint_token(AUTH_SECRET, "alice")
    caller_audio = bytes(range(40, 200))  # 160 bytes, distinctive
    model_audio = bytes(range(200, 255)) * 16
    heygen_api.add_session("0e7d2c1b-3a4f-4b5c-9d6e-7f8091a2b3c4")
    try:
        fe = await SimulatedFrontend.connect(url, f"/logs/{sid}", subprotocols=["relay.v1", jwt_token])
        await fe.send_json({"type": "job_config", "config": {"role": "Chef"}})
        await fe.send_json({"type": "avatar.attach", "provider": "heygen",
                            "avatarSessionId": "0e7d2c1b-3a4f-4b5c-9d6e-7f8091a2b3c4"})
        await fe.send_raw("{broken json with " + API_KEY)  # bad input echoes nothing secret
        await fe.wait_for("error")
        call = await SimulatedCall.connect(url, f"/call/{sid}")
        await call.start()
        upstream = await model.next_connection()
        await upstream.wait_for("session.update")
        for _ in range(5):
            await call.send_media(caller_audio)
        await upstream.wait_for("input_audio_buffer.append")
        await upstream.audio_delta("item_1", model_audio)
        await call.wait_for("media")
        async with aiohttp.ClientSession() as http:
            # Beacon with the token in the query: a URL that must not be logged.
            async with http.post(f"http://127.0.0.1:{port}/api/sessions/{sid}/stop?token={jwt_token}",
                                 data="bye") as resp:
                assert resp.status == 200
            bad = {"Authorization": "Bearer " + ADMIN + "x", "X-Relay-Request": "1"}
            async with http.post(f"http://127.0.0.1:{port}/api/sessions/stop_all",
                                 headers=bad) as resp:
                assert resp.status == 401
        await fe.wait_closed()
    finally:
        logs = (await stop_relay(proc)).decode()
    assert '"level": "debug"' in logs  # the run really logged at DEBUG
    secrets = {
        "OpenAI key": API_KEY, "Twilio token": TWILIO_TOKEN, "HeyGen key": HEYGEN_KEY,
        "auth secret": AUTH_SECRET, "admin token": ADMIN, "JWT": jwt_token,
        "JWT body": jwt_token.split(".")[1],
        "caller audio": base64.b64encode(caller_audio).decode(),
        "model audio": base64.b64encode(model_audio).decode()[:40],
        "basic auth": base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode(),
    }
    leaked = [name for name, value in secrets.items() if value in logs]
    assert leaked == [], f"leaked into logs: {leaked}"
    assert "🏁 Ending session" in logs  # the run really logged the session
