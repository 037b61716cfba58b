"""Frontends whose socket is on one node and whose session is on another.

A bridged frontend has two halves joined by a *link* ID:

- :class:`RemoteFrontend`, on the node that owns the session: to the runner
  it is a frontend like any other (:class:`~relay.lifecycle.ports.Peer`);
  what the runner sends it travels to the holder over the bus.
- :class:`HeldFrontend`, on the node that holds the socket: what the browser
  sends travels to the owner; what the owner sends is written to the socket.

When the session moves (its call reached a third node) the holder is told the
new owner, and the old owner forwards anything still in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relay.core.session import FrontendInfo
from relay.lifecycle.ports import BinarySink, Peer, TextSink
from relay.messages.closecodes import CloseCode

Send = Callable[[str, dict[str, Any]], None]


def info_to_wire(info: FrontendInfo) -> dict[str, Any]:
    """A frontend's preferences, as a bus message carries them."""
    return {"dialect": info.dialect, "audio": info.wants_audio, "bare": info.bare}


def info_from_wire(data: object) -> FrontendInfo:
    """The inverse of :func:`info_to_wire` (unknown shapes give the defaults)."""
    if not isinstance(data, dict):
        return FrontendInfo()
    dialect = data.get("dialect") if data.get("dialect") in ("ga", "beta") else "ga"
    return FrontendInfo(dialect=dialect, wants_audio=bool(data.get("audio")),
                        bare=bool(data.get("bare")))


class RemoteFrontend:
    """The owner's view of a frontend another node holds."""

    def __init__(self, link: str, holder: str, session_id: str, send: Send) -> None:
        self.link = link
        self.holder = holder
        self.session_id = session_id
        self._send = send
        self.closing = False
        self.close_task: asyncio.Task[None] | None = None
        self._gone = asyncio.Event()
        self._on_text: TextSink | None = None
        self._on_binary: BinarySink | None = None

    # Peer
    @property
    def is_open(self) -> bool:
        return not self.closing and not self._gone.is_set()

    @property
    def closed(self) -> bool:
        return self._gone.is_set()

    def set_sinks(self, on_text: TextSink, on_binary: BinarySink | None = None) -> None:
        self._on_text, self._on_binary = on_text, on_binary

    def send_now(self, data: bytes | str) -> bool:
        if not self.is_open:
            return False
        text = data.decode() if isinstance(data, bytes) else data
        self._send(self.holder, {"op": "fe.send", "link": self.link, "data": text})
        return True

    def close_soon(self, code: int, reason: str = "") -> asyncio.Task[None] | None:
        if self.closing:
            return None
        self.closing = True
        self._send(self.holder, {"op": "fe.close", "link": self.link, "code": int(code),
                                 "reason": reason[:120]})
        self._gone.set()
        self.close_task = asyncio.get_running_loop().create_task(self._gone.wait())
        return self.close_task

    def abort(self) -> None:
        self.close_soon(CloseCode.INTERNAL_ERROR, "aborted")

    async def wait_closed(self) -> None:
        await self._gone.wait()

    # from the holder
    def deliver(self, text: str) -> None:
        """The browser sent ``text``."""
        if self._on_text is not None and self.is_open:
            self._on_text(text)

    def deliver_binary(self) -> None:
        """The browser sent a binary frame (its content does not travel)."""
        if self._on_binary is not None and self.is_open:
            self._on_binary(b"")

    def gone(self) -> None:
        """The holder reports the socket closed (or the holder itself is gone)."""
        self._gone.set()


@dataclass(slots=True)
class HeldFrontend:
    """The holder's half: a local socket and the node that owns its session."""

    link: str
    conn: Peer
    session_id: str
    owner: str
    send: Send

    def attach(self) -> None:
        """Route the socket's messages to the owner."""
        self.conn.set_sinks(self._text, self._binary)

    def _text(self, text: str) -> None:
        self.send(self.owner, {"op": "fe.text", "link": self.link, "text": text})

    def _binary(self, data: bytes) -> None:
        self.send(self.owner, {"op": "fe.binary", "link": self.link})

    def detach(self) -> None:
        """The socket closed: tell the owner (an :class:`~relay.lifecycle.remote.Attachment`)."""
        self.send(self.owner, {"op": "fe.gone", "link": self.link})
