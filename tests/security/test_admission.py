"""Admission, before anything else: repeated headers, the rate limit on every path, proxies,
sampled refusal logs, token lifetimes and the gate's clocks."""

from __future__ import annotations

import asyncio
import base64
import os

import jwt
import pytest
from relay_sim.rawsocket import HandshakeRefused, RawSocket
from structlog.testing import capture_logs
from twilio.request_validator import RequestValidator
from websockets.datastructures import Headers
from websockets.http11 import Request

from relay.config import Settings
from relay.errors import AuthError
from relay.logs import Ev
from relay.security.auth import TokenVerifier, mint_token
from relay.security.gate import Gate
from tests.conftest import TWILIO_TOKEN, Relay, RelayFactory
from tests.timing import WAIT

SECRET = "admission-test-secret-0123456789abcd"
PUBLIC = "https://relay.example.com"


async def raw_status(relay: Relay, request_line: str, *headers: str) -> int:
    """Send one request with exactly these header lines; the status it is answered with."""
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [request_line, f"Host: 127.0.0.1:{relay.server.port}", *headers]
    if request_line.startswith("GET /logs") or request_line.startswith("GET /call"):
        lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                  "Sec-WebSocket-Version: 13"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    status = int((await asyncio.wait_for(reader.readline(), WAIT)).split()[1])
    writer.close()
    return status


REPEATABLE = {
    "Origin": "http://localhost:3000",
    "Authorization": "Bearer x",
    "Sec-WebSocket-Protocol": "relay.v1",
    "X-Twilio-Signature": "c2lnbmF0dXJl",
    "X-Forwarded-For": "203.0.113.7",
}


@pytest.mark.parametrize("header", REPEATABLE)
@pytest.mark.parametrize("request_line", ["GET /logs/abc HTTP/1.1", "GET /call HTTP/1.1",
                                          "POST /api/sessions/stop_all HTTP/1.1",
                                          "GET /health HTTP/1.1"])
async def test_a_repeated_header_is_a_clean_400(make_relay: RelayFactory, header: str,
                                                request_line: str) -> None:
    """Two Origin (etc.) headers: 400 before anything reads them; no 500, no traceback."""
    relay = await make_relay(trust_proxy=True)
    value = REPEATABLE[header]
    with capture_logs() as logs:
        status = await raw_status(relay, request_line, f"{header}: {value}",
                                  f"{header}: {value}")
    assert status == 400
    assert not [e for e in logs if e["log_level"] in ("error", "critical") or "exc_info" in e]
    [refused] = [e for e in logs if e["event"] == Ev.HANDSHAKE_REFUSED]
    assert refused["header"] == header and refused["status"] == 400


async def test_the_rate_limit_comes_before_the_signature(make_relay: RelayFactory) -> None:
    """Over the limit an unsigned /call gets 429, not a signature check; a signed one still opens."""
    relay = await make_relay(conn_rate_per_s=0.001, conn_burst=1, twilio_signatures="on",
                             public_url=PUBLIC)
    assert await raw_status(relay, "GET /health HTTP/1.1") == 200  # spends the burst
    assert await raw_status(relay, "GET /call HTTP/1.1") == 429
    assert await raw_status(relay, "GET /call HTTP/1.1", "X-Twilio-Signature: forged") == 429
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        "wss://relay.example.com/call", {})
    call = await relay.call("/call", extra_headers={"X-Twilio-Signature": signature})
    await call.close()
    await relay.wait_idle()


@pytest.mark.parametrize(("hops", "forwarded", "client"), [
    (1, "198.51.100.1", "198.51.100.1"),
    (1, "6.6.6.6, 198.51.100.1", "198.51.100.1"),
    (2, "6.6.6.6, 198.51.100.1, 10.0.0.2", "198.51.100.1"),
    (3, "198.51.100.1, 10.0.0.2", "198.51.100.1"),  # fewer entries than hops: the first
])
def test_the_client_is_the_address_the_trusted_proxy_appended(hops: int, forwarded: str,
                                                              client: str) -> None:
    """RELAY_TRUSTED_HOPS counts from the right; entries left of them are the client's own."""
    gate = Gate(Settings(trust_proxy=True, trusted_hops=hops))
    request = Request("/health", Headers({"X-Forwarded-For": forwarded}))
    assert gate.client_address(("10.0.0.1", 1234), request) == client


async def test_rotating_x_forwarded_for_does_not_evade_the_limit(make_relay: RelayFactory) -> None:
    """A client that changes the left of X-Forwarded-For each time is still one client."""
    relay = await make_relay(trust_proxy=True, conn_rate_per_s=0.001, conn_burst=3)
    statuses = [await raw_status(relay, "GET /health HTTP/1.1",
                                 f"X-Forwarded-For: 6.6.6.{i}, 198.51.100.1") for i in range(5)]
    assert statuses == [200, 200, 200, 429, 429]


async def test_handshake_refusals_are_logged_sampled_per_address(make_relay: RelayFactory) -> None:
    """200 refused handshakes from one address: a few full lines, then counts."""
    relay = await make_relay(auth_secret=SECRET, refusal_log_first=3)
    with capture_logs() as logs:
        for _ in range(200):
            with pytest.raises(HandshakeRefused):
                await RawSocket.connect(relay.url, "/logs/abc",
                                        headers={"Sec-WebSocket-Protocol": "relay.v1, forged"})
    full = [e for e in logs if e["event"] == Ev.HANDSHAKE_REFUSED]
    counts = [e["unlogged"] for e in logs if e["event"] == Ev.REFUSALS_SAMPLED]
    assert len(full) == 3 and counts == [1, 10, 100]


# -- token lifetimes, on an injected clock --------------------------------------------------------

NOW = 1_900_000_000.0


def claims_token(**claims: object) -> str:
    base = {"sub": "alice", "aud": "relay", "iat": int(NOW), "exp": int(NOW) + 300}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, SECRET, algorithm="HS256")


def verifier(max_ttl_s: float = 86_400.0, now: float = NOW) -> TokenVerifier:
    return TokenVerifier(SECRET, "relay", max_ttl_s=max_ttl_s, now=lambda: now)


@pytest.mark.parametrize(("claims", "why"), [
    ({"exp": int(NOW) + 86_400 * 30}, "lives longer"),
    ({"iat": None}, "no iat"),
    ({"iat": int(NOW) + 3_600, "exp": int(NOW) + 3_900}, "not valid yet"),
    ({"exp": int(NOW) - 60}, "expired"),
    ({"exp": "tomorrow"}, "not valid"),
])
def test_token_lifetimes_are_capped(claims: dict[str, object], why: str) -> None:
    """A month-long token, one with no iat, one from the future or an expired one: 401."""
    with pytest.raises(AuthError) as refused:
        verifier().verify(claims_token(**claims))
    assert refused.value.status == 401 and why in refused.value.message


def test_a_day_long_token_is_accepted_and_the_cap_can_be_off() -> None:
    """Up to RELAY_AUTH_MAX_TTL_S is fine; with the cap at 0 neither length nor iat matter."""
    assert verifier().verify(claims_token(exp=int(NOW) + 86_400)).user_id == "alice"
    assert verifier(0.0).verify(claims_token(iat=None, exp=int(NOW) + 86_400 * 365))


def test_the_gate_reads_time_only_through_its_clocks() -> None:
    """Rate limits follow the gate's monotonic clock, token times its wall clock."""
    mono, wall = [0.0], [NOW]
    gate = Gate(Settings(auth_secret=SECRET, conn_rate_per_s=1.0, conn_burst=1),
                clock=lambda: mono[0], wall=lambda: wall[0])
    assert gate.rate_ok("a") and not gate.rate_ok("a")
    mono[0] = 1.0
    assert gate.rate_ok("a")
    assert gate.verifier is not None
    token = claims_token()
    assert gate.verifier.verify(token).user_id == "alice"
    wall[0] = NOW + 3_600  # an hour later on the gate's clock, whatever time.time() says
    with pytest.raises(AuthError, match="expired"):
        gate.verifier.verify(token)


async def test_a_long_lived_token_is_refused_on_the_handshake(make_relay: RelayFactory) -> None:
    """/logs with a token minted for a year: 401 on the handshake."""
    relay = await make_relay(auth_secret=SECRET)
    with pytest.raises(HandshakeRefused) as refused:
        await RawSocket.connect(relay.url, "/logs/abc", headers={
            "Sec-WebSocket-Protocol": f"relay.v1, {mint_token(SECRET, 'a', ttl_s=86_400 * 365)}"})
    assert refused.value.status == 401


async def test_refusals_after_the_handshake_are_sampled_per_address(
        make_relay: RelayFactory) -> None:
    """Streams refused for their first message, 30 times from one address: a few lines."""
    relay = await make_relay(refusal_log_first=2)
    with capture_logs() as logs:
        for _ in range(30):
            call = await relay.call("/call")
            await call.send_raw("not json")
            await call.wait_closed(WAIT)
        await relay.wait_idle()
    refused = [e for e in logs if e["event"] == Ev.CALL_REFUSED]
    counts = [e["unlogged"] for e in logs if e["event"] == Ev.REFUSALS_SAMPLED]
    assert len(refused) == 2 and counts == [1, 10]
