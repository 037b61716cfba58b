"""TwiML that connects a phone call to relay's ``/call`` WebSocket.

Twilio asks relay's voice webhook what to do with a call; the answer is a
``<Connect><Stream>`` document naming the WebSocket URL Twilio must open
(https://www.twilio.com/docs/voice/twiml/stream). Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

__all__ = ["APOLOGY", "MAX_PARAMETERS_LENGTH", "connect_stream_twiml", "stream_url"]

#: What the caller hears when the stream closes before relay hung up: Twilio
#: plays the verb after ``<Connect>`` once the stream ends
#: (https://www.twilio.com/docs/voice/twiml/connect). relay closes the stream
#: first only when the model cannot be reached; any other end hangs up first.
APOLOGY = ("Sorry, the interviewer cannot be reached right now. "
           "Please try again in a few minutes. Goodbye.")

#: Cap on the summed length of all custom parameter names and values. Twilio
#: limits the size of a stream's custom parameters to about this much.
MAX_PARAMETERS_LENGTH = 500

# Hosts that only the machine itself can reach; there is no TLS in front of
# them, so Twilio-like test clients must use plain ws://.
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

# Characters XML 1.0 forbids even as character references (section 2.2).
_XML_INVALID_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

# quoteattr()'s entities, always in double quotes so the output is predictable.
_ATTRIBUTE_ENTITIES = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}


def stream_url(public_url: str, path: str = "/call") -> str:
    """The WebSocket URL Twilio must connect to, from relay's public URL.

    ``https://abc.ngrok.app`` and ``abc.ngrok.app`` give
    ``wss://abc.ngrok.app/call``; a base path is kept
    (``https://x.com/relay/`` gives ``wss://x.com/relay/call``). The scheme is
    ``wss`` except for ``http://`` (or ``ws://``) on localhost, 127.0.0.1 or
    [::1], which gives ``ws``: Twilio itself only connects to ``wss``.

    Args:
        public_url: relay's public base URL (PUBLIC_URL), with or without a
            scheme; http, https, ws and wss are accepted.
        path: the WebSocket path under the base URL, such as ``/call`` or
            ``/call/{sessionId}``.

    Returns:
        The ``ws://`` or ``wss://`` URL, without a trailing slash.

    Raises:
        ValueError: if ``public_url`` has no host, another scheme, user
            credentials, a query or a fragment (Twilio drops query strings
            from stream URLs), or an invalid port.
    """
    text = public_url.strip()
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "ws", "wss"):
        raise ValueError(f"public URL must be http(s) or ws(s): {public_url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"public URL must not contain credentials: {public_url!r}")
    if parts.query or parts.fragment:
        raise ValueError(
            f"public URL must not have a query or fragment: {public_url!r}"
        )
    host = parts.hostname  # lowercased, without IPv6 brackets
    if not host:
        raise ValueError(f"public URL has no host: {public_url!r}")
    port = parts.port  # raises ValueError for an out-of-range or non-numeric port

    insecure = scheme in ("http", "ws") and host in _LOOPBACK_HOSTS
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    base = parts.path.rstrip("/")
    suffix = path.strip("/")
    full_path = f"{base}/{suffix}" if suffix else base or "/"
    return f"{'ws' if insecure else 'wss'}://{netloc}{full_path}"


def connect_stream_twiml(url: str, parameters: Mapping[str, str] | None = None, *,
                         apology: str | None = None) -> str:
    """A TwiML document connecting the call's audio to ``url``.

    ``<Connect><Stream>`` opens a bidirectional Media Stream. Twilio drops the
    query string of a stream URL, so per-call data such as the session ID
    travels as ``<Parameter>`` elements instead; Twilio repeats them in the
    stream's ``start`` message under ``customParameters``.

    Args:
        url: the ``ws://`` or ``wss://`` URL, usually from :func:`stream_url`.
        parameters: custom parameters, written in iteration order; names must
            be non-empty.
        apology: said (``<Say>``) if the stream closes while the call is still
            up; None says nothing and the call ends with the stream.

    Returns:
        The document, starting with the XML declaration, all on one line.

    Raises:
        ValueError: if ``url`` isn't a ws/wss URL or has a query string, or a
            parameter name or value isn't a str, is unusable in XML, a name is
            empty, or names and values together exceed
            :data:`MAX_PARAMETERS_LENGTH` characters.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"stream URL must be ws:// or wss://: {url!r}")
    if parts.query:
        raise ValueError(f"Twilio drops query strings from stream URLs: {url!r}")
    _check_xml_text("stream URL", url)

    items = list((parameters or {}).items())
    total = 0
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, str):
            raise ValueError(
                f"parameter names and values must be str, got {name!r}: {value!r}"
            )
        if not name:
            raise ValueError("parameter names must not be empty")
        _check_xml_text("parameter name", name)
        _check_xml_text("parameter value", value)
        total += len(name) + len(value)
    if total > MAX_PARAMETERS_LENGTH:
        raise ValueError(
            f"custom parameters total {total} characters; "
            f"Twilio accepts at most {MAX_PARAMETERS_LENGTH}"
        )

    elements = "".join(
        f"<Parameter name={_attribute(name)} value={_attribute(value)}/>"
        for name, value in items
    )
    say = ""
    if apology:
        _check_xml_text("apology", apology)
        say = f"<Say>{escape(apology)}</Say>"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Connect><Stream url={_attribute(url)}>{elements}"
        f"</Stream></Connect>{say}</Response>"
    )


def _attribute(value: str) -> str:
    """``value`` escaped and quoted as an XML attribute value."""
    return f'"{escape(value, _ATTRIBUTE_ENTITIES)}"'


def _check_xml_text(what: str, value: str) -> None:
    if _XML_INVALID_RE.search(value) or any(
        0xD800 <= ord(char) <= 0xDFFF for char in value
    ):
        raise ValueError(f"{what} contains a character XML cannot carry: {value!r}")
