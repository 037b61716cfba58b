"""Abuse checks on connections: slow handshakes, huge requests, repeated headers, the
per-IP rate limit (before any signature check) and a flood of handshakes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import uuid

from websockets.exceptions import InvalidStatus, WebSocketException

from relay_sim.abuse.harness import RateLimited, Relay, fresh, same_load
from relay_sim.checks import Skipped, expect

SLOW_HANDSHAKES = 10
UNKNOWN_HANDSHAKE_WAIT = 2.0
#: Headers relay reads, each of which must come once (a repeat is a 400, never a 500).
SINGLE_HEADERS = {
    "Origin": "http://localhost:3000",
    "Authorization": "Bearer x",
    "Sec-WebSocket-Protocol": "relay.v1",
    "X-Twilio-Signature": "c2lnbmF0dXJl",
    "X-Forwarded-For": "203.0.113.7",
}
async def check_slow_handshakes(relay: Relay) -> str:
    timeout = relay.target.handshake_timeout
    partial = (f"GET /logs/{uuid.uuid4()} HTTP/1.1\r\nHost: {relay.host_header}\r\n"
               "Upgrade: websocket\r\n").encode()
    peers = []
    try:
        for _ in range(SLOW_HANDSHAKES):
            reader, writer = await relay.open_tcp()
            writer.write(partial)
            await writer.drain()
            peers.append((reader, writer))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await relay.health()  # the relay still answers while they dangle
        limit = timeout + max(1.0, timeout) if timeout else min(UNKNOWN_HANDSHAKE_WAIT, relay.wait)

        async def dropped(reader: asyncio.StreamReader) -> float | None:
            try:
                async with asyncio.timeout(limit - (loop.time() - started)):
                    while await reader.read(4096):
                        pass
            except TimeoutError:
                return None
            except ConnectionError:
                pass
            return loop.time() - started

        times = await asyncio.gather(*(dropped(r) for r, _ in peers))
    finally:
        for _, writer in peers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    gone = [t for t in times if t is not None]
    health = await relay.health()
    expect(health.get("status") == "ok", f"/health after slow handshakes: {health.get('status')}")
    if timeout:
        expect(len(gone) == len(times), f"{len(times) - len(gone)} of {len(times)} half-sent "
               f"handshakes still open after {limit:g}s (handshake timeout {timeout:g}s)")
        return (f"{len(times)} half-sent handshakes dropped after ≤{max(gone):.1f}s "
                f"(limit {limit:g}s); /health answered meanwhile")
    return (f"handshake timeout unknown (--handshake-timeout): {len(times) - len(gone)} of "
            f"{len(times)} half-sent handshakes still open after {limit:g}s, closed by us; "
            "/health answered meanwhile")


async def check_huge_requests(relay: Relay) -> str:
    def upgrade(target: str, *extra: str) -> bytes:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        lines = [f"GET {target} HTTP/1.1", f"Host: {relay.host_header}", *extra,
                 "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    webhook = (f"POST /twiml HTTP/1.1\r\nHost: {relay.host_header}\r\n"
               "Content-Type: application/x-www-form-urlencoded\r\n"
               "Content-Length: 1000000\r\n\r\n").encode()
    tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n"
    cases: dict[str, tuple[bytes, set[int | None]]] = {
        "a 10 KB URL": (upgrade(f"/logs?pad={'a' * 10_000}"), {414}),
        "a 10 KB header": (upgrade("/logs", f"X-Pad: {'a' * 10_000}"), {431}),
        "200 headers": (upgrade("/logs", *(f"X-H{i}: {i}" for i in range(200))), {431}),
        "a 1 MB webhook body": (webhook, {413}),
        "not HTTP": (tls_hello, {None}),
    }
    seen = []
    for name, (data, statuses) in cases.items():
        status = await relay.raw_status(data)
        expect(status in statuses, f"{name}: {status}, expected {sorted(map(str, statuses))}")
        seen.append(f"{name} → {status or 'dropped'}")
    await relay.health()
    return "; ".join(seen)


async def check_connection_flood(relay: Relay) -> str:
    count = relay.target.flood
    outcomes: dict[str, int] = {}
    gate = asyncio.Semaphore(50)

    async def one(index: int) -> None:
        async with gate:
            try:
                fe = await relay.frontend(str(uuid.uuid4()), user=fresh(f"flood{index}"),
                                          retry=False)
            except InvalidStatus as exc:
                key = str(exc.response.status_code)
            except (WebSocketException, OSError, TimeoutError) as exc:
                key = type(exc).__name__
            else:
                key = "101"
                await fe.close()
            outcomes[key] = outcomes.get(key, 0) + 1

    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(relay.wait * 3):
        await asyncio.gather(*(one(i) for i in range(count)))
    took = loop.time() - started
    shown = ", ".join(f"{n}× {k}" for k, n in sorted(outcomes.items()))
    odd = {k: n for k, n in outcomes.items() if k not in ("101", "429", "503")}
    expect(not odd, f"{count} handshakes in {took:.2f}s: {shown}; expected only 101, 429 or 503")
    if relay.target.expect_rate_limit:
        expect(outcomes.get("429", 0) > 0, f"{shown}: no 429 though a rate limit is expected")
    await relay.wait_health(same_load(relay.baseline), "baseline load after the flood")
    limited = "rate limited" if outcomes.get("429") else "no rate limit seen"
    return f"{count} handshakes in {took:.2f}s: {shown} ({limited}); back to baseline"




def upgrade_request(relay: Relay, target: str, *extra: str) -> bytes:
    """A raw WebSocket upgrade request with ``extra`` header lines."""
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    lines = [f"GET {target} HTTP/1.1", f"Host: {relay.host_header}", *extra,
             "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
             "Sec-WebSocket-Version: 13"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def check_repeated_headers(relay: Relay) -> str:
    answers: dict[int | None, int] = {}
    for name, value in SINGLE_HEADERS.items():
        for target in (f"/logs/{uuid.uuid4()}", "/call", "/health"):
            request = upgrade_request(relay, target, f"{name}: {value}", f"{name}: {value}")
            status = await relay.raw_status(request)
            expect(status == 400, f"{target} with two {name} headers: {status}, expected 400")
            answers[status] = answers.get(status, 0) + 1
    await relay.health()
    return (f"{sum(answers.values())} requests each repeating one of {', '.join(SINGLE_HEADERS)} "
            "got 400 (no 500)")


#: Tries of each kind of /call right after the bucket was emptied (a refill may beat one).
_REFILL_TRIES = 4


async def check_rate_limit_first(relay: Relay) -> str:
    """Over the per-IP limit, an unsigned /call is refused with 429 before any signature check.

    The bucket refills while the check runs (a token every 1/rate seconds), so a /call that
    finds a fresh token may meet the signature check (403). Each kind is tried right after the
    bucket was emptied again, a few times: were signatures checked first, every try would be 403.
    """
    if not relay.mode.signatures:
        raise Skipped("skipped (signatures off: no signature to check first)")
    health = f"GET /health HTTP/1.1\r\nHost: {relay.host_header}\r\n\r\n".encode()
    loop = asyncio.get_running_loop()

    async def drain() -> int:
        deadline = loop.time() + relay.wait
        sent = 0
        while loop.time() < deadline:
            try:
                await relay.raw_status(health, retry=False)
            except RateLimited:
                return sent
            sent += 1
        raise Skipped("no 429 within the wait: the rate limit is off or wide")

    sent = await drain()
    tries: dict[str, list[int]] = {}
    for kind, headers in (("unsigned", ()), ("forged", ("X-Twilio-Signature: forged",))):
        statuses = tries[kind] = []
        for attempt in range(_REFILL_TRIES):
            if attempt:
                await drain()
            try:
                statuses.append(await relay.raw_status(upgrade_request(relay, "/call", *headers),
                                                       retry=False))
            except RateLimited:
                statuses.append(429)
                break
    expect(all(statuses[-1] == 429 for statuses in tries.values()),
           f"unsigned and forged /call over the limit got {tries}, "
           "expected 429 before any signature check")
    return (f"limited after {sent} requests; unsigned and forged /call then got 429, not 403 "
            f"(tries: {tries})")
