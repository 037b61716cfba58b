"""The shipped scripts against a real `python -m relay` process on the built-in local model."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.timing import WAIT, t

ROOT = Path(__file__).resolve().parent.parent


async def start_relay(**env: str) -> tuple[asyncio.subprocess.Process, int]:
    """Start `python -m relay` on port 0 and read its port from the first log line."""
    proc, port, _ = await start_relay_logged(**env)
    return proc, port


async def start_relay_logged(**env: str) -> tuple[asyncio.subprocess.Process, int, list[dict]]:
    """Like start_relay, also returning the log records up to the listening line."""
    full_env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    full_env.update({"PORT": "0", "HOST": "127.0.0.1", "LOG_FORMAT": "json",
                     "RELAY_MODEL": "local", **env})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", cwd=ROOT, env=full_env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    records: list[dict] = []
    async with asyncio.timeout(WAIT * 2):
        while True:
            line = await proc.stderr.readline()
            if not line:
                raise AssertionError("relay exited before listening")
            records.append(json.loads(line))
            if records[-1].get("event") == "🚀 Relay server listening":
                # The model line follows the listening line.
                records.append(json.loads(await proc.stderr.readline()))
                return proc, records[-2]["port"], records


async def stop_relay(proc: asyncio.subprocess.Process) -> bytes:
    proc.terminate()
    assert proc.stderr is not None
    rest = await asyncio.wait_for(proc.stderr.read(), WAIT * 2)
    assert await proc.wait() == 0
    return rest


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
