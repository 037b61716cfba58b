"""The fleet under test: Redis, two relay nodes and HAProxy, each a real process on loopback.

The nodes run the built-in local model, with the per-IP rate limit off (every test connection
comes from 127.0.0.1) and an admin token for ``GET /api/sessions``. After the fleet stops, the
fixture checks that none of its processes is left.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from relay_sim.fleet import Fleet
from relay_sim.processes import group_members

from tests.timing import t

ADMIN_TOKEN = "fleet-admin-token-0123"
NODE_ENV = {
    "RELAY_CONN_RATE_PER_S": "0",
    "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
    "RELAY_RESUME_GRACE_S": str(t(0.5)),
    "RELAY_DRAIN_S": str(t(3.0)),
}


def assert_no_process_left(groups: list[int]) -> None:
    """No process of these process groups runs any more."""
    left = {group: group_members(group) for group in groups}
    assert not any(left.values()), f"processes left behind: {left}"


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    """Redis, nodes n1 and n2 (plain relays until fleet mode exists) and HAProxy in front."""
    async with Fleet(2, env=NODE_ENV, ready_timeout=t(20), stop_timeout=t(10),
                     check_inter="200ms") as running:
        yield running
        groups = running.process_groups()
    assert_no_process_left(groups)
