"""Which nodes are alive: heartbeats into Redis, and the reaping of a node that stopped.

Every node writes its heartbeat (Redis's own clock, so machines need not agree
on the time) every ``heartbeat_s`` with its load. A node silent for
``dead_after_s`` is dead; one surviving node wins the right to reap it (an
atomic ``SET NX``) and ends each of its sessions as its teardown would have:
the call hung up over Twilio REST, avatars stopped, the session marked ended
with ``relay_lost`` (so a frontend that returns is told), every node told so
its bridged frontends hear it. A node reaps only after Redis itself has
answered it for ``dead_after_s``: a Redis outage silences every heartbeat and
must not read as every node dying.

The bound: a dead node's sessions are ended within ``dead_after_s`` plus one
``heartbeat_s`` plus the provider calls (hang-up and avatar stop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from relay.core.session import EndReason
from relay.errors import FleetUnavailable
from relay.fleet.directory import RedisDirectory
from relay.fleet.store import PREFIX, Store, reraise_if_cancelled, stop_task
from relay.logs import Ev, get_logger

NODES = PREFIX + "nodes"

#: Ends a phone call: call SID, whether it was answered.
HangUp = Callable[[str, bool], Awaitable[object]]
#: Stops an avatar: provider, avatar ID.
StopAvatar = Callable[[str, str], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node as the fleet sees it."""

    node: str
    seen_ms_ago: int
    load: dict[str, Any]
    alive: bool


class Membership:
    """This node's heartbeat, the fleet's node list, and the reaper."""

    def __init__(self, store: Store, directory: RedisDirectory, *, heartbeat_s: float,
                 dead_after_s: float, load: Callable[[], dict[str, Any]],
                 hang_up: HangUp | None, stop_avatar: StopAvatar | None,
                 on_lost: Callable[[str, str], None],
                 on_node_dead: Callable[[str], None]) -> None:
        self.node = directory.node
        self._store = store
        self._directory = directory
        self._heartbeat_s = heartbeat_s
        self._dead_after_ms = int(dead_after_s * 1000)
        self._dead_after_s = dead_after_s
        self._load = load
        self._hang_up = hang_up
        self._stop_avatar = stop_avatar
        self._on_lost = on_lost
        self._on_node_dead = on_node_dead
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._reaping: set[asyncio.Task[None]] = set()
        self.nodes: list[NodeView] = []
        self._known_dead: set[str] = set()
        self._log = get_logger(component="fleet")

    async def start(self) -> None:
        """Beat once (so this node is visible at once), then keep beating."""
        try:
            await self.beat()
        except FleetUnavailable:
            pass
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, *, leave: bool) -> None:
        """Stop beating; ``leave`` removes this node from the fleet at once (a clean exit)."""
        await stop_task(self._task, self._stop, self._heartbeat_s + 1.0)
        if self._reaping:
            await asyncio.wait(self._reaping, timeout=self._dead_after_s)
        if leave:
            try:
                await self._store.run(self._store.redis.zrem(NODES, self.node))
                await self._store.run(self._store.redis.delete(f"{PREFIX}node:{self.node}"))
            except FleetUnavailable:
                pass

    def alive_nodes(self) -> list[str]:
        """Nodes whose heartbeat is fresh (this one included)."""
        return [view.node for view in self.nodes if view.alive] or [self.node]

    async def alive_now(self) -> list[str]:
        """The nodes alive this moment, read from Redis (not the last heartbeat's view)."""
        now = await self._directory.now_ms()
        nodes = await self._store.run(self._store.redis.zrangebyscore(
            NODES, now - self._dead_after_ms, "+inf"))
        return list(nodes) or [self.node]

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self._heartbeat_s)
                return
            except TimeoutError:
                pass
            try:
                await self.beat()
                await self._find_dead()
            except FleetUnavailable:
                reraise_if_cancelled()
                continue
            except Exception:
                reraise_if_cancelled()
                self._log.error(Ev.HANDLER_CRASHED, where="fleet heartbeat", exc_info=True)

    async def beat(self) -> None:
        """Write this node's heartbeat and load; refresh the node list."""
        r = self._store.redis
        now = await self._directory.now_ms()
        pipe = r.pipeline(transaction=False)
        pipe.zadd(NODES, {self.node: now})
        pipe.set(f"{PREFIX}node:{self.node}", orjson.dumps(self._load()),
                 px=self._dead_after_ms * 3)
        pipe.zrange(NODES, 0, -1, withscores=True)
        results = await self._store.run(pipe.execute())
        members: list[tuple[str, float]] = results[-1]
        loads = await self._store.run(r.mget([f"{PREFIX}node:{n}" for n, _ in members])) \
            if members else []
        views = []
        for (node, seen), raw in zip(members, loads, strict=True):
            age = int(now - seen)
            load = orjson.loads(raw) if raw else {}
            views.append(NodeView(node, age, load, age <= self._dead_after_ms))
        self.nodes = views

    async def _find_dead(self) -> None:
        # Reaping waits until Redis has answered this node for a whole
        # dead-after window: after an outage every heartbeat is stale.
        if self._store.healthy_for < self._dead_after_s:
            return
        for view in self.nodes:
            if view.alive or view.node == self.node:
                continue
            if view.node not in self._known_dead:
                self._known_dead.add(view.node)
                self._on_node_dead(view.node)
            won = await self._store.run(self._store.redis.set(
                f"{PREFIX}reaping:{view.node}", self.node, nx=True, px=self._dead_after_ms * 6))
            if won:
                task = asyncio.get_running_loop().create_task(self._reap(view.node))
                self._reaping.add(task)
                task.add_done_callback(self._reaping.discard)

    async def _reap(self, node: str) -> None:
        self._log.warning(Ev.FLEET_NODE_DEAD, node=node)
        sessions = await self._directory.node_sessions(node)
        await asyncio.gather(*(self._end_lost(node, sid) for sid in sessions),
                             return_exceptions=True)
        r = self._store.redis
        await self._store.run(r.zrem(NODES, node))
        await self._store.run(r.delete(f"{PREFIX}node:{node}", f"{PREFIX}node:{node}:sessions"))
        self._known_dead.discard(node)

    async def _end_lost(self, node: str, session_id: str) -> None:
        record = await self._directory.record(session_id)
        avatars = await self._directory.avatars(session_id)
        calls = await self._directory.calls(session_id)
        jobs: list[Awaitable[object]] = []
        if self._hang_up is not None:
            live_call = record.get("call")
            if live_call:
                jobs.append(self._hang_up(live_call, True))
            else:
                # Registered but never streamed: cancel only what Twilio told us of.
                for call_sid in calls:
                    if await self._directory.knows_call(call_sid):
                        jobs.append(self._hang_up(call_sid, False))
        if self._stop_avatar is not None:
            jobs += [self._stop_avatar(provider, avatar) for avatar, provider in avatars.items()]
        await asyncio.gather(*jobs, return_exceptions=True)
        reason = EndReason.RELAY_LOST.value
        await self._directory.release(session_id, record.get("user") or None,
                                      ended_reason=reason, owner=node)
        await self._directory.mark_ended(session_id, reason)
        self._log.warning(Ev.FLEET_SESSION_LOST, sessionId=session_id, node=node,
                          calls=len(jobs))
        self._on_lost(session_id, reason)
