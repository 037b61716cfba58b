"""Every abuse check of scripts/abuse.py (relay_sim.abuse), run here against a development and
a secured relay: the same functions, not a copy of them."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from relay_sim.abuse import CHECKS, Check, Target, connect, run_one

from tests.conftest import TWILIO_TOKEN, RelayFactory
from tests.timing import t

AUTH_SECRET = "abuse-test-secret-" + "0123456789abcdef" * 2
ADMIN_TOKEN = "admin-abuse-token-0123456789"
PUBLIC_URL = "https://relay.abuse.test"
APP_ORIGIN = "https://app.abuse.test"

#: Limits tuned so the connection flood sees 429s while every other check still gets through.
LIMITS: dict[str, Any] = {"conn_rate_per_s": 30.0, "conn_burst": 60,
                          "handshake_timeout_s": t(1.0), "resume_grace_s": t(0.5),
                          "call_start_timeout_s": t(3.0)}
MODES: dict[str, dict[str, Any]] = {
    "development": {},
    "secured": {"auth_secret": AUTH_SECRET, "auth_audience": "relay", "twilio_signatures": "on",
                "public_url": PUBLIC_URL, "allowed_origins": (APP_ORIGIN,),
                "admin_token": ADMIN_TOKEN},
}
#: What only applies with secrets: skipped in development mode, and nothing else is.
NEEDS_SECRETS = {"forged Twilio signatures", "stream tokens", "stream tokens bound to a session",
                 "expired and malformed tokens", "token lifetime", "calls nobody owns",
                 "rate limit before signatures"}


def target(url: str, mode: str) -> Target:
    secrets: dict[str, Any] = {}
    if mode == "secured":
        secrets = {"auth_secret": AUTH_SECRET, "twilio_auth_token": TWILIO_TOKEN,
                   "public_url": PUBLIC_URL, "admin_token": ADMIN_TOKEN}
    return Target(url=url, wait=t(5.0), handshake_timeout=t(1.0), expect_rate_limit=True,
                  **secrets)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("check", CHECKS, ids=[c.name for c in CHECKS])
async def test_abuse_check(make_relay: RelayFactory, mode: str, check: Check) -> None:
    """The check passes (or, in development mode, is skipped for needing secrets)."""
    relay = await make_relay(**LIMITS, **MODES[mode])
    async with aiohttp.ClientSession() as http:
        harness = await connect(target(relay.url, mode), http)
        result = await run_one(harness, check, t(40))
    expected = "SKIP" if mode == "development" and check.name in NEEDS_SECRETS else "PASS"
    assert result.outcome == expected, result.detail
    await relay.wait_idle(t(5.0))
