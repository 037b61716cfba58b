"""Every websockets internal relay relies on, imported and checked in one place.

relay stays on the public ``websockets`` asyncio API except for what the
library does not offer: delivering messages straight from the data callback
(:mod:`relay.wire.connection`), writing its text frames itself (the protocol's
state tells when it may), reading every frame itself to charge an inbound
budget and yield to the loop (:mod:`relay.wire.reader`), aborting a peer whose
ping timed out at once, and reading HTTP request bodies
(:mod:`relay.wire.httpbody`). These lean on internals websockets does not
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
from websockets.protocol import CLIENT, CLOSED, CONNECTING, OPEN, Protocol, State  # noqa: E402
from websockets.server import ServerProtocol  # noqa: E402

try:  # websockets' C helper; its pure-Python twin where the extension was not built.
    from websockets.speedups import apply_mask  # noqa: E402
except ImportError:  # pragma: no cover - depends on the installed wheel
    from websockets.utils import apply_mask  # noqa: E402

#: Instance attributes relay reads or sets, looked up in ``__init__``'s source:
#: the reader takes bytes from ``Protocol.reader`` once the handshake is done,
#: restarts ``Protocol.parser`` there, and checks whether the protocol failed
#: or received a close frame; the queue's ``pause``/``resume`` are rerouted.
INSTANCE_ATTRIBUTES: tuple[tuple[type, str], ...] = (
    (Connection, "recv_messages"),
    (Protocol, "reader"),
    (Protocol, "parser"),
    (Protocol, "parser_exc"),
    (Protocol, "close_rcvd"),
    (Protocol, "max_message_size"),
    (Protocol, "max_fragment_size"),
    (Protocol, "side"),
    (Protocol, "extensions"),
    (Assembler, "pause"),
    (Assembler, "resume"),
    (Assembler, "paused"),
)

#: (object, attribute) pairs relay reads, calls or overrides that websockets
#: documents as private or leaves undocumented.
INTERNALS: tuple[tuple[type, str], ...] = (
    (Connection, "process_event"),  # overridden: messages go to sinks
    (Connection, "data_received"),  # overridden: the inbound budget and the fast reader
    (Connection, "eof_received"),  # overridden: frames still buffered come first
    (Connection, "connection_made"),  # extended: the reader owns the queue's pause/resume
    (Connection, "keepalive"),  # overridden: a ping timeout aborts at once
    (Connection, "start_keepalive"),  # extended: called once the handshake succeeded
    (Connection, "ping"),  # called by the keepalive
    (Connection, "send_data"),  # called: flush protocol output to the transport
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
    """The internals in :data:`INTERNALS` and :data:`INSTANCE_ATTRIBUTES` this
    websockets lacks (empty when compatible).

    Instance attributes are looked up in the source of the class's
    ``__init__`` (``recv_messages`` in ``connection_made`` too, where
    websockets creates it).
    """
    import inspect
    import re

    missing = [f"{owner.__name__}.{name}" for owner, name in INTERNALS
               if not _defined_by_websockets(owner, name)]
    for owner, name in INSTANCE_ATTRIBUTES:
        sources = [inspect.getsource(owner.__init__)]  # type: ignore[misc]
        if owner is Connection:
            sources.append(inspect.getsource(Connection.connection_made))
        assigned = re.compile(rf"self\.{name}\b[^=\n]*=")
        if not any(assigned.search(source) for source in sources):
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
    "CLIENT",
    "CLOSED",
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
    "apply_mask",
    "d",
    "missing_internals",
    "parse_headers",
    "parse_line",
]
