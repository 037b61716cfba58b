"""A WebSocket peer that writes whatever frames it is told to: floods, fragments, empty frames.

Well-behaved clients (websockets, browsers) cannot send a million empty
continuation frames or a frame header without its payload; an attacker can.
:class:`RawSocket` does the opening handshake itself and then writes raw
client frames (masked, as RFC 6455 requires of a client) in whatever chunks it
is given, reading the server's frames in the background so that the server's
close frame is seen even while it floods.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import Mapping
from typing import Self
from urllib.parse import urlsplit

from websockets.frames import Close, Frame, Opcode

__all__ = ["HandshakeRefused", "RawSocket", "frame"]


class HandshakeRefused(Exception):
    """The server answered the upgrade with another status than 101."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def frame(opcode: Opcode | int, data: bytes = b"", *, fin: bool = True, mask: bool = True) -> bytes:
    """One client frame's bytes (masked unless ``mask`` is False)."""
    return Frame(Opcode(opcode), data, fin).serialize(mask=mask)


class RawSocket:
    """A WebSocket client connection that writes raw frames; create it with :meth:`connect`.

    Attributes:
        close_code: The code of the server's close frame, once one arrived.
        texts: Text frames the server sent, decoded.
        pongs: Payloads of the pongs the server sent.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.close_code: int | None = None
        self.close_reason = ""
        self.texts: list[str] = []
        self.pongs: list[bytes] = []
        self.closed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, url: str, path: str, *, headers: Mapping[str, str] | None = None,
                      timeout: float = 5.0) -> Self:
        """Open ``url`` + ``path`` (``ws://`` only) and complete the handshake.

        Raises:
            HandshakeRefused: the server did not answer 101.
        """
        parts = urlsplit(url)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port or 80), timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
                 *(f"{name}: {value}" for name, value in (headers or {}).items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            writer.close()
            raise HandshakeRefused(status)
        return cls(reader, writer)

    async def send(self, data: bytes) -> bool:
        """Write ``data`` (any number of frames, or part of one); False once the server closed."""
        if self._writer.is_closing():
            return False
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def send_frame(self, opcode: Opcode | int, data: bytes = b"", *, fin: bool = True) -> bool:
        """Write one masked frame."""
        return await self.send(frame(opcode, data, fin=fin))

    async def wait_closed(self, timeout: float) -> int | None:
        """Wait until the server closed the connection; its close code (None: no close frame)."""
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code

    async def close(self) -> None:
        """Drop the connection."""
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _read(self) -> None:
        try:
            while True:
                head = await self._reader.readexactly(2)
                length = head[1] & 0x7F
                if length == 126:
                    length = int.from_bytes(await self._reader.readexactly(2), "big")
                elif length == 127:
                    length = int.from_bytes(await self._reader.readexactly(8), "big")
                data = await self._reader.readexactly(length)
                opcode = head[0] & 0x0F
                if opcode == Opcode.TEXT:
                    self.texts.append(data.decode(errors="replace"))
                elif opcode == Opcode.PONG:
                    self.pongs.append(data)
                elif opcode == Opcode.CLOSE:
                    close = Close.parse(data)
                    self.close_code, self.close_reason = close.code, close.reason
                    # Answer like a client would, then wait for the server to hang up.
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        self._writer.write(frame(Opcode.CLOSE, data))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
