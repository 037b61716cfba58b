"""Floods against a relay, measured: does the budget close the flooder, does ``/health`` still
answer promptly (from another process), does a live call lose a frame?

Used by ``scripts/flood_check.py`` (the command line and its table) and by the test suite
(a short run). One run:

1. a bystander session: a frontend, and a call streaming tagged 20 ms frames in real time to
   an echo model, so every frame that does not come back is a frame lost;
2. a ``/health`` prober in its own process (``python -m relay_sim.flood probe``), so its
   timings are not the flooder's event loop's;
3. each flood in turn for a few seconds, from fresh connections as fast as the relay lets
   them in: tiny ``activity`` messages, malformed JSON, empty frames, empty continuation
   frames that never end a message, pings, large messages, and a call sending media at ten
   times real time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import orjson
from websockets.frames import Opcode

from relay_sim.frontend import SimulatedFrontend
from relay_sim.rawsocket import HandshakeRefused, RawSocket, frame
from relay_sim.realtime_server import RealtimeServer
from relay_sim.twilio_call import SimulatedCall, new_sid

#: One write of a flood: this many bytes of back-to-back frames.
CHUNK = 64 * 1024
#: The /health answer every flood is held to (reported, not enforced, in the test suite).
HEALTH_TARGET_S = 0.050


def _repeat(one: bytes) -> bytes:
    return one * max(1, CHUNK // len(one))


def _media(stream_sid: str, payload: bytes) -> bytes:
    message = {"event": "media", "streamSid": stream_sid,
               "media": {"track": "inbound", "payload": base64.b64encode(payload).decode()}}
    return frame(Opcode.TEXT, orjson.dumps(message))


@dataclass(frozen=True)
class Flood:
    """One kind of flood: where it goes and what it writes, again and again."""

    name: str
    path: str
    #: The first bytes of each connection (a call's connected and start), then the chunk.
    opening: bytes
    chunk: bytes
    #: Seconds between chunks; 0 writes as fast as the socket takes them.
    pace_s: float = 0.0
    #: The shortest run that shows the flood refused (a paced flood needs its burst spent).
    min_seconds: float = 0.0


def floods() -> list[Flood]:
    """Every flood of issue 9, item 1 (and item 9's media at ten times real time)."""
    call_sid, stream_sid = new_sid("CA"), new_sid("MZ")
    start = orjson.dumps({"event": "start", "streamSid": stream_sid, "start": {
        "streamSid": stream_sid, "callSid": call_sid, "accountSid": new_sid("AC"),
        "tracks": ["inbound"], "customParameters": {},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
    logs = "/logs/{session}"
    return [
        Flood("activity messages", logs, b"", _repeat(frame(Opcode.TEXT, b'{"type":"activity"}'))),
        Flood("malformed JSON", logs, b"", _repeat(frame(Opcode.TEXT, b"{not json"))),
        Flood("empty text frames", logs, b"", _repeat(frame(Opcode.TEXT, b""))),
        Flood("empty continuations", logs, frame(Opcode.TEXT, b"", fin=False),
              _repeat(frame(Opcode.CONT, b"", fin=False))),
        Flood("pings", logs, b"", _repeat(frame(Opcode.PING, b""))),
        Flood("60 KB messages", logs, b"",
              frame(Opcode.TEXT, b'{"type":"activity","pad":"' + b"x" * 60_000 + b'"}') * 4),
        # Ten frames each 20 ms: ten times what Twilio sends.
        Flood("call media at 10x", "/call/{session}",
              frame(Opcode.TEXT, b'{"event":"connected","protocol":"Call","version":"1.0.0"}')
              + frame(Opcode.TEXT, start),
              _media(stream_sid, b"\xff" * 160) * 10, pace_s=0.020, min_seconds=1.5),
    ]


@dataclass
class FloodResult:
    """What one flood did, and what it did to the relay."""

    name: str
    connections: int = 0
    refused: int = 0  # handshakes answered 429 (the per-IP rate limit)
    cut: int = 0  # connections still open (not yet over budget) when the flood's time was up
    closes: dict[int | None, int] = field(default_factory=dict)
    bytes_sent: int = 0
    #: Seconds from a connection's first byte to the relay's close frame, per connection.
    close_after: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    health_failures: int = 0
    started: float = 0.0
    ended: float = 0.0

    @property
    def closed_by_budget(self) -> bool:
        return bool(self.closes) and set(self.closes) == {4029}


#: New flooding connections a second: what relay's default per-IP rate limit lets one client
#: open (RELAY_CONN_RATE_PER_S). The relay under test has a wider limit so the prober, on the
#: same address, is never refused; the flooder keeps to this one itself.
RECONNECTS_PER_S = 20.0


async def flood_for(url: str, flood: Flood, seconds: float) -> FloodResult:
    """Run ``flood`` from fresh connections, one at a time, for ``seconds``."""
    result = FloodResult(flood.name, started=time.time())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    next_connection = loop.time()
    while loop.time() < deadline:
        await asyncio.sleep(max(0.0, next_connection - loop.time()))  # the per-IP pace
        next_connection = loop.time() + 1 / RECONNECTS_PER_S
        path = flood.path.format(session=uuid.uuid4())
        try:
            peer = await RawSocket.connect(url, path)
        except HandshakeRefused as exc:
            result.refused += exc.status == 429
            await asyncio.sleep(0.02)  # the rate limit refills; back off, not synchronise
            continue
        result.connections += 1
        opened = loop.time()
        sent = len(flood.opening)
        alive = await peer.send(flood.opening) if flood.opening else True
        while alive and not peer.closed.is_set() and loop.time() < deadline:
            alive = await peer.send(flood.chunk)
            sent += len(flood.chunk)
            await asyncio.sleep(flood.pace_s)  # pacing (0: just let the reader run)
        if peer.closed.is_set() or loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                await peer.wait_closed(2.0)
            if peer.close_code is not None:
                result.close_after.append(loop.time() - opened)
            result.closes[peer.close_code] = result.closes.get(peer.close_code, 0) + 1
        else:
            result.cut += 1  # still flooding when the time was up
        result.bytes_sent += sent
        await peer.close()
    result.ended = time.time()
    return result


# -- the bystander ----------------------------------------------------------------------------


@dataclass
class Bystander:
    """A live call whose every frame must come back from the echo model."""

    frontend: SimulatedFrontend
    call: SimulatedCall
    sent: int = 0

    @classmethod
    async def start(cls, url: str, model: RealtimeServer) -> Bystander:
        sid = str(uuid.uuid4())
        fe = await SimulatedFrontend.connect(url, f"/logs/{sid}")
        call = await SimulatedCall.connect(url, f"/call/{sid}")
        await call.start()
        upstream = await model.next_connection()
        await upstream.wait_for("session.update")
        return cls(fe, call)

    async def stream(self, stop: asyncio.Event) -> None:
        """Send tagged frames every 20 ms until ``stop``."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not stop.is_set():
            await self.call.send_media(self.sent.to_bytes(4, "big") + b"\xff" * 156)
            self.sent += 1
            due += 0.020
            await asyncio.sleep(max(0.0, due - loop.time()))  # real-time pacing

    async def lost(self, wait: float) -> int:
        """Frames sent that never came back (after waiting up to ``wait`` for the last)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while len(self.call.audio_received()) < self.sent * 160 and loop.time() < deadline:
            await asyncio.sleep(0.02)  # polling the echo, not synchronisation
        audio = self.call.audio_received()
        tags = {int.from_bytes(audio[i:i + 4], "big") for i in range(0, len(audio) - 3, 160)}
        return sum(1 for n in range(self.sent) if n not in tags)

    async def close(self) -> None:
        await self.call.hang_up()
        await self.call.close()
        await self.frontend.close()


# -- the /health prober, in its own process -------------------------------------------------------


async def probe(url: str, interval: float, stop: asyncio.Event,
                on_first: Callable[[], None] = lambda: None) -> list[tuple[float, float | None]]:
    """GET /health every ``interval`` until ``stop``: (wall time, seconds to answer or None).
    ``on_first`` runs once the first answer (or failure) is in."""
    http_url = url.replace("ws://", "http://", 1).rstrip("/") + "/health"
    samples: list[tuple[float, float | None]] = []
    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=2.0)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while not stop.is_set():
            began, at = loop.time(), time.time()
            try:
                async with http.get(http_url) as response:
                    await response.read()
                    took: float | None = loop.time() - began if response.status < 500 else None
            except (aiohttp.ClientError, TimeoutError):
                took = None
            samples.append((at, took))
            if len(samples) == 1:
                on_first()
            await asyncio.sleep(max(0.0, interval - (loop.time() - began)))  # the probe's pace
    return samples


#: The prober's first line: it has timed one /health (the JSON of every sample follows at EOF).
READY = b"probing\n"


class Prober:
    """``python -m relay_sim.flood probe`` running beside the floods, until its stdin closes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, url: str, interval: float) -> Prober:
        """Start the prober and wait until it has timed its first /health: a flood that began
        while a slow machine was still importing it would have no samples."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay_sim.flood", "probe", url, "--interval", str(interval),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        ready = await asyncio.wait_for(proc.stdout.readline(), 60)
        if ready != READY:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"the /health prober did not start: {ready!r}")
        return cls(proc)

    async def samples(self) -> list[tuple[float, float | None]]:
        """Stop the prober; every sample it took."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        out, _ = await asyncio.wait_for(self.proc.communicate(), 30)
        return [tuple(pair) for pair in json.loads(out)]  # type: ignore[misc]


# -- a relay to flood ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def relay_process(model_url: str, *, budgets: bool = True,
                        extra_env: dict[str, str] | None = None,
                        relay_dir: str | None = None) -> AsyncIterator[str]:
    """``python -m relay`` on a free loopback port talking to ``model_url``; yields its URL.

    The per-IP connection rate limit is raised so the prober (on the flooder's address) is not
    refused; the flooder reconnects at the default limit's pace (:data:`RECONNECTS_PER_S`):
    the inbound budget is what is measured. With ``budgets`` False the budgets are off, to see
    what they prevent. ``relay_dir`` runs another checkout's relay (its ``relay`` package,
    first on the path from its own directory), to compare.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RELAY_", "TWILIO_", "OPENAI_", "HEYGEN_", "PUBLIC_URL"))}
    env.update(PORT="0", HOST="127.0.0.1", LOG_FORMAT="json",
               RELAY_MODEL="openai", OPENAI_API_KEY="sk-flood-check",
               OPENAI_REALTIME_URL=model_url, RELAY_GREET_FIRST="0",
               RELAY_CONN_RATE_PER_S="1000", RELAY_CONN_BURST="1000",
               RELAY_MAX_SESSIONS_PER_USER="100000")
    if not budgets:
        env.update(RELAY_CALL_MESSAGES_PER_S="0", RELAY_CALL_BYTES_PER_S="0",
                   RELAY_FRONTEND_MESSAGES_PER_S="0", RELAY_FRONTEND_BYTES_PER_S="0",
                   RELAY_MAX_FRAGMENTS="0")
    env.update(extra_env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", env=env, cwd=relay_dir, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, limit=1 << 20)
    assert proc.stderr is not None
    port = 0
    try:
        async with asyncio.timeout(20):
            while not port:
                line = await proc.stderr.readline()
                if not line:
                    raise RuntimeError("relay exited before listening")
                record = json.loads(line)
                if record.get("event") == "🚀 Relay server listening":
                    port = record["port"]
        drain = asyncio.create_task(_drain(proc.stderr))
        yield f"ws://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 20)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if port:
            await asyncio.wait_for(drain, 5)


async def _drain(stream: asyncio.StreamReader) -> None:
    # A relay blocked on a full stderr pipe would stall every flood.
    while await stream.read(1 << 16):
        pass


# -- one run -----------------------------------------------------------------------------------


@dataclass
class Report:
    results: list[FloodResult]
    frames_sent: int
    frames_lost: int
    #: /health samples outside every flood (the baseline).
    idle_health: list[float]


async def run(url: str, model: RealtimeServer, *, seconds: float = 3.0,
              interval: float = 0.01, only: Callable[[Flood], bool] = lambda _: True) -> Report:
    """Every flood in turn against the relay at ``url`` (whose model is ``model``)."""
    chosen = [f for f in floods() if only(f)]
    bystander = await Bystander.start(url, model)
    stop = asyncio.Event()
    streaming = asyncio.create_task(bystander.stream(stop))
    prober = await Prober.start(url, interval)
    await asyncio.sleep(seconds / 2)  # a baseline for /health before the first flood
    results = [await flood_for(url, flood, max(seconds, flood.min_seconds)) for flood in chosen]
    stop.set()
    await streaming
    samples = await prober.samples()
    lost = await bystander.lost(wait=2.0)
    await bystander.close()
    idle = []
    for at, took in samples:
        window = next((r for r in results if r.started <= at <= r.ended), None)
        if window is None:
            if took is not None:
                idle.append(took)
        elif took is None:
            window.health_failures += 1
        else:
            window.health.append(took)
    return Report(results, bystander.sent, lost, idle)


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, int(q * 100) - 1))]


def table(report: Report) -> str:
    """The report as a fixed-width table, one row per flood."""
    head = (f"{'flood':<20} {'conns':>5} {'closed with':<11} {'close after':>11} "
            f"{'MB sent':>8} {'health p50':>10} {'p99':>7} {'max':>7} {'missed':>6} "
            f"{'≤50ms':>6}")
    rows = [head, "-" * len(head)]
    for r in report.results:
        closes = ",".join(f"{code or 'none'}×{n}" for code, n in sorted(
            r.closes.items(), key=lambda kv: kv[0] or 0)) or "-"
        if r.refused:
            closes += f" +{r.refused}×429"
        ms = [x * 1000 for x in r.health]
        ok = "yes" if ms and max(ms) <= HEALTH_TARGET_S * 1000 and not r.health_failures else "NO"
        close_after = f"{statistics.median(r.close_after) * 1000:.0f} ms" if r.close_after else "-"
        rows.append(f"{r.name:<20} {r.connections:>5} {closes:<11} "
                    f"{close_after:>11} {r.bytes_sent / 1e6:>8.1f} {quantile(ms, 0.5):>8.1f}ms "
                    f"{quantile(ms, 0.99):>5.1f}ms {max(ms, default=float('nan')):>5.1f}ms "
                    f"{r.health_failures:>6} {ok:>6}")
    idle = [x * 1000 for x in report.idle_health]
    rows.append(f"{'(no flood)':<20} {'':>5} {'':<11} {'':>11} {'':>8} "
                f"{quantile(idle, 0.5):>8.1f}ms {quantile(idle, 0.99):>5.1f}ms "
                f"{max(idle, default=float('nan')):>5.1f}ms")
    rows.append("missed: /health requests not answered within 2 s during the flood")
    rows.append(f"bystander call: {report.frames_sent} frames sent in real time, "
                f"{report.frames_lost} lost")
    return "\n".join(rows)


async def _probe_until_stdin_closes(url: str, interval: float) -> list[tuple[float, float | None]]:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def watch() -> None:
        await reader.read()  # EOF: the parent is done
        stop.set()

    watcher = asyncio.create_task(watch())
    try:
        return await probe(url, interval, stop, on_first=_say_ready)
    finally:
        watcher.cancel()


def _say_ready() -> None:
    sys.stdout.buffer.write(READY)
    sys.stdout.buffer.flush()


def _probe_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m relay_sim.flood probe")
    parser.add_argument("url")
    parser.add_argument("--interval", type=float, default=0.01)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_probe_until_stdin_closes(args.url, args.interval))))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["probe"]:
        sys.exit("usage: python -m relay_sim.flood probe URL [--interval S]  (stops at stdin EOF)")
    sys.exit(_probe_main(sys.argv[2:]))
