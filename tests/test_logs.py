"""The five debug log lines of DESIGN.md, verbatim, at the right moments; no secrets."""

from __future__ import annotations

import uuid

from structlog.testing import capture_logs

from tests.conftest import API_KEY, Relay

FIVE = [
    "🖥️ Setting up frontend connection for logs",
    "📋 Received job configuration for session",
    "🔄 Updating existing OpenAI session with new job configuration",
    "📤 Sending call ended notification to frontend",
    "🧹 Cleaning up frontend connection for session",
]


async def test_the_five_lifecycle_lines_in_order(relay: Relay) -> None:
    """A full interview logs each of the five product lines, in lifecycle order, with context."""
    sid = str(uuid.uuid4())
    with capture_logs() as logs:
        fe = await relay.frontend(f"/logs/{sid}")
        await fe.send_json({"type": "job_config", "config": {"role": "Chef"}})
        await fe.wait_for("job_config.ack")
        call = await relay.call(f"/call/{sid}")
        await call.start()
        upstream = await relay.model.next_connection()
        await upstream.wait_for("session.update")
        await fe.send_json({"type": "job_config", "config": {"role": "Sous-chef"}})
        await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
        await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
        await call.hang_up()
        await fe.wait_closed()
        await relay.wait_idle()
    events = [entry["event"] for entry in logs]
    positions = [events.index(line) for line in FIVE]
    assert positions == sorted(positions), events
    received = next(e for e in logs if e["event"] == FIVE[1])
    assert received["sessionId"] == sid
    cleanup = next(e for e in logs if e["event"] == FIVE[4])
    assert cleanup["sessionId"] == sid
    paired = next(e for e in logs if e["event"] == "🔗 Call associated with session")
    assert paired["callSid"] == call.call_sid and paired["streamSid"] == call.stream_sid
    for entry in logs:
        text = repr(entry)
        assert API_KEY not in text
        assert "payload" not in entry and "audio" not in entry
