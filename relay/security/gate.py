"""Admission control: every request is checked here before any session state is touched.

In order: headers relay reads must not be repeated (400); the per-IP
connection rate limit (429), which a ``/call`` upgrade escapes only once its
Twilio signature has been verified (Twilio's few addresses carry every call);
then, for ``/logs``, the browser origin (403), the frontend token (401) and the
session the token allows (403); for ``/call``, Twilio's signature (403); for the
API, the caller's identity (401) and, for operator endpoints, the admin token
(403 when none is configured). Who owns a session and whether there is room is
the registry's to say, after the gate. A refusal is a plain HTTP answer on the
handshake, so a refused client never reaches a session, a model connection or
a log line with its token; refusals are logged sampled per client address.

Every time the gate reads goes through its two injected clocks: ``clock``
(monotonic: rate limits, log sampling) and ``wall`` (token lifetimes).
"""

from __future__ import annotations

import hmac
import time
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
from relay.security.origins import origin_allowed
from relay.security.sampling import RefusalSampler
from relay.security.signatures import TwilioSignatures
from relay.wire.budget import BudgetLimits
from relay.wire.httpbody import form_fields


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling the HTTP API: an operator (admin token) and/or a user."""

    admin: bool
    user_id: str | None


#: Headers relay reads: each must come at most once. websockets' ``Headers``
#: raises on a repeated one, and a repeated Origin or Authorization is how a
#: confused proxy or an attacker smuggles a second value past a check.
SINGLE_HEADERS = ("Origin", "Authorization", "Sec-WebSocket-Protocol", "X-Twilio-Signature",
                  "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Host",
                  "Content-Type", "X-Relay-Request")


def repeated_header(request: Request) -> str | None:
    """The first header of :data:`SINGLE_HEADERS` that ``request`` repeats, if any."""
    for name in SINGLE_HEADERS:
        if len(request.headers.get_all(name)) > 1:
            return name
    return None


class Gate:
    """relay's admission checks; one per server."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.wall = wall
        self.verifier = (
            TokenVerifier(settings.auth_secret, settings.auth_audience,
                          max_ttl_s=settings.auth_max_ttl_s, now=wall)
            if settings.auth_secret else None
        )
        self.signatures = (
            TwilioSignatures(settings.twilio_auth_token, settings.public_url)
            if settings.verifies_twilio else None
        )
        self.rate = ConnectionRateLimit(settings.conn_rate_per_s, settings.conn_burst)
        #: What one connection may send, per endpoint.
        self.call_budget = BudgetLimits.for_endpoint(
            messages_per_s=settings.call_messages_per_s, message_burst=settings.call_message_burst,
            bytes_per_s=settings.call_bytes_per_s, max_fragments=settings.max_fragments,
            max_message=settings.max_call_message)
        self.frontend_budget = BudgetLimits.for_endpoint(
            messages_per_s=settings.frontend_messages_per_s,
            message_burst=settings.frontend_message_burst,
            bytes_per_s=settings.frontend_bytes_per_s, max_fragments=settings.max_fragments,
            max_message=settings.max_frontend_message)
        #: Which handshake refusals are logged, per client address.
        self.refusals = RefusalSampler(settings.refusal_log_first, settings.refusal_log_window_s,
                                       clock)

    # -- every request -------------------------------------------------------------

    def client_address(self, remote: object, request: Request) -> str:
        """The client's IP: the socket's peer, or behind a trusted proxy the
        X-Forwarded-For entry it appended.

        Each proxy appends the address it saw, so only the last
        ``RELAY_TRUSTED_HOPS`` entries were written by proxies relay trusts;
        everything left of them is whatever the client chose to send (as
        uvicorn's proxy headers handling reads it).
        """
        if self.settings.trust_proxy:
            entries = [e.strip() for e in request.headers.get("X-Forwarded-For", "").split(",")]
            entries = [e for e in entries if e]
            if entries:
                return entries[max(0, len(entries) - self.settings.trusted_hops)][:64]
        return socket_address(remote)

    def rate_ok(self, client: str) -> bool:
        """Spend one connection from ``client``'s budget."""
        return self.rate.allow(client, self.clock())

    # -- /logs ----------------------------------------------------------------------

    def origin_ok(self, request: Request) -> bool:
        """Whether a browser's Origin is allowed (non-browser clients send none)."""
        origin = request.headers.get("Origin")
        return origin is None or origin_allowed(origin, self.settings.allowed_origins)

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
        if not self.signed_by_twilio(request):
            raise AuthError(403, "invalid Twilio signature")

    def signed_by_twilio(self, request: Request) -> bool:
        """Whether signatures are on and this ``/call`` upgrade carries a valid one."""
        return self.signatures is not None and self.signatures.stream_ok(
            request.path, request.headers.get("X-Twilio-Signature"))

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

    @property
    def admin_configured(self) -> bool:
        """Whether operator endpoints are on (``RELAY_ADMIN_TOKEN`` is set)."""
        return bool(self.settings.admin_token)

    def is_admin(self, request: Request, query: Mapping[str, str] | None = None) -> bool:
        """Whether ``Authorization: Bearer`` carries the operator token (``RELAY_ADMIN_TOKEN``).

        Never the query string: URLs end up in proxy and browser logs.
        """
        admin_token = self.settings.admin_token
        token = bearer_token(request.headers.get("Authorization"))
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
    # Beacons cannot set headers, so the query string carries a user's token there.
    return bearer_token(request.headers.get("Authorization")) or query.get("token")


def socket_address(remote: object) -> str:
    """The IP of a socket's peer address, or ``unknown``."""
    if isinstance(remote, tuple) and remote:
        return str(remote[0])
    return "unknown"
