#!/usr/bin/env python
"""relay's benchmark: how many phone calls one core carries, and what each one costs.

Usage (from the repository root, with the project's virtualenv)::

    .venv/bin/python scripts/bench.py --calls 1,50,200,250 --duration 10 [--markdown] [--json FILE]
    .venv/bin/python scripts/bench.py --ramp [--ramp-max 500]
    .venv/bin/python scripts/bench.py --relay relay --calls 200 --relay-env RELAY_MARK_INTERVAL_MS=200

For each run it starts the relay under test (``python -m relay``, or the minimal baseline
``scripts/baseline_relay.py``) on a free loopback port, pointed at a lean echoing fake model
(``scripts/bench_model.py``), and drives N simulated Twilio calls. Each call sends real-shaped
``media`` frames every 20 ms; the calls' schedules are staggered evenly across one 20 ms period,
as independent phones would be. After a warm-up (``--warmup``, default 2 s) the measurement
window runs for ``--duration`` seconds; then every call sends ``stop``, the echoes still in
flight get ``--drain`` seconds, and the relay process is stopped. Each run gets a fresh relay.

Every frame is tagged: the first 9 bytes of its 160-byte μ-law payload hold a magic byte, the
call's index and the frame's sequence number, so when the echo comes back through the relay the
caller knows exactly which frame it is: its round-trip latency, whether it reached the wrong call
(misrouted) and which frames never came back (lost; a misrouted frame is also lost to its own
call). Marks the relay sends are echoed back as Twilio does and not counted as media.

Measured per run: p50/p99/max round-trip latency; frames sent/received/lost/misrouted; the relay
process's CPU time (user+system, psutil) over the window, as CPU-seconds per call-minute and as %
of its core; its RSS idle and with N live calls, as KiB per session; and the harness itself, so a
harness limit is never misread as the relay's: the load generator's CPU (``loadgen CPU%``,
which includes the fake model when it shares the event loop, the default), the send-schedule
slip (how late each send instant ran against its ideal time), and how much of each pinned core
other processes on the machine used. A verdict says ``holds`` (every call live, zero lost and
misrouted, p99 ≤ 50 ms) or which criterion failed, then what is over the CPU and memory budget,
then ``[HARNESS-LIMITED: …]`` or ``[NOISY: …]`` when the figures should not be trusted.

The load generator speaks WebSocket itself on ``asyncio.Protocol`` (uvloop when installed): one
timer chain sends every call's preformatted frame, and receiving parses only what it must. The
fake model runs in the same event loop by default (``--model-process`` gives it its own process)
so that sends due during a burst of reads go out between reads. With two or more cores the relay
is pinned to the first core and the load generator and fake model to the second.

``--relay both`` (the default) measures relay and the baseline one after the other under
identical load at each N and prints relay/baseline ratios: on a noisy machine only ratios from
one run are comparable. ``--ramp`` finds the largest N that holds by doubling from 25 up to
``--ramp-max``, then bisecting (bounded). ``--target ws://127.0.0.1:PORT`` measures a relay that
is already running (start ``scripts/bench_model.py --port P`` and point its
``OPENAI_REALTIME_URL`` there, then pass ``--model-url``); only loopback is ever contacted.

Exit status: 0 when the benchmark ran (whatever the verdicts), 2 on a harness error (a process
did not start, a run overran its time budget, bad arguments, a bug in the harness).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import gc
import json
import math
import os
import platform
import random
import shlex
import socket
import struct
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench_model.py is a sibling script: the fake model and the WebSocket codec both sides share.
from bench_model import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    WireError,
    accept_key,
    apply_mask,
    client_frame,
    close_payload,
    split_http,
)
from bench_model import Stats as ModelStats
from bench_model import start_model as start_model_here

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent
FRAME_S = 0.020
FRAME_BYTES = 160


class HarnessError(Exception):
    """The benchmark itself failed (not the relay under test): exit status 2."""


# --- Criteria and verdicts ----------------------------------------------------------------------

@dataclass(frozen=True)
class Criteria:
    """The targets of issue 6; ``holds`` means the latency and loss ones."""

    calls: int = 250
    p99_ms: float = 50.0
    cpu_s_per_call_min: float = 0.25
    kib_per_session: float = 150.0
    #: Above these the harness, not the relay, may be what was measured.
    harness_cpu_pct: float = 90.0
    harness_slip_p99_ms: float = 5.0
    #: Above this, processes outside the benchmark competed for a pinned core.
    other_load_pct: float = 15.0

    def describe(self) -> str:
        return (f"target: {self.calls} calls on one core, p99 ≤ {self.p99_ms:g} ms, zero loss and "
                f"misrouted, ≤ {self.cpu_s_per_call_min:g} CPU-s per call-minute, "
                f"≤ {self.kib_per_session:g} KiB per live session")


CRITERIA = Criteria()


def judge(r: dict[str, Any], c: Criteria = CRITERIA) -> dict[str, Any]:
    """Verdict of one run: whether it holds, what failed, what is over budget, harness doubts."""
    fails = []
    if r["relay_exit"] is not None:
        fails.append(f"relay exited ({r['relay_exit']})")
    if r["calls_live"] < r["calls"]:
        fails.append(f"{r['calls'] - r['calls_live']} calls not live")
    if r["lost"]:
        fails.append(f"loss {r['lost']}")
    if r["misrouted"]:
        fails.append(f"misrouted {r['misrouted']}")
    if r["p99_ms"] is None or r["p99_ms"] > c.p99_ms:
        fails.append(f"p99 {_fmt(r['p99_ms'])}>{c.p99_ms:g} ms")
    budget = []
    cpu, kib = r["cpu_s_per_call_min"], r["kib_per_session"]
    if cpu is not None and cpu > c.cpu_s_per_call_min:
        budget.append(f"CPU {cpu:.3g}>{c.cpu_s_per_call_min:g}")
    if kib is not None and kib > c.kib_per_session:
        budget.append(f"KiB {kib:.0f}>{c.kib_per_session:g}")
    harness = []
    if r["loadgen_cpu_pct"] >= c.harness_cpu_pct:
        harness.append(f"loadgen CPU {r['loadgen_cpu_pct']:.0f}%")
    core1 = r["loadgen_cpu_pct"] + (r["model_cpu_pct"] or 0.0)
    if r["pinned"] and core1 >= c.harness_cpu_pct:
        harness.append(f"load core {core1:.0f}% busy")
    if r["slip_p99_ms"] is not None and r["slip_p99_ms"] > c.harness_slip_p99_ms:
        harness.append(f"tick slip p99 {r['slip_p99_ms']:.1f} ms")
    noisy = []
    for key, core in (("other_load_relay_core_pct", "relay"), ("other_load_load_core_pct", "load")):
        other = r.get(key)
        if other is not None and other >= c.other_load_pct:
            noisy.append(f"other processes used {other:.0f}% of the {core} core")
    text = "holds" if not fails else "fails: " + ", ".join(fails)
    if budget:
        text += " (over budget: " + ", ".join(budget) + ")"
    if harness:
        text += " [HARNESS-LIMITED: " + ", ".join(harness) + "]"
    if noisy:
        text += " [NOISY: " + ", ".join(noisy) + "]"
    return {"holds": not fails, "fails": fails, "over_budget": budget,
            "harness_limited": harness, "noisy": noisy, "text": text}


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None if empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# --- Simulated peers: a lean WebSocket client over asyncio.Protocol ------------------------------

def _ulaw(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = magnitude.bit_length() - 8
    return ~(sign | (exponent << 4) | ((magnitude >> (exponent + 3)) & 0x0F)) & 0xFF


#: The frame tag: magic byte, call index, frame sequence number — 9 bytes, 12 base64 characters,
#: so the rest of the payload's base64 is the same for every frame and preformatted.
TAG = struct.Struct(">BII")
TAG_MAGIC = 0xB5
_TAIL_AUDIO = bytes(_ulaw(round(12000 * math.sin(2 * math.pi * 440 * n / 8000)))
                    for n in range(TAG.size, FRAME_BYTES))
_TAIL_B64 = base64.b64encode(_TAIL_AUDIO)
_b64encode = base64.b64encode
_b64decode = base64.b64decode
_perf = time.perf_counter


class LoadStats:
    """What every simulated peer of one run records."""

    def __init__(self, lo: int, hi: int) -> None:
        #: Frame sequence numbers inside the measurement window.
        self.lo, self.hi = lo, hi
        self.latencies: list[float] = []
        #: The frame sequence number (= send tick + 1) of each latency, for the timeline.
        self.sent_ticks: list[int] = []
        self.received = 0
        self.misrouted = 0
        self.duplicates = 0
        self.untagged = 0
        self.wrong_stream_sid = 0
        self.marks = 0
        self.clears = 0
        self.other_call_messages = 0
        self.frontend_messages = 0
        self.frontend_errors = 0
        self.protocol_errors = 0
        self.scheduler: Scheduler | None = None


class WsClient(asyncio.Protocol):
    """A minimal RFC 6455 client: handshake, masked text frames out, frames in, pings answered."""

    def __init__(self, host: str, path: str, stats: LoadStats) -> None:
        self.host, self.path, self.stats = host, path, stats
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
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
        if status.split(" ")[1:2] != ["101"] or headers.get("sec-websocket-accept", "").encode() != accept_key(self._key):
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

    def send_text(self, data: bytes) -> None:
        if not self._close_sent and self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(OP_TEXT, data))

    def send_close(self, code: int = 1000) -> None:
        if not self._close_sent and self.transport is not None and not self.transport.is_closing():
            self._close_sent = True
            self.transport.write(client_frame(OP_CLOSE, close_payload(code)))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class SimCall(WsClient):
    """One simulated Twilio Media Stream with tagged frames."""

    def __init__(self, host: str, index: int, session_id: str, stats: LoadStats, frames: int) -> None:
        super().__init__(host, "/call", stats)
        self.index = index
        self.session_id = session_id
        self.stream_sid = "MZ" + os.urandom(16).hex()
        self.call_sid = "CA" + os.urandom(16).hex()
        self.live: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.seq = -1  # frame sequence; 0 is the liveness probe
        self.message_seq = 0  # Twilio's sequenceNumber, over every message sent
        self.sent_at = [0.0] * (frames + 2)
        self.got = bytearray(frames + 2)
        self._randbytes = random.Random(index).randbytes
        self._media = (
            b'{"event":"media","sequenceNumber":"%d","media":{"track":"inbound","chunk":"%d",'
            b'"timestamp":"%d","payload":"%s' + _TAIL_B64 + b'"},"streamSid":"'
            + self.stream_sid.encode() + b'"}'
        )
        self._sid_field = b'"streamSid":"' + self.stream_sid.encode() + b'"'
        self._mark = b'{"event":"mark","sequenceNumber":"%d","streamSid":"' + self.stream_sid.encode() + b'","mark":{"name":%s}}'

    def _send_json(self, message: dict[str, Any]) -> None:
        self.send_text(orjson.dumps(message))

    def start(self) -> None:
        """Send ``connected`` and ``start`` as Twilio opens a stream, then the probe frame."""
        self._send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self.message_seq += 1
        self._send_json({
            "event": "start", "sequenceNumber": str(self.message_seq),
            "start": {"accountSid": "AC" + "0" * 32, "streamSid": self.stream_sid,
                      "callSid": self.call_sid, "tracks": ["inbound"],
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                      "customParameters": {"sessionId": self.session_id}},
            "streamSid": self.stream_sid,
        })
        self.send_media()

    def send_media(self) -> None:
        """Send the next tagged 20 ms frame (the per-tick hot path)."""
        seq = self.seq = self.seq + 1
        self.message_seq += 1
        text = self._media % (self.message_seq, seq + 1, seq * 20,
                              _b64encode(TAG.pack(TAG_MAGIC, self.index, seq)))
        mask = self._randbytes(4)
        transport = self.transport
        if transport is None or transport.is_closing() or self._close_sent:
            return
        self.sent_at[seq] = _perf()
        transport.write(b"\x81\xfe" + len(text).to_bytes(2, "big") + mask + apply_mask(text, mask))

    def stop(self) -> None:
        """Send ``stop``, as Twilio does when the caller hangs up."""
        self.message_seq += 1
        self._send_json({"event": "stop", "sequenceNumber": str(self.message_seq),
                         "streamSid": self.stream_sid,
                         "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_sid}})

    def on_text(self, payload: bytes) -> None:
        st = self.stats
        if payload.startswith(b'{"event":"media"'):
            # Fast path for the usual shape (relay's and the baseline's): the tag is the first
            # 12 characters of the payload; no JSON parsing. Anything else is parsed in full.
            at = payload.find(b'"payload":"')
            if at > 0 and self._sid_field in payload:
                self._on_tag(payload[at + 11:at + 23])
                # A read can hold a long backlog: sends falling due meanwhile go out now.
                scheduler = st.scheduler
                if scheduler is not None and _perf() >= scheduler.next_at:
                    scheduler.poll()
                return
        try:
            msg = orjson.loads(payload)
            event = msg.get("event")
        except (orjson.JSONDecodeError, AttributeError):
            st.protocol_errors += 1
            return
        if event == "media":
            if msg.get("streamSid") != self.stream_sid:
                st.wrong_stream_sid += 1
            try:
                self._on_tag(msg["media"]["payload"][:12].encode())
            except (KeyError, TypeError, AttributeError):
                st.untagged += 1
        elif event == "mark":
            # Twilio echoes a mark once the audio before it has played; nothing plays here.
            name = msg.get("mark", {}).get("name") if isinstance(msg.get("mark"), dict) else None
            if not isinstance(name, str):
                st.protocol_errors += 1
                return
            st.marks += 1
            self.message_seq += 1
            self.send_text(self._mark % (self.message_seq, orjson.dumps(name)))
        elif event == "clear":
            st.clears += 1
        else:
            st.other_call_messages += 1

    def _on_tag(self, tag: bytes) -> None:
        st = self.stats
        try:
            magic, index, seq = TAG.unpack(_b64decode(tag))
        except (ValueError, binascii.Error, struct.error):
            st.untagged += 1
            return
        if magic != TAG_MAGIC or seq > self.seq:
            st.untagged += 1
        elif index != self.index:
            st.misrouted += 1
        elif self.got[seq]:
            st.duplicates += 1
        else:
            self.got[seq] = 1
            if st.lo <= seq <= st.hi:
                st.received += 1
                st.latencies.append(self.now - self.sent_at[seq])
                st.sent_ticks.append(seq)
            elif seq == 0 and not self.live.done():
                self.live.set_result(None)

    def lost_in_window(self) -> int:
        lo, hi = self.stats.lo, min(self.stats.hi, self.seq)
        return (hi - lo + 1) - sum(self.got[lo:hi + 1]) if hi >= lo else 0


class SimFrontend(WsClient):
    """One browser on ``/logs/{sessionId}``: sends a job configuration, counts what arrives."""

    JOB_CONFIG = orjson.dumps({"type": "job_config", "config": {
        "role": "Backend Engineer", "company": "Acme", "interviewStyle": "friendly"}})

    def __init__(self, host: str, session_id: str, stats: LoadStats) -> None:
        super().__init__(host, f"/logs/{session_id}", stats)

    def on_text(self, payload: bytes) -> None:
        self.stats.frontend_messages += 1
        if payload.startswith(b'{"type":"error"'):
            self.stats.frontend_errors += 1


# --- The send schedule ----------------------------------------------------------------------------

class Scheduler:
    """One timer chain sends every call's frame each 20 ms, calls staggered across the period.

    Calls are spread over ``slots`` evenly spaced instants of the 20 ms period; each instant's
    callback sends the frames of its calls. How late each callback ran against its ideal time
    (the slip) is recorded for the measured ticks.
    """

    def __init__(self, calls: list[SimCall], warmup_ticks: int, measure_ticks: int,
                 on_window_start: Callable[[], None], on_window_end: Callable[[], None],
                 slots: int = 20) -> None:
        n = len(calls)
        slots = max(1, min(slots, n))
        groups: list[list[SimCall]] = [[] for _ in range(slots)]
        for i, call in enumerate(calls):
            groups[i * slots // max(1, n)].append(call)
        self._slots = [(k * FRAME_S / slots, group) for k, group in enumerate(groups) if group]
        self._warmup, self._measure = warmup_ticks, measure_ticks
        self._on_start, self._on_end = on_window_start, on_window_end
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self._loop.create_future()
        self.slips: list[float] = []
        self._tick = 0
        self._slot = 0
        self._t0 = 0.0
        self.next_at = math.inf
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> asyncio.Future[None]:
        self._t0 = _perf() + 0.05
        self._arm()
        return self.done

    def _ideal(self) -> float:
        return self._t0 + self._tick * FRAME_S + self._slots[self._slot][0]

    def _arm(self) -> None:
        self.next_at = self._ideal()
        self._handle = self._loop.call_later(max(0.0, self.next_at - _perf()), self._fire)

    def poll(self) -> None:
        """Send now if a slot is due (called between reads; cheap when none is)."""
        if not self.done.done() and _perf() >= self.next_at:
            self._handle.cancel()
            self._fire()

    def cancel(self) -> None:
        """Stop sending (idempotent)."""
        self.next_at = math.inf
        if self._handle is not None:
            self._handle.cancel()
        if not self.done.done():
            self.done.cancel()

    def _fire(self) -> None:
        if self.done.done():
            return
        ideal = self.next_at
        now = _perf()
        if now < ideal - 0.0003:  # libuv timers have millisecond resolution: never early
            self._handle = self._loop.call_later(ideal - now, self._fire)
            return
        tick = self._tick
        if self._slot == 0:
            if tick == self._warmup:
                self._on_start()
            elif tick == self._warmup + self._measure:
                self._on_end()
                self.next_at = math.inf
                self.done.set_result(None)
                return
        if tick >= self._warmup:
            self.slips.append(now - ideal)
        for call in self._slots[self._slot][1]:
            call.send_media()
        self._slot += 1
        if self._slot == len(self._slots):
            self._slot = 0
            self._tick += 1
        self._arm()


# --- Processes ------------------------------------------------------------------------------------

@dataclass
class Pinning:
    """Which core the relay and the load (generator + fake model) run on, if pinned."""

    relay_core: int | None
    load_core: int | None
    note: str

    @classmethod
    def plan(cls, enabled: bool) -> Pinning:
        if not enabled:
            return cls(None, None, "not pinned (--no-pin)")
        if not hasattr(os, "sched_setaffinity"):
            return cls(None, None, "not pinned: no sched_setaffinity on this platform")
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            return cls(None, None, f"not pinned: only {len(cores)} core available")
        return cls(cores[0], cores[1], f"relay on core {cores[0]}; load generator and fake "
                                        f"model on core {cores[1]} ({len(cores)} cores available)")

    def pin(self, pid: int, core: int | None) -> None:
        if core is not None:
            os.sched_setaffinity(pid, {core})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A subprocess of the benchmark; :meth:`stop` terminates it, then kills it."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Any) -> None:
        self.name, self.proc, self.log = name, proc, log
        self.ps = psutil.Process(proc.pid)

    @classmethod
    async def spawn(cls, name: str, argv: list[str], env: dict[str, str], *,
                    stdout_pipe: bool = False) -> Child:
        log = tempfile.TemporaryFile()  # noqa: SIM115  (kept open for the child; closed in stop)
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout_pipe else log, stderr=log)
        return cls(name, proc, log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 15) -> str:
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    async def stop(self, timeout: float = 5.0) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.terminate()
                await asyncio.wait_for(self.proc.wait(), timeout)
            except (TimeoutError, ProcessLookupError):
                try:
                    self.proc.kill()
                except ProcessLookupError:
                    pass
                await self.proc.wait()
        self.log.close()


async def wait_listening(port: int, child: Child | None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if child is not None and child.proc.returncode is not None:
            raise HarnessError(f"{child.name} exited ({child.proc.returncode}):\n{child.tail()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise HarnessError(f"nothing listens on 127.0.0.1:{port} after {timeout:g}s") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


async def start_model(pinning: Pinning, port: int = 0) -> tuple[Child, str]:
    """The fake model in its own process, on the load core; returns it and its URL."""
    child = await Child.spawn("fake model", [sys.executable, str(SCRIPTS / "bench_model.py"),
                                             "--port", str(port)],
                              dict(os.environ), stdout_pipe=True)
    pinning.pin(child.pid, pinning.load_core)
    assert child.proc.stdout is not None
    try:
        line = await asyncio.wait_for(child.proc.stdout.readline(), 15)
    except TimeoutError:
        line = b""
    if not line.startswith(b"READY "):
        await child.stop()
        raise HarnessError(f"the fake model did not start: {line!r}")
    return child, line.split()[1].decode()


#: Prefixes of the variables relay reads: the operator's own values are not inherited, so every
#: run measures relay's defaults plus exactly what the benchmark (and ``--relay-env``) sets.
_RELAY_ENV_PREFIXES = ("RELAY_", "OPENAI_", "TWILIO_", "HEYGEN_", "LOG_")
_RELAY_ENV_NAMES = ("PORT", "HOST", "PUBLIC_URL")


def relay_environment(model_url: str, port: int, calls: int) -> dict[str, str]:
    """The environment of a relay under test (the baseline gets the same)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(_RELAY_ENV_PREFIXES) and k not in _RELAY_ENV_NAMES}
    env.update(bench_relay_settings(calls))
    env.update(OPENAI_REALTIME_URL=model_url, PORT=str(port))
    return env


def bench_relay_settings(calls: int) -> dict[str, str]:
    """What the benchmark sets for relay, printed with every report."""
    return {
        "RELAY_MODEL": "openai", "OPENAI_API_KEY": "bench", "RELAY_GREET_FIRST": "0",
        "HOST": "127.0.0.1", "LOG_LEVEL": "WARNING",
        # Every simulated call comes from 127.0.0.1: the per-IP connection rate limit is an
        # abuse guard, not a capacity limit, so it is off; the session cap is raised to N.
        "RELAY_CONN_RATE_PER_S": "0",
        "RELAY_MAX_SESSIONS": str(max(1000, calls)),
    }


async def start_relay(kind: str, model_url: str, pinning: Pinning, calls: int,
                      relay_cmd: list[str] | None = None,
                      relay_env: dict[str, str] | None = None) -> tuple[Child, int]:
    """Start relay (``python -m relay`` or ``relay_cmd``) or the baseline on a free port."""
    port = free_port()
    env = relay_environment(model_url, port, calls)
    if kind == "relay":
        env.update(relay_env or {})
        argv = relay_cmd or [sys.executable, "-m", "relay"]
    else:
        argv = [sys.executable, str(SCRIPTS / "baseline_relay.py"), "--port", str(port),
                "--upstream-url", model_url]
    child = await Child.spawn(kind, argv, env)
    pinning.pin(child.pid, pinning.relay_core)
    try:
        await wait_listening(port, child)
    except BaseException:
        await child.stop()
        raise
    return child, port


async def http_json(port: int, path: str, timeout: float = 2.0) -> Any:
    """GET a small JSON document over plain HTTP/1.1 on loopback (None if unavailable)."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            data = await reader.read()
            writer.close()
        return json.loads(data.split(b"\r\n\r\n", 1)[1])
    except (OSError, TimeoutError, ValueError, IndexError):
        return None


# --- One run ----------------------------------------------------------------------------------------

@dataclass
class RunSpec:
    """The load of one run."""

    calls: int
    duration: float
    warmup: float
    drain: float
    frontends: bool
    connect_timeout: float
    connect_concurrency: int = 64


def cpu_seconds(ps: psutil.Process | None) -> float | None:
    if ps is None:
        return None
    try:
        t = ps.cpu_times()
    except psutil.Error:
        return None
    return t.user + t.system


def rss(ps: psutil.Process | None) -> int | None:
    try:
        return ps.memory_info().rss if ps is not None else None
    except psutil.Error:
        return None


async def _bounded(coros: Iterable[Awaitable[Any]], limit: int) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(coro: Awaitable[Any]) -> Any:
        async with sem:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)


async def _open(factory: Callable[[], WsClient], port: int, timeout: float) -> WsClient:
    """Connect and complete the WebSocket handshake within ``timeout``; never leaks a socket."""
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


async def run_load(kind: str, port: int, spec: RunSpec, relay_ps: psutil.Process | None,
                   ctx: BenchContext) -> dict[str, Any]:
    """Drive one run against a listening relay; return its figures (not yet judged)."""
    n = spec.calls
    warmup_ticks = max(1, round(spec.warmup / FRAME_S))
    measure_ticks = max(1, round(spec.duration / FRAME_S))
    stats = LoadStats(warmup_ticks + 1, warmup_ticks + measure_ticks)
    frames = warmup_ticks + measure_ticks + 1
    host = f"127.0.0.1:{port}"
    me = psutil.Process()
    model_ps, pinned = ctx.model_ps, ctx.pinning.relay_core is not None
    model_before = await ctx.model_stats()
    session_ids = [str(uuid.uuid4()) for _ in range(n)]

    frontends: list[SimFrontend] = []
    if spec.frontends and kind != "baseline":  # the minimal relay has no /logs
        opened = await _bounded((_open(lambda sid=sid: SimFrontend(host, sid, stats), port, 10)
                                 for sid in session_ids), spec.connect_concurrency)
        frontends = [f for f in opened if isinstance(f, SimFrontend)]
        for f in frontends:
            f.send_text(SimFrontend.JOB_CONFIG)

    async def open_call(i: int) -> SimCall:
        call = await _open(lambda: SimCall(host, i, session_ids[i], stats, frames), port, 10)
        call.start()  # type: ignore[attr-defined]
        return call  # type: ignore[return-value]

    t_connect = time.monotonic()
    opened_calls = await _bounded((open_call(i) for i in range(n)), spec.connect_concurrency)
    calls = [c for c in opened_calls if isinstance(c, SimCall)]
    connect_errors = sorted({f"{type(e).__name__}: {e}"[:120] for e in opened_calls
                             if isinstance(e, BaseException)})
    if calls:
        await asyncio.wait([c.live for c in calls], timeout=spec.connect_timeout)
    live = [c for c in calls if c.live.done()]
    connect_s = time.monotonic() - t_connect
    rss_live = rss(relay_ps)

    window: dict[str, Any] = {}

    def snapshot() -> dict[str, Any]:
        try:
            kernel = relay_ps.cpu_times().system if relay_ps is not None else None
        except psutil.Error:
            kernel = None
        return {"t": _perf(), "relay": cpu_seconds(relay_ps), "me": cpu_seconds(me),
                "model": cpu_seconds(model_ps), "relay_system": kernel,
                "cores": psutil.cpu_times(percpu=True)}

    loop = asyncio.get_running_loop()
    seconds: list[dict[str, Any]] = []  # a snapshot per second of the window, for the timeline

    def every_second() -> None:
        if "end" not in window:
            seconds.append(snapshot())
            window["sampler"] = loop.call_later(1.0, every_second)

    def on_start() -> None:
        window["start"] = snapshot()
        seconds.append(window["start"])
        window["sampler"] = loop.call_later(1.0, every_second)

    def on_end() -> None:
        window["end"] = snapshot()
        window["rss"] = rss(relay_ps)
        window["sampler"].cancel()

    gc.collect()
    gc.freeze()  # the setup's objects never need scanning again
    scheduler = stats.scheduler = Scheduler(live, warmup_ticks, measure_ticks, on_start, on_end)
    if ctx.model_here is not None:
        ctx.model_here.after_read = scheduler.poll
    try:
        if live:
            await asyncio.wait_for(scheduler.start(), spec.warmup + spec.duration + 30)
            expected = measure_ticks * len(live)
            deadline = time.monotonic() + spec.drain
            while stats.received < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
    finally:
        scheduler.cancel()
        stats.scheduler = None
        if ctx.model_here is not None:
            ctx.model_here.after_read = None
        gc.unfreeze()
        await _hang_up(calls, frontends)
    model_after = await ctx.model_stats()

    lat = sorted(stats.latencies)
    sent = measure_ticks * len(live)
    lost = sum(c.lost_in_window() for c in live)
    start, end = window.get("start"), window.get("end")
    wall = (end["t"] - start["t"]) if start and end else None

    def pct(key: str) -> float | None:
        if not wall or start[key] is None or end[key] is None:
            return None
        return 100.0 * (end[key] - start[key]) / wall

    relay_cpu = (end["relay"] - start["relay"]) if wall and start["relay"] is not None and end["relay"] is not None else None
    rss_end = window.get("rss")
    rss_at_n = max(v for v in (rss_live, rss_end) if v is not None) if (rss_live or rss_end) else None
    slips = sorted(scheduler.slips)
    ms = lambda v: None if v is None else v * 1000.0
    return {
        "kind": kind,
        "calls": n,
        "calls_live": len(live),
        "connect_errors": connect_errors,
        "connect_s": round(connect_s, 2),
        "frontends": len(frontends),
        "duration_s": wall,
        "frames_sent": sent,
        "frames_received": stats.received,
        "lost": lost,
        "misrouted": stats.misrouted,
        "duplicates": stats.duplicates,
        "untagged": stats.untagged,
        "wrong_stream_sid": stats.wrong_stream_sid,
        "marks_echoed": stats.marks,
        "clears": stats.clears,
        "other_call_messages": stats.other_call_messages,
        "frontend_messages": stats.frontend_messages,
        "frontend_errors": stats.frontend_errors,
        "protocol_errors": stats.protocol_errors,
        "p50_ms": ms(percentile(lat, 0.50)),
        "p90_ms": ms(percentile(lat, 0.90)),
        "p99_ms": ms(percentile(lat, 0.99)),
        "p999_ms": ms(percentile(lat, 0.999)),
        "max_ms": ms(lat[-1]) if lat else None,
        "relay_cpu_s": relay_cpu,
        "relay_cpu_system_s": (end["relay_system"] - start["relay_system"])
        if relay_cpu is not None and start["relay_system"] is not None else None,
        "relay_cpu_pct": pct("relay"),
        "cpu_s_per_call_min": (relay_cpu / (len(live) * wall / 60.0)) if relay_cpu is not None and live else None,
        "rss_live_kib": None if rss_live is None else rss_live / 1024,
        "rss_end_kib": None if rss_end is None else rss_end / 1024,
        "rss_at_n_kib": None if rss_at_n is None else rss_at_n / 1024,
        "loadgen_cpu_pct": pct("me") or 0.0,
        "model_cpu_pct": pct("model"),
        **_foreign_load(start, end, ctx.pinning, pct("relay"), (pct("me") or 0.0) + (pct("model") or 0.0)),
        "slip_p50_ms": ms(percentile(slips, 0.50)),
        "slip_p99_ms": ms(percentile(slips, 0.99)),
        "slip_max_ms": ms(slips[-1]) if slips else None,
        "latency_by_second": _timeline(stats, seconds, ctx.pinning),
        "model_stats": _delta(model_before, model_after),
        "pinned": pinned,
    }


_BUSY = ("user", "nice", "system", "irq", "softirq", "steal")


def _timeline(stats: LoadStats, snapshots: list[dict[str, Any]],
              pinning: Pinning) -> list[dict[str, Any]]:
    """Each second of the window: latency (by send time) and who used the cores meanwhile.

    A p99 says how bad the worst 1 % was; this says when, and whether the relay was saturated
    (``relay_cpu_pct``) or something else ran on its core (``other_relay_core_pct``) then.
    """
    per_second = 1.0 / FRAME_S
    buckets: dict[int, list[float]] = {}
    for seq, latency in zip(stats.sent_ticks, stats.latencies):
        buckets.setdefault(int((seq - stats.lo) / per_second), []).append(latency)
    out = []
    for second in sorted(buckets):
        values = sorted(buckets[second])
        entry: dict[str, Any] = {
            "second": second, "frames": len(values),
            "p50_ms": round(percentile(values, 0.5) * 1000, 2),
            "p99_ms": round(percentile(values, 0.99) * 1000, 2),
            "max_ms": round(values[-1] * 1000, 2)}
        if second + 1 < len(snapshots):
            a, b = snapshots[second], snapshots[second + 1]
            wall = b["t"] - a["t"]
            relay = (b["relay"] - a["relay"]) * 100 / wall if a["relay"] is not None else None
            load = ((b["me"] - a["me"]) + ((b["model"] or 0) - (a["model"] or 0))) * 100 / wall
            entry["relay_cpu_pct"] = None if relay is None else round(relay)
            for key, value in _foreign_load(a, b, pinning, relay, load).items():
                entry[key.replace("other_load_", "other_")] = None if value is None else round(value)
        out.append(entry)
    return out


def _core_busy_pct(start: Any, end: Any) -> float:
    """How busy one core was between two ``psutil.cpu_times(percpu=True)`` entries."""
    busy = lambda t: sum(getattr(t, f, 0.0) for f in _BUSY)
    idle = lambda t: t.idle + getattr(t, "iowait", 0.0)
    total = busy(end) + idle(end) - busy(start) - idle(start)
    return 100.0 * (busy(end) - busy(start)) / total if total > 0 else 0.0


def _foreign_load(start: dict[str, Any] | None, end: dict[str, Any] | None, pinning: Pinning,
                  relay_pct: float | None, load_pct: float) -> dict[str, float | None]:
    """CPU% of each pinned core used by processes other than the benchmark's own.

    Other work on the machine (another test suite, a build) skews every figure; this says how
    much there was. Kernel work done for the benchmark's sockets outside its processes' own
    accounting (softirqs) is counted as other load too, so a few % is normal.
    """
    out: dict[str, float | None] = {"other_load_relay_core_pct": None, "other_load_load_core_pct": None}
    if not start or not end or pinning.relay_core is None or pinning.load_core is None:
        return out
    relay_core = _core_busy_pct(start["cores"][pinning.relay_core], end["cores"][pinning.relay_core])
    load_core = _core_busy_pct(start["cores"][pinning.load_core], end["cores"][pinning.load_core])
    if relay_pct is not None:
        out["other_load_relay_core_pct"] = max(0.0, relay_core - relay_pct)
    out["other_load_load_core_pct"] = max(0.0, load_core - load_pct)
    return out


def _delta(before: Any, after: Any) -> dict[str, int] | None:
    if not isinstance(before, dict) or not isinstance(after, dict):
        return None
    return {k: after[k] - before.get(k, 0) if k != "open" else after[k] for k in after}


async def _hang_up(calls: list[SimCall], frontends: list[SimFrontend]) -> None:
    """Send ``stop`` on every call; wait for the relay to close everything; abort what is left."""
    for call in calls:
        call.stop()
    everything: list[WsClient] = [*calls, *frontends]
    pending = [c.closed for c in everything if not c.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=5.0)
    for c in everything:
        if not c.closed.done():
            c.send_close(1000)
    pending = [c.closed for c in everything if not c.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=1.0)
    for c in everything:
        c.abort()


async def settle(pinning: Pinning, max_wait: float, idle_pct: float = 10.0) -> tuple[float, float]:
    """Wait (up to ``max_wait`` s) until the cores the benchmark uses are idle for a second.

    On a shared machine other work comes and goes; starting a run in a quiet moment makes its
    figures comparable. Returns (seconds waited, busiest core's % in the last second).
    """
    cores = [c for c in (pinning.relay_core, pinning.load_core) if c is not None] or None
    waited, busiest = 0.0, 0.0
    while True:
        before = psutil.cpu_times(percpu=True)
        await asyncio.sleep(1.0)
        after = psutil.cpu_times(percpu=True)
        busy = [_core_busy_pct(b, a) for b, a in zip(before, after)]
        busiest = max(busy[c] for c in cores) if cores else sum(busy) / len(busy)
        waited += 1.0
        if busiest <= idle_pct or waited >= max_wait:
            return waited, busiest


async def run_once(kind: str, spec: RunSpec, ctx: BenchContext) -> dict[str, Any]:
    """Start the relay under test (unless targeting one), drive one run, stop it, judge."""
    print(f"… {kind}: {spec.calls} calls, {spec.duration:g} s", file=sys.stderr, flush=True)
    settled = await settle(ctx.pinning, ctx.settle_s) if ctx.settle_s > 0 else (0.0, None)
    child: Child | None = None
    budget = spec.connect_timeout + spec.warmup + spec.duration + spec.drain + 60
    try:
        async with asyncio.timeout(budget):
            if ctx.target_port is not None:
                port, ps = ctx.target_port, ctx.target_ps
            else:
                child, port = await start_relay(kind, ctx.model_url, ctx.pinning, spec.calls,
                                                ctx.relay_cmd, ctx.relay_env)
                ps = child.ps
            await asyncio.sleep(0.5)  # let the process settle before the idle RSS
            rss_idle = rss(ps)
            result = await run_load(kind, port, spec, ps, ctx)
            result["relay_exit"] = child.proc.returncode if child is not None else None
            if child is not None and (result["relay_exit"] is not None
                                      or result["calls_live"] < result["calls"]):
                result["relay_log_tail"] = child.tail()
    except TimeoutError:
        raise HarnessError(f"{kind} run with {spec.calls} calls overran its {budget:g} s budget") from None
    finally:
        if child is not None:
            await child.stop()
    result["rss_idle_kib"] = None if rss_idle is None else rss_idle / 1024
    at_n = result["rss_at_n_kib"]
    live = result["calls_live"]
    result["kib_per_session"] = ((at_n - result["rss_idle_kib"]) / live
                                 if at_n is not None and rss_idle is not None and live else None)
    result["settle_wait_s"], result["busiest_core_before_pct"] = settled
    result["verdict"] = judge(result)
    print("  " + format_row(result), file=sys.stderr, flush=True)
    return result


# --- Modes: list of N, ramp ------------------------------------------------------------------------

@dataclass
class BenchContext:
    pinning: Pinning
    model_url: str
    model_port: int | None
    #: The fake model's process, when it has its own (``--model-process``).
    model_ps: psutil.Process | None
    #: The fake model's counters, when it runs in this event loop (the default).
    model_here: ModelStats | None = None
    relay_cmd: list[str] | None = None
    relay_env: dict[str, str] = field(default_factory=dict)
    settle_s: float = 0.0
    target_port: int | None = None
    target_ps: psutil.Process | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)

    async def model_stats(self) -> dict[str, int] | None:
        if self.model_here is not None:
            return self.model_here.as_dict()
        return await http_json(self.model_port, "/stats") if self.model_port else None


async def ramp(kind: str, base: RunSpec, ctx: BenchContext, start: int, maximum: int,
               max_bisect: int = 4) -> dict[str, Any]:
    """Largest N that holds: double from ``start`` up to ``maximum``, then bisect (bounded).

    A step that fails while flagged HARNESS-LIMITED or NOISY is run once more: one disturbed
    run must not decide the ramp. At most ``log2(maximum/start) + 1 + max_bisect`` steps, each
    run at most twice.
    """
    steps: list[dict[str, Any]] = []

    async def attempt(n: int) -> bool:
        for _ in range(2):
            r = await run_once(kind, RunSpec(**{**asdict(base), "calls": n}), ctx)
            ctx.runs.append(r)
            v = r["verdict"]
            steps.append({"calls": n, "holds": v["holds"], "p99_ms": r["p99_ms"],
                          "lost": r["lost"], "verdict": v["text"]})
            if v["holds"] or not (v["harness_limited"] or v["noisy"]):
                break
        return v["holds"]

    hold, fail = 0, None
    n = min(start, maximum)
    while True:
        if await attempt(n):
            hold = n
            if n >= maximum:
                break
            n = min(n * 2, maximum)
        else:
            fail = n
            break
    for _ in range(max_bisect):
        if fail is None or fail - hold <= max(2, fail // 20):
            break
        mid = (hold + fail) // 2
        if await attempt(mid):
            hold = mid
        else:
            fail = mid
    last = [s for s in steps if s["calls"] == fail][-1:]
    return {"kind": kind, "largest_holding": hold, "first_failing": fail,
            "ceiling_reached": fail is None,
            "harness_limited_failure": bool(last) and "[" in last[0]["verdict"],
            "steps": steps}


# --- Reports ----------------------------------------------------------------------------------------

COLUMNS = ("relay", "N", "p50 ms", "p99 ms", "max ms", "lost", "misrouted", "CPU-s/call-min",
           "KiB/session", "relay CPU%", "loadgen CPU%", "slip p99 ms", "verdict")


def row_cells(r: dict[str, Any]) -> list[str]:
    live = f"{r['calls']}" if r["calls_live"] == r["calls"] else f"{r['calls_live']}/{r['calls']}"
    return [r["kind"], live, _fmt(r["p50_ms"]), _fmt(r["p99_ms"]), _fmt(r["max_ms"]),
            f"{r['lost']}/{r['frames_sent']}", str(r["misrouted"]),
            _fmt(r["cpu_s_per_call_min"], 3), _fmt(r["kib_per_session"], 0),
            _fmt(r["relay_cpu_pct"], 0), _fmt(r["loadgen_cpu_pct"], 0), _fmt(r["slip_p99_ms"], 2),
            r["verdict"]["text"]]


def format_row(r: dict[str, Any]) -> str:
    return "  ".join(row_cells(r))


def ratio_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """relay/baseline at each N measured for both (the comparison that holds on a noisy machine)."""
    by = {(r["kind"], r["calls"]): r for r in runs}
    rows = []
    for (kind, n), r in sorted(by.items(), key=lambda kv: kv[0][1]):
        b = by.get(("baseline", n))
        if kind != "relay" or b is None:
            continue

        rows.append({"calls": n, **{key: _ratio(r[key], b[key]) for key in
                                    ("cpu_s_per_call_min", "p99_ms", "kib_per_session")}})
    return rows


def _ratio(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None or y == 0 else x / y


def _table(header: Iterable[str], rows: list[list[str]], markdown: bool) -> str:
    header = list(header)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i in (0, len(header) - 1) else c.rjust(w)
                                  for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def report(doc: dict[str, Any], markdown: bool) -> str:
    """The tables printed at the end (plain text, or Markdown for the README)."""
    meta = doc["meta"]
    lines = [(f"{meta['cpu']} · {meta['cores']} cores · Python {meta['python']} · "
              f"websockets {meta['websockets']} · load generator loop: {meta['loop']} · "
              f"{meta['pinning']}"),
             f"relay: {meta['relay_cmd']} with {meta['relay_env'].strip()}",
             CRITERIA.describe()]
    if markdown:
        out = [f"`{meta['command']}`", "", *(f"- {line}" for line in lines), ""]
    else:
        out = [meta["command"], "", *lines, ""]
    out.append(_table(COLUMNS, [row_cells(r) for r in doc["runs"]], markdown))
    if doc["ratios"]:
        out += ["", _table(("N", "CPU-s/call-min relay/baseline", "p99 relay/baseline",
                            "KiB/session relay/baseline"),
                           [[str(x["calls"]), _fmt(x["cpu_s_per_call_min"], 2),
                             _fmt(x["p99_ms"], 2), _fmt(x["kib_per_session"], 2)]
                            for x in doc["ratios"]], markdown)]
    for result in doc.get("ramp") or []:
        out += ["", format_ramp(result, markdown)]
    return "\n".join(out)


def format_ramp(result: dict[str, Any], markdown: bool) -> str:
    hold, fail = result["largest_holding"], result["first_failing"]
    head = (f"ramp {result['kind']}: holds up to N = {hold}" +
            (" (ceiling --ramp-max reached)" if result["ceiling_reached"] else f"; fails at N = {fail}") +
            (" — that failure was flagged HARNESS-LIMITED or NOISY" if result["harness_limited_failure"] else ""))
    steps = ", ".join(f"{s['calls']} {'✓' if s['holds'] else '✗'}{'*' if '[' in s['verdict'] else ''}"
                      for s in result["steps"])
    note = " (* flagged HARNESS-LIMITED or NOISY)" if "*" in steps else ""
    return (f"**{head}** (steps: {steps}{note})" if markdown else f"{head}\n  steps: {steps}{note}")


def metadata(args: argparse.Namespace, pinning: Pinning, loop_name: str) -> dict[str, Any]:
    import websockets

    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return {
        "command": "scripts/bench.py " + " ".join(shlex.quote(a) for a in args.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "websockets": websockets.__version__, "loop": loop_name, "pinning": pinning.note,
        "criteria": asdict(CRITERIA),
        "duration_s": args.duration, "warmup_s": args.warmup, "frontends": args.frontends,
        "relay_cmd": f"the relay at {args.target}" if args.target else args.relay_cmd or "python -m relay",
        "relay_env": " ".join(f"{k}={v}" for k, v in bench_relay_settings(0).items()
                              if k != "RELAY_MAX_SESSIONS") + " RELAY_MAX_SESSIONS=max(1000,N) "
                     + " ".join(args.relay_env) if not args.target else "its own configuration",
        "model": ("external " + args.model_url) if args.model_url else
                 ("own process" if args.model_process else "in the load generator's event loop"),
    }


# --- CLI --------------------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--relay", choices=("relay", "baseline", "both"), default="both",
                   help="what to measure (default both: relay then the minimal baseline at each N)")
    p.add_argument("--calls", default="1,50,200,250",
                   help="concurrent calls: N or a list like 1,50,200,250 (default)")
    p.add_argument("--duration", type=float, default=20.0, help="measurement window, s (default 20)")
    p.add_argument("--warmup", type=float, default=None,
                   help="streaming before the window, s (default: min(2, duration))")
    p.add_argument("--drain", type=float, default=2.0,
                   help="grace after the window for echoes still in flight, s (default 2)")
    p.add_argument("--connect-timeout", type=float, default=None,
                   help="time for all calls to go live, s (default 10 + N/25)")
    p.add_argument("--frontends", action="store_true", help="one /logs frontend per call")
    p.add_argument("--ramp", action="store_true", help="find the largest N that holds")
    p.add_argument("--ramp-start", type=int, default=25, help="first N of the ramp (default 25)")
    p.add_argument("--ramp-max", type=int, default=500, help="largest N the ramp tries (default 500)")
    p.add_argument("--settle", type=float, default=30.0, metavar="S",
                   help="before each run, wait up to S seconds for the cores in use to be idle "
                        "(≤ 10%% busy for a second), for a shared machine; 0: don't (default 30)")
    p.add_argument("--json", metavar="FILE", help="write every figure to FILE as JSON")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables (for the README)")
    p.add_argument("--relay-cmd", metavar="CMD",
                   help="command that starts relay instead of 'python -m relay' (to measure a "
                        "variant; it gets the same environment, PORT included)")
    p.add_argument("--relay-env", metavar="KEY=VALUE", action="append", default=[],
                   help="extra environment for relay (repeatable), e.g. RELAY_MARK_INTERVAL_MS=200")
    p.add_argument("--target", metavar="URL",
                   help="an already running relay on loopback (ws://127.0.0.1:PORT) instead of "
                        "starting one; point its OPENAI_REALTIME_URL at the fake model "
                        "(see --model-port / --model-url); it is pinned to the relay core")
    p.add_argument("--target-pid", type=int, help="its process ID, for CPU and RSS")
    p.add_argument("--model-port", type=int, default=0,
                   help="port of the fake model this benchmark starts (default: a free one)")
    p.add_argument("--model-url", help="use an already running fake model (scripts/bench_model.py)")
    p.add_argument("--model-process", action="store_true",
                   help="run the fake model as its own process on the load core instead of in "
                        "the load generator's event loop (default: same loop, which keeps the "
                        "send schedule on time; the load core's CPU%% then includes the model)")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--no-uvloop", action="store_true", help="load generator on asyncio's own loop")
    args = p.parse_args(argv)
    args.argv = argv
    try:
        args.call_counts = [int(x) for x in args.calls.split(",") if x.strip()]
    except ValueError:
        p.error("--calls takes N or a comma-separated list of N")
    if not args.call_counts or min(args.call_counts) < 1:
        p.error("--calls must be positive")
    if args.duration <= 0 or args.ramp_start < 1 or args.ramp_max < args.ramp_start:
        p.error("--duration must be positive and --ramp-start ≤ --ramp-max")
    if any("=" not in kv for kv in args.relay_env):
        p.error("--relay-env takes KEY=VALUE")
    if args.warmup is None:
        args.warmup = min(2.0, args.duration)
    for url in (args.target, args.model_url):
        if url is not None and not url.startswith(("ws://127.0.0.1:", "ws://localhost:")):
            p.error(f"{url}: the benchmark only talks to loopback (ws://127.0.0.1:PORT)")
    return args


def _listener_pid(port: int) -> int | None:
    """The process listening on a loopback port, if this user may see it."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return conn.pid
    except psutil.Error:
        pass
    return None


def _raise_fd_limit() -> None:
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


async def bench(args: argparse.Namespace, pinning: Pinning, loop_name: str) -> dict[str, Any]:
    """Run every requested measurement; return the JSON document of results."""
    model: Child | None = None
    server: asyncio.Server | None = None
    here: ModelStats | None = None
    try:
        if args.model_url:
            model_url = args.model_url
        elif args.model_process:
            model, model_url = await start_model(pinning, args.model_port)
        else:
            server, model_url, here = await start_model_here("127.0.0.1", args.model_port)
        model_port = int(model_url.split(":")[2].split("/")[0])
        ctx = BenchContext(pinning, model_url, model_port, model.ps if model else None, here,
                           shlex.split(args.relay_cmd) if args.relay_cmd else None,
                           dict(kv.split("=", 1) for kv in args.relay_env), args.settle)
        if args.target:
            ctx.target_port = int(args.target.rstrip("/").rsplit(":", 1)[1])
            pid = args.target_pid or _listener_pid(ctx.target_port)
            ctx.target_ps = psutil.Process(pid) if pid else None
            if pid:
                ctx.pinning.pin(pid, ctx.pinning.relay_core)
            await wait_listening(ctx.target_port, None, 5)
        kinds = ["target"] if args.target else (["relay", "baseline"] if args.relay == "both" else [args.relay])

        def spec(n: int) -> RunSpec:
            timeout = args.connect_timeout if args.connect_timeout is not None else 10 + n / 25
            return RunSpec(n, args.duration, args.warmup, args.drain, args.frontends, timeout)

        doc: dict[str, Any] = {"meta": metadata(args, pinning, loop_name), "runs": ctx.runs}
        if args.ramp:
            doc["ramp"] = [await ramp(kind, spec(args.ramp_start), ctx, args.ramp_start, args.ramp_max)
                           for kind in kinds]
        else:
            for n in args.call_counts:
                for kind in kinds:
                    ctx.runs.append(await run_once(kind, spec(n), ctx))
        doc["ratios"] = ratio_rows(ctx.runs)
        return doc
    finally:
        if model is not None:
            await model.stop()
        if server is not None:
            server.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _raise_fd_limit()
    pinning = Pinning.plan(not args.no_pin)
    pinning.pin(0, pinning.load_core)  # this process, before its loop starts
    loop_name = "asyncio"
    runner: Callable[[Any], Any] = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            runner, loop_name = uvloop.run, "uvloop"
    try:
        doc = runner(bench(args, pinning, loop_name))
    except HarnessError as exc:
        print(f"bench: harness error: {exc}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001  (a bug in the harness: report it, never a result)
        traceback.print_exc()
        print("bench: harness error (see the traceback above)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 2
    print(report(doc, args.markdown))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
