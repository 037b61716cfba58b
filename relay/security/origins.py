"""Which browser origins may use relay: ``RELAY_ALLOWED_ORIGINS``, matched one way everywhere.

An entry is ``*`` (any origin), an exact origin (``https://app.example.com``),
or an origin whose port is ``*`` (``http://localhost:*``: that scheme and host
on any port, or none). Development mode's default is the last kind for
localhost, 127.0.0.1 and [::1], so a dev server on any port works and no other
website can read a local relay's sessions. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["origin_allowed"]


def origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    """Whether a browser's ``Origin`` header value matches an allowed entry."""
    origin = origin.strip().rstrip("/").lower()
    for entry in allowed:
        entry = entry.rstrip("/").lower()
        if entry == "*" or entry == origin:
            return True
        if entry.endswith(":*") and _same_but_port(origin, entry[:-2]):
            return True
    return False


def _same_but_port(origin: str, base: str) -> bool:
    # "http://localhost:*" matches http://localhost and http://localhost:<digits>,
    # never http://localhost.evil.example.
    if origin == base:
        return True
    if not origin.startswith(base + ":"):
        return False
    port = origin[len(base) + 1:]
    return port.isdigit() and len(port) <= 5
