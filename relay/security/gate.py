"""Admission control: every request is checked here before any session state is touched.

In order: the per-IP connection rate limit (429); then, for ``/logs``, the
browser origin (403), the frontend token (401) and the session the token
allows (403); for ``/call``, Twilio's signature (403); for the API, the
caller's identity (401). Who owns a session and whether there is room is the
registry's to say, after the gate. A refusal is a plain HTTP answer on the
handshake, so a refused client never reaches a session, a model connection or
a log line with its token.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from websockets.http11 import Request

from relay.config import Settings
from relay.security.auth import (
    AuthError,
    Principal,
    TokenVerifier,
    bearer_token,
    token_from_subprotocols,
)
from relay.security.limits import ConnectionRateLimit
from relay.security.signatures import TwilioSignatures
from relay.wire.httpbody import form_fields


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling the HTTP API: an operator (admin token) and/or a user."""

    admin: bool
    user_id: str | None


class Gate:
    """relay's admission checks; one per server."""

    def __init__(self, settings: Settings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self.verifier = (
            TokenVerifier(settings.auth_secret, settings.auth_audience)
            if settings.auth_secret else None
        )
        self.signatures = (
            TwilioSignatures(settings.twilio_auth_token, settings.public_url)
            if settings.verifies_twilio else None
        )
        self.rate = ConnectionRateLimit(settings.conn_rate_per_s, settings.conn_burst)

    # -- every request -------------------------------------------------------------

    def client_address(self, remote: object, request: Request) -> str:
        """The client's IP (X-Forwarded-For only behind a trusted proxy)."""
        if self.settings.trust_proxy:
            forwarded = request.headers.get("X-Forwarded-For", "")
            if forwarded:
                return forwarded.split(",")[0].strip()[:64]
        if isinstance(remote, tuple) and remote:
            return str(remote[0])
        return "unknown"

    def rate_ok(self, client: str) -> bool:
        """Spend one connection from ``client``'s budget."""
        return self.rate.allow(client, self.clock())

    # -- /logs ----------------------------------------------------------------------

    def origin_ok(self, request: Request) -> bool:
        """Whether a browser's Origin is allowed (non-browser clients send none)."""
        origin = request.headers.get("Origin")
        allowed = self.settings.allowed_origins
        return origin is None or "*" in allowed or origin.rstrip("/") in allowed

    def admit_frontend(self, request: Request, session_id: str | None,
                       query: Mapping[str, str]) -> tuple[str | None, str | None]:
        """Check a ``/logs`` handshake: the user it acts for (None: unknown), and the
        one session its token allows (its ``sid``), if it names one.

        Raises:
            AuthError: 401/403 with the reason.
        """
        if not self.origin_ok(request):
            raise AuthError(403, "this origin may not connect")
        if self.verifier is not None:
            principal = self.verifier.verify(
                token_from_subprotocols(request.headers.get("Sec-WebSocket-Protocol"))
            )
            if session_id is not None and not principal.may_open(session_id):
                raise AuthError(403, "the token is for another session")
            return principal.user_id, principal.session_id
        return query.get("userId") or None, None

    # -- /call and /twiml ----------------------------------------------------------------

    def admit_call(self, request: Request) -> None:
        """Check a ``/call`` upgrade's Twilio signature.

        Raises:
            AuthError: 403 when signatures are on and this one is missing or wrong.
        """
        if self.signatures is None:
            return
        if not self.signatures.stream_ok(request.path, request.headers.get("X-Twilio-Signature")):
            raise AuthError(403, "invalid Twilio signature")

    def admit_webhook(self, request: Request) -> None:
        """Check ``/twiml``'s Twilio signature (over PUBLIC_URL, path, query and form).

        Raises:
            AuthError: 403 when signatures are on and this one is missing or wrong.
        """
        if self.signatures is None:
            return
        ok = self.signatures.webhook_ok(
            request.path, form_fields(request), request.headers.get("X-Twilio-Signature")
        )
        if not ok:
            raise AuthError(403, "invalid Twilio signature")

    # -- the API ---------------------------------------------------------------------------

    def is_admin(self, request: Request, query: Mapping[str, str]) -> bool:
        """Whether the request carries the operator token (``RELAY_ADMIN_TOKEN``)."""
        admin_token = self.settings.admin_token
        token = _offered_token(request, query)
        return bool(admin_token) and token is not None and hmac.compare_digest(
            token.encode(), admin_token.encode())

    def api_caller(self, request: Request, query: Mapping[str, str]) -> Caller:
        """Identify an API caller: the admin token, a user token, or (dev mode) ``?userId=``.

        Raises:
            AuthError: 401 when auth is on and no valid token was given.
        """
        if self.is_admin(request, query):
            return Caller(admin=True, user_id=None)
        token = _offered_token(request, query)
        if self.verifier is not None:
            principal: Principal = self.verifier.verify(token)
            return Caller(admin=False, user_id=principal.user_id)
        return Caller(admin=False, user_id=query.get("userId") or None)


def _offered_token(request: Request, query: Mapping[str, str]) -> str | None:
    # Beacons cannot set headers, so the query string carries the token there.
    return bearer_token(request.headers.get("Authorization")) or query.get("token")
