#!/usr/bin/env python
"""The "minimal relay": the thinnest Python Twilio <-> OpenAI Realtime relay, the benchmark's baseline.

Usage::

    OPENAI_API_KEY=... python scripts/baseline_relay.py [--port 8082] [--upstream-url ws://...]
        [--mark-every-ms 0]

What it does, and nothing more: on ``/call`` it waits for Twilio's ``start``, opens one
upstream WebSocket to ``--upstream-url`` (default ``$OPENAI_REALTIME_URL``), forwards each
``media`` payload as ``input_audio_buffer.append`` and each ``response.output_audio.delta``
back as a Twilio ``media`` message with the call's ``streamSid``. With ``--mark-every-ms`` it
also sends a Twilio ``mark`` after every that many milliseconds of audio (as relay does to
track play-out) and reads the echoes; by default it sends none. No session logic, no
per-frame logging, no frontends, no pairing, no timers. It is written the way a careful
minimal relay is written — the ``websockets`` asyncio API (``async for`` / ``send``), orjson,
uvloop when importable, no compression, one TLS context for every ``wss://`` upstream — so
``scripts/bench.py`` can state relay's costs as a ratio to it, the only comparison that holds
on a noisy machine. ``scripts/node-baseline/`` is the same relay in Node.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import signal
import ssl
import sys

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

DEFAULT_UPSTREAM = "wss://api.openai.com/v1/realtime?model=gpt-realtime"


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


async def _model_to_caller(upstream: ClientConnection, call: ServerConnection, stream_sid: str,
                           mark_bytes: int) -> None:
    """Forward every model audio delta to the caller as a Twilio ``media`` message.

    With ``mark_bytes``, a ``mark`` follows each time that much audio was sent since the last.
    """
    unmarked = marks = 0
    async for message in upstream:
        event = orjson.loads(message)
        if event.get("type") == "response.output_audio.delta":
            delta = event["delta"]
            await call.send(
                orjson.dumps({"event": "media", "streamSid": stream_sid,
                              "media": {"payload": delta}}),
                text=True,
            )
            if mark_bytes:
                unmarked += len(delta) * 3 // 4  # μ-law bytes, 8 a millisecond
                if unmarked >= mark_bytes:
                    unmarked, marks = 0, marks + 1
                    await call.send(
                        orjson.dumps({"event": "mark", "streamSid": stream_sid,
                                      "mark": {"name": f"m{marks}"}}),
                        text=True,
                    )


async def handle_call(call: ServerConnection, upstream_url: str, api_key: str,
                      mark_bytes: int = 0) -> None:
    """One Twilio Media Stream: wait for ``start``, then relay audio both ways until it ends."""
    if call.request is None or not call.request.path.startswith("/call"):
        await call.close(1008, "use /call")
        return
    with contextlib.suppress(ConnectionClosed):  # a caller may vanish at any point
        await _relay_call(call, upstream_url, api_key, mark_bytes)


async def _relay_call(call: ServerConnection, upstream_url: str, api_key: str,
                      mark_bytes: int) -> None:
    stream_sid = None
    async for message in call:
        msg = orjson.loads(message)
        if msg.get("event") == "start":
            stream_sid = msg["start"]["streamSid"]
            break
    if stream_sid is None:
        return
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with connect(upstream_url, additional_headers=headers, compression=None,
                       max_size=None,
                       ssl=_tls() if upstream_url.startswith("wss://") else None) as upstream:
        back = asyncio.create_task(_model_to_caller(upstream, call, stream_sid, mark_bytes))
        try:
            async for message in call:
                msg = orjson.loads(message)
                event = msg.get("event")
                if event == "media":
                    await upstream.send(
                        orjson.dumps({"type": "input_audio_buffer.append",
                                      "audio": msg["media"]["payload"]}),
                        text=True,
                    )
                elif event == "mark":
                    pass  # the audio before it has played; a minimal relay has no use for it
                elif event == "stop":
                    break
        except ConnectionClosed:
            pass
        finally:
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await back
    await call.close()


async def run(port: int, upstream_url: str, api_key: str, host: str = "127.0.0.1",
              mark_every_ms: int = 0) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    mark_bytes = mark_every_ms * 8  # G.711 μ-law at 8 kHz
    async with serve(lambda ws: handle_call(ws, upstream_url, api_key, mark_bytes), host, port,
                     compression=None, max_size=64 * 1024):
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8082")),
                        help="port (default $PORT or 8082)")
    parser.add_argument("--upstream-url",
                        default=os.environ.get("OPENAI_REALTIME_URL", DEFAULT_UPSTREAM),
                        help="Realtime URL (default $OPENAI_REALTIME_URL or OpenAI's)")
    parser.add_argument("--mark-every-ms", type=int, default=0, metavar="MS",
                        help="a Twilio mark after every MS of audio (default 0: none)")
    args = parser.parse_args(argv)
    coro = run(args.port, args.upstream_url, os.environ.get("OPENAI_API_KEY", ""), args.host,
               args.mark_every_ms)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
