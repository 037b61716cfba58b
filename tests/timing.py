"""The single time unit of the test suite.

Every wait in the tests is a timeout on an event, never a fixed sleep. Timeouts
and the relay's timers are expressed through :func:`t` so a slow machine can
stretch them all at once with ``RELAY_TEST_TIME_SCALE`` (default 1).
"""

import os

SCALE = float(os.environ.get("RELAY_TEST_TIME_SCALE", "1"))


def t(seconds: float) -> float:
    """Scale a duration in seconds by the suite's time unit."""
    return seconds * SCALE


#: How long a test waits for something that should happen promptly.
WAIT = t(5.0)
