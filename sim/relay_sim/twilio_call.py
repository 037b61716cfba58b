"""A simulated Twilio Media Streams call: the phone side of the relay, over a real WebSocket.

:class:`SimulatedCall` sends exactly the JSON text frames Twilio sends (``connected``,
``start``, ``media``, ``dtmf``, ``mark``, ``stop``) and records what the relay sends back
(``media``, ``mark``, ``clear``). Like Twilio it echoes each outbound ``mark`` once the audio
queued before it has "played" — here immediately, since nothing is really played.

This module also holds what every simulated peer shares: :class:`Inbox` (received messages
with race-free waits) and the exceptions, rooted at :class:`SimError`::

    SimError
    ├── WaitTimeout   (also a TimeoutError) no matching message before the deadline
    └── PeerClosed    the connection ended before a matching message arrived

Reference: https://www.twilio.com/docs/voice/media-streams/websocket-messages
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
from collections.abc import Awaitable, Iterable
from typing import Self

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import HeadersLike
from websockets.exceptions import ConnectionClosed

from relay.providers import g711
from relay_sim.inbox import Inbox, Message, Waiting, WaitTimeout

#: One Twilio media frame: 20 ms of 8 kHz G.711 μ-law.
FRAME_BYTES = 160
SAMPLE_RATE = 8000
#: μ-law encodes linear 0 as 0xFF, so a frame of 0xFF bytes is silence.
ULAW_SILENCE = 0xFF


# --- G.711 μ-law ------------------------------------------------------------------------------


def linear_to_ulaw(sample: int) -> int:
    """Encode one signed 16-bit linear sample as a G.711 μ-law byte (ITU-T G.711)."""
    return g711.encode_sample(sample)


def ulaw_tone(ms: int, frequency: float = 440.0, amplitude: int = 16000) -> bytes:
    """Return ``ms`` milliseconds of a sine tone as 8 kHz μ-law, starting at phase 0.

    The default (440 Hz, about -6 dBFS) is loud enough for any voice-activity detector.
    """
    return g711.tone(ms, frequency, amplitude)


def ulaw_silence(ms: int) -> bytes:
    """Return ``ms`` milliseconds of 8 kHz μ-law silence."""
    return g711.silence(ms)


def new_sid(prefix: str) -> str:
    """Return a Twilio-style SID: a two-letter prefix and 32 random hex characters."""
    return prefix + secrets.token_hex(16)


def ws_url(base_url: str, path: str) -> str:
    """Join a base URL and a path, accepting http(s):// for ws(s)://."""
    if base_url.startswith("http"):
        base_url = "ws" + base_url[len("http") :]
    return base_url.rstrip("/") + "/" + path.lstrip("/")


# --- The call ---------------------------------------------------------------------------------

# 440 Hz fits exactly 440 periods in one second, so slicing this buffer in 160-byte frames
# makes a continuous tone across frames.
_TONE_SECOND = ulaw_tone(1000)


class SimulatedCall(Waiting):
    """One simulated Twilio Media Streams connection to the relay.

    Create it with :meth:`connect`. Sends are awaited one at a time by the caller; a background
    reader records every message from the relay in :attr:`received` until the connection ends.
    Use it as an async context manager to close it on exit.

    Attributes:
        call_sid: ``CA…``; random unless given.
        stream_sid: ``MZ…``; random unless given.
        account_sid: ``AC…``; random unless given.
        custom_parameters: The ``customParameters`` sent in ``start`` by default.
        unparsed: Frames from the relay that were not JSON objects (binary or bad text).
        protocol_errors: Problems with the relay's messages (wrong streamSid, bad base64).
        pending_marks: With ``auto_ack_marks=False``, outbound marks not echoed yet.
    """

    def __init__(
        self,
        ws: ClientConnection,
        *,
        call_sid: str | None,
        stream_sid: str | None,
        account_sid: str | None,
        custom_parameters: dict[str, str] | None,
        auto_ack_marks: bool,
    ) -> None:
        self._ws = ws
        self.call_sid = call_sid or new_sid("CA")
        self.stream_sid = stream_sid or new_sid("MZ")
        self.account_sid = account_sid or new_sid("AC")
        self.custom_parameters = dict(custom_parameters or {})
        self.auto_ack_marks = auto_ack_marks
        self.inbox = Inbox("event", f"call {self.call_sid[:10]}")
        self.unparsed: list[str | bytes] = []
        self.protocol_errors: list[str] = []
        self.pending_marks: list[str] = []
        self._audio = bytearray()
        self._sequence = 0
        self._chunk = 0
        self._timestamp_ms = 0
        self._tone_offset = 0
        self._reader = asyncio.create_task(self._read(), name=f"sim-call-{self.call_sid[:10]}")

    @classmethod
    async def connect(
        cls,
        base_url: str,
        path: str = "/call",
        *,
        call_sid: str | None = None,
        stream_sid: str | None = None,
        account_sid: str | None = None,
        custom_parameters: dict[str, str] | None = None,
        extra_headers: HeadersLike | None = None,
        auto_ack_marks: bool = True,
        open_timeout: float = 5.0,
    ) -> Self:
        """Open the stream's WebSocket. Sends nothing yet: call :meth:`start` next.

        Args:
            base_url: The relay, e.g. ``ws://127.0.0.1:8081`` (http:// is accepted too).
            path: ``/call`` or ``/call/{sessionId}``.
            extra_headers: E.g. ``X-Twilio-Signature``.
            auto_ack_marks: Echo each outbound mark as soon as it arrives, as Twilio does once
                the audio before it has played. If False, marks wait in
                :attr:`pending_marks` until :meth:`ack_pending_marks` or a ``clear``.

        Raises:
            websockets.exceptions.InvalidStatus: The relay refused the handshake.
            OSError, TimeoutError: The relay is unreachable.
        """
        # No proxy (a simulated caller talks straight to the relay); no compression (Twilio
        # does not negotiate permessage-deflate).
        ws = await connect(
            ws_url(base_url, path),
            additional_headers=extra_headers,
            compression=None,
            proxy=None,
            open_timeout=open_timeout,
            max_size=None,
        )
        return cls(
            ws,
            call_sid=call_sid,
            stream_sid=stream_sid,
            account_sid=account_sid,
            custom_parameters=custom_parameters,
            auto_ack_marks=auto_ack_marks,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- Sending ------------------------------------------------------------------------------

    def _next_sequence(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    async def _send(self, message: Message) -> None:
        await self._ws.send(orjson.dumps(message), text=True)

    async def send_raw(self, data: str | bytes) -> None:
        """Send a frame as is (str as text, bytes as binary), for bad-input tests."""
        await self._ws.send(data)

    async def send_connected(self) -> None:
        """Send Twilio's first message, ``connected`` (it carries no sequence number)."""
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    async def send_start(self, custom_parameters: dict[str, str] | None = None) -> None:
        """Send ``start`` with the call's SIDs and media format.

        Args:
            custom_parameters: Replaces the parameters given to :meth:`connect` if not None.
                Put ``sessionId`` here to pair the call with a frontend.
        """
        if custom_parameters is not None:
            self.custom_parameters = dict(custom_parameters)
        await self._send(
            {
                "event": "start",
                "sequenceNumber": self._next_sequence(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {
                        "encoding": "audio/x-mulaw",
                        "sampleRate": SAMPLE_RATE,
                        "channels": 1,
                    },
                    "customParameters": self.custom_parameters,
                },
                "streamSid": self.stream_sid,
            }
        )

    async def start(self, custom_parameters: dict[str, str] | None = None) -> None:
        """Send ``connected`` then ``start``, as Twilio opens every stream."""
        await self.send_connected()
        await self.send_start(custom_parameters)

    async def send_media(self, payload: bytes | None = None) -> None:
        """Send one inbound ``media`` frame; advances sequence, chunk and timestamp.

        Args:
            payload: Raw μ-law bytes (160 for a real 20 ms frame); None sends silence.
        """
        if payload is None:
            payload = bytes([ULAW_SILENCE]) * FRAME_BYTES
        self._chunk += 1
        timestamp = self._timestamp_ms
        self._timestamp_ms += len(payload) * 1000 // SAMPLE_RATE
        await self._send(
            {
                "event": "media",
                "sequenceNumber": self._next_sequence(),
                "media": {
                    "track": "inbound",
                    "chunk": str(self._chunk),
                    "timestamp": str(timestamp),
                    "payload": base64.b64encode(payload).decode("ascii"),
                },
                "streamSid": self.stream_sid,
            }
        )

    def _frame(self, loud: bool) -> bytes:
        if not loud:
            return bytes([ULAW_SILENCE]) * FRAME_BYTES
        frame = _TONE_SECOND[self._tone_offset : self._tone_offset + FRAME_BYTES]
        self._tone_offset = (self._tone_offset + FRAME_BYTES) % len(_TONE_SECOND)
        return frame

    async def speak(self, frames: int, loud: bool = True, *, interval: float | None = None) -> None:
        """Send ``frames`` media frames of a continuous 440 Hz tone (loud) or silence.

        Args:
            interval: None sends as fast as possible (tests); 0.02 paces like a real phone.
        """
        payloads = (self._frame(loud) for _ in range(frames))
        if interval is None:
            for payload in payloads:
                await self.send_media(payload)
        else:
            await self.send_media_paced(payloads, interval)

    async def send_media_paced(self, frames: Iterable[bytes], interval: float = 0.02) -> None:
        """Send media frames one per ``interval`` seconds, as Twilio does (for demos).

        Frames are scheduled against a fixed start time, so slow sends do not add up to drift.
        """
        loop = asyncio.get_running_loop()
        due = loop.time()
        for payload in frames:
            await self.send_media(payload)
            due += interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # real-time pacing, not synchronisation

    async def send_dtmf(self, digit: str) -> None:
        """Send a ``dtmf`` event for a key press."""
        await self._send(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next_sequence(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def send_mark(self, name: str) -> None:
        """Send an inbound ``mark``: Twilio's echo that audio up to the named mark played."""
        await self._send(
            {
                "event": "mark",
                "sequenceNumber": self._next_sequence(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    async def ack_pending_marks(self) -> None:
        """Echo every pending outbound mark, in order, as if the audio finished playing."""
        while self.pending_marks:
            await self.send_mark(self.pending_marks.pop(0))

    async def send_stop(self) -> None:
        """Send ``stop``, as Twilio does when the caller hangs up (the socket stays open)."""
        await self._send(
            {
                "event": "stop",
                "sequenceNumber": self._next_sequence(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )

    async def hang_up(self) -> None:
        """Send ``stop`` and close the socket, as Twilio does at the end of a call."""
        try:
            await self.send_stop()
        except ConnectionClosed:
            pass  # the relay closed first; the call is over either way
        await self.close()

    # --- Receiving ----------------------------------------------------------------------------


    def audio_received(self) -> bytes:
        """Return the decoded payloads of every outbound ``media`` so far, concatenated."""
        return bytes(self._audio)



    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                await self._on_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            self.inbox.end(self._ws.close_code, self._ws.close_reason)

    async def _on_frame(self, frame: str | bytes) -> None:
        try:
            message = orjson.loads(frame) if isinstance(frame, str) else None
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            self.unparsed.append(frame)
            return
        event = message.get("event")
        if event in ("media", "mark", "clear") and message.get("streamSid") != self.stream_sid:
            self.protocol_errors.append(f"{event} for streamSid {message.get('streamSid')!r}")
        if event == "media":
            try:
                self._audio += base64.b64decode(message["media"]["payload"], validate=True)
            except (KeyError, TypeError, binascii.Error) as exc:
                self.protocol_errors.append(f"bad media payload: {exc!r}")
        self.inbox.add(message)
        if event == "mark":
            name = (message.get("mark") or {}).get("name")
            if not isinstance(name, str):
                self.protocol_errors.append("mark without a name")
            elif self.auto_ack_marks:
                await self._send_quietly(self.send_mark(name))
            else:
                self.pending_marks.append(name)
        elif event == "clear" and self.pending_marks:
            # Twilio answers clear by echoing every mark whose audio was discarded.
            await self._send_quietly(self.ack_pending_marks())

    @staticmethod
    async def _send_quietly(send: Awaitable[None]) -> None:
        try:
            await send
        except ConnectionClosed:
            pass  # the relay closed meanwhile; the reader will see the close next

    # --- Closing ------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """Whether the connection has ended (from either side)."""
        return self._reader.done()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the stream's socket and wait for the reader to finish. Idempotent."""
        await self._ws.close(code, reason)
        await self._reader

    async def wait_closed(self, timeout: float = 5.0) -> tuple[int | None, str | None]:
        """Wait for the connection to end; return the close code and reason the relay sent.

        Raises:
            WaitTimeout: The connection is still open after ``timeout`` seconds.
        """
        await asyncio.wait({self._reader}, timeout=timeout)
        if not self._reader.done():
            raise WaitTimeout(f"{self.inbox.peer}: still open after {timeout:g}s")
        await self._reader  # surfaces a bug in the reader rather than hiding it
        return self._ws.close_code, self._ws.close_reason
