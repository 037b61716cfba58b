"""Ending sessions on request: stop-all, the unload beacon, supersede, reset, shutdown.

Part of :class:`~relay.lifecycle.registry.Registry` (a mixin). Each acts on
the whole fleet when there is one: the sessions of this node are ended here,
the others' through :class:`~relay.lifecycle.remote.Remote`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from relay.core.session import EndReason
from relay.errors import Forbidden
from relay.logs import Ev

if TYPE_CHECKING:
    from relay.lifecycle.registry import Registry
    from relay.lifecycle.runner import SessionRunner


class Stopping:
    """The registry's ends on request (see the module docstring)."""

    async def end_all(self: Registry, reason: EndReason) -> int:
        """End every session for ``reason`` and wait for their teardowns.

        Returns how many sessions were ended.
        """
        runners = list(self.sessions.values())
        for runner in runners:
            runner.end(reason)
        if runners:
            await asyncio.gather(*(runner.wait_done() for runner in runners))
        return len(runners)

    async def end_all_stopped(self: Registry) -> int:
        """End every session (reason ``stopped``): an operator's stop-all."""
        return await self._stop([r for r in list(self.sessions.values()) if not r.session.ended])

    async def stop_user(self: Registry, user_id: str) -> int:
        """End every session of ``user_id`` on every node (reason ``stopped``); how many."""
        stopped = await self.stop_user_here(user_id)
        if self.remote is not None:
            stopped += await self.remote.stop_user(user_id)
        return stopped

    async def stop_user_here(self: Registry, user_id: str) -> int:
        """End ``user_id``'s sessions this node runs."""
        runners = [r for sid in await self.directory.user_sessions(user_id)
                   if (r := self._local(sid)) is not None and not r.session.ended]
        return await self._stop(runners)

    async def stop_session(self: Registry, session_id: str, user_id: str | None, *, admin: bool) -> bool:
        """End one session, on whichever node; False if there is no such live session.

        Raises:
            Forbidden: the session belongs to another user.
        """
        runner = self._local(session_id)
        if runner is None and self.remote is not None:
            owner = await self.directory.owner(session_id)
            if owner is None:
                return False
            if not admin and owner.user_id is not None and owner.user_id != user_id:
                raise Forbidden("that session belongs to another user")
            return await self.remote.end(owner.node, session_id, EndReason.STOPPED, wait=True)
        if runner is None or runner.session.ended:
            return False
        owner_id = runner.session.user_id
        if not admin and owner_id is not None and owner_id != user_id:
            raise Forbidden("that session belongs to another user")
        await self._stop([runner])
        return True

    async def end_here(self: Registry, session_id: str, reason: EndReason, *, wait: bool) -> bool:
        """End a session this node runs (a request from another node)."""
        runner = self._local(session_id)
        if runner is None or runner.session.ended:
            return False
        self._log.info(Ev.STOP_REQUESTED, sessionId=session_id, reason=reason.value)
        runner.end(reason)
        if wait:
            await runner.wait_done()
        return True

    async def _stop(self: Registry, runners: list[SessionRunner]) -> int:
        for runner in runners:
            self._log.info(Ev.STOP_REQUESTED, sessionId=runner.id)
            runner.end(EndReason.STOPPED)
        await asyncio.gather(*(runner.wait_done() for runner in runners))
        return len(runners)

    async def reset_all_sessions(self: Registry) -> int:
        """End every session on every node and clear every waiting frontend (operators, tests)."""
        ended = await self.reset_here()
        if self.remote is not None:
            ended += await self.remote.reset()
        await self.directory.clear_queues()
        return ended

    async def reset_here(self: Registry) -> int:
        """End every session this node runs (reason ``reset``)."""
        self._log.info(Ev.RESET_ALL, sessions=len(self.sessions))
        return await self.end_all(EndReason.RESET)

