"""WebSocket frame headers, parsed from bytes and written, without I/O (RFC 6455 §5.2).

relay's reader (:mod:`relay.wire.reader`) looks at every frame a peer sends
before anything else happens to it: to charge the connection's inbound budget,
and to take the common frame (one unfragmented text frame) past websockets'
generator-based parser. This module only says where a frame starts and ends
and what its header announces; it never decides what the frame means.

The other way, :func:`text_frame` writes the one frame relay sends all the
time, an unfragmented text frame, in one concatenation: masked with a key
from :class:`MaskKeys` on a client connection (the model leg), unmasked on a
server's. Control frames and closing stay websockets' own.

```
  0               1               2               3
  F R R R opcode  M len(7)        extended length (0, 2 or 8 bytes)
  masking key (0 or 4 bytes)      payload ...
```
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

from relay.wire.compat import apply_mask

__all__ = ["CLOSE", "CONT", "PING", "PONG", "TEXT", "BINARY", "Header", "MaskKeys",
           "apply_mask", "parse_header", "text_frame"]

CONT, TEXT, BINARY = 0x0, 0x1, 0x2
CLOSE, PING, PONG = 0x8, 0x9, 0xA


class Header(NamedTuple):
    """One frame's header, as found at some offset of a buffer."""

    fin: bool
    #: The three RSV bits and the opcode: the first byte without FIN.
    rsv_opcode: int
    masked: bool
    #: Payload length, as announced (the payload may not have arrived yet).
    length: int
    #: Bytes before the payload: 2 to 14.
    size: int

    @property
    def opcode(self) -> int:
        """The opcode (low four bits)."""
        return self.rsv_opcode & 0x0F

    @property
    def total(self) -> int:
        """The whole frame's length in bytes: header and payload."""
        return self.size + self.length

    @property
    def is_data(self) -> bool:
        """Text, binary or continuation (the frames a message is made of)."""
        return self.opcode < 0x8


def parse_header(buf: bytes | bytearray, start: int = 0) -> Header | None:
    """The header of the frame at ``buf[start:]``; None until all of it has arrived.

    Lengths are taken as announced; nothing is validated here (an invalid
    opcode, RSV bits or a 64-bit length with its top bit set are the
    protocol's to refuse).
    """
    available = len(buf) - start
    if available < 2:
        return None
    first = buf[start]
    second = buf[start + 1]
    masked = second & 0x80 != 0
    length = second & 0x7F
    size = 2
    if length == 126:
        size = 4
        if available < size:
            return None
        length = int.from_bytes(buf[start + 2:start + 4], "big")
    elif length == 127:
        size = 10
        if available < size:
            return None
        length = int.from_bytes(buf[start + 2:start + 10], "big")
    if masked:
        size += 4
        if available < size:
            return None
    return Header(first & 0x80 != 0, first & 0x7F, masked, length, size)


def payload(buf: bytes | bytearray, start: int, header: Header) -> bytes:
    """The unmasked payload of the complete frame at ``buf[start:]``."""
    begin = start + header.size
    data = bytes(buf[begin:begin + header.length])
    if header.masked:
        return apply_mask(data, bytes(buf[begin - 4:begin]))
    return data


_LEN16 = struct.Struct("!BBH").pack
_LEN64 = struct.Struct("!BBQ").pack


def text_frame(data: bytes, mask: bytes | None = None) -> bytes:
    """One final text frame carrying ``data``; masked with ``mask`` (4 bytes) when given.

    Byte for byte what websockets' ``Frame.serialize`` writes for the same
    frame with no extensions.
    """
    n = len(data)
    if mask is None:
        if n < 126:
            return bytes((0x81, n)) + data
        if n < 65536:
            return _LEN16(0x81, 126, n) + data
        return _LEN64(0x81, 127, n) + data
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = _LEN16(0x81, 0xFE, n)
    else:
        head = _LEN64(0x81, 0xFF, n)
    return head + mask + apply_mask(data, mask)


class MaskKeys:
    """Masking keys for a client's frames, drawn from the OS's CSPRNG a batch at a time.

    RFC 6455 §5.3 wants every key unpredictable, from a strong source of
    entropy; websockets draws each with ``secrets.token_bytes(4)``, one
    ``getrandom`` system call per frame. These are the same bytes,
    ``os.urandom``, fetched ``batch`` keys at a time (as Node's ``ws`` pools
    them); each key is used once.
    """

    __slots__ = ("_at", "_batch", "_pool")

    def __init__(self, batch: int = 64) -> None:
        self._batch = batch * 4
        self._pool = b""
        self._at = 0

    def next(self) -> bytes:
        """A fresh 4-byte key."""
        at = self._at
        if at >= len(self._pool):
            self._pool = os.urandom(self._batch)
            at = 0
        self._at = at + 4
        return self._pool[at:at + 4]
