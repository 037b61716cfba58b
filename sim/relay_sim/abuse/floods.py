"""Abuse checks: floods on an open socket, each of which the connection's inbound budget must
end with close code 4029 while ``/health`` keeps answering."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import uuid

from websockets.exceptions import ConnectionClosed

from relay_sim import flood
from relay_sim.abuse.harness import BUDGET_CLOSE, Relay, expect_close, twilio_only
from relay_sim.checks import expect
from relay_sim.rawsocket import RawSocket

#: Media frames sent at once on a call: 10 s of audio, ten times what Twilio would send in
#: the time it takes, and twice the burst it may send after a network stall.
CALL_FLOOD_FRAMES = 500


async def flood_until_closed(relay: Relay, peer: RawSocket, kind: flood.Flood) -> int | None:
    """Write ``kind``'s frames until the relay closes ``peer`` (or the wait runs out)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + relay.wait
    alive = await peer.send(kind.opening) if kind.opening else True
    while alive and peer.close_code is None and loop.time() < deadline:
        alive = await peer.send(kind.chunk)
        await asyncio.sleep(0)  # let the reader see the close frame
    with contextlib.suppress(TimeoutError):
        await peer.wait_closed(relay.wait)
    return peer.close_code


async def check_logs_floods(relay: Relay) -> str:
    seen = []
    for kind in flood.floods():
        if not kind.path.startswith("/logs"):
            continue
        peer = await relay.raw_logs(str(uuid.uuid4()))
        try:
            code = await flood_until_closed(relay, peer, kind)
        finally:
            await peer.close()
        expect(code == BUDGET_CLOSE, f"{kind.name} on /logs: closed with {code}, "
               f"expected {BUDGET_CLOSE} (inbound budget)")
        seen.append(kind.name)
        await relay.health()  # answered between floods
    return f"{', '.join(seen)}: each closed with {BUDGET_CLOSE}; /health answered after each"


async def check_call_flood(relay: Relay) -> str:
    call, _ = await relay.place_call(str(uuid.uuid4()))
    sent = 0
    try:
        with contextlib.suppress(ConnectionClosed):
            for _ in range(CALL_FLOOD_FRAMES):
                await call.send_media(b"\xff" * 160)
                sent += 1
        code = await expect_close(call, {BUDGET_CLOSE}, "a call sending 10 s of audio at once",
                                  relay.wait)
        twilio_only(call)
    finally:
        await call.close()
    return f"{CALL_FLOOD_FRAMES} media frames at once: closed with {code} after {sent} sent"


async def check_health_during_floods(relay: Relay) -> str:
    """Three floods at once while /health is timed from here (flood_check.py does it properly,
    from another process); every answer must come, and quickly."""
    loop = asyncio.get_running_loop()
    kinds = [k for k in flood.floods() if k.name in ("activity messages", "empty continuations",
                                                     "60 KB messages")]
    peers = [await relay.raw_logs(str(uuid.uuid4())) for _ in kinds]
    floods = [asyncio.create_task(flood_until_closed(relay, p, k)) for p, k in zip(
        peers, kinds, strict=True)]
    timings = []
    try:
        while not all(f.done() for f in floods) or len(timings) < 5:
            started = loop.time()
            await relay.health()
            timings.append(loop.time() - started)
        codes = [f.result() for f in floods]
    finally:
        for peer in peers:
            await peer.close()
    expect(all(c == BUDGET_CLOSE for c in codes), f"floods closed with {codes}")
    worst = max(timings)
    expect(worst < relay.wait / 2, f"/health took {worst:.2f}s during the floods")
    return (f"{len(timings)} /health answers during three floods: median "
            f"{statistics.median(timings) * 1000:.1f} ms, worst {worst * 1000:.1f} ms "
            "(timed in this process; scripts/flood_check.py measures from another)")
