"""One node's part in the fleet: the :class:`~relay.lifecycle.remote.Remote` the registry uses.

:class:`FleetNode` joins the directory (Redis), the bus and the membership,
answers other nodes' requests through this node's registry, and keeps both
halves of bridged frontends (:mod:`relay.fleet.bridge`). Requests and their
answers:

==================  ==========================================================
``fe.open``         a frontend on the sender joins a session this node owns
``fe.text``         a bridged browser sent text (``fe.binary``: a binary frame)
``fe.gone``         a bridged browser's socket closed
``fe.send``         the owner sends the browser this node holds a frame
``fe.close``        the owner closes the browser's socket
``fe.retarget``     the session moved: send to its new owner from now on
``handover``        a call reached the sender: give it this waiting session
``end``             end a session this node runs (stop, supersede)
``stop_user``       end a user's sessions here (broadcast)
``reset``           end every session here (broadcast)
``snapshot``        this node's live sessions (broadcast)
``lost``            a dead node's session was ended (broadcast)
==================  ==========================================================
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from relay.core.outbound import DialReport, report_from_wire, report_to_wire
from relay.core.session import EndReason, FrontendInfo
from relay.errors import FleetUnavailable, PairingRefused
from relay.fleet.bridge import (
    HeldFrontend,
    RemoteFrontend,
    info_from_wire,
    info_to_wire,
)
from relay.fleet.bus import Bus, Message
from relay.fleet.directory import RedisDirectory
from relay.fleet.membership import HangUp, Membership, StopAvatar
from relay.fleet.store import Store
from relay.lifecycle.ports import Peer
from relay.lifecycle.registry import Registry
from relay.lifecycle.remote import Attachment, Carried
from relay.logs import Ev, get_logger
from relay.messages import frontend as fmsg
from relay.messages.closecodes import CloseCode

#: How long a node waits for another node's answer.
REQUEST_TIMEOUT_S = 2.0


class _Held:
    """The :class:`Attachment` of a frontend this node holds for another node's session."""

    def __init__(self, node: FleetNode, held: HeldFrontend) -> None:
        self._node = node
        self.held = held

    def detach(self) -> None:
        self._node._held.pop(self.held.link, None)
        self.held.detach()


class FleetNode:
    """This node in the fleet (see the module docstring)."""

    def __init__(self, store: Store, directory: RedisDirectory, registry: Registry, *,
                 heartbeat_s: float, dead_after_s: float,
                 hang_up: HangUp | None, stop_avatar: StopAvatar | None,
                 load: Callable[[], dict[str, Any]]) -> None:
        self.node = directory.node
        self._store = store
        self._directory = directory
        self._registry = registry
        self.bus = Bus(store, self.node, self._receive)
        self.membership = Membership(
            store, directory, heartbeat_s=heartbeat_s, dead_after_s=dead_after_s,
            load=load, hang_up=hang_up, stop_avatar=stop_avatar,
            on_lost=self._lost_found, on_node_dead=self._node_dead)
        self._links = itertools.count(1)
        #: Frontends whose sockets this node holds for sessions elsewhere: link -> half.
        self._held: dict[str, HeldFrontend] = {}
        #: Frontends this node's sessions have on other nodes: link -> half.
        self._remote: dict[str, RemoteFrontend] = {}
        #: Links of sessions that moved away: link -> new owner (to forward stragglers).
        self._moved: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Places the call of a session this node runs (the server's; see transport/calls.py).
        self.placer: Callable[[Any, str, str], Awaitable[tuple[int, dict[str, Any]]]] | None = None
        self._log = get_logger(component="fleet")

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe, beat, and become reachable by the other nodes."""
        await self.bus.start()
        await self.membership.start()
        self._log.info(Ev.FLEET_JOINED, node=self.node, nodes=len(self.membership.nodes))

    async def stop(self) -> None:
        """Leave the fleet (after this node's sessions were ended)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.membership.stop(leave=True)
        await self.bus.stop()
        self._log.info(Ev.FLEET_LEFT, node=self.node)

    def view(self) -> dict[str, Any]:
        """The fleet as ``/health`` shows it."""
        return {
            "store": "ok" if self._store.healthy else "unavailable",
            "nodes": [{"node": v.node, "alive": v.alive, "lastSeenMs": v.seen_ms_ago,
                       **v.load} for v in self.membership.nodes],
        }

    # -- Remote: what the registry asks ---------------------------------------------------

    async def open_frontend(self, owner_node: str, session_id: str, conn: Peer,
                            info: FrontendInfo, user_id: str | None,
                            token_session_id: str | None) -> Attachment:
        link = f"{self.node}/{next(self._links)}"
        held = HeldFrontend(link, conn, session_id, owner_node, self.bus.send)
        self._held[link] = held
        held.attach()
        try:
            answer = await self.bus.request(owner_node, {
                "op": "fe.open", "sid": session_id, "link": link, "info": info_to_wire(info),
                "user": user_id}, REQUEST_TIMEOUT_S)
        except TimeoutError:
            self._held.pop(link, None)
            self._log.warning(Ev.FLEET_BRIDGE_FAILED, sessionId=session_id, node=owner_node)
            raise PairingRefused("the session's relay node did not answer; try again",
                                 CloseCode.TRY_AGAIN_LATER) from None
        if not isinstance(answer, dict) or not answer.get("ok"):
            self._held.pop(link, None)
            refusal = answer if isinstance(answer, dict) else {}
            raise PairingRefused(str(refusal.get("message") or "refused"),
                                 int(refusal.get("code") or CloseCode.TRY_AGAIN_LATER),
                                 ended_reason=refusal.get("ended"))
        return _Held(self, held)

    async def take_over(self, owner_node: str, session_id: str) -> Carried | None:
        if not await self._directory.transfer(session_id, owner_node):
            return None
        try:
            answer = await self.bus.request(owner_node, {"op": "handover", "sid": session_id},
                                            REQUEST_TIMEOUT_S)
        except TimeoutError:
            answer = None
        if not isinstance(answer, dict):
            # The old owner is gone: its frontends went with it; the session
            # starts here with what the directory knows.
            owner = await self._directory.owner(session_id)
            return Carried(user_id=owner.user_id if owner else None)
        carried = Carried(
            user_id=answer.get("user"),
            job_config=answer.get("job"),
            overrides=answer.get("overrides") or {},
            registered_call_sid=answer.get("registered"),
            avatars=dict(answer.get("avatars") or {}),
        )
        for entry in answer.get("frontends") or []:
            peer = RemoteFrontend(str(entry["link"]), str(entry["holder"]), session_id,
                                  self.bus.send)
            self._remote[peer.link] = peer
            carried.frontends.append((peer, info_from_wire(entry.get("info"))))
        return carried

    async def end(self, owner_node: str, session_id: str, reason: EndReason,
                  *, wait: bool) -> bool:
        message = {"op": "end", "sid": session_id, "reason": reason.value, "wait": wait}
        if not wait:
            self.bus.send(owner_node, message)
            return True
        try:
            return bool(await self.bus.request(owner_node, message, REQUEST_TIMEOUT_S * 4))
        except TimeoutError:
            return False

    def dial_report(self, owner_node: str, session_id: str, report: DialReport) -> None:
        self.bus.send(owner_node, {"op": "dial", "sid": session_id, **report_to_wire(report)})

    async def place_call(self, owner_node: str, session_id: str, to: str,
                         user_id: str | None, public: str = "") -> dict[str, Any]:
        try:
            answer = await self.bus.request(owner_node, {
                "op": "place_call", "sid": session_id, "to": to, "user": user_id,
                "public": public}, REQUEST_TIMEOUT_S * 8)
        except TimeoutError:
            answer = None
        if not isinstance(answer, dict):
            return {"status": 503, "body": {"error": "fleet_unavailable",
                                            "message": "the session's relay node did not answer"}}
        return answer

    async def stop_user(self, user_id: str) -> int:
        return sum(int(n or 0) for n in await self._ask_others({"op": "stop_user",
                                                                "user": user_id}))

    async def reset(self) -> int:
        return sum(int(n or 0) for n in await self._ask_others({"op": "reset"}))

    async def snapshot(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for answer in await self._ask_others({"op": "snapshot"}, timeout=REQUEST_TIMEOUT_S / 2):
            if isinstance(answer, list):
                rows += [row for row in answer if isinstance(row, dict)]
        return rows

    async def _ask_others(self, message: Message, timeout: float = REQUEST_TIMEOUT_S * 4) -> list[Any]:
        others = [n for n in await self.membership.alive_now() if n != self.node]
        if not others:
            return []
        return await self.bus.request_all(message, len(others), timeout)

    # -- what other nodes send ---------------------------------------------------------------

    def _receive(self, message: Message) -> None:
        op = message.get("op")
        if message.get("from") == self.node and op in ("stop_user", "reset", "snapshot"):
            return  # this node's own broadcast: the registry did the local part
        handler = _HANDLERS.get(str(op))
        if handler is not None:
            handler(self, message)

    def _on_fe_open(self, message: Message) -> None:
        link, sid = str(message.get("link")), str(message.get("sid"))
        holder = link.rsplit("/", 1)[0]
        peer = RemoteFrontend(link, holder, sid, self.bus.send)
        # Registered at once, so the browser's next messages find it.
        self._remote[link] = peer
        self._spawn(self._open_remote(message, peer))

    async def _open_remote(self, message: Message, peer: RemoteFrontend) -> None:
        refusal = await self._registry.accept_frontend(
            peer.session_id, peer, info_from_wire(message.get("info")), message.get("user"))
        if refusal is not None:
            self._remote.pop(peer.link, None)
            self.bus.reply(message, {"ok": False, "code": refusal.code, "message": str(refusal),
                                     "ended": refusal.ended_reason})
            return
        self.bus.reply(message, {"ok": True})

    def _on_fe_text(self, message: Message) -> None:
        link = str(message.get("link"))
        peer = self._remote.get(link)
        if peer is not None:
            peer.deliver(str(message.get("text", "")))
        elif link in self._moved:
            self.bus.send(self._moved[link], message)  # a straggler: the session moved

    def _on_fe_binary(self, message: Message) -> None:
        peer = self._remote.get(str(message.get("link")))
        if peer is not None:
            peer.deliver_binary()

    def _on_fe_gone(self, message: Message) -> None:
        link = str(message.get("link"))
        peer = self._remote.pop(link, None)
        if peer is not None:
            peer.gone()
            self._registry.detach_frontend(peer)
        elif link in self._moved:
            self.bus.send(self._moved.pop(link), message)

    def _on_fe_send(self, message: Message) -> None:
        held = self._held.get(str(message.get("link")))
        if held is not None:
            held.conn.send_now(str(message.get("data", "")))

    def _on_fe_close(self, message: Message) -> None:
        held = self._held.pop(str(message.get("link")), None)
        if held is not None:
            held.conn.close_soon(int(message.get("code") or CloseCode.NORMAL),
                                 str(message.get("reason") or ""))

    def _on_fe_retarget(self, message: Message) -> None:
        held = self._held.get(str(message.get("link")))
        if held is not None:
            held.owner = str(message.get("owner"))

    def _on_handover(self, message: Message) -> None:
        new_owner = str(message.get("from"))
        moved = self._registry.hand_over(str(message.get("sid")))
        if moved is None:
            self.bus.reply(message, None)
            return
        runner, links = moved
        frontends = []
        for conn, info in links:
            if isinstance(conn, RemoteFrontend):
                # Held by a third node: it sends to the new owner from now on.
                self._remote.pop(conn.link, None)
                self._moved[conn.link] = new_owner
                self.bus.send(conn.holder, {"op": "fe.retarget", "link": conn.link,
                                            "owner": new_owner})
                frontends.append({"link": conn.link, "holder": conn.holder,
                                  "info": info_to_wire(info)})
            else:
                # A socket of this node: this node holds it for the new owner.
                link = f"{self.node}/{next(self._links)}"
                held = HeldFrontend(link, conn, runner.id, new_owner, self.bus.send)
                self._held[link] = held
                held.attach()
                self._registry.hold_for_remote(conn, _Held(self, held))
                frontends.append({"link": link, "holder": self.node, "info": info_to_wire(info)})
        session = runner.session
        job, overrides = session.config.portable()
        self.bus.reply(message, {
            "user": session.user_id, "job": job, "overrides": overrides,
            "registered": session.registered_call_sid, "avatars": session.avatars,
            "frontends": frontends,
        })

    def _on_end(self, message: Message) -> None:
        try:
            reason = EndReason(str(message.get("reason")))
        except ValueError:
            return
        sid, wait = str(message.get("sid")), bool(message.get("wait"))
        self._spawn(self._answer(message, self._registry.end_here(sid, reason, wait=wait)))

    def _on_stop_user(self, message: Message) -> None:
        self._spawn(self._answer(message, self._registry.stop_user_here(str(message.get("user")))))

    def _on_reset(self, message: Message) -> None:
        self._spawn(self._answer(message, self._registry.reset_here()))

    def _on_dial(self, message: Message) -> None:
        report = report_from_wire(message)
        if report is not None:
            self._spawn(self._registry.dial_report(str(message.get("sid")), report))

    def _on_place_call(self, message: Message) -> None:
        self._spawn(self._place(message))

    async def _place(self, message: Message) -> None:
        runner = self._registry.sessions.get(str(message.get("sid")))
        if runner is None or self.placer is None:
            self.bus.reply(message, {"status": 409, "body": {
                "error": "session_ended", "message": "that session is not running"}})
            return
        status, body = await self.placer(runner, str(message.get("to")),
                                         str(message.get("public") or ""))
        self.bus.reply(message, {"status": status, "body": body})

    def _on_snapshot(self, message: Message) -> None:
        self.bus.reply(message, self._registry.snapshot())

    def _on_lost(self, message: Message) -> None:
        sid, reason = str(message.get("sid")), str(message.get("reason"))
        for link, held in list(self._held.items()):
            if held.session_id == sid:
                self._end_held(link, held, reason)

    async def _answer(self, message: Message, work: Any) -> None:
        self.bus.reply(message, await work)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- nodes that stopped -------------------------------------------------------------------

    def _lost_found(self, session_id: str, reason: str) -> None:
        # The reaper ended a dead node's session: every node's bridged
        # frontends of it hear why, then close.
        self.bus.broadcast({"op": "lost", "sid": session_id, "reason": reason})

    def _node_dead(self, node: str) -> None:
        for link, held in list(self._held.items()):
            if held.owner == node:
                self._end_held(link, held, EndReason.RELAY_LOST.value)
        for link, peer in list(self._remote.items()):
            if peer.holder == node:
                self._remote.pop(link, None)
                peer.gone()
                self._registry.detach_frontend(peer)

    def _end_held(self, link: str, held: HeldFrontend, reason: str) -> None:
        self._held.pop(link, None)
        held.conn.send_now(orjson.dumps(fmsg.call_status_changed(
            held.session_id, "ended", None, reason)))
        held.conn.close_soon(CloseCode.NORMAL, reason)


_HANDLERS: dict[str, Callable[[FleetNode, Message], None]] = {
    "fe.open": FleetNode._on_fe_open,
    "fe.text": FleetNode._on_fe_text,
    "fe.binary": FleetNode._on_fe_binary,
    "fe.gone": FleetNode._on_fe_gone,
    "fe.send": FleetNode._on_fe_send,
    "fe.close": FleetNode._on_fe_close,
    "fe.retarget": FleetNode._on_fe_retarget,
    "handover": FleetNode._on_handover,
    "end": FleetNode._on_end,
    "stop_user": FleetNode._on_stop_user,
    "reset": FleetNode._on_reset,
    "snapshot": FleetNode._on_snapshot,
    "dial": FleetNode._on_dial,
    "place_call": FleetNode._on_place_call,
    "lost": FleetNode._on_lost,
}

__all__ = ["FleetNode", "FleetUnavailable"]
