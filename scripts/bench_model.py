#!/usr/bin/env python
"""The benchmark's fake model: a lean echoing OpenAI Realtime (GA) server, and its wire codec.

Usage::

    python scripts/bench_model.py [--port 0]

prints ``READY ws://127.0.0.1:PORT/v1/realtime?model=gpt-realtime`` once listening and serves
until SIGTERM/SIGINT. Every ``input_audio_buffer.append`` is answered at once with a
``response.output_audio.delta`` carrying the same base64 audio (GA event shape), so a caller's
frame comes back to the caller through the relay under test. ``session.update`` is answered
with ``session.updated``; other client events are counted and ignored. ``GET /stats`` (plain
HTTP on the same port) returns the counters as JSON.

Why not :class:`relay_sim.realtime_server.RealtimeServer` (``echo_audio=True``)? It is built for
tests: each frame is delivered through websockets' receive queue to a task, fully parsed, and
answered with an awaited ``send`` — roughly three times the CPU per frame of this server. Here
the model must never be the bottleneck, so the WebSocket is spoken directly on an
``asyncio.Protocol`` (RFC 6455 framing, no extensions): one data callback parses every frame in
the bytes read, the append event is recognised by its prefix (no JSON parsing), and all replies
to one read leave in one write.

The codec at the top (:class:`FrameReader`, :func:`server_frame`, :func:`client_frame`, the
handshake helpers) is shared with ``scripts/bench.py``'s simulated callers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import random
import signal
import sys
from collections.abc import Callable
from typing import Any

import orjson

try:  # the C implementation websockets ships; same result as the pure-Python fallback
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    def apply_mask(data: bytes, mask: bytes) -> bytes:
        n = len(data)
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")

# --- RFC 6455 wire codec ------------------------------------------------------------------------

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


def client_frame(opcode: int, payload: bytes, randbytes: Callable[[int], bytes] = random.randbytes) -> bytes:
    """One unfragmented frame masked with a fresh key, as a client must send it (§5.3)."""
    mask = randbytes(4)
    return _head(opcode, len(payload), 0x80) + mask + apply_mask(payload, mask)


def close_payload(code: int, reason: str = "") -> bytes:
    """The body of a close frame."""
    return code.to_bytes(2, "big") + reason.encode()[:120]


class FrameReader:
    """Incremental frame parser: bytes in, ``on_frame(opcode, payload)`` calls out.

    Data frames are reassembled from fragments; control frames are delivered as they come.
    Raises :class:`WireError` on a malformed stream.
    """

    __slots__ = ("_buf", "_frag_op", "_frags", "_on_frame")

    def __init__(self, on_frame: Callable[[int, bytes], None]) -> None:
        self._buf = b""
        self._on_frame = on_frame
        self._frags: list[bytes] | None = None
        self._frag_op = 0

    def feed(self, data: bytes) -> None:
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
    """Split an HTTP head off ``buffer``: (start line, lower-cased headers, rest), or None."""
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


# --- The echo model -----------------------------------------------------------------------------

_APPEND = b'{"type":"input_audio_buffer.append","audio":"'
_APPEND_LEN = len(_APPEND)
_MODEL = "gpt-realtime"


class Stats:
    """Counters of one model process (``GET /stats``)."""

    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.appends = 0
        self.echoed = 0
        self.session_updates = 0
        self.other_events = 0
        self.protocol_errors = 0
        #: Called after each read's replies are written (``bench.py`` runs its send schedule
        #: from here when the model shares its event loop).
        self.after_read: Callable[[], None] | None = None

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if isinstance(v, int)}


class EchoModelConnection(asyncio.Protocol):
    """One connection to the fake model: handshake, then echo every append."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self._head = b""
        self._reader: FrameReader | None = None
        self._out: list[bytes] = []
        self._events = 0
        self._closing = False
        tag = os.urandom(6).hex()
        self._prefix = f"event_{tag}_".encode()
        self._delta_head = b'{"type":"response.output_audio.delta","event_id":"' + self._prefix
        self._delta_mid = (
            b'","response_id":"resp_' + tag.encode() + b'","item_id":"item_' + tag.encode()
            + b'","output_index":0,"content_index":0,"delta":"'
        )

    # -- asyncio callbacks --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._reader is not None:
            self.stats.open -= 1
        self._reader = None

    def data_received(self, data: bytes) -> None:
        try:
            if self._reader is None:
                self._handshake(data)
            else:
                self._reader.feed(data)
        except (WireError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            self.stats.protocol_errors += 1
            self.transport.abort()  # type: ignore[union-attr]
            return
        self._flush()
        if self.stats.after_read is not None:
            self.stats.after_read()

    def _flush(self) -> None:
        if self._out:
            out, self._out = self._out, []
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))  # type: ignore[union-attr]

    # -- handshake and plain HTTP --

    def _handshake(self, data: bytes) -> None:
        self._head += data
        parsed = split_http(self._head)
        if parsed is None:
            return
        request_line, headers, rest = parsed
        _, _, target = request_line.partition(" ")
        target = target.rsplit(" ", 1)[0]
        if headers.get("upgrade", "").lower() != "websocket" or "sec-websocket-key" not in headers:
            body = orjson.dumps(self.stats.as_dict()) if target.startswith("/stats") else b"not found\n"
            status = "200 OK" if target.startswith("/stats") else "404 Not Found"
            self.transport.write(  # type: ignore[union-attr]
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            self.transport.close()  # type: ignore[union-attr]
            return
        key = headers["sec-websocket-key"].encode()
        self.transport.write(  # type: ignore[union-attr]
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
        )
        self.stats.connections += 1
        self.stats.open += 1
        self._reader = FrameReader(self._on_frame)
        self._head = b""
        self._send_event({"type": "session.created", "session": self._session({})})
        if rest:
            self._reader.feed(rest)

    # -- frames --

    def _on_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_TEXT:
            # The hot path: the relay's append, recognised by its prefix. base64 never holds
            # a quote or a backslash, so the audio is passed through without parsing.
            if payload.startswith(_APPEND) and payload.endswith(b'"}'):
                audio = payload[_APPEND_LEN:-2]
                if b'"' not in audio and b"\\" not in audio:
                    self.stats.appends += 1
                    self._echo(audio)
                    if len(self._out) >= 32 and self.stats.after_read is not None:
                        # A long read (a relay flushing a backlog): let the load generator's
                        # send schedule run between chunks of it, not only after all of it.
                        self._flush()
                        self.stats.after_read()
                    return
            self._on_event(orjson.loads(payload))
        elif opcode == OP_PING:
            self._out.append(server_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            if not self._closing:
                self._closing = True
                self._out.append(server_frame(OP_CLOSE, payload[:2]))
            # The server closes TCP first (RFC 6455 §7.1.1); flush the close frame first.
            asyncio.get_running_loop().call_soon(self._finish)
        elif opcode == OP_BINARY:
            raise WireError("binary frame")

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _echo(self, audio: bytes) -> None:
        self._events += 1
        event = b"%s%d%s%s\"}" % (self._delta_head, self._events, self._delta_mid, audio)
        self._out.append(server_frame(OP_TEXT, event))
        self.stats.echoed += 1

    def _on_event(self, event: Any) -> None:
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "input_audio_buffer.append" and isinstance(event.get("audio"), str):
            self.stats.appends += 1
            self._echo(event["audio"].encode())
        elif kind == "session.update":
            self.stats.session_updates += 1
            session = event.get("session")
            self._send_event({
                "type": "session.updated",
                "session": self._session(session if isinstance(session, dict) else {}),
            })
        else:
            self.stats.other_events += 1

    def _session(self, update: dict[str, Any]) -> dict[str, Any]:
        return {"type": "realtime", "object": "realtime.session", "model": _MODEL,
                "output_modalities": ["audio"], **update}

    def _send_event(self, event: dict[str, Any]) -> None:
        self._events += 1
        event["event_id"] = (self._prefix + str(self._events).encode()).decode()
        # Flushed at the end of data_received, with every other reply to the same read.
        self._out.append(server_frame(OP_TEXT, orjson.dumps(event)))


async def start_model(host: str = "127.0.0.1", port: int = 0) -> tuple[asyncio.Server, str, Stats]:
    """Listen; return the server, its Realtime URL and its live counters."""
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: EchoModelConnection(stats), host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    return server, f"ws://{host}:{bound}/v1/realtime?model={_MODEL}", stats


async def _serve(host: str, port: int) -> None:
    server, url, _ = await start_model(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {url}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(args.host, args.port))
    else:
        uvloop.run(_serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
