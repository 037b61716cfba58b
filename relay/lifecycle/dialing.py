"""Calls relay places for a session ("call me now"), as the registry sees them.

Part of :class:`~relay.lifecycle.registry.Registry` (a mixin). The endpoint
(``POST /api/calls``) asks for the session the call is for — made here if no
node has it yet, owned by the user who asked — and every report from Twilio
(the placement, signed status callbacks, the answering-machine verdict)
reaches that session on whichever node runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relay.core.outbound import DialReport
from relay.errors import Forbidden, PairingRefused
from relay.lifecycle.pairing import Create
from relay.messages.closecodes import CloseCode

if TYPE_CHECKING:
    from relay.lifecycle.registry import Registry
    from relay.lifecycle.runner import SessionRunner


class Dialing:
    """The registry's side of outbound calls (see the module docstring)."""

    async def dial_session(self: Registry, session_id: str,
                           user_id: str | None) -> SessionRunner | str:
        """The session a call is to be placed for: its runner here, or the node that owns it.

        Raises:
            Forbidden: the session belongs to another user.
            PairingRefused: the session has ended or is ending, or relay is full.
        """
        for _ in range(3):
            runner = await self._arrived(session_id)
            if runner is None:
                owner = await self.directory.owner(session_id)
                if owner is not None and owner.node != self.node:
                    if owner.user_id is not None and owner.user_id != user_id:
                        raise Forbidden("that session belongs to another user")
                    return owner.node
                if owner is None:
                    ended = await self.directory.ended_reason(session_id)
                    if ended is not None:
                        raise PairingRefused("that session has ended; start a new one",
                                             CloseCode.NORMAL, ended_reason=ended)
                    await self._supersede(user_id, keep=session_id)
                    try:
                        runner = await self._create(Create(session_id), user_id)
                    except PairingRefused as exc:
                        if exc.code == CloseCode.SESSION_BUSY:
                            continue  # made meanwhile by another connection
                        raise
                if runner is None:
                    continue
            if runner.session.ended:
                raise PairingRefused("that session is ending; start a new one",
                                     CloseCode.TRY_AGAIN_LATER)
            owner_id = runner.session.user_id
            if owner_id is not None and owner_id != user_id:
                raise Forbidden("that session belongs to another user")
            if owner_id is None and user_id is not None:
                runner.session.user_id = user_id
                await self.directory.set_user(session_id, user_id)
            return runner
        raise PairingRefused("that session is busy; try again", CloseCode.TRY_AGAIN_LATER)

    async def dial_report(self: Registry, session_id: str, report: DialReport) -> bool:
        """Deliver Twilio's report to the session, here or on its node; False if it is gone."""
        runner = self._local(session_id)
        if runner is not None:
            runner.dial_report(report)
            return True
        if self.remote is None:
            return False
        owner = await self.directory.owner(session_id)
        if owner is None or owner.node == self.node:
            return False
        self.remote.dial_report(owner.node, session_id, report)
        return True
