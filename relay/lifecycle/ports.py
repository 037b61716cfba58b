"""What the lifecycle needs from a connection: the one interface every peer offers.

A call stream, a frontend, the OpenAI Realtime socket and the built-in local
model all look the same to a runner: sinks for what arrives, a non-blocking
send, an idempotent close. :class:`~relay.wire.connection.WireMixin` and
:class:`~relay.providers.local.LocalPeer` satisfy :class:`Peer`
structurally, so nothing in :mod:`relay.lifecycle` imports websockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

TextSink = Callable[[str], None]
BinarySink = Callable[[bytes], None]


class Peer(Protocol):
    """A connection as the lifecycle uses it."""

    #: Set once this side decided to close; later sends are dropped.
    closing: bool
    #: The closing handshake this side started, if any.
    close_task: asyncio.Task[None] | None

    @property
    def is_open(self) -> bool:
        """Open, and not being closed by relay."""
        ...

    @property
    def closed(self) -> bool:
        """Fully closed (the socket is gone)."""
        ...

    def set_sinks(self, on_text: TextSink, on_binary: BinarySink | None = None) -> None:
        """Deliver every later message to these callbacks."""
        ...

    def send_now(self, data: bytes | str) -> bool:
        """Send one text message without waiting; False if it was not sent."""
        ...

    def close_soon(self, code: int, reason: str = "") -> asyncio.Task[None] | None:
        """Start closing (idempotent); the task the first time."""
        ...

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        ...

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        ...
