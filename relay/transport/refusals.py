"""One way to log a refusal: a client's first few in full, then only counts.

Handshake refusals (admission) and refusals right after the handshake (a call's bad
``start``, a frontend its session will not take) are keyed by the client's address in the
gate's :class:`~relay.security.sampling.RefusalSampler`, so one address refused a thousand
times costs a handful of lines, not a thousand.
"""

from __future__ import annotations

from typing import Any

from relay.logs import Ev, get_logger
from relay.security.gate import Gate

_log = get_logger(component="server")


def log_refusal(gate: Gate, client: str, event: str, log: Any = None, **fields: Any) -> None:
    """Log a refusal of ``client`` (with ``log``'s bound context), sampled per address."""
    sample = gate.refusals.note(client)
    if sample is None:
        return
    logger = log if log is not None else _log
    if not sample.full:
        logger.warning(Ev.REFUSALS_SAMPLED, client=client, unlogged=sample.suppressed)
    elif sample.earlier:
        logger.warning(event, client=client, unloggedBefore=sample.earlier, **fields)
    else:
        logger.warning(event, client=client, **fields)
