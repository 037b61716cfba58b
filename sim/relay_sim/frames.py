"""A lean RFC 6455 codec for peers that speak WebSocket directly on ``asyncio.Protocol``.

The load generator's callers and frontends (:mod:`relay_sim.load`) and the echo model
(:mod:`relay_sim.echo_model`) must never be what a benchmark measures, so they skip
websockets' queues and tasks: one data callback parses every frame in the bytes read.
This module is what both sides share — framing (no extensions), masking and the opening
handshake — and nothing else; the peers built on ``websockets`` (the rest of
``relay_sim``) do not use it.

Reference: https://www.rfc-editor.org/rfc/rfc6455
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Callable

try:  # the C implementation websockets ships; same result as the pure-Python fallback
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    def apply_mask(data: bytes, mask: bytes) -> bytes:
        """XOR ``data`` with the repeated 4-byte ``mask`` (RFC 6455 §5.3)."""
        n = len(data)
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")

__all__ = [
    "MAX_FRAME", "OP_BINARY", "OP_CLOSE", "OP_CONT", "OP_PING", "OP_PONG", "OP_TEXT",
    "FrameReader", "WireError", "accept_key", "apply_mask", "client_frame", "close_payload",
    "server_frame", "split_http",
]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Largest frame either side accepts; a bigger one is a protocol error.
MAX_FRAME = 16 * 1024 * 1024


class WireError(Exception):
    """The peer broke the WebSocket protocol (or the handshake)."""


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.strip() + _GUID).digest())


def _head(opcode: int, n: int, mask_bit: int) -> bytes:
    if n < 126:
        return bytes((0x80 | opcode, mask_bit | n))
    if n < 65536:
        return bytes((0x80 | opcode, mask_bit | 126)) + n.to_bytes(2, "big")
    return bytes((0x80 | opcode, mask_bit | 127)) + n.to_bytes(8, "big")


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One unfragmented, unmasked frame (server to client)."""
    return _head(opcode, len(payload), 0) + payload


def client_frame(opcode: int, payload: bytes,
                 randbytes: Callable[[int], bytes] = random.randbytes) -> bytes:
    """One unfragmented frame masked with a fresh key, as a client must send it (§5.3)."""
    mask = randbytes(4)
    return _head(opcode, len(payload), 0x80) + mask + apply_mask(payload, mask)


def close_payload(code: int, reason: str = "") -> bytes:
    """The body of a close frame."""
    return code.to_bytes(2, "big") + reason.encode()[:120]


class FrameReader:
    """Incremental frame parser: bytes in, ``on_frame(opcode, payload)`` calls out.

    Masked frames (client to server) are unmasked; data frames are reassembled from
    fragments; control frames are delivered as they come. Raises :class:`WireError` on a
    malformed stream.
    """

    __slots__ = ("_buf", "_frag_op", "_frags", "_on_frame")

    def __init__(self, on_frame: Callable[[int, bytes], None]) -> None:
        self._buf = b""
        self._on_frame = on_frame
        self._frags: list[bytes] | None = None
        self._frag_op = 0

    def feed(self, data: bytes) -> None:
        """Parse ``data`` (and what an earlier call left over); deliver every whole frame."""
        buf = self._buf + data if self._buf else data
        size = len(buf)
        pos = 0
        on_frame = self._on_frame
        while size - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            head = pos + 2
            if n == 126:
                if size - head < 2:
                    break
                n = int.from_bytes(buf[head:head + 2], "big")
                head += 2
            elif n == 127:
                if size - head < 8:
                    break
                n = int.from_bytes(buf[head:head + 8], "big")
                head += 8
                if n > MAX_FRAME:
                    raise WireError(f"frame of {n} bytes")
            if b1 & 0x80:
                end = head + 4 + n
                if end > size:
                    break
                payload = apply_mask(buf[head + 4:end], buf[head:head + 4])
            else:
                end = head + n
                if end > size:
                    break
                payload = buf[head:end]
            pos = end
            opcode = b0 & 0x0F
            if b0 & 0x80 and opcode != OP_CONT:
                on_frame(opcode, payload)
            else:
                self._fragment(opcode, b0 & 0x80, payload)
        self._buf = buf[pos:] if pos < size else b""

    def _fragment(self, opcode: int, fin: int, payload: bytes) -> None:
        if opcode != OP_CONT:
            if opcode >= OP_CLOSE:
                raise WireError("fragmented control frame")
            self._frags, self._frag_op = [payload], opcode
        elif self._frags is None:
            raise WireError("continuation frame without a start")
        else:
            self._frags.append(payload)
        if fin:
            data, self._frags = b"".join(self._frags), None
            self._on_frame(self._frag_op, data)


def split_http(buffer: bytes) -> tuple[str, dict[str, str], bytes] | None:
    """Split an HTTP head off ``buffer``: (start line, lower-cased headers, rest), or None.

    Raises:
        WireError: the head grew past 16 KiB without ending.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > 16384:
            raise WireError("HTTP head too large")
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, buffer[end + 4:]
