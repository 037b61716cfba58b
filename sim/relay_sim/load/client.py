"""A minimal RFC 6455 client on ``asyncio.Protocol``: the base of every simulated peer here.

Handshake, masked text frames out, frames in (:class:`relay_sim.frames.FrameReader`), pings
answered, the close handshake echoed. A burst of reads never holds back the send schedule:
after each read, sends that fell due meanwhile go out (:meth:`Scheduler.poll`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import struct
import time
from collections.abc import Callable
from typing import TypeVar

from relay_sim.frames import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    WireError,
    accept_key,
    client_frame,
    close_payload,
    split_http,
)
from relay_sim.load.stats import LoadStats

_perf = time.perf_counter
C = TypeVar("C", bound="WsClient")


class WsClient(asyncio.Protocol):
    """One client connection; subclasses override :meth:`on_text`."""

    def __init__(self, host: str, path: str, stats: LoadStats) -> None:
        self.host, self.path, self.stats = host, path, stats
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        #: When the bytes being parsed were read (perf_counter seconds).
        self.now = 0.0
        self._key = base64.b64encode(os.urandom(16))
        self._head = b""
        self._reader: FrameReader | None = None
        self._close_sent = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(  # type: ignore[attr-defined]
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self._key.decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\nUser-Agent: relay-bench\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"{self.path}: closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = self.now = _perf()
        try:
            if self._reader is not None:
                self._reader.feed(data)
            else:
                self._handshake(data)
        except (WireError, ValueError, KeyError, TypeError, struct.error, binascii.Error):
            self.stats.protocol_errors += 1
            self.transport.abort()  # type: ignore[union-attr]
        # A burst of reads must not hold back the send schedule: sends that fell due while
        # this loop iteration was reading go out between two reads, not after all of them.
        scheduler = self.stats.scheduler
        if scheduler is not None and now >= scheduler.next_at:
            scheduler.poll()

    def _handshake(self, data: bytes) -> None:
        self._head += data
        parsed = split_http(self._head)
        if parsed is None:
            return
        status, headers, rest = parsed
        accepted = headers.get("sec-websocket-accept", "").encode() == accept_key(self._key)
        if status.split(" ")[1:2] != ["101"] or not accepted:
            self.opened.set_exception(ConnectionError(f"{self.path}: handshake refused: {status}"))
            self.transport.abort()  # type: ignore[union-attr]
            return
        self._reader = FrameReader(self._on_frame)
        self._head = b""
        self.opened.set_result(None)
        if rest:
            self._reader.feed(rest)

    def _on_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_TEXT:
            self.on_text(payload)
        elif opcode == OP_PING:
            self.transport.write(client_frame(OP_PONG, payload))  # type: ignore[union-attr]
        elif opcode == OP_CLOSE:
            # Echo the close; the server then closes the TCP connection (RFC 6455 §7.1.1).
            self.send_close(int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1000)
        elif opcode != OP_PONG:
            self.stats.protocol_errors += 1

    def on_text(self, payload: bytes) -> None:
        """A text message arrived (``self.now`` is when it was read)."""

    @property
    def sendable(self) -> bool:
        """Whether a frame written now can still reach the server."""
        return (not self._close_sent and self.transport is not None
                and not self.transport.is_closing())

    def send_text(self, data: bytes) -> None:
        """Send one text message (dropped once closing)."""
        if self.sendable:
            self.transport.write(client_frame(OP_TEXT, data))  # type: ignore[union-attr]

    def send_close(self, code: int = 1000) -> None:
        """Start the closing handshake (idempotent)."""
        if self.sendable:
            self._close_sent = True
            self.transport.write(client_frame(OP_CLOSE, close_payload(code)))  # type: ignore[union-attr]

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        if self.transport is not None:
            self.transport.abort()


async def open_client(factory: Callable[[], C], port: int, timeout: float) -> C:
    """Connect to loopback ``port`` and complete the handshake within ``timeout``.

    Never leaks a socket: on any failure the connection is aborted.
    """
    loop = asyncio.get_running_loop()
    transport = None
    try:
        async with asyncio.timeout(timeout):
            transport, client = await loop.create_connection(factory, "127.0.0.1", port)
            await client.opened
    except BaseException:
        if transport is not None:
            transport.abort()
        raise
    return client
