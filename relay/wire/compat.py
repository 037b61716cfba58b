"""Every websockets internal relay relies on, imported and checked in one place.

relay stays on the public ``websockets`` asyncio API except for two things the
library does not offer: delivering messages straight from the data callback
(:mod:`relay.wire.connection`) and reading HTTP request bodies
(:mod:`relay.wire.httpbody`). Both lean on internals websockets does not
promise to keep, so they are named here, once, and checked at import: a
websockets release that moves any of them fails at start-up with a clear error
instead of misbehaving under load. Verified against websockets 17.0 to 17.4;
re-read ``websockets/asyncio/connection.py``, ``websockets/asyncio/messages.py``
and ``ServerProtocol.parse`` in ``websockets/server.py`` before widening
:data:`VERIFIED_MAJOR`.
"""

from __future__ import annotations

import websockets

VERIFIED_MAJOR = 17


class IncompatibleWebsockets(ImportError):
    """The installed websockets is not one relay was verified against."""


def _major(version: str) -> int:
    try:
        return int(version.split(".", 1)[0])
    except ValueError:
        return -1


if _major(websockets.__version__) != VERIFIED_MAJOR:
    raise IncompatibleWebsockets(
        f"relay uses websockets internals verified against websockets >={VERIFIED_MAJOR},"
        f"<{VERIFIED_MAJOR + 1} only; websockets {websockets.__version__} is installed. "
        f"Install websockets {VERIFIED_MAJOR}.x, or re-verify relay/wire/compat.py."
    )

# Imported after the version check: these names do not all exist in other
# versions, and the check's message is more useful than an ImportError here.
from websockets.asyncio.client import ClientConnection  # noqa: E402
from websockets.asyncio.connection import Connection  # noqa: E402
from websockets.asyncio.messages import Assembler  # noqa: E402
from websockets.asyncio.server import Server, ServerConnection  # noqa: E402
from websockets.exceptions import (  # noqa: E402
    HeaderLineTooLong,
    InvalidMessage,
    RequestLineTooLong,
    TooManyHeaders,
)
from websockets.frames import Frame, Opcode  # noqa: E402
from websockets.http11 import Request, Response, d, parse_headers, parse_line  # noqa: E402
from websockets.protocol import CONNECTING, OPEN, Protocol, State  # noqa: E402
from websockets.server import ServerProtocol  # noqa: E402

#: (object, attribute) pairs relay reads, calls or overrides that websockets
#: documents as private or leaves undocumented.
INTERNALS: tuple[tuple[type, str], ...] = (
    (Connection, "process_event"),  # overridden: messages go to sinks
    (Connection, "data_received"),  # overridden: the inbound budget and the fast reader
    (Connection, "send_data"),  # called: flush protocol output to the transport
    (Connection, "recv_messages"),  # read: frames that arrived before the sinks
    (Assembler, "maybe_resume"),  # called after draining recv_messages
    (Protocol, "send_text"),
    (Protocol, "receive_data"),
    (Protocol, "events_received"),
    (Protocol, "data_to_send"),
    (Protocol, "parse"),  # the frame parser httpbody hands over to
    (ServerProtocol, "reject"),
    (ServerProtocol, "send_response"),
    (ServerProtocol, "discard"),
)


def missing_internals() -> list[str]:
    """The internals in :data:`INTERNALS` this websockets lacks (empty when compatible).

    ``recv_messages`` is an instance attribute; it is looked up in
    ``Connection.__init__``'s source instead.
    """
    import inspect

    missing = []
    init_source = inspect.getsource(Connection.__init__)
    for owner, name in INTERNALS:
        if name == "recv_messages":
            if "self.recv_messages" not in init_source:
                missing.append(f"{owner.__name__}.{name}")
        elif not _defined_by_websockets(owner, name):
            missing.append(f"{owner.__name__}.{name}")
    return missing


def _defined_by_websockets(owner: type, name: str) -> bool:
    # Defined by websockets itself, not inherited from asyncio.Protocol.
    return any(
        name in vars(cls) and callable(vars(cls)[name])
        for cls in owner.__mro__
        if cls.__module__.startswith("websockets")
    )


_missing = missing_internals()
if _missing:
    raise IncompatibleWebsockets(
        f"websockets {websockets.__version__} lacks internals relay relies on: "
        f"{', '.join(_missing)}. Re-verify relay/wire/compat.py."
    )

__all__ = [
    "CONNECTING",
    "OPEN",
    "Assembler",
    "ClientConnection",
    "Connection",
    "Frame",
    "HeaderLineTooLong",
    "IncompatibleWebsockets",
    "InvalidMessage",
    "Opcode",
    "Protocol",
    "Request",
    "Response",
    "RequestLineTooLong",
    "Server",
    "ServerConnection",
    "ServerProtocol",
    "State",
    "TooManyHeaders",
    "VERIFIED_MAJOR",
    "d",
    "missing_internals",
    "parse_headers",
    "parse_line",
]
