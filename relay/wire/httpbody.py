"""Small HTTP request bodies on the websockets server.

Why this exists: relay answers WebSockets and a few plain HTTP endpoints on one
port with one :mod:`websockets` server, and two of those endpoints receive a
body. Twilio's voice webhook (``/twiml``) is a POST whose body is an
``application/x-www-form-urlencoded`` form (CallSid, AccountSid, From, To, …),
and a browser's ``navigator.sendBeacon`` always POSTs. websockets only speaks
the WebSocket opening handshake: ``Request.parse`` refuses any request whose
Content-Length isn't 0 or that uses Transfer-Encoding, and the server then drops
the connection without sending any response at all.

How: :func:`serve` accepts ``create_connection=``, a
:class:`~websockets.asyncio.server.ServerConnection` subclass.
:class:`BodyReadingConnection` swaps the sans-I/O protocol's parser generator,
before any byte arrives, for :func:`parse_request_with_body`: a copy of
``ServerProtocol.parse`` that also reads a body announced by Content-Length and
delivers a :class:`BodyRequest` to ``process_request``. What follows the
request (frames after a 101, discarding after any other response) is the
library's own code, so WebSocket clients see no difference. A connection class
with ``hands_frames_over = True`` parks the parser after the request instead:
the bytes that follow wait, unparsed, for relay's own frame reader
(:mod:`relay.wire.reader`) to take them once the handshake has succeeded.

This couples relay to websockets internals (``ServerProtocol.parser``,
``reader``, ``events``, ``send_response``, ``discard``), which websockets does
not promise to keep; :mod:`relay.wire.compat` imports them and checks the
version once (15.x and 16.x have no ``Request.method`` and refuse every method
except GET in the parser).

Answers to requests this module refuses (websockets closes the connection after
any response other than 101; there is no keep-alive):

=========================================  ===================================
request                                    answer
=========================================  ===================================
GET with a body (Content-Length > 0 or     400 Bad Request
Transfer-Encoding)
unparseable or conflicting Content-Length  400 Bad Request
other method with Transfer-Encoding        411 Length Required
Content-Length above ``max_body``          413 Request Entity Too Large
request line too long                      414 (as websockets does)
header line too long, too many headers     431 (as websockets does)
not HTTP at all, or connection cut short   no answer, connection dropped (as
                                           websockets does)
=========================================  ===================================
"""

from __future__ import annotations

import dataclasses
import http
import re
from collections.abc import Generator
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from relay.wire.compat import (
    CONNECTING,
    HeaderLineTooLong,
    InvalidMessage,
    Protocol,
    Request,
    RequestLineTooLong,
    Server,
    ServerConnection,
    ServerProtocol,
    TooManyHeaders,
    d,
    parse_headers,
    parse_line,
)

__all__ = [
    "DEFAULT_MAX_BODY",
    "BodyRequest",
    "BodyReadingConnection",
    "RequestBodyError",
    "body_reading_connection",
    "form_fields",
    "install_body_parser",
    "parse_request_with_body",
    "query_params",
    "request_body",
]

#: Default cap on a request body, in bytes. A Twilio voice webhook form is
#: about 1-2 KiB and a beacon a few hundred bytes.
DEFAULT_MAX_BODY = 64 * 1024

# Content-Length = 1*DIGIT (RFC 9110, section 8.6); 18 digits keeps int()
# cheap, like websockets' own check on responses.
_CONTENT_LENGTH_RE = re.compile(r"[0-9]{1,18}")

_FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


@dataclasses.dataclass
class BodyRequest(Request):
    """An HTTP request together with its body.

    ``process_request`` receives this in place of a plain
    :class:`~websockets.http11.Request` when the server was created with a
    :class:`BodyReadingConnection`; it is still a ``Request``, so code that
    ignores bodies keeps working.

    Attributes:
        body: the bytes announced by Content-Length, at most the server's
            ``max_body``; ``b""`` for WebSocket upgrades and bodiless requests.
    """

    body: bytes = b""


class RequestBodyError(InvalidMessage):
    """A request was answered with an error because of its body framing.

    Set as ``ServerProtocol.handshake_exc`` (the attribute websockets uses for
    failed handshakes) when :func:`parse_request_with_body` refuses a request.

    Attributes:
        status: the HTTP status the client was sent.
    """

    def __init__(self, message: str, *, status: http.HTTPStatus) -> None:
        super().__init__(message)
        self.status = status


class _Refused(Exception):
    """Internal: the request must be answered with ``status`` and closed."""

    def __init__(self, exc: Exception, status: http.HTTPStatus, text: str) -> None:
        super().__init__(text)
        self.exc = exc
        self.status = status
        self.text = text


def _refusal(status: http.HTTPStatus, message: str) -> _Refused:
    return _Refused(RequestBodyError(message, status=status), status, f"{message}\n")


def _content_length(values: list[str]) -> int | None:
    """The declared body length, or None if the header is absent.

    Raises:
        _Refused: with 400 if a value isn't a number or values disagree
            (RFC 9110, section 8.6 allows identical repeated values).
    """
    if not values:
        return None
    lengths = set()
    for value in values:
        # A comma-joined list is how proxies fold repeated headers.
        for item in value.split(","):
            item = item.strip()
            if not _CONTENT_LENGTH_RE.fullmatch(item):
                raise _refusal(
                    http.HTTPStatus.BAD_REQUEST, f"Invalid Content-Length: {value!r}."
                )
            lengths.add(int(item))
    if len(lengths) != 1:
        raise _refusal(http.HTTPStatus.BAD_REQUEST, "Conflicting Content-Length headers.")
    return lengths.pop()


def _read_request(
    protocol: ServerProtocol, max_body: int
) -> Generator[None, None, BodyRequest]:
    """Read one request: request line, headers and body.

    The request line and headers are parsed as ``Request.parse`` does in
    websockets 17 (HTTP/1.1 or HTTP/1.0, ASCII method and path).

    Raises:
        RequestLineTooLong, HeaderLineTooLong, TooManyHeaders: as websockets.
        _Refused: for a body this server won't read.
        EOFError, ValueError, UnicodeDecodeError: not a valid HTTP request.
    """
    read_line = protocol.reader.read_line
    try:
        request_line = yield from parse_line(read_line, RequestLineTooLong)
    except EOFError as exc:
        raise EOFError("connection closed while reading HTTP request line") from exc

    try:
        raw_method, raw_path, raw_protocol = request_line.split(b" ", 2)
    except ValueError:  # not enough values to unpack (expected 3, got 1-2)
        raise ValueError(f"invalid HTTP request line: {d(request_line)}") from None
    if raw_protocol not in [b"HTTP/1.1", b"HTTP/1.0"]:
        raise ValueError(
            f"unsupported protocol; expected HTTP/1.1 or HTTP/1.0: {d(request_line)}"
        )
    method = raw_method.decode("ascii")
    version = raw_protocol.decode("ascii")
    path = raw_path.decode("ascii")

    headers = yield from parse_headers(read_line)

    # RFC 9112, section 6.3: Transfer-Encoding overrides Content-Length, and a
    # request with neither has no body. Refusing Transfer-Encoding outright
    # also rules out request smuggling through disagreeing framings.
    chunked = "Transfer-Encoding" in headers
    length = _content_length(headers.get_all("Content-Length"))
    if method == "GET":
        # A WebSocket handshake never has a body (RFC 6455, section 4.1).
        if chunked or length:
            raise _refusal(
                http.HTTPStatus.BAD_REQUEST, "A GET request must not have a body."
            )
    elif chunked:
        raise _refusal(
            http.HTTPStatus.LENGTH_REQUIRED,
            "Send the body with a Content-Length; transfer codings aren't supported.",
        )

    body = b""
    if length:
        if length > max_body:
            raise _refusal(
                http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"Request body too large: {length} bytes; the limit is {max_body} bytes.",
            )
        if headers.get("Expect", "").lower() == "100-continue":
            # curl waits about a second for this before sending a body over
            # 1 KiB (RFC 9110, section 10.1.1). data_received() sends
            # protocol.writes right after the parser yields.
            protocol.writes.append(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = bytes((yield from protocol.reader.read_exact(length)))

    return BodyRequest(path, headers, method=method, protocol=version, body=body)


def parse_request_with_body(protocol: ServerProtocol, max_body: int, *,
                            park: bool = False) -> Generator[None]:
    """The parser generator installed by :func:`install_body_parser`.

    A copy of ``ServerProtocol.parse`` from websockets 17 that reads the
    request with its body, then hands over to the library's frame parser.
    Like the original it never raises: a refusal is answered with
    ``protocol.reject()`` and ``protocol.send_response()``, which sends EOF and
    replaces this generator with ``protocol.discard()``, exactly as websockets
    answers a request line that is too long.

    Args:
        protocol: the server protocol whose ``parser`` this becomes.
        max_body: the largest body accepted, in bytes.
        park: after the request, consume nothing until another parser
            replaces this one (relay's frame reader, once the handshake is
            done); end-of-stream still ends the connection as the frame parser
            would.
    """
    if protocol.state is CONNECTING:
        try:
            request = yield from _read_request(protocol, max_body)
        except RequestLineTooLong as exc:
            _refuse(
                protocol,
                exc,
                # Change to http.HTTPStatus.URI_TOO_LONG when dropping Python < 3.13
                http.HTTPStatus.REQUEST_URI_TOO_LONG,
                f"Failed to open a WebSocket connection: {exc}.\n",
            )
            yield
            raise AssertionError("parser replaced by discard() shouldn't step")
        except (HeaderLineTooLong, TooManyHeaders) as exc:
            _refuse(
                protocol,
                exc,
                http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"Failed to open a WebSocket connection: {exc}.\n",
            )
            yield
            raise AssertionError("parser replaced by discard() shouldn't step")
        except _Refused as refused:
            _refuse(protocol, refused.exc, refused.status, refused.text)
            yield
            raise AssertionError("parser replaced by discard() shouldn't step")
        except Exception as exc:
            # Not HTTP, or cut short: drop without an answer, as websockets does.
            handshake_exc = InvalidMessage("did not receive a valid HTTP request")
            handshake_exc.__cause__ = exc
            protocol.handshake_exc = handshake_exc
            if protocol.debug:
                protocol.logger.debug("! no valid HTTP request", exc_info=True)
            protocol.send_eof()
            protocol.parser = protocol.discard()
            next(protocol.parser)  # start coroutine
            yield
            raise AssertionError("parser replaced by discard() shouldn't step")

        if protocol.debug:
            protocol.logger.debug(
                "< %s %s %s", request.method, request.path, request.protocol
            )
            for key, value in request.headers.raw_items():
                protocol.logger.debug("< %s: %s", key, value)
            if request.body:
                protocol.logger.debug("< [body] (%d bytes)", len(request.body))

        protocol.events.append(request)

    if park:
        while not protocol.reader.eof:
            yield
        # Cut short before the handshake completed: what was sent after the
        # request is moot; the frame parser reports the end of the stream.
        protocol.reader.buffer.clear()
    # ServerProtocol.parse ends with super().parse(): the frame parser.
    yield from Protocol.parse(protocol)


def _refuse(
    protocol: ServerProtocol, exc: Exception, status: http.HTTPStatus, text: str
) -> None:
    protocol.handshake_exc = exc
    if protocol.debug:
        protocol.logger.debug("! request refused: %s", exc, exc_info=True)
    # send_response() logs the answer, sends EOF and swaps in discard(), which
    # swallows whatever is left of the body until the client closes.
    protocol.send_response(protocol.reject(status, text))


def install_body_parser(protocol: ServerProtocol, max_body: int, *, park: bool = False) -> None:
    """Make ``protocol`` read request bodies of up to ``max_body`` bytes.

    Must be called before any data is fed to the protocol.

    Args:
        protocol: a freshly created server protocol.
        max_body: the largest body accepted, in bytes; at least 1.
        park: leave the bytes after the request for another frame reader
            (see :func:`parse_request_with_body`).

    Raises:
        ValueError: if ``max_body`` is below 1.
        RuntimeError: if the protocol has already left CONNECTING.
    """
    if max_body < 1:
        raise ValueError(f"max_body must be at least 1 byte, got {max_body}")
    if protocol.state is not CONNECTING:
        raise RuntimeError("install_body_parser() needs a protocol in CONNECTING")
    # The parser the constructor started is parked waiting for the first line
    # and has consumed nothing, so dropping it loses nothing.
    protocol.parser = parse_request_with_body(protocol, max_body, park=park)
    next(protocol.parser)  # start coroutine, as Protocol.__init__ does


class BodyReadingConnection(ServerConnection):
    """A server connection whose requests carry their body.

    Pass it (or a subclass from :func:`body_reading_connection`) as
    ``serve(..., create_connection=...)``; ``process_request`` then receives
    :class:`BodyRequest` objects. WebSocket handshakes are unaffected.

    Attributes:
        max_body: the largest body accepted, in bytes; larger ones get 413.
        hands_frames_over: park the parser after the request for relay's frame
            reader (:mod:`relay.wire.reader`) instead of parsing frames here.
    """

    max_body: ClassVar[int] = DEFAULT_MAX_BODY
    hands_frames_over: ClassVar[bool] = False

    def __init__(self, protocol: ServerProtocol, server: Server, **kwargs: Any) -> None:
        # Before super().__init__(): nothing has been received yet.
        install_body_parser(protocol, self.max_body, park=self.hands_frames_over)
        super().__init__(protocol, server, **kwargs)


def body_reading_connection(max_body: int) -> type[BodyReadingConnection]:
    """A :class:`BodyReadingConnection` class with its own body cap.

    Args:
        max_body: the largest body accepted, in bytes; at least 1.

    Returns:
        A class to pass as ``serve(..., create_connection=...)``.

    Raises:
        ValueError: if ``max_body`` is below 1.
    """
    if max_body < 1:
        raise ValueError(f"max_body must be at least 1 byte, got {max_body}")
    cap = max_body  # a class body can't read a free variable it also assigns

    class CappedBodyReadingConnection(BodyReadingConnection):
        max_body = cap

    return CappedBodyReadingConnection


def request_body(request: Request) -> bytes:
    """The body of ``request``; ``b""`` for a plain websockets Request."""
    return request.body if isinstance(request, BodyRequest) else b""


def form_fields(request: Request) -> dict[str, str]:
    """The fields of an ``application/x-www-form-urlencoded`` body.

    Values are percent-decoded as UTF-8 (invalid sequences become U+FFFD);
    blank values are kept; a repeated name keeps its last value.

    Returns:
        The fields, or an empty dict when the request has another content
        type or no body.
    """
    content_type = request.headers.get("Content-Type", "")
    if content_type.split(";", 1)[0].strip().lower() != _FORM_MEDIA_TYPE:
        return {}
    text = request_body(request).decode("utf-8", errors="replace")
    return dict(parse_qsl(text, keep_blank_values=True, errors="replace"))


def query_params(request: Request) -> dict[str, str]:
    """The query string parameters of ``request.path``.

    Blank values are kept; a repeated name keeps its last value.
    """
    query = urlsplit(request.path).query
    return dict(parse_qsl(query, keep_blank_values=True, errors="replace"))
