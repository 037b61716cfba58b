"""`python -m relay` as a real process for the tests that start one: start it, read its port, stop it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.timing import WAIT

#: The repository root: where `python -m relay` and the scripts run from.
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
    """SIGTERM the relay, check it exits with 0, and return what it logged meanwhile."""
    proc.terminate()
    assert proc.stderr is not None
    rest = await asyncio.wait_for(proc.stderr.read(), WAIT * 2)
    assert await proc.wait() == 0
    return rest
