"""The index of every session: who owns it, who may find it, and how.

A :class:`Directory` answers the questions pairing asks — which session a
call SID was registered for, which bare frontend has waited longest, which
sessions a user holds, whether an ID has already ended — and owns the one-time
stream tokens. Sessions themselves (their runners, sockets and timers) never
live here: each process keeps its own in :class:`~relay.lifecycle.registry.Registry`.

:class:`~relay.lifecycle.memory.MemoryDirectory` serves one process;
:class:`~relay.fleet.directory.RedisDirectory` serves a fleet. Every method is
a coroutine so both fit; the in-memory one never suspends, so within one
process a look-up and the claim that follows it cannot be interleaved.
Operations that pick one entry among many (:meth:`Directory.take_waiting`,
:meth:`Directory.take_unwatched`, :meth:`Directory.spend_stream_token`) are
atomic in every implementation: two connections can never both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Owner:
    """Who holds a live session: the node that runs it, and its user."""

    node: str
    user_id: str | None
    #: Made by a call that named no session (pairing rule 5), no frontend has claimed it.
    ownerless_call: bool = False


class Directory(Protocol):
    """The shared index of sessions (see the module docstring)."""

    #: This process's node ID (``RELAY_NODE_ID``).
    node: str

    async def claim(self, session_id: str, user_id: str | None, *,
                    ownerless_call: bool = False) -> Owner | None:
        """Record a new live session owned by this node; the existing owner if there is one."""
        ...

    async def owner(self, session_id: str) -> Owner | None:
        """The owner of a live session, or None."""
        ...

    async def set_user(self, session_id: str, user_id: str) -> None:
        """The session now belongs to ``user_id`` (a frontend claimed it)."""
        ...

    async def release(self, session_id: str, user_id: str | None, *,
                      ended_reason: str | None) -> None:
        """The session is gone; remember ``ended_reason`` for its ID when given."""
        ...

    async def ended_reason(self, session_id: str) -> str | None:
        """Why an ID's interview ended, if it ended recently (IDs are single-use)."""
        ...

    async def user_sessions(self, user_id: str) -> list[str]:
        """Every live session of ``user_id``."""
        ...

    async def bind_call(self, call_sid: str, session_id: str) -> bool:
        """Point ``call_sid`` at ``session_id``; False if it already points elsewhere."""
        ...

    async def session_of_call(self, call_sid: str) -> str | None:
        """The session ``call_sid`` was bound to, if any."""
        ...

    async def call_started(self, session_id: str, call_sid: str) -> None:
        """The session's call started (a dead node's calls are hung up by a survivor)."""
        ...

    async def avatar_attached(self, session_id: str, avatar_id: str) -> None:
        """The session holds this avatar (a dead node's avatars are stopped by a survivor)."""
        ...

    async def learn_call(self, call_sid: str) -> None:
        """Twilio told relay of this call (a voice webhook that passed the gate), or relay placed it."""
        ...

    async def knows_call(self, call_sid: str) -> bool:
        """Whether relay learned ``call_sid`` from Twilio or placed it (only those are ever ended)."""
        ...

    async def add_waiting(self, session_id: str) -> None:
        """A bare ``/logs`` session now waits for a call (oldest first)."""
        ...

    async def take_waiting(self) -> str | None:
        """Remove and return the oldest waiting session (atomic), or None."""
        ...

    async def add_unwatched(self, session_id: str) -> None:
        """A session with a call and no frontend, for the next bare ``/logs``."""
        ...

    async def take_unwatched(self) -> str | None:
        """Remove and return the oldest unwatched session (atomic), or None."""
        ...

    async def drop_queues(self, session_id: str) -> None:
        """Remove ``session_id`` from the waiting and unwatched queues."""
        ...

    async def clear_queues(self) -> None:
        """Empty the waiting and unwatched queues (a reset)."""
        ...

    async def mint_stream_token(self, call_sid: str, session_id: str | None) -> str:
        """A one-time token binding a stream to (CallSid, session); replaces the call's last one."""
        ...

    async def mint_dial_token(self, session_id: str, ttl_s: float) -> str:
        """A stream token for a call relay is about to place: its call SID comes later."""
        ...

    async def bind_dial_token(self, token: str, call_sid: str) -> None:
        """The placed call's SID is known: bind the token to it (one live token per call)."""
        ...

    async def spend_stream_token(self, token: str | None, call_sid: str,
                                 session_id: str | None) -> bool:
        """Spend a token for exactly this call and session; a mismatch does not spend it."""
        ...

    async def close(self) -> None:
        """Release what the directory holds open."""
        ...
