"""The fake model of a benchmark: the echo model in this event loop, in its own process, or
one already running.

By default the echo model shares the load generator's event loop, so that sends falling due
during a burst of the model's reads go out between reads (its ``after_read`` hook runs the
send schedule). ``process=True`` gives it a process of its own on the load core.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from relay_sim import echo_model
from relay_sim.load.processes import Child, HarnessError, Pinning, http_json


@dataclass
class FakeModel:
    """One listening fake model and how to read its counters."""

    url: str
    port: int
    here: echo_model.Stats | None = None
    child: Child | None = None
    server: asyncio.Server | None = None
    #: Trusts the model's certificate, for ``GET /stats`` over TLS.
    client_tls: ssl.SSLContext | None = None

    @property
    def ps(self) -> psutil.Process | None:
        """Its process, when it has its own."""
        return self.child.ps if self.child is not None else None

    async def stats(self) -> dict[str, int] | None:
        """Its counters now (None when it cannot say)."""
        if self.here is not None:
            return self.here.as_dict()
        return await http_json(self.port, "/stats", tls=self.client_tls)

    def set_after_read(self, hook: Callable[[], None] | None) -> None:
        """Run ``hook`` after each read the model handles (only when it shares this loop)."""
        if self.here is not None:
            self.here.after_read = hook

    async def close(self) -> None:
        """Stop listening (idempotent)."""
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.child is not None:
            await self.child.stop()


def _port(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


async def start_fake_model(pinning: Pinning, *, cwd: Path, process: bool = False, port: int = 0,
                           transcript_every: int = 0,
                           tls: tuple[Path, Path] | None = None) -> FakeModel:
    """Start the echo model (``tls``: its certificate and key) and wait until it listens.

    Raises:
        HarnessError: its process did not start.
    """
    client_tls = ssl.create_default_context(cafile=str(tls[0])) if tls else None
    if not process:
        server_tls = echo_model.server_tls(str(tls[0]), str(tls[1])) if tls else None
        server, url, stats = await echo_model.start_model(
            "127.0.0.1", port, transcript_every=transcript_every, tls=server_tls)
        return FakeModel(url, _port(url), here=stats, server=server, client_tls=client_tls)
    argv = [sys.executable, "-m", "relay_sim.echo_model", "--port", str(port),
            "--transcript-every", str(transcript_every)]
    if tls:
        argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    child = await Child.spawn("fake model", argv, dict(os.environ), cwd=cwd,
                              core=pinning.load_core, stdout_pipe=True)
    assert child.proc.stdout is not None
    try:
        line = await asyncio.wait_for(child.proc.stdout.readline(), 15)
    except TimeoutError:
        line = b""
    if not line.startswith(b"READY "):
        await child.stop()
        raise HarnessError(f"the fake model did not start: {line!r}\n{child.tail()}")
    url = line.split()[1].decode()
    return FakeModel(url, _port(url), child=child, client_tls=client_tls)


def external_model(url: str) -> FakeModel:
    """A fake model already running (``python -m relay_sim.echo_model``)."""
    return FakeModel(url, _port(url))
