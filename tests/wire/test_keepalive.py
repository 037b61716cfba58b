"""A peer that stops answering pings is dropped when the pong is late, not a close timeout later."""

from __future__ import annotations

import asyncio
import uuid

from relay_sim.rawsocket import RawSocket
from structlog.testing import capture_logs

from relay.logs import Ev
from tests.conftest import RelayFactory
from tests.timing import WAIT, t


async def test_a_dead_peer_is_dropped_within_ping_interval_plus_timeout(
        make_relay: RelayFactory) -> None:
    """Gone within ping interval + ping timeout; websockets alone also waited the close timeout."""
    interval, timeout, close = t(0.2), t(0.2), t(2.0)
    relay = await make_relay(ping_interval_s=interval, ping_timeout_s=timeout,
                             close_timeout_s=close)
    loop = asyncio.get_running_loop()
    with capture_logs() as logs:
        peer = await RawSocket.connect(relay.url, f"/logs/{uuid.uuid4()}")  # never answers pings
        started = loop.time()
        await asyncio.wait_for(peer.closed.wait(), WAIT)
        took = loop.time() - started
        await peer.close()
        await relay.wait_idle()
    assert peer.close_code is None  # dropped, no closing handshake
    assert took < interval + timeout + close / 2, took
    assert [e["event"] for e in logs].count(Ev.PEER_UNRESPONSIVE) == 1
