"""Twilio request signatures and one-time stream tokens.

Twilio signs every webhook and the Media Streams WebSocket upgrade with
``X-Twilio-Signature``: HMAC-SHA1 of the full URL it called (plus the sorted
POST form fields), keyed with the account's auth token. relay checks it with
Twilio's own validator, over ``PUBLIC_URL`` — the URL Twilio called, which a
proxy in front of relay hides from the request itself.

The signature carries no timestamp, so a captured upgrade could be replayed.
``/twiml`` therefore also mints a one-time stream token bound to the call and
its session (kept by the :class:`~relay.lifecycle.directory.Directory`), passed
as a ``<Parameter>`` (Twilio drops query strings from stream URLs); the
stream's ``start`` message must carry it, soon, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator

from relay.messages.twiml import stream_url


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
