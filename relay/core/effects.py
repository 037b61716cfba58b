"""What a session decided: frames to send and things to do.

:class:`~relay.core.session.Session` never touches a socket. Each of its input
methods appends to an :class:`Effects`; the runner carries them out in order —
sends first (call, model, frontends), then commands — and clears them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ModelEvent:
    """A model event bound for the session's frontends.

    ``text`` is the event exactly as the model sent it, forwarded as-is to GA
    frontends; beta frontends get a translation of ``event``.
    """

    text: str
    event: dict[str, Any]
    type: str


@dataclass(frozen=True, slots=True)
class OpenUpstream:
    """Open the session's model connection."""


@dataclass(frozen=True, slots=True)
class RunTool:
    """Run a function call the model made; its outcome comes back as an input."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Teardown:
    """Close everything in order and forget the session (the ``ended`` message is already queued)."""

    reason: str


Command = OpenUpstream | RunTool | Teardown
#: None addresses every frontend of the session.
FrontendTarget = int | None


class Effects:
    """Outputs accumulated by a session until the runner takes them."""

    __slots__ = ("call", "commands", "frontend", "upstream")

    def __init__(self) -> None:
        self.call: list[bytes] = []
        self.upstream: list[bytes] = []
        self.frontend: list[tuple[FrontendTarget, dict[str, Any] | ModelEvent]] = []
        self.commands: list[Command] = []

    def __bool__(self) -> bool:
        return bool(self.call or self.upstream or self.frontend or self.commands)

    def clear(self) -> None:
        """Forget everything taken."""
        self.call.clear()
        self.upstream.clear()
        self.frontend.clear()
        self.commands.clear()
