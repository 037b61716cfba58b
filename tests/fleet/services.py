"""The programs the fleet tests run, and the marks that skip a test where one is missing."""

from __future__ import annotations

import pytest
from relay_sim.processes import find_binary

REDIS_SERVER = find_binary("redis-server")
HAPROXY = find_binary("haproxy")
OPENSSL = find_binary("openssl")

_INSTALL = "scripts/install_fleet_services.sh installs"


def _needs(*names: str) -> pytest.MarkDecorator:
    found = {"redis-server": REDIS_SERVER, "haproxy": HAPROXY}
    missing = [name for name in names if found[name] is None]
    which = "it" if len(missing) == 1 else "them"
    return pytest.mark.skipif(
        bool(missing), reason=f"{' and '.join(missing)} not found: {_INSTALL} {which}")


needs_haproxy = _needs("haproxy")
needs_redis = _needs("redis-server")
#: Redis and HAProxy both.
needs_fleet = _needs("redis-server", "haproxy")
