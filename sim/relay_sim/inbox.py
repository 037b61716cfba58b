"""Received messages with race-free waits, shared by the simulated peers.

A wait returns the earliest matching message that no earlier wait returned, so a
test never misses a message by starting to wait late, and never sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable
from typing import Any

Message = dict[str, Any]
Predicate = Callable[[Message], bool]


class SimError(Exception):
    """Root of the errors raised by the simulated peers."""


class WaitTimeout(SimError, TimeoutError):
    """No matching message arrived before the deadline."""


class PeerClosed(SimError):
    """The connection ended before a matching message arrived.

    Attributes:
        code: The close code received from the other side (1006 if there was no close frame).
        reason: The close reason received, possibly empty.
    """

    def __init__(self, message: str, code: int | None, reason: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class Inbox:
    """The messages one peer received, in arrival order, with race-free waits.

    A wait returns the earliest matching message that no earlier wait returned, whether it
    arrived before the wait started or during it, so a test never misses a message by waiting
    late. Messages a wait skipped because they did not match stay available to later waits.

    Args:
        key: The field naming a message's kind (``"event"`` for Twilio, ``"type"`` otherwise).
        peer: A name for error messages.
    """

    def __init__(self, key: str, peer: str) -> None:
        self.key = key
        self.peer = peer
        self.messages: list[Message] = []
        self._taken: list[bool] = []
        self._first_untaken = 0
        # Per-kind indices keep waits cheap when thousands of media frames sit unconsumed.
        self._by_kind: dict[str, list[int]] = {}
        self._kind_first: dict[str, int] = {}
        self._wakeup: asyncio.Future[None] | None = None
        self._ended: tuple[int | None, str | None] | None = None

    def add(self, message: Message) -> None:
        """Record a message and wake the waiters."""
        index = len(self.messages)
        self.messages.append(message)
        self._taken.append(False)
        kind = message.get(self.key)
        if isinstance(kind, str):
            self._by_kind.setdefault(kind, []).append(index)
        self._wake()

    def end(self, code: int | None, reason: str | None) -> None:
        """Mark that no message will ever arrive again; pending waits fail fast."""
        self._ended = (code, reason)
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        self._wakeup = None

    def take(self, kinds: Collection[str] | None, predicate: Predicate | None) -> Message | None:
        """Consume and return the earliest unconsumed match, or None. Never waits."""
        if kinds is not None and len(kinds) == 1:
            (kind,) = kinds
            indices = self._by_kind.get(kind, [])
            start = self._kind_first.get(kind, 0)
            while start < len(indices) and self._taken[indices[start]]:
                start += 1
            self._kind_first[kind] = start
            candidates: Iterable[int] = (indices[pos] for pos in range(start, len(indices)))
        else:
            while self._first_untaken < len(self._taken) and self._taken[self._first_untaken]:
                self._first_untaken += 1
            candidates = range(self._first_untaken, len(self.messages))
        for index in candidates:
            message = self.messages[index]
            if self._taken[index]:
                continue
            if kinds is not None and message.get(self.key) not in kinds:
                continue
            if predicate is None or predicate(message):
                self._taken[index] = True
                return message
        return None

    async def wait(
        self, kinds: Collection[str] | None, predicate: Predicate | None, timeout: float
    ) -> Message:
        """Consume and return the earliest unconsumed match, waiting up to ``timeout`` seconds.

        Raises:
            WaitTimeout: Nothing matched before the deadline.
            PeerClosed: The connection ended and nothing received matches.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = self.take(kinds, predicate)
            if found is not None:
                return found
            what = "message" if kinds is None else " or ".join(sorted(kinds))
            if self._ended is not None:
                code, reason = self._ended
                raise PeerClosed(
                    f"{self.peer}: closed ({code} {reason!r}) before a matching {what} arrived; "
                    f"last received: {self._recent()}",
                    code,
                    reason,
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise WaitTimeout(
                    f"{self.peer}: no matching {what} within {timeout:g}s; "
                    f"last received: {self._recent()}"
                )
            if self._wakeup is None:
                self._wakeup = loop.create_future()
            # asyncio.wait never cancels the shared future, so concurrent waiters are safe.
            await asyncio.wait({self._wakeup}, timeout=remaining)

    def _recent(self, count: int = 8) -> list[Any]:
        return [message.get(self.key) for message in self.messages[-count:]]


class Waiting:
    """``received``, ``wait_for`` and ``wait_for_any`` for a peer that owns an :class:`Inbox`."""

    inbox: Inbox

    @property
    def received(self) -> list[Message]:
        """Every JSON object received, parsed, in arrival order."""
        return self.inbox.messages

    async def wait_for(
        self, kind: str, predicate: Predicate | None = None, timeout: float = 5.0
    ) -> Message:
        """Return the earliest message of this kind (and predicate) not returned before.

        Raises:
            WaitTimeout: Nothing matched within ``timeout`` seconds.
            PeerClosed: The connection ended and nothing received matches.
        """
        return await self.inbox.wait((kind,), predicate, timeout)

    async def wait_for_any(
        self,
        kinds: Collection[str] | None = None,
        predicate: Predicate | None = None,
        timeout: float = 5.0,
    ) -> Message:
        """Like :meth:`wait_for`, for any of ``kinds`` (any message if None)."""
        return await self.inbox.wait(kinds, predicate, timeout)
