"""relay's exceptions, under one root.

::

    RelayError
    ├── BadInput                input a peer sent that relay refuses (has a code)
    │   ├── MalformedMessage    not JSON, not an object, wrong field types, too deep, binary
    │   └── UnknownMessage      a message type relay does not accept on that path
    ├── Refused                 a request or connection relay will not serve
    │   ├── AuthError           no valid credentials, or not allowed (has an HTTP status)
    │   ├── Forbidden           the thing named belongs to someone else (403)
    │   ├── BadPath             a WebSocket path relay does not serve (404)
    │   ├── PairingRefused      a connection cannot join the session it names (has a close code)
    │   └── FleetUnavailable    fleet mode, and the shared Redis cannot be reached (503)
    ├── ConfigError             a configuration relay cannot use
    │   ├── SettingsError       an environment variable (also a ValueError)
    │   └── JobConfigError      a browser's job configuration (also a ValueError)
    ├── UpstreamError           the model side failed
    │   └── UpstreamConnectError    no Realtime session could be opened
    └── AvatarApiError          HeyGen could not be asked, or answered nonsense

Every :class:`BadInput` becomes an ``error`` message to a browser, or a close
code for Twilio (which accepts nothing but media, mark and clear). Every
:class:`Refused` becomes an HTTP status on the handshake or a close code.
Messages are safe to show: they never carry a secret or a user's text.
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
    """Not JSON, not an object, too deep, missing or mistyped fields, or a binary frame."""

    code = "malformed_message"


class UnknownMessage(BadInput):
    """A message type relay does not accept on this connection."""

    code = "unknown_message_type"


class Refused(RelayError):
    """A request or connection relay will not serve."""


class AuthError(Refused):
    """A request relay refuses to serve.

    Attributes:
        status: the HTTP status to answer (401 unauthenticated, 403 forbidden, …).
        message: why, safe to show (never the token).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Forbidden(Refused):
    """The session (or other thing) named belongs to another user."""

    status = 403


class BadPath(Refused, ValueError):
    """A WebSocket path relay does not serve."""

    status = 404


class PairingRefused(Refused):
    """A connection cannot join the session it names.

    Attributes:
        code: the WebSocket close code to refuse it with.
        ended_reason: set when the session already ended: the frontend is told
            why (``call.status_changed: ended``) before the close.
    """

    def __init__(self, message: str, code: int, ended_reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.ended_reason = ended_reason


class FleetUnavailable(Refused):
    """The fleet's shared store cannot be reached: new sessions are refused until it returns."""

    status = 503


class ConfigError(RelayError):
    """A configuration relay cannot use."""


class SettingsError(ConfigError, ValueError):
    """An environment variable has a value relay cannot use."""


class JobConfigError(ConfigError, ValueError):
    """A job configuration was refused.

    The message is written for the person who filled in the form: it names the
    offending field and never echoes its (possibly long) value.
    """


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
