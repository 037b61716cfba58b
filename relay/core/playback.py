"""What the caller has heard of the model's audio: marks, play-out, truncation.

relay sends the model's audio to Twilio faster than real time; Twilio buffers
it and plays it at 8 kHz μ-law, 8 bytes per millisecond. To know how much has
played, relay sends a named ``mark`` after every ``mark_interval_ms`` of audio
and at the end of each item; Twilio echoes each mark once the audio before it
has played (and echoes the pending ones at once after a ``clear``, so marks
are forgotten on a clear).

One response may hold several audio items, and a new item's audio may arrive
while Twilio still plays the last one, so the buffer is tracked as a queue of
items in play order, each with the bytes sent and the bytes a mark confirmed
heard; a mark names its item. The caller is hearing the first item of the
queue: from what its last echoed mark covers, plus what played since at
real-time speed, moving on to the next item when one is exhausted.

When the caller starts speaking over the model (barge-in), the model must be
told how much of the item being heard was heard
(``conversation.item.truncate.audio_end_ms``): never more than relay has sent
of it — and relay never sends more than the model generated. Items cut off by
a barge-in are remembered: the model keeps sending their audio for a moment,
and none of it may reach the caller after the ``clear``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from relay.messages import twilio

BYTES_PER_MS = 8  # G.711 μ-law, 8 kHz, one byte per sample
#: Items cut off by a barge-in that are remembered (their late audio is dropped).
_TRUNCATED_KEPT = 32


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


@dataclass(slots=True)
class _Item:
    """One audio item in Twilio's buffer."""

    id: str
    first_at: float  # when its first chunk was sent
    sent: int = 0  # bytes sent to Twilio
    marked: int = 0  # bytes covered by the last mark sent
    heard: int = 0  # bytes an echoed mark confirmed played
    done: bool = False  # the model finished its audio


class Playback:
    """Tracks the model's audio items through Twilio's buffer.

    Pure: callers pass the current monotonic time in seconds.
    """

    __slots__ = ("_acked_at", "_items", "_mark_bytes", "_pending", "_seq", "_truncated")

    def __init__(self, mark_interval_ms: int = 100) -> None:
        self._mark_bytes = max(1, mark_interval_ms * BYTES_PER_MS)
        self._seq = 0
        # In play order: the caller hears the first one.
        self._items: deque[_Item] = deque()
        # Marks sent and not echoed, oldest first: (name, item id, bytes of that item before it).
        self._pending: deque[tuple[str, str, int]] = deque()
        # When the first item's `heard` was confirmed (or its play-out began).
        self._acked_at = 0.0
        self._truncated: deque[str] = deque(maxlen=_TRUNCATED_KEPT)

    @property
    def playing(self) -> bool:
        """Whether model audio is sent or in flight that the caller may not have heard."""
        return bool(self._items)

    @property
    def marks_pending(self) -> int:
        """Marks sent to Twilio and not yet echoed back."""
        return len(self._pending)

    @property
    def item_id(self) -> str | None:
        """The item audio is arriving for (the last in the buffer), if any."""
        return self._items[-1].id if self._items else None

    @property
    def sent_bytes(self) -> int:
        """Bytes of :attr:`item_id` sent so far."""
        return self._items[-1].sent if self._items else 0

    @property
    def audio_done(self) -> bool:
        """Whether the model finished the audio of :attr:`item_id`."""
        return bool(self._items) and self._items[-1].done

    @property
    def items(self) -> list[str]:
        """The items in Twilio's buffer, in play order."""
        return [item.id for item in self._items]

    def was_truncated(self, item_id: str) -> bool:
        """Whether a barge-in cut ``item_id`` off: its late audio must not be played."""
        return item_id in self._truncated

    def on_audio(self, item_id: str, nbytes: int, now: float) -> str | None:
        """Record ``nbytes`` of ``item_id`` sent to Twilio.

        Returns the name of a mark to send after this audio, or None.
        """
        item = self._find(item_id)
        if item is None:
            if not self._items:
                # Play-out starts now; until the first mark comes back, elapsed
                # time since the first chunk is the best estimate.
                self._acked_at = now
            item = _Item(item_id, now)
            self._items.append(item)
        item.sent += nbytes
        if item.sent - item.marked >= self._mark_bytes:
            return self._new_mark(item)
        return None

    def on_audio_done(self, item_id: str) -> str | None:
        """The model finished this item's audio; returns the final mark to send.

        The final mark is sent even right after another one: its echo is what
        says the whole item has played (an ``end_interview`` waits for it).
        """
        item = self._find(item_id)
        if item is None or item.done:
            return None
        item.done = True
        return self._new_mark(item)

    def _find(self, item_id: str) -> _Item | None:
        return next((item for item in self._items if item.id == item_id), None)

    def _new_mark(self, item: _Item) -> str:
        self._seq += 1
        name = f"relay-{self._seq}"
        item.marked = item.sent
        self._pending.append((name, item.id, item.sent))
        return name

    def on_mark(self, name: str, now: float) -> bool:
        """Twilio echoed mark ``name``.

        Returns True when this leaves nothing to play: every item was wholly
        generated, sent and played. Unknown names (marks from before a clear)
        are ignored.
        """
        if not any(pending == name for pending, _, _ in self._pending):
            return False
        while self._pending:
            pending, item_id, nbytes = self._pending.popleft()
            if pending == name:
                break
        # Everything before the marked item has played; so has the item up to the mark.
        while self._items and self._items[0].id != item_id:
            self._items.popleft()
        self._acked_at = now
        if not self._items:
            return False
        front = self._items[0]
        front.heard = nbytes
        if front.done and front.heard >= front.sent:
            self._items.popleft()
            return not self._items
        return False

    def _position(self, now: float) -> tuple[_Item, int] | None:
        """The item being heard and how many of its bytes, best estimate."""
        clock = self._acked_at
        for index, item in enumerate(self._items):
            start = item.heard if index == 0 else 0
            if index > 0:
                # Twilio played nothing of it before it arrived.
                clock = max(clock, item.first_at)
            played = max(0, int((now - clock) * 1000 * BYTES_PER_MS))
            left = item.sent - start
            if played < left or index == len(self._items) - 1:
                return item, min(item.sent, start + played)
            clock += left / (1000 * BYTES_PER_MS)
        return None

    def heard_ms(self, now: float) -> int:
        """Milliseconds of the item being heard that the caller has heard, best estimate."""
        position = self._position(now)
        return 0 if position is None else position[1] // BYTES_PER_MS

    # -- as Twilio frames -------------------------------------------------------------

    def play(self, stream_sid: str, item_id: str, delta: str, now: float) -> list[bytes]:
        """The frames that send a chunk of model audio (base64) to the caller, with a mark when due."""
        frames = [twilio.media_message(stream_sid, delta)]
        mark = self.on_audio(item_id, b64_decoded_len(delta), now)
        if mark is not None:
            frames.append(twilio.mark_message(stream_sid, mark))
        return frames

    def finish(self, stream_sid: str, item_id: str) -> list[bytes]:
        """The frame of an item's final mark, once the model finished its audio."""
        mark = self.on_audio_done(item_id)
        return [] if mark is None else [twilio.mark_message(stream_sid, mark)]

    def barge_in(self, now: float) -> Truncation | None:
        """The caller spoke over the model: what to truncate, then forget every item.

        Returns None when no model audio is playing. Every item in the buffer
        is remembered as cut off, so its late audio is dropped.
        """
        position = self._position(now)
        if position is None:
            return None
        item, heard = position
        self._truncated.extend(entry.id for entry in self._items)
        self._items.clear()
        self._pending.clear()
        return Truncation(item.id, heard // BYTES_PER_MS)
