"""relay's exceptions, under one root.

::

    RelayError
    ├── BadInput              input a peer sent that relay refuses (has a code)
    │   ├── MalformedMessage  not JSON, not an object, wrong field types, binary
    │   ├── UnknownMessage    a message type relay does not accept on that path
    │   └── WrongOrder        a valid message at the wrong time (media before start)
    ├── UpstreamError         the model side failed
    │   └── UpstreamConnectError  no Realtime session could be opened
    └── AvatarApiError        HeyGen could not be asked, or answered nonsense

Every :class:`BadInput` becomes an ``error`` message to a browser, or a close
code for Twilio (which accepts nothing but media, mark and clear).
"""

from __future__ import annotations


class RelayError(Exception):
    """Root of relay's exceptions."""


class BadInput(RelayError):
    """A peer sent input relay refuses.

    Attributes:
        code: a stable machine-readable code sent to the client.
        message: a human-readable explanation, safe to show (no secrets).
    """

    code = "bad_input"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class MalformedMessage(BadInput):
    """Not JSON, not an object, missing or mistyped fields, or a binary frame."""

    code = "malformed_message"


class UnknownMessage(BadInput):
    """A message type relay does not accept on this connection."""

    code = "unknown_message_type"


class WrongOrder(BadInput):
    """A valid message that is not allowed in the session's current state."""

    code = "wrong_order"


class UpstreamError(RelayError):
    """The model side failed."""


class UpstreamConnectError(UpstreamError):
    """No Realtime session could be opened.

    Attributes:
        attempts: how many connection attempts were made.
    """

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class AvatarApiError(RelayError):
    """A HeyGen request failed for good, or its answer had an unexpected shape.

    Attributes:
        attempts: how many requests were made.
        reason: a short, secret-free cause (``HTTP 503``, ``unexpected body``).
    """

    def __init__(self, message: str, *, attempts: int, reason: str) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.reason = reason
