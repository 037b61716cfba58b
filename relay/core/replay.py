"""The resume buffer: what a session's frontends missed while none was attached.

A page refresh during a call must not lose the transcript. While a session has
no frontend, frontend-bound messages are kept (bounded, oldest dropped first)
and replayed, after ``session.resumed``, to the next frontend that joins.
Audio is for the caller and warnings are state, not history: neither is kept.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from relay.core.effects import ModelEvent
from relay.messages.realtime import AUDIO_DELTA

#: Warnings are re-sent as they stand when a frontend joins, never replayed.
_TRANSIENT = frozenset({"session.inactivity_warning", "session.inactivity_warning_cleared",
                        "session.duration_warning"})

Message = dict[str, Any] | ModelEvent


class Replay:
    """A bounded buffer of missed frontend messages."""

    __slots__ = ("_dropped", "_missed")

    def __init__(self, max_events: int) -> None:
        self._missed: deque[Message] = deque(maxlen=max(1, max_events))
        self._dropped = 0

    def __len__(self) -> int:
        return len(self._missed)

    def keep(self, message: Message) -> None:
        """Keep one message nobody could receive (audio and warnings are not kept)."""
        if isinstance(message, ModelEvent):
            if message.type == AUDIO_DELTA:
                return
        elif message.get("type") in _TRANSIENT:
            return
        if len(self._missed) == self._missed.maxlen:
            self._dropped += 1
        self._missed.append(message)

    def drain(self) -> tuple[list[Message], int]:
        """Everything kept, oldest first, and how many older messages were dropped; empties the buffer."""
        missed, dropped = list(self._missed), self._dropped
        self._missed.clear()
        self._dropped = 0
        return missed, dropped
