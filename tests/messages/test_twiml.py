"""Tests for relay.messages.twiml: the stream URL and the <Connect><Stream> document."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from relay.messages.twiml import (
    MAX_PARAMETERS_LENGTH,
    connect_stream_twiml,
    stream_url,
)


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        ("https://abc.ngrok.app", "wss://abc.ngrok.app/call"),
        ("https://abc.ngrok.app/", "wss://abc.ngrok.app/call"),
        ("abc.example.com", "wss://abc.example.com/call"),
        ("  abc.example.com/  ", "wss://abc.example.com/call"),
        ("http://localhost:8081", "ws://localhost:8081/call"),
        ("http://127.0.0.1:8081/", "ws://127.0.0.1:8081/call"),
        ("http://[::1]:8081", "ws://[::1]:8081/call"),
        ("ws://localhost:8081", "ws://localhost:8081/call"),
        ("https://localhost:8443", "wss://localhost:8443/call"),
        ("http://example.com", "wss://example.com/call"),
        ("localhost:8081", "wss://localhost:8081/call"),
        ("https://x.com/relay", "wss://x.com/relay/call"),
        ("https://x.com/relay//", "wss://x.com/relay/call"),
        ("HTTPS://X.COM:8443/relay/", "wss://x.com:8443/relay/call"),
        ("wss://x.com", "wss://x.com/call"),
    ],
)
def test_stream_url_derivation(public_url: str, expected: str) -> None:
    """PUBLIC_URL becomes wss://host[:port][/base]/call, ws only on loopback http."""
    assert stream_url(public_url) == expected


def test_stream_url_path_is_joined_without_doubled_or_trailing_slashes() -> None:
    """The path argument joins the base path with exactly one slash."""
    assert stream_url("https://x.com/relay/", "/call/abc/") == "wss://x.com/relay/call/abc"
    assert stream_url("https://x.com", "call") == "wss://x.com/call"


@pytest.mark.parametrize(
    "public_url",
    [
        "",
        "https://",
        "ftp://x.com",
        "https://user:secret@x.com",
        "https://x.com/?token=1",
        "https://x.com/#top",
        "https://x.com:99999",
    ],
)
def test_stream_url_rejects_unusable_public_urls(public_url: str) -> None:
    """A PUBLIC_URL without a host, with a query, credentials or a bad port is refused."""
    with pytest.raises(ValueError):
        stream_url(public_url)


def parse(document: str) -> ET.Element:
    """Parse a TwiML document, checking its XML declaration."""
    assert document.startswith('<?xml version="1.0" encoding="UTF-8"?><Response>')
    return ET.fromstring(document.encode())


def test_twiml_without_parameters() -> None:
    """Without parameters the Stream element is empty."""
    root = parse(connect_stream_twiml("wss://x.com/call"))
    assert root.tag == "Response"
    [connect] = root
    assert connect.tag == "Connect"
    [stream] = connect
    assert (stream.tag, stream.attrib, list(stream)) == ("Stream", {"url": "wss://x.com/call"}, [])


def test_twiml_parameters_in_order() -> None:
    """Parameters become <Parameter name value/> children in the mapping's order."""
    parameters = {"sessionId": "3f1c", "userId": "u-9", "a": ""}
    root = parse(connect_stream_twiml("wss://x.com/call", parameters))
    stream = root.find("./Connect/Stream")
    assert stream is not None
    assert [(p.tag, p.attrib) for p in stream] == [
        ("Parameter", {"name": name, "value": value}) for name, value in parameters.items()
    ]


def test_twiml_escapes_attributes() -> None:
    """Quotes, ampersands, angle brackets and newlines survive a round trip."""
    tricky = "a\"b'c&d<e>f\ng\th"
    document = connect_stream_twiml("wss://x.com/call?", {"sessionId": tricky, tricky: "v"})
    assert "<e>" not in document and '"b' not in document
    stream = parse(document).find("./Connect/Stream")
    assert stream is not None
    assert stream.get("url") == "wss://x.com/call?"
    assert [p.attrib for p in stream] == [
        {"name": "sessionId", "value": tricky},
        {"name": tricky, "value": "v"},
    ]


def test_twiml_exact_output() -> None:
    """The document is one line in the exact shape Twilio documents."""
    assert connect_stream_twiml("wss://x.com/call", {"sessionId": "a&b"}) == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        '<Stream url="wss://x.com/call"><Parameter name="sessionId" value="a&amp;b"/>'
        "</Stream></Connect></Response>"
    )


def test_twiml_parameters_may_total_the_cap() -> None:
    """Names and values totalling exactly the cap are accepted."""
    value = "v" * (MAX_PARAMETERS_LENGTH - len("sessionId"))
    assert value in connect_stream_twiml("wss://x.com/call", {"sessionId": value})


@pytest.mark.parametrize(
    "parameters",
    [
        {"sessionId": "v" * MAX_PARAMETERS_LENGTH},
        {"a": "v" * 300, "b": "v" * 300},
        {"sessionId": 42},
        {7: "x"},
        {"": "x"},
        {"sessionId": "bell\x07"},
    ],
    ids=["too-long", "too-long-in-total", "int-value", "int-name", "empty-name", "control"],
)
def test_twiml_rejects_bad_parameters(parameters: dict[object, object]) -> None:
    """Non-str, empty-named, non-XML or oversized parameters are a ValueError."""
    with pytest.raises(ValueError):
        connect_stream_twiml("wss://x.com/call", parameters)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url", ["https://x.com/call", "x.com/call", "wss://x.com/call?sessionId=1"]
)
def test_twiml_rejects_urls_twilio_cannot_use(url: str) -> None:
    """A non-WebSocket URL or one with a query string (Twilio drops it) is refused."""
    with pytest.raises(ValueError):
        connect_stream_twiml(url)


def test_stream_url_output_is_accepted_by_connect_stream_twiml() -> None:
    """The two functions compose for a typical deployment."""
    url = stream_url("https://abc.ngrok.app")
    stream = parse(connect_stream_twiml(url, {"sessionId": "s1"})).find("./Connect/Stream")
    assert stream is not None and stream.get("url") == "wss://abc.ngrok.app/call"
