"""The simulated peers of a load run: Twilio calls with tagged frames, and browsers on /logs.

Every frame a call sends is tagged: the first 9 bytes of its 160-byte μ-law payload hold a
magic byte, the call's index and the frame's sequence number, so when the echo comes back
through the relay the caller knows exactly which frame it is: its round-trip latency, whether
it reached the wrong call (misrouted) and which frames never came back (lost; a misrouted frame
is also lost to its own call).

Marks: Twilio echoes each ``mark`` the relay sends once the audio queued before it has played
(https://www.twilio.com/docs/voice/media-streams/websocket-messages#mark-message). By default a
call echoes each mark at once. With ``play_marks`` it keeps a play-out clock instead — every
``media`` it receives plays for its length at 8 kHz μ-law (8 bytes a millisecond), after what
was queued before it — and echoes each mark at its call's first send instant after the audio
before it has finished playing; a ``clear`` empties the queue and echoes the pending marks at
once, as Twilio does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import os
import random
import struct
import time
from collections import deque
from typing import Any

import orjson

from relay_sim.frames import apply_mask
from relay_sim.load.client import WsClient
from relay_sim.load.stats import LoadStats

FRAME_S = 0.020
FRAME_BYTES = 160
#: μ-law at 8 kHz: one byte per sample.
BYTES_PER_S = 8000


def _ulaw(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = magnitude.bit_length() - 8
    return ~(sign | (exponent << 4) | ((magnitude >> (exponent + 3)) & 0x0F)) & 0xFF


#: The frame tag: magic byte, call index, frame sequence number — 9 bytes, 12 base64 characters,
#: so the rest of the payload's base64 is the same for every frame and preformatted.
TAG = struct.Struct(">BII")
TAG_MAGIC = 0xB5
TAIL_AUDIO = bytes(_ulaw(round(12000 * math.sin(2 * math.pi * 440 * n / 8000)))
                   for n in range(TAG.size, FRAME_BYTES))
TAIL_B64 = base64.b64encode(TAIL_AUDIO)
_b64encode = base64.b64encode
_b64decode = base64.b64decode
_perf = time.perf_counter
_PAYLOAD = b'"payload":"'


def b64_len(b64: bytes) -> int:
    """How many bytes a base64 text decodes to, without decoding it."""
    pad = 2 if b64.endswith(b"==") else 1 if b64.endswith(b"=") else 0
    return len(b64) * 3 // 4 - pad


class SimCall(WsClient):
    """One simulated Twilio Media Stream with tagged frames."""

    def __init__(self, host: str, index: int, session_id: str, stats: LoadStats, frames: int,
                 *, play_marks: bool = False, path: str = "/call") -> None:
        super().__init__(host, path, stats)
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
        sid = self.stream_sid.encode()
        self._media = (
            b'{"event":"media","sequenceNumber":"%d","media":{"track":"inbound","chunk":"%d",'
            b'"timestamp":"%d","payload":"%s' + TAIL_B64 + b'"},"streamSid":"' + sid + b'"}'
        )
        self._sid_field = b'"streamSid":"' + sid + b'"'
        self._mark = (b'{"event":"mark","sequenceNumber":"%d","streamSid":"' + sid
                      + b'","mark":{"name":%s}}')
        self._play_marks = play_marks
        #: When the audio received so far will have played (perf_counter seconds).
        self._played_at = 0.0
        #: Marks waiting for their audio to play: (when it has, the name as JSON).
        self._due_marks: deque[tuple[float, bytes]] = deque()

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
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                      "channels": 1},
                      "customParameters": {"sessionId": self.session_id}},
            "streamSid": self.stream_sid,
        })
        self.send_media()

    def send_media(self) -> None:
        """Send the next tagged 20 ms frame (the per-tick hot path), after any due mark."""
        if self._due_marks:
            self._echo_played_marks(_perf())
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
            # Fast path for the usual shape (relay's and the baselines'): the tag is the first
            # 12 characters of the payload; no JSON parsing. Anything else is parsed in full.
            at = payload.find(_PAYLOAD)
            if at > 0 and self._sid_field in payload:
                at += len(_PAYLOAD)
                self._on_tag(payload[at:at + 12])
                if self._play_marks:
                    self._queue_audio(b64_len(payload[at:payload.find(b'"', at)]))
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
            self._on_slow_media(msg)
        elif event == "mark":
            mark = msg.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if not isinstance(name, str):
                st.protocol_errors += 1
                return
            st.marks += 1
            if self._play_marks:
                self._due_marks.append((max(self._played_at, self.now), orjson.dumps(name)))
            else:
                self._echo_mark(orjson.dumps(name))
        elif event == "clear":
            st.clears += 1
            self._played_at = self.now
            self._echo_played_marks(math.inf)
        else:
            st.other_call_messages += 1

    def _on_slow_media(self, msg: dict[str, Any]) -> None:
        if msg.get("streamSid") != self.stream_sid:
            self.stats.wrong_stream_sid += 1
        try:
            audio = msg["media"]["payload"].encode()
        except (KeyError, TypeError, AttributeError):
            self.stats.untagged += 1
            return
        self._on_tag(audio[:12])
        if self._play_marks:
            self._queue_audio(b64_len(audio))

    def _queue_audio(self, nbytes: int) -> None:
        self._played_at = max(self._played_at, self.now) + nbytes / BYTES_PER_S

    def _echo_played_marks(self, now: float) -> None:
        marks = self._due_marks
        while marks and marks[0][0] <= now:
            self._echo_mark(marks.popleft()[1])

    def _echo_mark(self, name_json: bytes) -> None:
        self.message_seq += 1
        self.send_text(self._mark % (self.message_seq, name_json))

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
        """Frames of the measurement window that never came back to this call."""
        lo, hi = self.stats.lo, min(self.stats.hi, self.seq)
        return (hi - lo + 1) - sum(self.got[lo:hi + 1]) if hi >= lo else 0


class SimFrontend(WsClient):
    """One browser on ``/logs/{sessionId}``: sends a job configuration, counts what arrives.

    It asks for no audio (relay's default for a frontend), so what it receives is the session's
    status messages and the model's other events: the transcript deltas above all.
    """

    JOB_CONFIG = orjson.dumps({"type": "job_config", "config": {
        "role": "Backend Engineer", "company": "Acme", "interviewStyle": "friendly"}})

    def __init__(self, host: str, session_id: str, stats: LoadStats) -> None:
        super().__init__(host, f"/logs/{session_id}", stats)

    def on_text(self, payload: bytes) -> None:
        st = self.stats
        st.frontend_messages += 1
        head = payload[:64]
        if b"transcript.delta" in head:
            st.frontend_transcripts += 1
        elif head.startswith(b'{"type":"error"'):
            st.frontend_errors += 1
