#!/usr/bin/env python3
"""Mint a frontend token the way the app's server does (for demos and manual tests).

    python scripts/mint_token.py alice [--session SID] [--ttl 300]

Reads RELAY_AUTH_SECRET (and RELAY_AUTH_AUDIENCE, default "relay") from the
environment and prints an HS256 JWT with sub, aud, iat, exp (and sid).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

try:
    import relay  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relay.security.auth import MIN_SECRET_BYTES, mint_token


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("user", help="the user the token names (sub)")
    parser.add_argument("--session", help="the one session it may join (sid)")
    parser.add_argument("--ttl", type=float, default=300.0, help="seconds until it expires")
    args = parser.parse_args()
    secret = os.environ.get("RELAY_AUTH_SECRET", "")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        print(f"set RELAY_AUTH_SECRET (at least {MIN_SECRET_BYTES} bytes)", file=sys.stderr)
        return 2
    audience = os.environ.get("RELAY_AUTH_AUDIENCE", "relay")
    print(mint_token(secret, args.user, audience=audience, ttl_s=args.ttl,
                     session_id=args.session))
    return 0


if __name__ == "__main__":
    sys.exit(main())
