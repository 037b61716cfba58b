"""`python -m relay` at start: where it listens, when it refuses to, what it says it protects."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from relay.config import Settings
from relay.errors import SettingsError
from relay.logs import Ev
from relay.transport.server import RelayServer
from tests.processes import ROOT, stop_relay
from tests.timing import WAIT

SECRET = "startup-test-secret-0123456789abcdef"


async def start(**env: str) -> tuple[asyncio.subprocess.Process, list[dict]]:
    """`python -m relay` with only ``env`` (and PORT=0, JSON logs); its lines up to Protections."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("RELAY_", "TWILIO_", "OPENAI_", "HEYGEN_", "PUBLIC_URL", "HOST"))}
    clean.update(PORT="0", LOG_FORMAT="json", **env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", cwd=ROOT, env=clean,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    records: list[dict] = []
    async with asyncio.timeout(WAIT * 2):
        while not records or records[-1].get("event") != Ev.PROTECTIONS:
            line = await proc.stderr.readline()
            assert line, f"relay exited: {records}"
            records.append(json.loads(line))
    return proc, records


async def test_with_no_environment_it_listens_on_loopback_only() -> None:
    """The quick start needs no variable: development mode on 127.0.0.1, and it says so."""
    proc, records = await start()
    await stop_relay(proc)
    listening = next(r for r in records if r["event"] == Ev.SERVER_STARTED)
    assert listening["host"] == "127.0.0.1"
    protections = records[-1]
    assert "loopback only" in protections["on"] and "origin allow-list" in protections["on"]
    assert {"frontend tokens", "Twilio signatures",
            "operator endpoints (admin token)"} <= set(protections["off"])


async def test_development_mode_refuses_a_public_host() -> None:
    """HOST=0.0.0.0 without a secret: exit 2, naming what a public deployment sets."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "HOST"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", cwd=ROOT, env={**clean, "HOST": "0.0.0.0", "PORT": "0"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), WAIT * 2)
    assert proc.returncode == 2
    for name in ("RELAY_AUTH_SECRET", "RELAY_ADMIN_TOKEN", "TWILIO_AUTH_TOKEN", "PUBLIC_URL",
                 "RELAY_ALLOW_INSECURE=1"):
        assert name.encode() in err


async def test_allow_insecure_and_a_secured_relay_listen_everywhere() -> None:
    """RELAY_ALLOW_INSECURE=1 opens development mode to the network; with a secret that is the default."""
    proc, records = await start(HOST="0.0.0.0", RELAY_ALLOW_INSECURE="1")
    await stop_relay(proc)
    assert next(r for r in records if r["event"] == Ev.SERVER_STARTED)["host"] == "0.0.0.0"
    assert "loopback only" in records[-1]["off"]
    proc, records = await start(RELAY_AUTH_SECRET=SECRET, RELAY_ADMIN_TOKEN="admin-0123456789",
                                TWILIO_AUTH_TOKEN="twilio-0123", PUBLIC_URL="https://r.example",
                                RELAY_ALLOWED_ORIGINS="https://app.example")
    await stop_relay(proc)
    assert next(r for r in records if r["event"] == Ev.SERVER_STARTED)["host"] == "0.0.0.0"
    assert {"frontend tokens", "token lifetime cap", "Twilio signatures",
            "operator endpoints (admin token)", "origin allow-list", "connection rate limit",
            "inbound budgets"} <= set(records[-1]["on"])


def test_an_embedded_server_refuses_development_mode_beyond_loopback() -> None:
    """RelayServer checks the same rule as the environment, for code that builds Settings itself."""
    with pytest.raises(SettingsError, match="RELAY_ALLOW_INSECURE"):
        RelayServer(Settings(host="0.0.0.0"))
