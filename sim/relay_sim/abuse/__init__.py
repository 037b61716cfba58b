"""Abuse checks against a running relay: one source for ``scripts/abuse.py`` and the tests.

Each check (:data:`~relay_sim.abuse.catalog.CHECKS`) is an async function of the relay under
test (:class:`~relay_sim.abuse.harness.Relay`) that returns a one-line detail, raises
:class:`~relay_sim.checks.CheckFailed`, or :class:`~relay_sim.checks.Skipped` when it does not
apply to the relay's mode (read from ``/health``: development or secured). The modules:

- :mod:`~relay_sim.abuse.messages`: malformed, binary, oversized, out-of-order input;
- :mod:`~relay_sim.abuse.floods`: floods the inbound budget must end with 4029;
- :mod:`~relay_sim.abuse.connections`: handshakes, huge requests, repeated headers, the rate limit;
- :mod:`~relay_sim.abuse.identity`: signatures, stream tokens, tokens, sessions, origins,
  operator endpoints, cross-site posts, framing;
- :mod:`~relay_sim.abuse.session`: the mode, a normal call end to end, back to baseline.
"""

from relay_sim.abuse.catalog import (
           BY_NAME,
           CHECKS,
           Check,
           Result,
           connect,
           run_all,
           run_one,
           summary,
)
from relay_sim.abuse.harness import Relay, Target

__all__ = ["BY_NAME", "CHECKS", "Check", "Relay", "Result", "Target", "connect", "run_all",
           "run_one", "summary"]
