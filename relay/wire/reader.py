"""relay's own reader for the frames peers send: an inbound budget, and turns on the loop.

websockets parses every byte a connection receives in one ``data_received``
callback, so one peer sending a flood of tiny frames kept the event loop to
itself: ``/health`` answered in seconds and every live call stalled. This
reader sits in front of the library's parser on server connections:

* **Every frame is charged** to the connection's
  :class:`~relay.wire.budget.InboundBudget` (messages and bytes a second,
  fragments per message). Over budget the peer is sent close code 4029, the
  socket is closed without waiting for its answer, and one line is logged.
* **At most** :attr:`FrameReader.frames_per_turn` frames are handled per
  callback. When more are buffered, reading pauses and the rest is handled on
  the next turns of the loop, so other connections get theirs in between.
* **The common frame goes straight through**: one masked, unfragmented text
  frame is unmasked here (websockets' C ``apply_mask``) and handed to the text
  sink. Every other frame's bytes are fed, whole and in order, to the
  websockets protocol, so pings, pongs, close frames, fragmentation and every
  protocol error keep the library's semantics.

The handover: :mod:`relay.wire.httpbody` parks the request parser after the
HTTP request, so the bytes that follow wait in the protocol's buffer; once the
handshake has succeeded this reader takes them and restarts the library's
frame parser at that frame boundary. It only ever feeds the library whole
frames, so the library is always at a boundary when the next frame comes.

Reading is paused for several reasons at once (relay pairing a call, the
message queue before sinks are set, a yield, a handshake not answered yet); the
transport resumes only when none is left.

The model leg reads the same way (:class:`ClientFrameReader`): there the common
frame is an *unmasked* text frame (RFC 6455 §5.1: a server never masks), the
handover happens at the end of the server's handshake response, and no budget
is set (the model is not a peer relay defends itself against).
"""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Any, ClassVar

from relay.logs import Ev, get_logger
from relay.messages.closecodes import CloseCode
from relay.wire.budget import BudgetLimits, InboundBudget, Overrun
from relay.wire.compat import CLOSED, CONNECTING, OPEN, Frame, Opcode, Protocol, apply_mask
from relay.wire.frames import parse_header

__all__ = ["ClientFrameReader", "FrameReader"]

_log = get_logger(component="wire")

#: Bytes a peer may send after its request, before the handshake is answered.
_HANDSHAKE_HOLD = 64 * 1024
#: Frames are never longer than this, whatever the protocol's own limit.
_MAX_FRAME = 1 << 24
#: Pauses that stop frames from being handled; "yield" only throttles the socket.
_BLOCKING = frozenset({"relay", "queue"})
#: The first byte of the common frame: FIN, no RSV bits, opcode text.
_FINAL_TEXT = 0x81
#: The end of an HTTP response head (RFC 9112 §2.1).
_END_OF_HEAD = b"\r\n\r\n"


class _Status(Enum):
    IDLE = "idle"  # no complete frame left
    MORE = "more"  # stopped at frames_per_turn
    BLOCKED = "blocked"  # a blocking pause, a refusal, or the connection closed


class FrameReader:
    """Mixin for a websockets server connection whose parser hands over after the request.

    Must come before :class:`~relay.wire.connection.WireMixin` and the
    websockets connection in the bases; the connection class must set
    ``hands_frames_over = True`` (:class:`~relay.wire.httpbody.BodyReadingConnection`).
    """

    # Provided by websockets' Connection and relay's WireMixin.
    protocol: Any
    transport: Any
    loop: asyncio.AbstractEventLoop
    closing: bool
    close_timeout: float | None
    _text_sink: Any
    _fragments: list[bytes] | None

    hands_frames_over: ClassVar[bool] = True
    #: Frames handled per callback before yielding to the loop.
    frames_per_turn: ClassVar[int] = 64
    #: Whether the peer masks its frames: a client does, a server never (RFC 6455 §5.1).
    peer_masks: ClassVar[bool] = True

    _budget: InboundBudget | None = None
    _budget_context: dict[str, Any]
    _taken_over: bool = False
    #: The protocol failed or received a close frame: it discards, bytes go straight to it.
    _passthrough: bool = False
    _pauses: set[str]
    #: A blocking pause is among them (kept in step with _pauses: read per frame).
    _blocked: bool = False
    _inbuf: bytearray
    _pump: asyncio.Handle | None = None
    #: Whether a fragmented message is being received, and its payload so far.
    _in_message: bool = False
    _message_bytes: int = 0

    # -- set-up ------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # extends websockets
        super().connection_made(transport)  # type: ignore[misc]
        self._pauses = set()
        self._inbuf = bytearray()
        self._budget_context = {}
        # The message queue (frames before the sinks are set) pauses reading
        # when it is full: through this reader, so a yield cannot undo it.
        queue = self.recv_messages  # type: ignore[attr-defined]
        queue.pause = lambda: self._hold("queue")
        queue.resume = lambda: self._release("queue")

    def set_budget(self, limits: BudgetLimits, **context: Any) -> None:
        """Charge every later frame to a budget with ``limits``; ``context`` goes in its log line."""
        self._budget = InboundBudget(limits, self.loop.time())
        self._budget_context = context

    def start_keepalive(self) -> None:  # extends websockets: called once the handshake succeeded
        if self.protocol.state is OPEN:
            self._take_over()
            if self._inbuf:
                self._schedule()
        super().start_keepalive()  # type: ignore[misc]

    def _take_over(self) -> None:
        if self._taken_over:
            return
        self._taken_over = True
        protocol = self.protocol
        # The parked request parser consumed nothing after the request: what
        # is buffered starts at a frame boundary, where the library's frame
        # parser restarts too.
        self._inbuf = bytearray(protocol.reader.buffer)
        protocol.reader.buffer.clear()
        protocol.parser = Protocol.parse(protocol)
        next(protocol.parser)
        self._release("handshake")

    # -- pausing -----------------------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop handling frames and reading until :meth:`resume_reading` (pairing a call)."""
        self._hold("relay")

    def resume_reading(self) -> None:
        """Handle buffered frames and read again after :meth:`pause_reading`."""
        self._release("relay")

    def _hold(self, reason: str) -> None:
        if not self._pauses:
            self.transport.pause_reading()
        self._pauses.add(reason)
        self._blocked = not self._pauses.isdisjoint(_BLOCKING)

    def _release(self, reason: str) -> None:
        if reason not in self._pauses:
            return
        self._pauses.discard(reason)
        self._blocked = not self._pauses.isdisjoint(_BLOCKING)
        if reason in _BLOCKING and not self._blocked:
            if self._inbuf:
                self._schedule()
            elif self._pump is None:
                # A turn that blocked on the last buffered frame left its yield
                # behind; with nothing buffered no turn will come to lift it.
                self._pauses.discard("yield")
        if not self._pauses and not self.transport.is_closing():
            self.transport.resume_reading()

    def _schedule(self) -> None:
        if self._pump is None:
            self._pump = self.loop.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._pump = None
        self._settle(self._run(None, self.frames_per_turn))

    def _settle(self, status: _Status) -> None:
        if self._passthrough:
            # The protocol discards from here on: keep reading until the peer
            # closes, so its kernel never resets the connection on our close frame.
            if self._pauses:
                self._pauses.clear()
                self._blocked = False
                if not self.transport.is_closing():
                    self.transport.resume_reading()
            return
        if status is _Status.MORE:
            self._hold("yield")
            self._schedule()
        elif status is _Status.IDLE:
            self._release("yield")

    # -- asyncio.Protocol ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:  # overrides websockets
        if not self._taken_over:
            if self.protocol.state is not OPEN:
                super().data_received(data)  # type: ignore[misc]
                if (self.protocol.state is CONNECTING
                        and len(self.protocol.reader.buffer) > _HANDSHAKE_HOLD):
                    self._hold("handshake")
                return
            self._take_over()
        if self._passthrough:
            super().data_received(data)  # type: ignore[misc]
            return
        if self._pump is not None or self._blocked:
            self._inbuf += data  # a turn is due, or handling is blocked: keep the order
            return
        self._settle(self._run(data, self.frames_per_turn))

    def eof_received(self) -> bool | None:  # overrides websockets
        if self._taken_over and not self._passthrough and self._inbuf:
            # Frames that came before the end (a close frame, say) come first;
            # a partial frame left over is the protocol's to call truncated.
            # (Held frames, when relay paused reading, are moot: the peer is gone.)
            status = self._run(None, len(self._inbuf))
            if self._inbuf and not self._passthrough and status is not _Status.BLOCKED:
                rest = bytes(self._inbuf)
                self._inbuf.clear()
                super().data_received(rest)  # type: ignore[misc]
        return super().eof_received()  # type: ignore[misc, no-any-return]

    # -- frames ----------------------------------------------------------------------------

    def _run(self, data: bytes | None, limit: int) -> _Status:
        if data is None:
            buf: bytes | bytearray = self._inbuf
        elif self._inbuf:
            self._inbuf += data
            buf = self._inbuf
        else:
            buf = data  # the common case: no copy
        pos, status = self._consume(buf, limit)
        if buf is self._inbuf:
            del self._inbuf[:pos]
        elif pos < len(buf):
            self._inbuf = bytearray(buf[pos:])
        return status

    def _consume(self, buf: bytes | bytearray, limit: int) -> tuple[int, _Status]:
        """Handle up to ``limit`` complete frames of ``buf``; how far it got, and why it stopped."""
        protocol = self.protocol
        budget = self._budget
        now = self.loop.time()
        mask_bit = 0x80 if self.peer_masks else 0x00
        max_frame = self._frame_limit()
        pos = handled = 0
        end = len(buf)
        while True:
            if self._blocked or self._passthrough or protocol.state is CLOSED:
                return pos, _Status.BLOCKED
            if handled >= limit:
                return pos, _Status.MORE
            if end - pos < 2:
                return pos, _Status.IDLE
            # The header read inline for the usual short frame; parse_header for the rest.
            first = buf[pos]
            second = buf[pos + 1]
            length = second & 0x7F
            if length < 126:
                size = 6 if second & 0x80 else 2
            else:
                header = parse_header(buf, pos)
                if header is None:
                    return pos, _Status.IDLE
                length, size = header.length, header.size
            if length > max_frame:
                # Too big to wait for: the protocol refuses it from its header
                # (1009, or a protocol error for a control frame).
                self._feed(bytes(buf[pos:]))
                return end, _Status.BLOCKED
            total = size + length
            if end - pos < total:
                return pos, _Status.IDLE
            handled += 1
            if budget is not None:
                overrun = budget.charge(first & 0x0F, first & 0x80 != 0, total, now)
                if overrun is not None:
                    self._refuse(overrun)
                    return end, _Status.BLOCKED
            if (first == _FINAL_TEXT and second & 0x80 == mask_bit and not self._in_message
                    and protocol.state is OPEN):
                begin = pos + size
                pos += total
                data = buf[begin:pos]
                if mask_bit:
                    data = apply_mask(data, buf[begin - 4:begin])
                if self._text_sink is not None:
                    self._deliver_text(data)  # type: ignore[attr-defined]
                else:
                    self.process_event(Frame(Opcode.TEXT, bytes(data), True))  # type: ignore[attr-defined]
                continue
            opcode = first & 0x0F
            if opcode < 0x8:
                self._track_message(opcode, first & 0x80 != 0, length)
                max_frame = self._frame_limit()
            self._feed(bytes(buf[pos:pos + total]))
            pos += total
            if self._passthrough:
                if pos < end:
                    self._feed(bytes(buf[pos:]))
                return end, _Status.BLOCKED

    def _frame_limit(self) -> int:
        # The limit the protocol applies to the next frame (Protocol.parse).
        protocol = self.protocol
        limit = _MAX_FRAME
        if protocol.max_message_size is not None:
            limit = protocol.max_message_size - (self._message_bytes if self._in_message else 0)
        if protocol.max_fragment_size is not None:
            limit = min(limit, protocol.max_fragment_size)
        return limit

    def _track_message(self, opcode: int, fin: bool, length: int) -> None:
        # Mirrors the protocol's fragmentation state; an out-of-order frame is
        # the protocol's error, after which everything passes through.
        if opcode == 0:
            self._message_bytes += length
        else:
            self._message_bytes = length
        self._in_message = not fin

    def _feed(self, chunk: bytes) -> None:
        """Give whole frames to the websockets protocol, as its own data_received would."""
        super().data_received(chunk)  # type: ignore[misc]
        protocol = self.protocol
        if (protocol.parser_exc is not None or protocol.close_rcvd is not None
                or protocol.state is CLOSED):
            self._passthrough = True

    def _refuse(self, overrun: Overrun) -> None:
        """Over budget: fail the connection with 4029 (RFC 6455 §7.1.7) and log once.

        websockets sends the close frame, half-closes and from then on discards
        whatever arrives without parsing it; reading goes on only so that the
        peer's kernel gets no reset before it has read the close frame. A peer
        that never closes its side is dropped after the close timeout.
        """
        _log.warning(Ev.INBOUND_BUDGET, part=overrun.value, **self._budget_context)
        self._inbuf.clear()
        self._fragments = None  # the message being assembled (WireMixin) will never end
        self._passthrough = True
        self.closing = True
        try:
            self.protocol.fail(CloseCode.INBOUND_BUDGET, "inbound budget exceeded")
            self.send_data()  # type: ignore[attr-defined]
        except Exception:
            # The transport already failed; it is aborted below either way.
            self.transport.abort()
        self.loop.call_later(self.close_timeout or 10.0, self.transport.abort)


class ClientFrameReader(FrameReader):
    """The same reader for a websockets client connection: the model leg.

    websockets reads the server's handshake response; it is fed the bytes up
    to the end of the response head and no further, so once the handshake has
    succeeded its frame parser waits at a frame boundary with nothing
    buffered, and this reader takes every byte after it. A refused handshake
    leaves everything to websockets.
    """

    peer_masks: ClassVar[bool] = False
    hands_frames_over: ClassVar[bool] = False
    #: The last bytes fed before the end of the response head was found.
    _head_tail: bytes = b""

    def start_keepalive(self) -> None:  # the handover happened in data_received
        super(FrameReader, self).start_keepalive()  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:  # overrides websockets
        if self._taken_over or self._passthrough:
            super().data_received(data)
            return
        probe = self._head_tail + data
        found = probe.find(_END_OF_HEAD)
        if found < 0:
            self._head_tail = probe[-3:]
            self._feed_protocol(data)
            return
        cut = found + len(_END_OF_HEAD) - len(self._head_tail)
        self._feed_protocol(data[:cut])
        rest = data[cut:]
        if self.protocol.state is OPEN:
            self._taken_over = True
        else:
            self._passthrough = True  # refused: websockets discards what follows
        if rest:
            super().data_received(rest)

    def _feed_protocol(self, data: bytes) -> None:
        # websockets' own data_received, FrameReader's bypassed.
        super(FrameReader, self).data_received(data)  # type: ignore[misc]
