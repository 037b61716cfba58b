"""Sessions and frontends that move: between nodes of a fleet, and from one call to the next.

Part of :class:`~relay.lifecycle.registry.Registry` (a mixin, so the
registry's module stays about creating and pairing): a waiting session handed
over to the node its call reached and arriving there with its frontends; a
frontend held by another node joining a session this node owns; a bare
``/logs`` page kept open when its call ends and given a new waiting session
with the configuration it saved.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from relay.core.session import EndReason, FrontendInfo
from relay.errors import PairingRefused
from relay.lifecycle.pairing import Create
from relay.lifecycle.ports import Peer
from relay.lifecycle.remote import Attachment, Carried
from relay.logs import Ev
from relay.messages.closecodes import CloseCode

if TYPE_CHECKING:
    from relay.lifecycle.registry import Registry
    from relay.lifecycle.runner import SessionRunner

#: Ends after which a bare /logs frontend stays and waits for the next call.
CALL_ENDS = frozenset({
    EndReason.CALLER_HUNG_UP, EndReason.CALL_DROPPED, EndReason.INTERVIEW_COMPLETED,
    EndReason.UPSTREAM_FAILED, EndReason.UPSTREAM_CLOSED, EndReason.MAX_DURATION,
    EndReason.FRONTEND_ENDED, EndReason.NO_ANSWER, EndReason.BUSY, EndReason.CALL_FAILED,
    EndReason.CANCELED, EndReason.VOICEMAIL,
})


class Moves:
    """The registry's moves (see the module docstring)."""

    def hold_for_remote(self: Registry, conn: Peer, attachment: Attachment) -> None:
        """A local socket now belongs to a session another node owns (it moved there)."""
        self._attachments[conn] = attachment

    async def accept_frontend(self: Registry, session_id: str, peer: Peer, info: FrontendInfo,
                              user_id: str | None) -> PairingRefused | None:
        """A frontend another node holds joins a session this node owns (fleet)."""
        runner = await self._arrived(session_id)
        if runner is None or runner.session.ended:
            return PairingRefused("that session is ending; start a new one",
                                  CloseCode.TRY_AGAIN_LATER)
        owner = runner.session.user_id
        if owner is not None and user_id is not None and owner != user_id:
            return PairingRefused("that session belongs to another user",
                                  CloseCode.POLICY_VIOLATION)
        if len(runner.frontends) >= self._limits.max_frontends_per_session:
            return PairingRefused("too many frontends on this session", CloseCode.TRY_AGAIN_LATER)
        if user_id is not None and owner is None:
            runner.session.user_id = user_id
            self._background(self.directory.set_user(session_id, user_id))
        fid = runner.attach_frontend(peer, info)
        self._attachments[peer] = (runner, fid)
        return None

    def _arrive(self: Registry, session_id: str, carried: Carried) -> SessionRunner:
        runner = self._new_runner(session_id, carried.user_id)
        session = runner.session
        session.config.restore(carried.job_config, carried.overrides)
        session.registered_call_sid = carried.registered_call_sid
        session.avatars.update(carried.avatars)
        self._log.info(Ev.SESSION_MOVED_HERE, sessionId=session_id,
                       frontends=len(carried.frontends))
        for peer, info in carried.frontends:
            fid = runner.attach_frontend(peer, info)
            self._attachments[peer] = (runner, fid)
        return runner

    def hand_over(self: Registry, session_id: str) -> tuple[SessionRunner, list[tuple[Peer, FrontendInfo]]] | None:
        """Give a waiting session to another node (its call arrived there): this node forgets it.

        Returns the runner (to read what moves) and its frontends, which the
        caller bridges to the new owner; None if it cannot move.
        """
        runner = self._local(session_id)
        if runner is None or runner.session.ended or runner.session.call is not None:
            return None
        links = [(link.conn, link.info) for link in runner.frontends.values()]
        for link in runner.frontends.values():
            self._attachments.pop(link.conn, None)
        runner.relinquish()
        del self.sessions[session_id]
        self._log.info(Ev.SESSION_MOVED_AWAY, sessionId=session_id, frontends=len(links))
        return runner, links

    def _keeps_frontends(self: Registry, runner: SessionRunner) -> set[int]:
        # The reference app's page connects once to a bare /logs, saves its
        # configuration once, and expects the next call to use it: its
        # frontends outlive a call that ended, not an operator's or a reaper's end.
        if not self.pairing.bare_pairing or runner.session.end_reason not in CALL_ENDS:
            return set()
        return {fid for fid, link in runner.frontends.items()
                if link.info.bare and link.conn.is_open}

    async def _rehome(self: Registry, old: SessionRunner) -> None:
        links = [link for link in old.kept_frontends if link.conn.is_open]
        if not links:
            return
        try:
            runner = await self._create(Create(str(uuid.uuid4()), claimable=True),
                                        old.session.user_id)
        except PairingRefused as exc:
            for link in links:
                self._attachments.pop(link.conn, None)
                link.conn.close_soon(exc.code, str(exc))
            return
        runner.session.config.carry_over(old.session.config)
        # A page may have closed while the new session was being made.
        links = [link for link in links if link.conn.is_open]
        self._log.info(Ev.FRONTEND_REHOMED, sessionId=runner.id, previous=old.id,
                       frontends=len(links))
        for link in links:
            fid = runner.attach_frontend(link.conn, link.info)
            self._attachments[link.conn] = (runner, fid)
        if not links:
            runner.end(EndReason.FRONTEND_LEFT)

