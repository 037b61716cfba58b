"""The shipped scripts against a real `python -m relay` process on the built-in local model."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import pytest

from tests.processes import ROOT, start_relay, start_relay_logged, stop_relay
from tests.timing import t


@pytest.fixture
async def local_relay() -> AsyncIterator[int]:
    proc, port = await start_relay(RELAY_RESUME_GRACE_S=str(t(0.5)))
    try:
        yield port
    finally:
        await stop_relay(proc)


async def run_script(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_session_cleanup_script_passes(local_relay: int) -> None:
    """scripts/test_session_cleanup.py passes all four checks against python -m relay."""
    code, out = await run_script("scripts/test_session_cleanup.py", "--url",
                                 f"ws://127.0.0.1:{local_relay}")
    assert code == 0, out
    assert out.count("PASS ") == 4 and "FAIL" not in out


async def test_demo_call_shows_a_conversation(local_relay: int) -> None:
    """scripts/demo_call.py plays a call through the local model and prints the transcript."""
    code, out = await run_script("scripts/demo_call.py", "--url", f"ws://127.0.0.1:{local_relay}",
                                 "--seconds", "2")
    assert code == 0, out
    assert "job configuration applied" in out
    assert "caller:" in out and "interviewer:" in out
    assert "call ended (frontend_ended)" in out


@pytest.mark.parametrize(("outcome", "reason"), [("answered", "caller_hung_up"),
                                                ("busy", "busy"), ("voicemail", "voicemail")])
async def test_demo_call_outbound_plays_the_call_me_flow(outcome: str, reason: str) -> None:
    """scripts/demo_call.py --outbound: relay places the call, Twilio's progress, its end."""
    code, out = await run_script("scripts/demo_call.py", "--outbound", "--outcome", outcome,
                                 "--seconds", "2")
    assert code == 0, out
    assert "POST /api/calls → 201" in out
    assert "call ringing" in out
    assert f"call ended ({reason})" in out


async def test_starts_with_no_environment_on_the_local_model() -> None:
    """With no API key the first log lines say the server listens on the local model."""
    proc, port, first = await start_relay_logged(RELAY_MODEL="")
    assert port > 0
    assert first[0]["event"] == "🚀 Relay server listening" and first[0]["model"] == "local"
    assert first[1]["event"].startswith("🧪 Using the built-in local model")
    rest = await stop_relay(proc)
    lines = [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert any(r["event"] == "🏁 Relay server stopped" for r in lines)
