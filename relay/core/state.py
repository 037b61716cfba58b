"""Where a session is in its life (the transitions are in :mod:`relay.core.session`)."""

from __future__ import annotations

from enum import IntEnum


class State(IntEnum):
    """Where a session is in its life; only ever moves forward."""

    WAITING = 1
    CONNECTING = 2
    LIVE = 3
    FAREWELL = 4
    ENDING = 5
    ENDED = 6
