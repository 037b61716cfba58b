"""The thin I/O layer between websockets' connections and relay's sessions.

Two things make relay's per-frame path lean, and both live here:

* **Synchronous delivery.** websockets normally queues each incoming message
  and wakes the task awaiting ``recv()``. A voice call brings 50 frames a second
  each way, so relay instead hands every complete text message straight to a
  *sink* callback from ``process_event``: no queue, no task switch. A handler
  sets its sinks and then only awaits the connection's end.
* **Non-blocking sends.** :meth:`WireMixin.send_now` writes a text frame
  immediately, as ``websockets.broadcast`` does for one connection, and never
  awaits. A peer that stops reading would let its write buffer grow without
  limit, so a send that finds the buffer above ``max_send_buffer`` closes that
  peer with 1013 instead: a slow browser cannot stall a phone call.

Sinks run inside the event loop's data callback: they must not block and must
not raise (an exception is logged and the connection closed with 1011).

A peer that stops answering pings is dropped as soon as its pong is
``ping_timeout`` late (:meth:`WireMixin.keepalive`): a dead peer is gone within
``ping_interval + ping_timeout`` of its last sign of life, not a close timeout
later. Server connections also read their frames through
:class:`~relay.wire.reader.FrameReader` (the inbound budget).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from relay.logs import Ev, get_logger
from relay.messages.closecodes import CloseCode
from relay.wire.compat import CLIENT, ClientConnection, Frame, Opcode, ServerConnection, State
from relay.wire.frames import MaskKeys, text_frame
from relay.wire.reader import ClientFrameReader

TextSink = Callable[[str], None]
BinarySink = Callable[[bytes], None]

_log = get_logger(component="wire")


class WireMixin:
    """Adds sinks and non-blocking sends to a websockets asyncio connection.

    Before :meth:`set_sinks` is called, messages take websockets' normal path
    (``recv()`` works); afterwards every data message goes to the sinks.
    """

    # Attributes provided by websockets' Connection.
    protocol: Any
    transport: Any
    loop: asyncio.AbstractEventLoop

    _text_sink: TextSink | None = None
    _binary_sink: BinarySink | None = None
    _fragments: list[bytes] | None = None
    _fragment_opcode: Opcode | None = None
    max_send_buffer: int = 1 << 20
    #: Set once when this side decided to close; later sends are dropped.
    closing: bool = False
    #: The closing handshake relay started; the connection's handler awaits it.
    close_task: asyncio.Task[None] | None = None
    #: Keys for the frames a client connection masks (None on a server's).
    _masks: MaskKeys | None = None

    def connection_made(self, transport: Any) -> None:  # extends websockets
        super().connection_made(transport)  # type: ignore[misc]
        if self.protocol.side is CLIENT:
            self._masks = MaskKeys()

    def set_sinks(self, on_text: TextSink, on_binary: BinarySink | None = None) -> None:
        """Deliver every later data message to ``on_text`` / ``on_binary``.

        A binary message with no ``on_binary`` closes the connection with 1003.
        Messages that arrived before this call (a model's ``session.created``
        right after the handshake) are delivered first, in order.
        """
        self._text_sink = on_text
        self._binary_sink = on_binary
        assembler = getattr(self, "recv_messages", None)
        queue = getattr(getattr(assembler, "frames", None), "queue", None)
        if queue:
            pending = list(queue)
            queue.clear()
            assembler.maybe_resume()  # type: ignore[union-attr]
            for frame in pending:
                self.process_event(frame)

    def process_event(self, event: Any) -> None:  # overrides websockets
        if self._text_sink is None or type(event) is not Frame:
            super().process_event(event)  # type: ignore[misc]
            return
        opcode = event.opcode
        if opcode is Opcode.TEXT and event.fin:
            self._deliver_text(event.data)
        elif opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if event.fin:
                self._deliver_binary(bytes(event.data))
            else:
                # Fragmented messages are legal but rare; websockets already
                # enforces max_size across fragments.
                self._fragments = [bytes(event.data)]
                self._fragment_opcode = opcode
        elif opcode is Opcode.CONT and self._fragments is not None:
            self._fragments.append(bytes(event.data))
            if event.fin:
                data = b"".join(self._fragments)
                first = self._fragment_opcode
                self._fragments = self._fragment_opcode = None
                if first is Opcode.TEXT:
                    self._deliver_text(data)
                else:
                    self._deliver_binary(data)
        else:
            super().process_event(event)  # type: ignore[misc]

    def _deliver_text(self, data: Any) -> None:
        try:
            text = str(data, "utf-8")
        except UnicodeDecodeError:
            self.close_soon(CloseCode.INVALID_DATA, "text frame is not valid UTF-8")
            return
        try:
            self._text_sink(text)  # type: ignore[misc]
        except Exception:
            _log.error(Ev.HANDLER_CRASHED, where="text sink", exc_info=True)
            self.close_soon(CloseCode.INTERNAL_ERROR, "internal error")

    def _deliver_binary(self, data: bytes) -> None:
        if self._binary_sink is None:
            self.close_soon(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted")
            return
        try:
            self._binary_sink(data)
        except Exception:
            _log.error(Ev.HANDLER_CRASHED, where="binary sink", exc_info=True)
            self.close_soon(CloseCode.INTERNAL_ERROR, "internal error")

    def pause_reading(self) -> None:
        """Stop reading from the socket until :meth:`resume_reading` (pairing a call)."""
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again after :meth:`pause_reading`."""
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def redeliver(self, texts: list[str]) -> None:
        """Hand ``texts`` (kept while the sinks changed) to the current text sink, in order."""
        for text in texts:
            if self.closing:
                return
            self._deliver_text(text.encode())

    @property
    def is_open(self) -> bool:
        """Whether the connection is open and not being closed by relay."""
        return self.protocol.state is State.OPEN and not self.closing

    @property
    def closed(self) -> bool:
        """Whether the connection is fully closed."""
        return self.protocol.state is State.CLOSED

    def abort(self) -> None:
        """Drop the TCP connection at once (no closing handshake)."""
        self.transport.abort()

    async def keepalive(self) -> None:  # overrides websockets
        """Ping every ``ping_interval``; drop the peer once a pong is ``ping_timeout`` late.

        websockets fails the connection there and then waits ``close_timeout``
        for a closing handshake; a peer that stopped answering pings will not
        send one, so relay aborts the transport at once.
        """
        interval: float = self.ping_interval  # type: ignore[attr-defined]
        timeout: float | None = self.ping_timeout  # type: ignore[attr-defined]
        latency = 0.0
        try:
            while True:
                await asyncio.sleep(interval - latency)
                try:
                    pong = await self.ping()  # type: ignore[attr-defined]
                except ConnectionClosed:
                    return
                if timeout is None:
                    continue
                try:
                    async with asyncio.timeout(timeout):
                        latency = await pong
                except TimeoutError:
                    _log.warning(Ev.PEER_UNRESPONSIVE, pingTimeoutS=timeout)
                    self.closing = True
                    self.transport.abort()
                    return
        except ConnectionClosed:
            return
        except Exception:
            _log.error(Ev.HANDLER_CRASHED, where="keepalive", exc_info=True)


    def send_now(self, data: bytes | str) -> bool:
        """Send one text frame without waiting; return whether it was written.

        Never raises. Returns False when the connection is closing or closed.
        When the peer's unsent data exceeds ``max_send_buffer`` the connection
        is closed with 1013 (the peer is not reading) and False is returned.

        The frame is written here, not through the protocol's ``send_text``:
        with no extension negotiated (relay never negotiates one) a data frame
        changes nothing in the protocol's state, and the library's framing,
        its write queue and a ``getrandom`` call per client frame for the mask
        key are a large share of a frame's cost. websockets flushes its own
        frames (pings, pongs, close) as soon as it makes them, so the two
        never interleave out of order.
        """
        protocol = self.protocol
        if self.closing or protocol.state is not State.OPEN:
            return False
        if type(data) is str:
            data = data.encode()
        try:
            if protocol.extensions:  # pragma: no cover - relay negotiates none
                protocol.send_text(data)
                self.send_data()  # type: ignore[attr-defined]
            else:
                masks = self._masks
                self.transport.write(text_frame(data, None if masks is None else masks.next()))
        except Exception:
            # The transport failed; websockets will notice and close.
            return False
        if self.transport.get_write_buffer_size() > self.max_send_buffer:
            _log.warning(Ev.SLOW_PEER, buffered=self.transport.get_write_buffer_size())
            self.close_soon(CloseCode.TRY_AGAIN_LATER, "peer is not reading fast enough")
            return False
        return True

    def close_soon(self, code: int, reason: str = "") -> asyncio.Task[None] | None:
        """Start the closing handshake in a task; idempotent.

        Returns the task the first time (so an owner can await it), else None.
        """
        if self.closing:
            return None
        self.closing = True
        self.close_task = self.loop.create_task(self._close(code, reason))
        return self.close_task

    def close_now(self, code: int, reason: str = "") -> None:
        """Send a close frame and drop the connection without waiting for an answer.

        For a hurried shutdown: the peer still learns why (the frame is flushed
        before the socket closes), relay does not wait for its closing handshake.
        """
        self.closing = True
        try:
            if self.protocol.state is State.OPEN:
                self.protocol.send_close(code, reason[:120])
                self.send_data()  # type: ignore[attr-defined]
        except Exception:
            # The transport failed already; closing it below is all that is left.
            pass
        self.transport.close()

    async def _close(self, code: int, reason: str) -> None:
        # websockets' close() first drains the send buffer, which never ends
        # if the peer stopped reading: bound the whole handshake, then abort.
        limit = getattr(self, "close_timeout", None) or 10.0
        try:
            async with asyncio.timeout(limit):
                await self.close(code, reason[:120])  # type: ignore[attr-defined]
        except Exception:
            # Closing must never fail a teardown; the transport is aborted.
            self.transport.abort()


class WireServerConnection(WireMixin, ServerConnection):
    """Server-side connection with relay's wire behaviour."""


class WireClientConnection(ClientFrameReader, WireMixin, ClientConnection):
    """Client-side (upstream) connection with relay's wire behaviour and frame reader."""
