"""The pairing rules, written once: which session a frontend or a call belongs to.

A call's session is, in order (DESIGN.md, "Pairing"):

1. the ``/call/{sessionId}`` path segment;
2. the ``sessionId`` custom parameter of Twilio's ``start`` message;
3. the session of a frontend that registered the call's SID (``/logs?callSid=``);
4. the oldest session of a frontend waiting on a bare ``/logs``;
5. else a new session whose ID is the call SID.

A frontend names its session (``/logs/{id}``, ``?sessionId=``), or a call SID
(``?callSid=``: the call's session, else a new one registered for it), or
nothing: a bare ``/logs`` joins the oldest call no frontend is watching, else
waits for a call. Rules 4 and 5's bare pairing serve the single-tenant
reference app: with frontend auth on they are off unless ``RELAY_BARE_PAIRING=on``.

Ownership: a session belongs to the user of the frontend that made or first
joined it, and only that user's frontends may join it. With auth on, a session
made by a call that named no session has no user yet; only a token whose
``sid`` names it may claim it.

:class:`Pairing` only decides (:data:`Target`); the registry carries a
decision out. Looking up (``peek``) never changes the directory, so the
handshake can ask before any session state is touched.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from relay.core.session import FrontendInfo
from relay.lifecycle.directory import Directory, Owner
from relay.messages import twilio
from relay.messages.closecodes import CloseCode

_SESSION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")


def valid_session_id(value: str) -> bool:
    """Whether ``value`` can name a session (UUIDs and Twilio SIDs can)."""
    return bool(_SESSION_ID.match(value))


@dataclass(frozen=True, slots=True)
class FrontendRoute:
    """Where a ``/logs`` connection asked to go, and who it is."""

    session_id: str | None = None
    call_sid: str | None = None
    info: FrontendInfo = FrontendInfo()
    #: Who is connecting (from the token once auth is on; else ``?userId=``).
    user_id: str | None = None
    #: The one session the frontend's token allows (its ``sid`` claim), if any.
    token_session_id: str | None = None


@dataclass(frozen=True, slots=True)
class Join:
    """Join this live session."""

    session_id: str
    owner: Owner


@dataclass(frozen=True, slots=True)
class Create:
    """Start a new session with this ID."""

    session_id: str
    #: A bare /logs session: the next unclaimed call takes it.
    claimable: bool = False
    #: Bind this call SID to the new session (``/logs?callSid=``).
    call_sid: str | None = None
    #: Made by a call that named no session (rule 5).
    ownerless_call: bool = False


@dataclass(frozen=True, slots=True)
class Refuse:
    """Do not pair: close (WebSocket) or answer (handshake) with these."""

    message: str
    code: int
    status: int
    #: Set when the session already ended: the frontend is told why first.
    ended_reason: str | None = None


Target = Join | Create | Refuse


class Pairing:
    """The rules above, over a :class:`~relay.lifecycle.directory.Directory`."""

    def __init__(self, directory: Directory, *, auth: bool, bare_pairing: bool) -> None:
        self.directory = directory
        self.auth = auth
        self.bare_pairing = bare_pairing

    def may_join(self, owner: Owner, route: FrontendRoute) -> bool:
        """Whether ``route``'s user may join a session owned as ``owner`` says."""
        if owner.user_id is not None:
            return owner.user_id == route.user_id
        if self.auth and owner.ownerless_call:
            # Nobody has seen this call yet: only a token minted for it may claim it.
            return route.token_session_id is not None
        return True

    async def for_frontend(self, route: FrontendRoute, *, peek: bool = False) -> Target:
        """Where a frontend goes. ``peek`` looks without taking a queued session."""
        target = await self._frontend_target(route, peek)
        allowed = route.token_session_id
        if allowed is not None and not isinstance(target, Refuse) and target.session_id != allowed:
            return Refuse("the token is for another session", CloseCode.POLICY_VIOLATION, 403)
        return target

    async def _frontend_target(self, route: FrontendRoute, peek: bool) -> Target:
        d = self.directory
        if route.session_id is not None:
            owner = await d.owner(route.session_id)
            if owner is not None:
                return self._join(route.session_id, owner, route)
            reason = await d.ended_reason(route.session_id)
            if reason is not None:
                return Refuse("that session has ended; start a new one", CloseCode.NORMAL, 410,
                              ended_reason=reason)
            return Create(route.session_id)
        if route.call_sid is not None:
            # The call's session: one bound to it, or one named by it (a call
            # that arrived without a session, or an earlier ?callSid= page).
            known = await d.session_of_call(route.call_sid) or route.call_sid
            owner = await d.owner(known)
            if known is not None and owner is not None:
                return self._join(known, owner, route, what="call")
            # Named by the call SID, so a proxy hashing ?callSid= and /call/{id}
            # sends the frontend and the call to one node.
            return Create(route.call_sid, call_sid=route.call_sid)
        if self.bare_pairing and not peek:
            while (sid := await d.take_unwatched()) is not None:
                owner = await d.owner(sid)
                if owner is not None and self.may_join(owner, route):
                    return Join(sid, owner)
        return Create(str(uuid.uuid4()), claimable=self.bare_pairing)

    def _join(self, session_id: str, owner: Owner, route: FrontendRoute,
              what: str = "session") -> Target:
        if not self.may_join(owner, route):
            return Refuse(f"that {what} belongs to another user", CloseCode.POLICY_VIOLATION, 403)
        return Join(session_id, owner)

    async def for_call(self, start: twilio.Start, path_session_id: str | None) -> Target:
        """Where a started call goes (rules 1-5)."""
        d = self.directory
        sid = path_session_id or start.custom_parameters.get("sessionId") or None
        if sid is not None:
            if not valid_session_id(sid):
                return Refuse("invalid sessionId", CloseCode.POLICY_VIOLATION, 400)
            owner = await d.owner(sid)
            return Join(sid, owner) if owner is not None else Create(sid)
        known = await d.session_of_call(start.call_sid)
        if known is not None and (owner := await d.owner(known)) is not None:
            return Join(known, owner)
        if self.bare_pairing:
            while (waiting := await d.take_waiting()) is not None:
                owner = await d.owner(waiting)
                if owner is not None:
                    return Join(waiting, owner)
        if await d.owner(start.call_sid) is not None:
            return Refuse("a session for this call already exists", CloseCode.SESSION_BUSY, 409)
        return Create(start.call_sid, ownerless_call=True)
