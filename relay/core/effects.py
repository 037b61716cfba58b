"""What a session decided: frames to send and things to do.

:class:`~relay.core.session.Session` never touches a socket. Each of its input
methods (decorated with :func:`hands_back`) appends to the session's
:class:`Effects` and hands them back; the runner carries them out in order —
sends first (call, model, frontends), then commands. Helpers the inputs call
append to the same object; only inputs hand effects back.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar


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


class _Deciding(Protocol):
    _fx: Effects


S = TypeVar("S", bound=_Deciding)
P = ParamSpec("P")


def hands_back(method: Callable[Concatenate[S, P], None]) -> Callable[Concatenate[S, P], Effects]:
    """An input: run it, then hand back (and forget) every effect it decided on."""

    @functools.wraps(method)
    def input_method(self: S, *args: P.args, **kwargs: P.kwargs) -> Effects:
        try:
            method(self, *args, **kwargs)
        except BaseException:
            # Half-made decisions of a failed input are never performed.
            self._fx = Effects()
            raise
        fx, self._fx = self._fx, Effects()
        return fx

    return input_method
