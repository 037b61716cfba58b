"""relay.wire.reader: relay's frame reader in front of websockets, on a real server socket.

The reader must deliver exactly what websockets would (same messages, same order, pongs for
pings, the library's close codes for protocol errors) whatever the chunking, while charging
every frame to the budget and handling at most ``frames_per_turn`` frames per callback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relay_sim.rawsocket import RawSocket, frame
from structlog.testing import capture_logs
from websockets.asyncio.server import serve
from websockets.frames import Opcode

from relay.logs import Ev
from relay.wire.budget import BudgetLimits
from relay.wire.connection import WireMixin
from relay.wire.httpbody import BodyReadingConnection
from relay.wire.reader import FrameReader
from tests.conftest import wait_until
from tests.timing import WAIT
from tests.wire.frame_items import ITEM


class ReaderConnection(FrameReader, WireMixin, BodyReadingConnection):
    """The reader as relay's server connection has it, yielding after three frames."""

    frames_per_turn = 3


@dataclass
class Server:
    url: str
    #: Text messages the sink got, per connection, in order.
    texts: list[str] = field(default_factory=list)
    connections: list[ReaderConnection] = field(default_factory=list)


@asynccontextmanager
async def reader_server(budget: BudgetLimits | None = None, *, sink_after: float = 0.0,
                        max_size: int = 1 << 16,
                        max_queue: int = 16,
                        sink_when: Callable[[ReaderConnection], bool] | None = None,
                        ) -> AsyncIterator[Server]:
    """A websockets server whose connections read through FrameReader into one text list
    (once ``sink_after`` has passed and ``sink_when`` holds, if given)."""
    state = Server("")

    async def handler(conn: ReaderConnection) -> None:
        state.connections.append(conn)
        if budget is not None:
            conn.set_budget(budget, kind="test")
        if sink_after:
            await asyncio.sleep(sink_after)  # frames queue up before the sinks are set
        if sink_when is not None:
            await wait_until(lambda: sink_when(conn), what="the moment to set the sinks")
        conn.set_sinks(state.texts.append)
        await conn.wait_closed()

    async with serve(handler, "127.0.0.1", 0, create_connection=ReaderConnection,
                     compression=None, max_size=max_size, max_queue=max_queue,
                     ping_interval=None) as server:
        state.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        yield state


# -- what comes out is what websockets would deliver ---------------------------------------------


def encode(items: list[tuple[Any, ...]]) -> tuple[bytes, list[str], int]:
    """The frames of ``items``, the texts they make, and how many pings they hold."""
    wire, texts, pings = b"", [], 0
    for item in items:
        if item[0] == "text":
            wire += frame(Opcode.TEXT, item[1].encode())
            texts.append(item[1])
        elif item[0] == "big":
            text = "é" * (item[1] // 2)
            wire += frame(Opcode.TEXT, text.encode())
            texts.append(text)
        elif item[0] == "ping":
            wire += frame(Opcode.PING, item[1])
            pings += 1
        else:
            pieces, ping_between = item[1], item[2]
            for index, piece in enumerate(pieces):
                opcode = Opcode.TEXT if index == 0 else Opcode.CONT
                wire += frame(opcode, piece.encode(), fin=index == len(pieces) - 1)
                if ping_between and index == 0:
                    wire += frame(Opcode.PING, b"between")
                    pings += 1
            texts.append("".join(pieces))
    return wire, texts, pings


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(ITEM, max_size=12), cuts=st.lists(st.integers(0, 1 << 20), max_size=8),
       queue_first=st.booleans(), max_queue=st.sampled_from([1, 2, 5, 16]))
def test_messages_and_pongs_match_websockets_whatever_the_chunks(
        items: list[tuple[Any, ...]], cuts: list[int], queue_first: bool, max_queue: int) -> None:
    """Any mix of text, fragments, pings and long frames, cut anywhere, arrives intact and in order."""
    wire, texts, pings = encode(items)
    wire += frame(Opcode.TEXT, b"END")
    points = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})

    stage = "starting the server"

    async def scenario() -> None:
        nonlocal stage
        async with reader_server(sink_after=0.05 if queue_first else 0.0,
                                 max_size=1 << 17, max_queue=max_queue) as server:
            stage = "connecting"
            peer = await RawSocket.connect(server.url, "/")
            for start, end in zip(points, points[1:], strict=False):
                stage = f"sending bytes {start}-{end} of {len(wire)}"
                assert await peer.send(wire[start:end])
            stage = "waiting for the texts and pongs"
            await wait_until(lambda: server.texts[-1:] == ["END"], what="the END marker")
            await wait_until(lambda: len(peer.pongs) == pings, what=f"{pings} pongs")
            assert server.texts == [*texts, "END"]
            assert server.connections[0].is_open
            stage = "closing"
            await peer.close()
            stage = "stopping the server"

    async def bounded() -> None:
        # A stall anywhere fails this example with where it stalled, not the whole test later.
        try:
            async with asyncio.timeout(4 * WAIT):
                await scenario()
        except TimeoutError:
            raise AssertionError(f"stalled while {stage}") from None

    asyncio.run(bounded())


@pytest.mark.parametrize(("wire", "code"), [
    (frame(Opcode.TEXT, b"x", mask=False), 1002),  # a client must mask
    (frame(Opcode.CONT, b"x"), 1002),  # a continuation with no message
    (frame(Opcode.TEXT, b"a", fin=False) + frame(Opcode.TEXT, b"b"), 1002),
    (bytes([0x83, 0x80]) + b"\x00" * 4, 1002),  # opcode 3 is reserved
    (bytes([0xC1, 0x80]) + b"\x00" * 4, 1002),  # RSV1 without an extension
    (frame(Opcode.TEXT, b"\xff\xfe"), 1007),  # not UTF-8
    (frame(Opcode.TEXT, b"x" * 2000), 1009),  # over max_size, refused from its header
    (frame(Opcode.TEXT, b"a" * 700, fin=False) + frame(Opcode.CONT, b"b" * 700), 1009),
])
async def test_protocol_errors_keep_the_librarys_close_codes(wire: bytes, code: int) -> None:
    """Frames the reader does not take are the library's to refuse, with its close codes."""
    async with reader_server(max_size=1024) as server:
        peer = await RawSocket.connect(server.url, "/")
        await peer.send(wire)
        assert await peer.wait_closed(WAIT) == code
        await peer.close()


async def test_the_close_handshake_completes() -> None:
    """A client's close frame is answered and the connection ends cleanly (1000 both ways)."""
    async with reader_server() as server:
        peer = await RawSocket.connect(server.url, "/")
        await peer.send(frame(Opcode.TEXT, b"hi") + frame(Opcode.CLOSE, b"\x03\xe8"))
        assert await peer.wait_closed(WAIT) == 1000
        await peer.close()
        await wait_until(lambda: server.connections[0].closed, what="the server side to close")
        assert server.connections[0].close_code == 1000 and server.texts == ["hi"]


# -- turns on the loop --------------------------------------------------------------------------


async def test_a_burst_is_handled_over_many_turns_of_the_loop() -> None:
    """10,000 frames in one write are handled a few per turn: the loop runs other work between."""
    turns = 0
    stop = asyncio.Event()

    async def count_turns() -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            await asyncio.sleep(0)

    async with reader_server() as server:
        peer = await RawSocket.connect(server.url, "/")
        counter = asyncio.create_task(count_turns())
        await peer.send(frame(Opcode.TEXT, b"x") * 10_000)
        await wait_until(lambda: len(server.texts) == 10_000, what="every frame")
        stop.set()
        await counter
        # Three frames per turn: thousands of turns, where the library took one callback.
        assert turns > 10_000 / 3 / 2
        await peer.close()


async def test_pausing_stops_delivery_until_resumed() -> None:
    """pause_reading() holds buffered frames back (pairing a call); resume_reading() delivers them."""
    async with reader_server() as server:
        peer = await RawSocket.connect(server.url, "/")
        await wait_until(lambda: bool(server.connections), what="the connection")
        conn = server.connections[0]
        await peer.send(frame(Opcode.TEXT, b"first"))
        await wait_until(lambda: server.texts == ["first"], what="the first frame")
        conn.pause_reading()
        await peer.send(frame(Opcode.TEXT, b"second") * 2)
        await asyncio.sleep(0.05)  # nothing must arrive; this is the observation window
        assert server.texts == ["first"]
        conn.resume_reading()
        await wait_until(lambda: server.texts == ["first", "second", "second"],
                         what="the held frames")
        await peer.close()


async def test_a_full_queue_after_a_yield_does_not_leave_reading_paused() -> None:
    """A turn that follows a yield and fills the message queue on the last buffered frame: once
    the queue drains, reading resumes (it once stayed paused for the yield whose turn was over,
    and the connection heard nothing more)."""
    # Six frames in one write: three in the first turn (a yield), three in the next, and the
    # sixth puts the queue over its high-water mark of five with nothing left buffered.
    full = lambda conn: "queue" in conn._pauses  # noqa: E731
    async with reader_server(max_queue=5, sink_when=full) as server:
        peer = await RawSocket.connect(server.url, "/")
        await peer.send(frame(Opcode.TEXT, b"queued") * 6)
        await wait_until(lambda: server.texts == ["queued"] * 6, what="the queued frames")
        await peer.send(frame(Opcode.TEXT, b"END"))
        await wait_until(lambda: server.texts[-1:] == ["END"], what="the frame sent after the queue drained")
        await peer.close()


# -- the budget ---------------------------------------------------------------------------------

FLOODS = {
    "tiny text frames": (frame(Opcode.TEXT, b"{}") * 5_000, "messages"),
    "empty text frames": (frame(Opcode.TEXT, b"") * 5_000, "messages"),
    "pings": (frame(Opcode.PING, b"") * 5_000, "messages"),
    "empty continuations": (frame(Opcode.TEXT, b"", fin=False)
                            + frame(Opcode.CONT, b"", fin=False) * 200_000, "fragments"),
    "big frames": (frame(Opcode.TEXT, b"x" * 60_000) * 40, "bytes"),
}


@pytest.mark.parametrize("name", FLOODS)
async def test_a_flood_is_closed_with_4029_and_logged_once(name: str) -> None:
    """Over budget: close 4029 reaches the flooder, one log line, nothing more delivered."""
    wire, part = FLOODS[name]
    budget = BudgetLimits.for_endpoint(messages_per_s=100, message_burst=200,
                                       bytes_per_s=100_000, max_fragments=32, max_message=65_536)
    with capture_logs() as logs:
        async with reader_server(budget, max_size=65_536) as server:
            peer = await RawSocket.connect(server.url, "/")
            await peer.send(wire)
            assert await peer.wait_closed(WAIT) == 4029
            assert peer.close_reason == "inbound budget exceeded"
            delivered = len(server.texts)
            await peer.close()
    assert delivered <= 200
    lines = [entry for entry in logs if entry["event"] == Ev.INBOUND_BUDGET]
    assert len(lines) == 1 and lines[0]["part"] == part and lines[0]["kind"] == "test"
    conn = server.connections[0]
    assert not conn._inbuf and not (conn._fragments or [])  # nothing of the flood is held


async def test_within_budget_nothing_is_refused() -> None:
    """A burst up to the budget and then the rate passes untouched."""
    budget = BudgetLimits.for_endpoint(messages_per_s=100, message_burst=200,
                                       bytes_per_s=0, max_fragments=4, max_message=65_536)
    async with reader_server(budget) as server:
        peer = await RawSocket.connect(server.url, "/")
        await peer.send(frame(Opcode.TEXT, b"a") * 150 + frame(Opcode.TEXT, b"b", fin=False)
                        + frame(Opcode.CONT, b"c", fin=False) + frame(Opcode.CONT, b"d"))
        await wait_until(lambda: len(server.texts) == 151, what="every message")
        assert server.texts[-1] == "bcd" and server.connections[0].is_open
        await peer.close()
