"""Messages between the nodes of a fleet, over Redis pub/sub.

Each node listens on its own channel (``relay:n:{node}``) and on the
broadcast channel (``relay:all``). Messages are small JSON objects with an
``op``; :class:`Bus` keeps them in order — one writer task publishes
everything queued, in queue order, pipelined — and matches replies to
requests (``rid``) so a node can ask another and wait, bounded by a timeout.
Only control messages and bridged frontends' events travel here; audio never does.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import orjson
from redis.exceptions import RedisError

from relay.fleet.store import PREFIX, Store, reraise_if_cancelled, stop_task
from relay.logs import Ev, get_logger

Message = dict[str, Any]
#: Called, in order, with every message addressed to this node.
Receiver = Callable[[Message], None]

BROADCAST = PREFIX + "all"


def node_channel(node: str) -> str:
    """The channel a node listens on."""
    return f"{PREFIX}n:{node}"


class Bus:
    """Ordered publishing, a reader, and request/reply for one node."""

    def __init__(self, store: Store, node: str, receiver: Receiver) -> None:
        self.node = node
        self._store = store
        self._receiver = receiver
        self._outbox: list[tuple[str, bytes]] = []
        self._wake = asyncio.Event()
        self._replies: dict[str, tuple[asyncio.Future[Any] | list[Any], asyncio.Event | None]] = {}
        self._rids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self._stop = asyncio.Event()
        self._log = get_logger(component="fleet")

    async def start(self) -> None:
        """Subscribe and start the reader and the writer; returns once subscribed."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read()), loop.create_task(self._write())]
        await self._subscribed.wait()

    async def stop(self) -> None:
        """Flush what is queued (briefly), then stop reading and writing."""
        if self._outbox:
            self._wake.set()
            for _ in range(50):
                if not self._outbox:
                    break
                await asyncio.sleep(0.01)
        self._wake.set()
        for task in self._tasks:
            await stop_task(task, self._stop, 1.5)

    # -- sending ----------------------------------------------------------------------

    def send(self, node: str, message: Message) -> None:
        """Queue ``message`` for ``node``; never blocks, never raises."""
        self._outbox.append((node_channel(node), orjson.dumps(message)))
        self._wake.set()

    def broadcast(self, message: Message) -> None:
        """Queue ``message`` for every node (this one included)."""
        self._outbox.append((BROADCAST, orjson.dumps(message)))
        self._wake.set()

    async def request(self, node: str, message: Message, timeout: float) -> Any:
        """Send ``message`` to ``node`` and wait for its reply.

        Raises:
            TimeoutError: no reply within ``timeout`` (the node may be gone).
        """
        rid = f"{self.node}:{next(self._rids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[rid] = (future, None)
        self.send(node, {**message, "rid": rid, "from": self.node})
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._replies.pop(rid, None)

    async def request_all(self, message: Message, expected: int, timeout: float) -> list[Any]:
        """Broadcast ``message`` and gather replies until ``expected`` arrive or ``timeout``."""
        rid = f"{self.node}:{next(self._rids)}"
        replies: list[Any] = []
        enough = asyncio.Event()
        self._replies[rid] = (replies, enough)
        self._expected = expected
        self.broadcast({**message, "rid": rid, "from": self.node, "expected": expected})
        try:
            async with asyncio.timeout(timeout):
                while len(replies) < expected:
                    enough.clear()
                    await enough.wait()
        except TimeoutError:
            pass
        finally:
            self._replies.pop(rid, None)
        return replies

    def reply(self, request: Message, result: Any) -> None:
        """Answer a request received from another node."""
        sender, rid = request.get("from"), request.get("rid")
        if isinstance(sender, str) and isinstance(rid, str):
            self.send(sender, {"op": "reply", "rid": rid, "result": result})

    # -- the tasks ----------------------------------------------------------------------

    async def _write(self) -> None:
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                batch, self._outbox = self._outbox, []
                pipe = self._store.redis.pipeline(transaction=False)
                for channel, data in batch:
                    pipe.publish(channel, data)
                try:
                    await self._store.run(pipe.execute())
                except Exception:
                    reraise_if_cancelled()
                    # Pub/sub is fire-and-forget: what could not be sent is
                    # lost, like a message to a node that is gone.
                    self._log.warning(Ev.FLEET_BRIDGE_FAILED, dropped=len(batch))
                    await asyncio.sleep(0.2)

    async def _read(self) -> None:
        pubsub = self._store.subscriber.pubsub(ignore_subscribe_messages=True)
        try:
            await self._listen(pubsub)
        finally:
            try:
                await pubsub.aclose()
            except RedisError:
                pass

    async def _listen(self, pubsub: Any) -> None:
        while not self._stop.is_set():
            try:
                await pubsub.subscribe(node_channel(self.node), BROADCAST)
                break
            except RedisError:
                reraise_if_cancelled()
                self._subscribed.set()  # start anyway; this retries until Redis is back
                await asyncio.sleep(0.5)
        self._subscribed.set()
        while not self._stop.is_set():
            try:
                raw = await pubsub.get_message(timeout=0.5)
            except RedisError:
                reraise_if_cancelled()
                # redis-py re-subscribes on its next read once Redis is back.
                await asyncio.sleep(0.2)
                continue
            if raw is None or raw.get("type") != "message":
                continue
            try:
                message = orjson.loads(raw["data"])
            except orjson.JSONDecodeError:
                continue
            if not isinstance(message, dict):
                continue
            if message.get("op") == "reply":
                self._on_reply(message)
                continue
            try:
                self._receiver(message)
            except Exception:
                self._log.error(Ev.HANDLER_CRASHED, where="fleet message",
                                op=str(message.get("op"))[:40], exc_info=True)

    def _on_reply(self, message: Message) -> None:
        entry = self._replies.get(str(message.get("rid")))
        if entry is None:
            return
        target, event = entry
        if isinstance(target, list):
            target.append(message.get("result"))
            assert event is not None
            event.set()
        elif not target.done():
            target.set_result(message.get("result"))
