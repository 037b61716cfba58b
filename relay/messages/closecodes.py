"""WebSocket close codes relay uses, in one table.

Standard codes (RFC 6455 §7.4.1) where one fits; 4000-4999 for relay's own.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """Why relay closed a WebSocket."""

    #: The session ended normally (reason in ``call.status_changed``).
    NORMAL = 1000
    #: The server is shutting down.
    GOING_AWAY = 1001
    #: A binary frame where only JSON text is accepted.
    UNSUPPORTED_DATA = 1003
    #: A text frame that is not valid UTF-8.
    INVALID_DATA = 1007
    #: A message broke the protocol (Twilio: anything refused; bad order).
    POLICY_VIOLATION = 1008
    #: A message exceeded the size limit for its endpoint.
    MESSAGE_TOO_BIG = 1009
    #: relay failed internally; the session was ended.
    INTERNAL_ERROR = 1011
    #: The peer did not read fast enough; its send buffer hit the bound.
    TRY_AGAIN_LATER = 1013
    #: The call stream did not send ``start`` in time.
    START_TIMEOUT = 4008
    #: The session already has a call; a second one is refused.
    SESSION_BUSY = 4009
    #: The session this connection belonged to was ended by a newer one.
    SUPERSEDED = 4010
    #: The peer sent more than its endpoint's inbound budget (messages or bytes
    #: a second, fragments per message); relay did not wait for its answer.
    INBOUND_BUDGET = 4029
