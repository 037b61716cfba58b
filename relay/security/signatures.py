"""Twilio request signatures and one-time stream tokens.

Twilio signs every webhook and the Media Streams WebSocket upgrade with
``X-Twilio-Signature``: HMAC-SHA1 of the full URL it called (plus the sorted
POST form fields), keyed with the account's auth token. relay checks it with
Twilio's own validator, over ``PUBLIC_URL`` — the URL Twilio called, which a
proxy in front of relay hides from the request itself.

The signature carries no timestamp, so a captured upgrade could be replayed.
``/twiml`` therefore also mints a one-time stream token bound to the call,
passed as a ``<Parameter>`` (Twilio drops query strings from stream URLs); the
stream's ``start`` message must carry it, soon, once.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator

from relay.providers.twiml import stream_url


class TwilioSignatures:
    """Checks ``X-Twilio-Signature`` on webhooks and stream upgrades.

    Args:
        auth_token: the Twilio account's auth token.
        public_url: the relay's public base URL (``https://relay.example.com``).
    """

    def __init__(self, auth_token: str, public_url: str) -> None:
        self._validator = RequestValidator(auth_token)
        self._public = public_url.rstrip("/")

    def __repr__(self) -> str:
        return f"TwilioSignatures(public_url={self._public!r})"

    def webhook_ok(self, path: str, form: Mapping[str, str], signature: str | None) -> bool:
        """Whether a webhook request (``path`` with its query) was signed by Twilio."""
        if not signature:
            return False
        return bool(self._validator.validate(self._public + path, dict(form), signature))

    def stream_ok(self, path: str, signature: str | None) -> bool:
        """Whether a ``/call`` upgrade was signed by Twilio (over the ``wss://`` URL)."""
        if not signature:
            return False
        # Twilio signs the stream URL as written in the TwiML (wss://); accept
        # the https:// spelling of the same URL too.
        candidates = (stream_url(self._public, path), self._public + path)
        return any(self._validator.validate(url, {}, signature) for url in candidates)

    @property
    def host(self) -> str:
        """The public host (for building stream URLs)."""
        return urlsplit(self._public).netloc


class StreamTokens:
    """One-time tokens that bind a stream to the webhook that started its call.

    Args:
        ttl_s: how long a token may wait for its ``start`` message.
        clock: monotonic seconds.
        capacity: most unspent tokens kept (oldest dropped first).
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float], capacity: int = 10_000) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._capacity = capacity
        self._tokens: dict[str, tuple[str, float]] = {}

    def mint(self, call_sid: str) -> str:
        """A new token for ``call_sid``."""
        self._purge()
        if len(self._tokens) >= self._capacity:
            del self._tokens[next(iter(self._tokens))]
        token = secrets.token_urlsafe(24)
        self._tokens[token] = (call_sid, self._clock() + self._ttl)
        return token

    def consume(self, token: str | None, call_sid: str) -> bool:
        """Spend ``token`` for ``call_sid``; True only once, in time, for that call."""
        if not token:
            return False
        entry = self._tokens.pop(token, None)
        if entry is None:
            return False
        bound_sid, expires = entry
        return bound_sid == call_sid and self._clock() <= expires

    def _purge(self) -> None:
        now = self._clock()
        for token in [t for t, (_, exp) in self._tokens.items() if exp < now]:
            del self._tokens[token]

    def __len__(self) -> int:
        return len(self._tokens)
