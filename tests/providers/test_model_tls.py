"""The model leg over TLS: every wss:// connection of a process shares one client context."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from relay_sim.echo_model import server_tls, start_model
from relay_sim.load.tlscert import throwaway_certificate

from relay.providers.openai import open_realtime, tls_context
from tests.timing import WAIT


@pytest.fixture
async def tls_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """A loopback echo model on wss://, its throw-away certificate trusted by this process."""
    cert, key = throwaway_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    tls_context.cache_clear()  # made again, trusting the certificate above
    server, url, _ = await start_model(tls=server_tls(str(cert), str(key)))
    try:
        yield url
    finally:
        server.close()
        await server.wait_closed()
        tls_context.cache_clear()  # the next user gets the real trust store


async def test_every_wss_connection_shares_one_tls_context(tls_model: str) -> None:
    """Two model connections: both verified, both on the process's one context, both working."""
    conns = [await open_realtime(tls_model, {"Authorization": "Bearer sk-test"}, attempts=1,
                                 backoff_initial=0.01, backoff_max=0.01, open_timeout=WAIT)
             for _ in range(2)]
    try:
        contexts = [conn.transport.get_extra_info("ssl_object").context for conn in conns]
        assert contexts[0] is contexts[1] is tls_context()
        for conn in conns:
            await conn.send(orjson.dumps(
                {"type": "input_audio_buffer.append", "audio": "AAAA"}).decode())
            async with asyncio.timeout(WAIT):
                while orjson.loads(await conn.recv())["type"] != "response.output_audio.delta":
                    pass
    finally:
        for conn in conns:
            await conn.close()
