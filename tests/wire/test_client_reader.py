"""relay.wire.reader.ClientFrameReader: the model leg's reader, against a raw server socket.

The model's frames are unmasked (a server never masks). Whatever the chunking, and whether the
first frames share a segment with the handshake response or not, a WireClientConnection must
deliver exactly what websockets delivers: the same messages in the same order, a pong for every
ping, the library's close codes for protocol errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relay_sim.frames import OP_PONG, FrameReader, accept_key, split_http
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode

from relay.wire.connection import WireClientConnection
from tests.conftest import wait_until
from tests.timing import WAIT
from tests.wire.frame_items import ITEM


def server_frames(items: list[tuple[Any, ...]]) -> tuple[bytes, list[str], int]:
    """``items`` as a server writes them (unmasked); the texts they make and the pings."""
    wire, texts, pings = b"", [], 0
    for item in items:
        if item[0] == "text":
            wire += Frame(Opcode.TEXT, item[1].encode()).serialize(mask=False)
            texts.append(item[1])
        elif item[0] == "big":
            text = "é" * (item[1] // 2)
            wire += Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
            texts.append(text)
        elif item[0] == "ping":
            wire += Frame(Opcode.PING, item[1]).serialize(mask=False)
            pings += 1
        else:
            pieces, ping_between = item[1], item[2]
            for index, piece in enumerate(pieces):
                opcode = Opcode.TEXT if index == 0 else Opcode.CONT
                wire += Frame(opcode, piece.encode(), index == len(pieces) - 1).serialize(mask=False)
                if ping_between and index == 0:
                    wire += Frame(Opcode.PING, b"between").serialize(mask=False)
                    pings += 1
            texts.append("".join(pieces))
    return wire, texts, pings


@dataclass
class RawServer:
    """Answers one handshake, then writes ``chunks`` as given; counts the client's pongs."""

    chunks: list[bytes]
    #: Send the first chunk in the same write as the 101 response.
    with_response: bool = False
    url: str = ""
    pongs: int = 0
    close_codes: list[int] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        parsed = split_http(head)
        assert parsed is not None
        key = parsed[1]["sec-websocket-key"].encode()
        response = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n")
        chunks = list(self.chunks)
        if self.with_response and chunks:
            response += chunks.pop(0)
        writer.write(response)

        def on_frame(opcode: int, payload: bytes) -> None:
            if opcode == OP_PONG:
                self.pongs += 1
            elif opcode == 0x8:
                self.close_codes.append(int.from_bytes(payload[:2], "big"))
                # The closing handshake: answer, then the server closes TCP first.
                writer.write(Frame(Opcode.CLOSE, payload[:2]).serialize(mask=False))
                writer.close()

        frames = FrameReader(on_frame)

        async def read() -> None:
            while data := await reader.read(65536):
                frames.feed(data)

        task = asyncio.create_task(read())
        for chunk in chunks:
            await writer.drain()
            await asyncio.sleep(0)
            writer.write(chunk)
        await writer.drain()
        await task
        writer.close()
        await writer.wait_closed()
        self.done.set()


@asynccontextmanager
async def raw_server(server: RawServer) -> AsyncIterator[RawServer]:
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    server.url = f"ws://127.0.0.1:{listener.sockets[0].getsockname()[1]}/"
    async with listener:
        yield server
        await asyncio.wait_for(server.done.wait(), WAIT)


async def receive_all(conn: ClientConnection, texts: list[str], sink: bool) -> None:
    if sink:
        assert isinstance(conn, WireClientConnection)
        conn.set_sinks(texts.append)
        await wait_until(lambda: texts[-1:] == ["END"], what="the END marker")
    else:
        while (text := await conn.recv()) != "END":
            assert isinstance(text, str)
            texts.append(text)
        texts.append(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(ITEM, max_size=12), cuts=st.lists(st.integers(0, 1 << 20), max_size=8),
       with_response=st.booleans(), sink_late=st.booleans())
def test_messages_and_pongs_match_websockets_whatever_the_chunks(
        items: list[tuple[Any, ...]], cuts: list[int], with_response: bool,
        sink_late: bool) -> None:
    """Any mix of text, fragments, pings and long frames, cut anywhere, arrives as websockets has it."""
    wire, texts, pings = server_frames(items)
    wire += Frame(Opcode.TEXT, b"END").serialize(mask=False)
    points = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})
    chunks = [wire[a:b] for a, b in zip(points, points[1:], strict=False)]

    async def scenario() -> None:
        got: dict[str, list[str]] = {}
        pongs: dict[str, int] = {}
        for name, factory in (("websockets", ClientConnection), ("relay", WireClientConnection)):
            async with raw_server(RawServer(chunks, with_response)) as server:
                conn = await connect(server.url, create_connection=factory, compression=None,
                                     max_size=1 << 17, ping_interval=None)
                if sink_late:
                    await asyncio.sleep(0.02)  # frames queue up before the sinks are set
                got[name] = []
                await receive_all(conn, got[name], sink=factory is WireClientConnection)
                await wait_until(lambda: server.pongs == pings, what=f"{pings} pongs")  # noqa: B023
                pongs[name] = server.pongs
                assert conn.protocol.state.name == "OPEN"
                await conn.close()
        assert got["relay"] == got["websockets"] == [*texts, "END"]
        assert pongs["relay"] == pongs["websockets"] == pings

    asyncio.run(scenario())


@pytest.mark.parametrize(("wire", "code"), [
    (Frame(Opcode.TEXT, b"x").serialize(mask=True), 1002),  # a server must not mask
    (Frame(Opcode.CONT, b"x").serialize(mask=False), 1002),  # a continuation with no message
    (bytes([0x83, 0x00]), 1002),  # opcode 3 is reserved
    (bytes([0xC1, 0x01]) + b"x", 1002),  # RSV1 without an extension
    (Frame(Opcode.TEXT, b"\xff\xfe").serialize(mask=False), 1007),  # not UTF-8
    (Frame(Opcode.TEXT, b"x" * 2000).serialize(mask=False), 1009),  # over max_size
])
async def test_protocol_errors_keep_the_librarys_close_codes(wire: bytes, code: int) -> None:
    """Frames the reader does not take are the library's to refuse, with its close codes."""
    async with raw_server(RawServer([wire])) as server:
        conn = await connect(server.url, create_connection=WireClientConnection,
                             compression=None, max_size=1024, ping_interval=None)
        conn.set_sinks(lambda text: None)
        await asyncio.wait_for(conn.wait_closed(), WAIT)
        assert server.close_codes == [code]


async def test_a_refused_handshake_is_websockets_error() -> None:
    """A server that answers anything but 101 fails the connection as websockets does."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 4\r\n\r\nslow")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(refuse, "127.0.0.1", 0)
    async with listener:
        url = f"ws://127.0.0.1:{listener.sockets[0].getsockname()[1]}/"
        with pytest.raises(Exception) as refused:
            await connect(url, create_connection=WireClientConnection, open_timeout=WAIT)
        assert "429" in str(refused.value)
