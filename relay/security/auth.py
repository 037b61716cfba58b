"""Who a browser is: short-lived signed tokens (JWT, HS256), checked before anything else.

The Next.js app mints a token per page load (``sub``: the user, ``aud``: the
relay's audience, ``exp``: minutes away, optionally ``sid``: the one session it
may join) with the secret it shares with relay (``RELAY_AUTH_SECRET``).
Browsers cannot set headers on a WebSocket, so the token travels as a second
``Sec-WebSocket-Protocol`` value beside ``relay.v1`` (the only subprotocol
relay ever selects); ``navigator.sendBeacon`` cannot set headers at all, so the
API also takes it from the query string. The algorithm is pinned: a token
signed otherwise (``none``, RS256 with a confused key) is refused.

A token's lifetime is capped (``RELAY_AUTH_MAX_TTL_S``, 24 h by default,
counted from ``iat`` to ``exp``), so a leaked long-lived token cannot be used
for months; with a cap, a token without ``iat`` is refused, since its age
cannot be known. Times are checked here against an injected clock, not inside
PyJWT, so tests can move time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from relay.errors import AuthError

SUBPROTOCOL = "relay.v1"
ALGORITHM = "HS256"
#: RFC 7518 §3.2: an HS256 key must be at least as long as the hash (32 bytes).
MIN_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller: the user, and the one session the token allows, if any."""

    user_id: str
    session_id: str | None = None

    def may_open(self, session_id: str | None) -> bool:
        """Whether the token allows joining ``session_id`` (None: a new, unnamed one)."""
        return self.session_id is None or self.session_id == session_id


class TokenVerifier:
    """Verifies relay's frontend tokens.

    Args:
        secret: the shared HS256 secret.
        audience: the required ``aud`` claim.
        leeway_s: clock skew tolerated on ``exp``/``nbf``/``iat``.
        max_ttl_s: the longest lifetime (``exp - iat``) accepted; 0: any, and
            ``iat`` is not required.
        now: the wall clock (seconds since the epoch).
    """

    def __init__(self, secret: str, audience: str, leeway_s: float = 5.0, *,
                 max_ttl_s: float = 0.0, now: Callable[[], float] = time.time) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"RELAY_AUTH_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._audience = audience
        self._leeway = leeway_s
        self._max_ttl = max_ttl_s
        self._now = now

    def __repr__(self) -> str:
        return f"TokenVerifier(audience={self._audience!r})"

    def verify(self, token: str | None) -> Principal:
        """The principal a token names.

        Raises:
            AuthError: 401 if the token is missing, malformed, expired, for
                another audience, signed with another algorithm or key.
        """
        if not token:
            raise AuthError(401, "a token is required")
        required = ["exp", "aud", "sub", *(["iat"] if self._max_ttl else [])]
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                options={"require": required, "verify_exp": False, "verify_nbf": False,
                         "verify_iat": False},
            )
        except jwt.MissingRequiredClaimError as exc:
            if exc.claim == "iat":
                raise AuthError(401, "the token has no iat, so its lifetime is unknown") from None
            raise AuthError(401, "the token is not valid") from None
        except jwt.InvalidTokenError:
            raise AuthError(401, "the token is not valid") from None
        self._check_times(claims)
        sub, sid = claims.get("sub"), claims.get("sid")
        if not isinstance(sub, str) or not sub or len(sub) > 128:
            raise AuthError(401, "the token names no user")
        if sid is not None and (not isinstance(sid, str) or len(sid) > 64):
            raise AuthError(401, "the token's sid is not valid")
        return Principal(user_id=sub, session_id=sid)

    def _check_times(self, claims: dict[str, Any]) -> None:
        now, leeway = self._now(), self._leeway
        exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        for value in (exp, nbf, iat):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise AuthError(401, "the token is not valid")
        if exp is None or now > exp + leeway:
            raise AuthError(401, "the token has expired")
        if nbf is not None and now + leeway < nbf:
            raise AuthError(401, "the token is not valid yet")
        if iat is not None and now + leeway < iat:
            raise AuthError(401, "the token is not valid yet")
        if self._max_ttl and iat is not None and exp - iat > self._max_ttl:
            raise AuthError(401, "the token lives longer than relay accepts (RELAY_AUTH_MAX_TTL_S)")


def token_from_subprotocols(header: str | None) -> str | None:
    """The token offered beside ``relay.v1`` in ``Sec-WebSocket-Protocol``, if any."""
    if not header:
        return None
    offered = [value.strip() for value in header.split(",")]
    others = [value for value in offered if value and value != SUBPROTOCOL]
    return others[0] if len(others) == 1 else None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if any."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def mint_token(
    secret: str,
    user_id: str,
    *,
    audience: str = "relay",
    ttl_s: float = 300.0,
    session_id: str | None = None,
) -> str:
    """A token as the app's server would mint it (demos, tests, ``scripts/mint_token.py``)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "aud": audience, "iat": now, "exp": now + int(ttl_s)}
    if session_id is not None:
        claims["sid"] = session_id
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
