"""What the caller has heard of the model's audio: marks, play-out, truncation.

relay sends the model's audio to Twilio faster than real time; Twilio buffers
it and plays it at 8 kHz μ-law, 8 bytes per millisecond. To know how much has
played, relay sends a named ``mark`` after every ``mark_interval_ms`` of audio;
Twilio echoes each mark once the audio before it has played (and echoes the
pending ones at once after a ``clear``, so marks are forgotten on a clear).

When the caller starts speaking over the model (barge-in), the model must be
told how much of its answer was actually heard
(``conversation.item.truncate.audio_end_ms``): the audio acknowledged by the
last mark, plus what played since then at real-time speed, never more than
relay has sent — and relay never sends more than the model generated.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

BYTES_PER_MS = 8  # G.711 μ-law, 8 kHz, one byte per sample


def b64_decoded_len(b64: str) -> int:
    """Length of the bytes a base64 string decodes to, without decoding it."""
    n = len(b64)
    if n == 0:
        return 0
    pad = 2 if b64.endswith("==") else 1 if b64.endswith("=") else 0
    return n * 3 // 4 - pad


@dataclass(frozen=True, slots=True)
class Truncation:
    """What to tell the model after a barge-in."""

    item_id: str
    audio_end_ms: int


class Playback:
    """Tracks the model's current audio item through Twilio's buffer.

    Pure: callers pass the current monotonic time in seconds.
    """

    __slots__ = (
        "_acked_at",
        "_acked_bytes",
        "_mark_bytes",
        "_marked_bytes",
        "_pending",
        "_seq",
        "audio_done",
        "item_id",
        "sent_bytes",
    )

    def __init__(self, mark_interval_ms: int = 100) -> None:
        self._mark_bytes = max(1, mark_interval_ms * BYTES_PER_MS)
        self._seq = 0
        self._pending: deque[tuple[str, int]] = deque()
        self._reset_item(None)

    def _reset_item(self, item_id: str | None) -> None:
        self.item_id = item_id
        self.sent_bytes = 0
        self._marked_bytes = 0
        self._acked_bytes = 0
        self._acked_at = 0.0
        self.audio_done = False
        self._pending.clear()

    @property
    def playing(self) -> bool:
        """Whether model audio is sent or in flight that the caller may not have heard."""
        return self.item_id is not None

    @property
    def marks_pending(self) -> int:
        """Marks sent to Twilio and not yet echoed back."""
        return len(self._pending)

    def on_audio(self, item_id: str, nbytes: int, now: float) -> str | None:
        """Record ``nbytes`` of ``item_id`` sent to Twilio.

        Returns the name of a mark to send after this audio, or None.
        """
        if item_id != self.item_id:
            self._reset_item(item_id)
        if self.sent_bytes == 0:
            # Play-out starts now; until the first mark comes back, elapsed
            # time since the first chunk is the best estimate.
            self._acked_at = now
        self.sent_bytes += nbytes
        if self.sent_bytes - self._marked_bytes >= self._mark_bytes:
            return self._new_mark()
        return None

    def on_audio_done(self, item_id: str) -> str | None:
        """The model finished this item's audio; returns the final mark to send.

        The final mark is sent even right after another one: its echo is what
        says the whole answer has played (an ``end_interview`` waits for it).
        """
        if item_id != self.item_id:
            return None
        self.audio_done = True
        return self._new_mark()

    def _new_mark(self) -> str:
        self._seq += 1
        name = f"relay-{self._seq}"
        self._marked_bytes = self.sent_bytes
        self._pending.append((name, self.sent_bytes))
        return name

    def on_mark(self, name: str, now: float) -> bool:
        """Twilio echoed mark ``name``.

        Returns True when this completes the item: all its audio was generated,
        sent and played. Unknown names (marks from before a clear) are ignored.
        """
        if not any(pending == name for pending, _ in self._pending):
            return False
        while self._pending:
            pending, nbytes = self._pending.popleft()
            if pending == name:
                self._acked_bytes = nbytes
                self._acked_at = now
                break
        if self.audio_done and not self._pending and self._acked_bytes >= self.sent_bytes:
            self._reset_item(None)
            return True
        return False

    def heard_ms(self, now: float) -> int:
        """Milliseconds of the current item the caller has heard, best estimate."""
        if self.item_id is None:
            return 0
        since_ack = max(0.0, now - self._acked_at) * 1000 * BYTES_PER_MS
        heard_bytes = min(self.sent_bytes, self._acked_bytes + int(since_ack))
        return heard_bytes // BYTES_PER_MS

    def barge_in(self, now: float) -> Truncation | None:
        """The caller spoke over the model: what to truncate, then forget the item.

        Returns None when no model audio is playing.
        """
        if self.item_id is None:
            return None
        truncation = Truncation(self.item_id, self.heard_ms(now))
        self._reset_item(None)
        return truncation
