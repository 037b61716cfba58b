"""/twiml names the session of a call a page registered, so a proxy routes the stream to it."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import aiohttp

from tests.conftest import Relay


async def test_twiml_for_a_registered_call_names_its_session(relay: Relay) -> None:
    """A page on /logs?callSid=X: /twiml for X streams to /call/X with sessionId X."""
    call_sid = "CA" + uuid.uuid4().hex
    page = await relay.frontend(f"/logs?callSid={call_sid}")
    await page.send_json({"type": "job_config", "config": {"role": "Data Engineer"}})
    await page.wait_for("job_config.ack")
    async with aiohttp.ClientSession() as http, http.post(
            relay.http + "/twiml", data={"CallSid": call_sid}) as resp:
        root = ET.fromstring(await resp.text())
    stream = next(root.iter("Stream"))
    assert stream.get("url", "").endswith(f"/call/{call_sid}")
    assert {p.get("name"): p.get("value") for p in root.iter("Parameter")} == {
        "sessionId": call_sid}
    call = await relay.call(f"/call/{call_sid}", call_sid=call_sid)
    await call.start({"sessionId": call_sid})
    associated = await page.wait_for("session.associated")
    assert associated["sessionId"] == call_sid
    await call.hang_up()
    await page.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    await relay.wait_idle()
