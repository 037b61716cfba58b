"""scripts/abuse.py, the command line, against a real secured `python -m relay` process.

The checks themselves run, one test each, in tests/security/test_abuse.py (the same functions); this
proves the script runs them all, prints the summary table, and that the relay process logged
no error, no traceback and no secret meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from relay_sim.abuse import CHECKS

from tests.processes import ROOT
from tests.timing import WAIT, t

AUTH_SECRET = "abuse-test-secret-" + "0123456789abcdef" * 2  # HS256 wants at least 32 bytes
TWILIO_TOKEN = "twilio-abuse-token-0123456789"
ADMIN_TOKEN = "admin-abuse-token-0123456789"
#: Any host: the script signs for it but only ever talks to --url, so no port is needed.
PUBLIC_URL = "https://relay.abuse.test"
APP_ORIGIN = "https://app.abuse.test"

#: Limits tuned so the connection flood sees 429s while every other check still gets through.
LIMITS = {
    "RELAY_CONN_RATE_PER_S": "30",
    "RELAY_CONN_BURST": "60",
    "RELAY_HANDSHAKE_TIMEOUT_S": str(t(1.0)),
    "RELAY_RESUME_GRACE_S": str(t(0.5)),
    "RELAY_CALL_START_TIMEOUT_S": str(t(3.0)),
}
#: Environment a developer's shell may carry that would change the relay's mode.
_INHERITED_PREFIXES = ("RELAY_", "TWILIO_", "OPENAI_", "HEYGEN_", "PUBLIC_URL")

pytestmark = pytest.mark.timeout(t(60))


@dataclass
class RelayProcess:
    """`python -m relay` on loopback, its stderr drained into ``lines`` as it runs."""

    proc: asyncio.subprocess.Process
    port: int
    lines: list[bytes] = field(default_factory=list)
    drain: asyncio.Task[None] | None = None

    def records(self) -> list[dict]:
        """The JSON log records; a line that is not JSON (a traceback) counts as an error."""
        records = []
        for line in self.lines:
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                records.append({"level": "error", "raw": line.decode(errors="replace")})
        return records


@contextlib.asynccontextmanager
async def relay_process(**env: str) -> AsyncIterator[RelayProcess]:
    """Start the relay on port 0 with ``env``; stop it after and check it exited cleanly.

    stderr is read continuously: the abuse run logs more than a pipe holds, and a relay
    blocked on a full pipe would stall every check.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
    full_env.update({"PORT": "0", "HOST": "127.0.0.1", "LOG_FORMAT": "json",
                     "RELAY_MODEL": "local", **env})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", cwd=ROOT, env=full_env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    relay = RelayProcess(proc, 0)
    try:
        async with asyncio.timeout(WAIT * 2):
            while not relay.port:
                line = await proc.stderr.readline()
                assert line, f"relay exited before listening: {relay.lines}"
                relay.lines.append(line)
                record = json.loads(line)
                if record.get("event") == "🚀 Relay server listening":
                    relay.port = record["port"]

        async def drain() -> None:
            assert proc.stderr is not None
            async for line in proc.stderr:
                relay.lines.append(line)

        relay.drain = asyncio.create_task(drain())
        yield relay
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        code = await asyncio.wait_for(proc.wait(), WAIT * 2)
        if relay.drain is not None:
            await asyncio.wait_for(relay.drain, WAIT)
    assert code == 0, relay.lines[-20:]


async def run_abuse(port: int, *args: str) -> tuple[int, str]:
    """Run scripts/abuse.py against the relay; return its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "scripts/abuse.py", "--url", f"ws://127.0.0.1:{port}",
        "--wait", str(t(5)), "--timeout", str(t(40)), "--handshake-timeout", str(t(1.0)),
        "--expect-rate-limit", *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), t(50))
    return proc.returncode or 0, out.decode()


def assert_relay_kept_its_head(relay: RelayProcess) -> None:
    """No crash or error logged, and no secret or token in any log line."""
    text = b"".join(relay.lines).decode()
    bad = [r for r in relay.records() if r.get("level") in ("error", "critical", "exception")]
    assert not bad, bad[:3]
    assert "Traceback" not in text
    for secret in (AUTH_SECRET, TWILIO_TOKEN, ADMIN_TOKEN, "eyJ"):  # eyJ: any JWT's header
        assert secret not in text, f"{secret[:8]}… appears in the relay's logs"


async def test_abuse_script_passes_against_a_secured_relay() -> None:
    """With auth, Twilio signatures, an origin list and an admin token every check passes."""
    async with relay_process(
        RELAY_AUTH_SECRET=AUTH_SECRET, RELAY_AUTH_AUDIENCE="relay", TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        PUBLIC_URL=PUBLIC_URL, RELAY_ALLOWED_ORIGINS=APP_ORIGIN, RELAY_ADMIN_TOKEN=ADMIN_TOKEN,
        **LIMITS,
    ) as relay:
        code, out = await run_abuse(
            relay.port, "--auth-secret", AUTH_SECRET, "--auth-audience", "relay",
            "--twilio-auth-token", TWILIO_TOKEN, "--public-url", PUBLIC_URL,
            "--admin-token", ADMIN_TOKEN,
        )
    assert code == 0, out
    assert "FAIL" not in out and "SKIP" not in out, out
    table = out[out.index("\ncheck "):]
    for check in CHECKS:
        assert f"PASS {check.name} — " in out, out
        assert check.name in table and check.covers in table
    assert f"{len(CHECKS)}/{len(CHECKS)} checks passed, 0 failed, 0 skipped" in out, out
    assert "auth on, Twilio signatures on" in out, out
    assert_relay_kept_its_head(relay)
