"""Tests for relay.wire.httpbody: request bodies on the websockets server."""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import InvalidMessage, RequestLineTooLong
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from relay.wire.httpbody import (
    BodyReadingConnection,
    BodyRequest,
    RequestBodyError,
    body_reading_connection,
    form_fields,
    install_body_parser,
    query_params,
    request_body,
)
from tests.timing import WAIT

CAP = 256

HANDSHAKE = (
    b"GET /ws?sessionId=abc HTTP/1.1\r\n"
    b"Host: relay.test\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)

TWILIO_FORM = b"CallSid=CA123&AccountSid=AC456&From=%2B15551234567&To=%2B15557654321&Digits="


def post(path: str, body: bytes, *headers: str) -> bytes:
    """A raw POST request with a Content-Length."""
    head = [f"POST {path} HTTP/1.1", "Host: relay.test", f"Content-Length: {len(body)}"]
    head += headers
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# Sans-I/O: the parser alone, bytes in, events and bytes out.


def body_protocol(max_body: int = CAP) -> ServerProtocol:
    """A server protocol with the body parser installed."""
    protocol = ServerProtocol()
    install_body_parser(protocol, max_body)
    return protocol


def status_of(protocol: ServerProtocol) -> tuple[int, bool]:
    """The status code the protocol answered with, and whether it sent EOF."""
    writes = protocol.data_to_send()
    assert writes, "no answer"
    return int(writes[0].split(b" ", 2)[1]), writes[-1] == b""


def test_body_arriving_byte_by_byte_yields_one_request_at_the_last_byte() -> None:
    """A POST fed one byte at a time yields nothing until its body is complete."""
    protocol = body_protocol()
    data = post("/twiml?x=1", TWILIO_FORM, "Content-Type: application/x-www-form-urlencoded")
    for i in range(len(data) - 1):
        protocol.receive_data(data[i : i + 1])
        assert protocol.events_received() == []
    protocol.receive_data(data[-1:])
    [request] = protocol.events_received()
    assert isinstance(request, BodyRequest)
    assert (request.method, request.path, request.body) == ("POST", "/twiml?x=1", TWILIO_FORM)
    assert protocol.data_to_send() == []


def test_handshake_is_parsed_exactly_like_websockets_own_parser() -> None:
    """A WebSocket handshake yields the same request and 101 as stock websockets."""
    stock, ours = ServerProtocol(), body_protocol()
    for protocol in (stock, ours):
        protocol.receive_data(HANDSHAKE)
    [expected] = stock.events_received()
    [request] = ours.events_received()
    assert isinstance(request, BodyRequest) and request.body == b""
    assert (request.path, request.method, request.protocol) == (
        expected.path,
        expected.method,
        expected.protocol,
    )
    assert list(request.headers.raw_items()) == list(expected.headers.raw_items())
    expected_response, response = stock.accept(expected), ours.accept(request)
    del expected_response.headers["Date"], response.headers["Date"]
    assert response == expected_response


def test_frames_after_the_handshake_go_to_the_library_frame_parser() -> None:
    """After a 101 the installed parser hands over to websockets' frame parser."""
    protocol = body_protocol()
    protocol.receive_data(HANDSHAKE)
    [request] = protocol.events_received()
    protocol.send_response(protocol.accept(request))
    assert protocol.state is OPEN
    protocol.receive_data(Frame(Opcode.TEXT, b"hello").serialize(mask=True))
    [frame] = protocol.events_received()
    assert (frame.opcode, frame.data) == (Opcode.TEXT, b"hello")


def test_body_over_the_cap_gets_413_and_the_rest_is_discarded() -> None:
    """A Content-Length above max_body is answered 413 before the body is read."""
    protocol = body_protocol(max_body=10)
    protocol.receive_data(post("/beacon", b"x" * 11)[:-11])
    assert status_of(protocol) == (413, True)
    assert protocol.events_received() == []
    exc = protocol.handshake_exc
    assert isinstance(exc, RequestBodyError) and exc.status == 413
    protocol.receive_data(b"x" * 11)  # the body the client still sends is swallowed
    assert protocol.data_to_send() == []


def test_body_at_the_cap_is_accepted() -> None:
    """A body of exactly max_body bytes is read."""
    protocol = body_protocol(max_body=10)
    protocol.receive_data(post("/beacon", b"x" * 10))
    [request] = protocol.events_received()
    assert request_body(request) == b"x" * 10


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 411),
        (b"GET /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 400),
        (b"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST /t HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST /t HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        (b"POST /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"POST /t HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
    ],
    ids=["chunked", "chunked-and-length", "get-body", "get-chunked", "bad-length",
         "conflicting-lengths", "long-line", "long-header"],
)
def test_refused_requests_get_an_answer_and_eof(request_bytes: bytes, status: int) -> None:
    """Bodies the server won't read are answered with a status, then EOF."""
    protocol = body_protocol()
    protocol.receive_data(request_bytes)
    assert status_of(protocol) == (status, True)
    assert protocol.events_received() == []


def test_request_line_too_long_is_reported_like_websockets() -> None:
    """A too-long request line sets the same handshake_exc as websockets."""
    protocol = body_protocol()
    protocol.receive_data(b"GET /" + b"a" * 9000)
    assert isinstance(protocol.handshake_exc, RequestLineTooLong)


def test_not_http_is_dropped_without_an_answer() -> None:
    """Garbage gets EOF and no response, as with stock websockets."""
    protocol = body_protocol()
    protocol.receive_data(b"HELLO\r\n\r\n")
    assert protocol.data_to_send() == [b""]
    assert isinstance(protocol.handshake_exc, InvalidMessage)


def test_repeated_identical_content_lengths_are_accepted() -> None:
    """Identical repeated Content-Length values are one length (RFC 9110 8.6)."""
    protocol = body_protocol()
    protocol.receive_data(b"POST /t HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")
    [request] = protocol.events_received()
    assert request_body(request) == b"abc"


def test_expect_100_continue_is_answered_before_the_body() -> None:
    """Expect: 100-continue gets an interim 100 so curl sends its body at once."""
    protocol = body_protocol()
    data = post("/t", b"abc", "Expect: 100-continue")
    protocol.receive_data(data[:-3])
    assert protocol.data_to_send() == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    protocol.receive_data(data[-3:])
    [request] = protocol.events_received()
    assert request_body(request) == b"abc"


def test_max_body_must_be_positive() -> None:
    """A cap below one byte is a ValueError."""
    with pytest.raises(ValueError, match="max_body"):
        body_reading_connection(0)
    with pytest.raises(ValueError, match="max_body"):
        install_body_parser(ServerProtocol(), 0)


# Helpers on requests.


def make_request(path: str, body: bytes = b"", content_type: str | None = None) -> Request:
    """A BodyRequest built by parsing, as the server would build it."""
    protocol = body_protocol()
    headers = [f"Content-Type: {content_type}"] if content_type else []
    protocol.receive_data(post(path, body, *headers))
    [request] = protocol.events_received()
    assert isinstance(request, Request)
    return request


def test_form_fields_decode_a_twilio_webhook_body() -> None:
    """form_fields percent-decodes and keeps blank values."""
    request = make_request(
        "/twiml", TWILIO_FORM, "application/x-www-form-urlencoded; charset=UTF-8"
    )
    assert form_fields(request) == {
        "CallSid": "CA123",
        "AccountSid": "AC456",
        "From": "+15551234567",
        "To": "+15557654321",
        "Digits": "",
    }


def test_form_fields_ignore_other_content_types() -> None:
    """A JSON or text body has no form fields."""
    assert form_fields(make_request("/beacon", b"a=1", "text/plain")) == {}
    assert form_fields(make_request("/beacon", b"a=1")) == {}


def test_plain_websockets_request_has_an_empty_body() -> None:
    """request_body and form_fields accept a stock websockets Request."""
    request = Request("/x?a=1&b=", Headers({"Content-Type": "application/x-www-form-urlencoded"}))
    assert request_body(request) == b""
    assert form_fields(request) == {}
    assert query_params(request) == {"a": "1", "b": ""}


def test_query_params_decode_the_path() -> None:
    """query_params reads the query string, percent-decoded."""
    assert query_params(make_request("/logs?sessionId=a%20b&x")) == {"sessionId": "a b", "x": ""}
    assert query_params(make_request("/logs")) == {}


# A real server on loopback.


def echo_request(connection: ServerConnection, request: Request) -> Response | None:
    """process_request: let WebSocket upgrades through, answer the rest in JSON."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    payload = {
        "method": request.method,
        "path": request.path,
        "query": query_params(request),
        "fields": form_fields(request),
        "body_length": len(request_body(request)),
    }
    response = connection.respond(http.HTTPStatus.OK, json.dumps(payload))
    del response.headers["Content-Type"]  # Headers is a multidict: []= appends
    response.headers["Content-Type"] = "application/json"
    return response


async def echo(websocket: ServerConnection) -> None:
    """Connection handler: send every message back."""
    async for message in websocket:
        await websocket.send(message)


@contextlib.asynccontextmanager
async def running(
    create_connection: type[ServerConnection] | None = None,
) -> AsyncIterator[tuple[str, int]]:
    """Run the server on a free loopback port (body cap CAP); yield its host and port."""
    async with serve(
        echo,
        "127.0.0.1",
        0,
        create_connection=create_connection or body_reading_connection(CAP),
        process_request=echo_request,
    ) as server:
        yield "127.0.0.1", server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session whose every request times out after WAIT."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as session:
        yield session


async def exchange(host: str, port: int, *chunks: bytes) -> bytes:
    """Send raw bytes in separate writes and read the answer until EOF."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT)
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_form_post_reaches_process_request() -> None:
    """A Twilio-style form POST is answered with its fields."""
    async with running() as (host, port), client() as session:
        async with session.post(
            f"http://{host}:{port}/twiml", data={"CallSid": "CA1", "From": "+1 555"}
        ) as response:
            assert response.status == 200
            payload = await response.json()
    assert payload == {
        "method": "POST",
        "path": "/twiml",
        "query": {},
        "fields": {"CallSid": "CA1", "From": "+1 555"},
        "body_length": len("CallSid=CA1&From=%2B1+555"),
    }


async def test_post_over_the_cap_gets_413() -> None:
    """A body larger than max_body is answered 413 with a readable reason."""
    async with running() as (host, port), client() as session:
        async with session.post(f"http://{host}:{port}/beacon", data=b"x" * (CAP + 1)) as response:
            assert response.status == 413
            assert f"limit is {CAP} bytes" in await response.text()


async def test_chunked_post_gets_411() -> None:
    """A chunked body (no Content-Length) is answered 411."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a" * 10
        yield b"b" * 10

    async with running() as (host, port), client() as session:
        async with session.post(f"http://{host}:{port}/beacon", data=chunks()) as response:
            assert response.status == 411


async def test_plain_get_is_unchanged() -> None:
    """A GET without a body reaches process_request as before."""
    async with running() as (host, port), client() as session:
        async with session.get(f"http://{host}:{port}/x?y=1") as response:
            assert response.status == 200
            payload = await response.json()
    assert payload == {
        "method": "GET",
        "path": "/x?y=1",
        "query": {"y": "1"},
        "fields": {},
        "body_length": 0,
    }


async def test_websocket_clients_still_connect_and_echo() -> None:
    """A real WebSocket client connects and exchanges messages on the same server."""
    async with running() as (host, port):
        async with connect(f"ws://{host}:{port}/ws", open_timeout=WAIT) as websocket:
            await websocket.send("ping")
            assert await asyncio.wait_for(websocket.recv(), WAIT) == "ping"
            await websocket.send(b"\x00\x01")
            assert await asyncio.wait_for(websocket.recv(), WAIT) == b"\x00\x01"


async def test_get_with_a_body_gets_400_over_a_socket() -> None:
    """A raw GET with a body is answered 400 and closed."""
    async with running() as (host, port):
        answer = await exchange(
            host, port, b"GET /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
        )
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert answer.endswith(b"A GET request must not have a body.\n")


async def test_body_split_across_two_writes_is_read_whole() -> None:
    """A POST whose body arrives in two separate reads is answered once, whole."""
    received: asyncio.Queue[int] = asyncio.Queue()

    class Recording(BodyReadingConnection):
        """Reports how many bytes each data_received() call brought."""

        max_body = CAP

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            received.put_nowait(len(data))

    data = post("/twiml", TWILIO_FORM, "Content-Type: application/x-www-form-urlencoded")
    first, second = data[:-20], data[-20:]
    async with running(Recording) as (host, port):
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT)
        try:
            writer.write(first)
            await writer.drain()
            seen = 0
            while seen < len(first):  # the server has parsed the first part
                seen += await asyncio.wait_for(received.get(), WAIT)
            writer.write(second)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), WAIT)
        finally:
            writer.close()
            await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    payload = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert payload["body_length"] == len(TWILIO_FORM)
    assert payload["fields"]["CallSid"] == "CA123"
