"""The benchmark's fake model: a lean echoing OpenAI Realtime (GA) server.

Usage::

    python -m relay_sim.echo_model [--port 0] [--transcript-every N] [--tls-cert F --tls-key F]

prints ``READY ws://127.0.0.1:PORT/v1/realtime?model=gpt-realtime`` (``wss://`` with a
certificate) once listening and serves until SIGTERM/SIGINT. Every
``input_audio_buffer.append`` is answered at once with a ``response.output_audio.delta``
carrying the same base64 audio (GA event shape), so a caller's frame comes back to the caller
through the relay under test. ``session.update`` is answered with ``session.updated``; other
client events are counted and ignored. ``GET /stats`` (plain HTTP on the same port) returns the
counters as JSON.

Transcripts: a real model streams the transcript of its spoken answer beside the audio, as
``response.output_audio_transcript.delta`` events of a word or a fragment each. With
``transcript_every`` = N, one such delta (the next word of a fixed interviewer's sentence)
follows every N-th audio delta on a connection; with 20 ms caller frames, N = 5 is one delta per
100 ms of audio, ten a second — a little above the pace of speech (about three words, four
tokens a second), so the relay under test forwards at least as many as a real call would
bring. 0 (the default) sends none.

Why not :class:`relay_sim.realtime_server.RealtimeServer` (``echo_audio=True``)? It is built for
tests: each frame is delivered through websockets' receive queue to a task, fully parsed, and
answered with an awaited ``send`` — roughly three times the CPU per frame of this server. Here
the model must never be the bottleneck, so the WebSocket is spoken directly on an
``asyncio.Protocol`` with :mod:`relay_sim.frames`: one data callback parses every frame in the
bytes read, the append event is recognised by its prefix (no JSON parsing), and all replies to
one read leave in one write.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import sys
from collections.abc import Callable
from typing import Any

import orjson

from relay_sim.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    WireError,
    accept_key,
    server_frame,
    split_http,
)

_APPEND = b'{"type":"input_audio_buffer.append","audio":"'
_APPEND_LEN = len(_APPEND)
MODEL = "gpt-realtime"
#: What the interviewer "says", one word per transcript delta, round and round.
_WORDS = tuple(w.encode() + b" " for w in (
    "Thanks for taking the time to talk with me today. Could you walk me through a project "
    "you are proud of, what you built, and what you would do differently now?").split())


class Stats:
    """Counters of one model server (``GET /stats``)."""

    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.appends = 0
        self.echoed = 0
        self.transcripts = 0
        self.session_updates = 0
        self.other_events = 0
        self.protocol_errors = 0
        #: Called after each read's replies are written (the load generator runs its send
        #: schedule from here when the model shares its event loop).
        self.after_read: Callable[[], None] | None = None

    def as_dict(self) -> dict[str, int]:
        """The counters, for ``GET /stats`` and the benchmark's report."""
        return {k: v for k, v in vars(self).items() if isinstance(v, int)}


class EchoModelConnection(asyncio.Protocol):
    """One connection to the fake model: handshake, then echo every append."""

    def __init__(self, stats: Stats, transcript_every: int = 0) -> None:
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self._head = b""
        self._reader: FrameReader | None = None
        self._out: list[bytes] = []
        self._events = 0
        self._closing = False
        self._transcript_every = transcript_every
        self._until_transcript = transcript_every
        self._word = 0
        tag = os.urandom(6).hex()
        self._prefix = f"event_{tag}_".encode()
        ids = (b'","response_id":"resp_' + tag.encode() + b'","item_id":"item_' + tag.encode()
               + b'","output_index":0,"content_index":0,"delta":"')
        self._delta_head = b'{"type":"response.output_audio.delta","event_id":"' + self._prefix
        self._transcript_head = (b'{"type":"response.output_audio_transcript.delta","event_id":"'
                                 + self._prefix)
        self._delta_mid = ids

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
            found = target.startswith("/stats")
            body = orjson.dumps(self.stats.as_dict()) if found else b"not found\n"
            self.transport.write(  # type: ignore[union-attr]
                f"HTTP/1.1 {'200 OK' if found else '404 Not Found'}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode() + body
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
        event = b'%s%d%s%s"}' % (self._delta_head, self._events, self._delta_mid, audio)
        self._out.append(server_frame(OP_TEXT, event))
        self.stats.echoed += 1
        if self._transcript_every:
            self._until_transcript -= 1
            if self._until_transcript == 0:
                self._until_transcript = self._transcript_every
                self._transcript()

    def _transcript(self) -> None:
        self._events += 1
        word = _WORDS[self._word]
        self._word = (self._word + 1) % len(_WORDS)
        event = b'%s%d%s%s"}' % (self._transcript_head, self._events, self._delta_mid, word)
        self._out.append(server_frame(OP_TEXT, event))
        self.stats.transcripts += 1

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
        return {"type": "realtime", "object": "realtime.session", "model": MODEL,
                "output_modalities": ["audio"], **update}

    def _send_event(self, event: dict[str, Any]) -> None:
        self._events += 1
        event["event_id"] = (self._prefix + str(self._events).encode()).decode()
        # Flushed at the end of data_received, with every other reply to the same read.
        self._out.append(server_frame(OP_TEXT, orjson.dumps(event)))


async def start_model(host: str = "127.0.0.1", port: int = 0, *, transcript_every: int = 0,
                      tls: ssl.SSLContext | None = None) -> tuple[asyncio.Server, str, Stats]:
    """Listen; return the server, its Realtime URL (``wss://`` with ``tls``) and its counters."""
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: EchoModelConnection(stats, transcript_every),
                                      host, port, backlog=1024, ssl=tls)
    bound = server.sockets[0].getsockname()[1]
    scheme = "wss" if tls is not None else "ws"
    return server, f"{scheme}://{host}:{bound}/v1/realtime?model={MODEL}", stats


def server_tls(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server-side TLS context for the model leg."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


async def _serve(args: argparse.Namespace) -> None:
    tls = server_tls(args.tls_cert, args.tls_key) if args.tls_cert else None
    server, url, _ = await start_model(args.host, args.port,
                                       transcript_every=args.transcript_every, tls=tls)
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
    """Serve the echo model until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--transcript-every", type=int, default=0, metavar="N",
                        help="a transcript delta after every N-th audio delta (default 0: none)")
    parser.add_argument("--tls-cert", help="certificate (PEM): serve wss://")
    parser.add_argument("--tls-key", help="its private key (PEM)")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(args))
    else:
        uvloop.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
