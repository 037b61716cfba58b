"""What the registry needs from the rest of a fleet: sessions other nodes own.

One process alone has no :class:`Remote` (every session is local). In a fleet
(:mod:`relay.fleet`) a session is owned by one node — the one that holds its
call, or before the call the one that created it — and:

- a frontend that lands elsewhere is *bridged*: its socket stays on the node
  it reached, its messages travel to the owner and the owner's to it
  (:meth:`Remote.open_frontend`);
- a call that lands elsewhere *takes the session over* before its call
  starts, so audio never leaves the node that holds the call
  (:meth:`Remote.take_over`); the old owner's frontends are bridged to it;
- stop, supersede, reset and the live sessions view act on every node.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from relay.core.outbound import DialReport
from relay.core.session import EndReason, FrontendInfo
from relay.lifecycle.ports import Peer


@dataclass(slots=True)
class Carried:
    """What a session brings along when it moves to this node (a take-over)."""

    user_id: str | None
    job_config: dict[str, Any] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    registered_call_sid: str | None = None
    avatars: dict[str, str] = field(default_factory=dict)
    #: The old owner's frontends, now bridged to this node: (peer, info).
    frontends: list[tuple[Peer, FrontendInfo]] = field(default_factory=list)


class Attachment(Protocol):
    """A frontend on this node attached to a session another node owns."""

    def detach(self) -> None:
        """The frontend's socket closed: tell the owner."""
        ...


class Remote(Protocol):
    """The other nodes of the fleet, as the registry sees them."""

    node: str

    async def open_frontend(self, owner_node: str, session_id: str, conn: Peer,
                            info: FrontendInfo, user_id: str | None,
                            token_session_id: str | None) -> Attachment:
        """Bridge a local frontend socket to the session's owner.

        Raises:
            PairingRefused: the owner refused it, or did not answer in time.
        """
        ...

    async def take_over(self, owner_node: str, session_id: str) -> Carried | None:
        """Move a waiting session to this node; None if it cannot move (it has a call already)."""
        ...

    async def end(self, owner_node: str, session_id: str, reason: EndReason,
                  *, wait: bool) -> bool:
        """Ask the owner to end a session; with ``wait``, until its teardown finished."""
        ...

    async def stop_user(self, user_id: str) -> int:
        """End ``user_id``'s sessions on every other node; how many ended."""
        ...

    async def reset(self) -> int:
        """End every session on every other node; how many ended."""
        ...

    async def snapshot(self) -> list[dict[str, object]]:
        """Every other node's live sessions, each row with its ``node``."""
        ...

    def dial_report(self, owner_node: str, session_id: str, report: DialReport) -> None:
        """Pass Twilio's report on a placed call to the node that runs its session."""
        ...

    async def place_call(self, owner_node: str, session_id: str, to: str,
                         user_id: str | None) -> dict[str, Any]:
        """Ask the session's node to place its call; the endpoint's answer (status, body)."""
        ...


#: What the registry offers the fleet for requests from other nodes.
Handler = Callable[..., Awaitable[Any]]
