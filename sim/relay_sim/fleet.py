"""The fleet harness: real Redis, relay nodes and HAProxy on loopback (tests, demos, benchmark).

Every piece is a real process on an ephemeral port of 127.0.0.1, started and stopped from
asyncio:

- :class:`RedisServer`: ``redis-server`` with no persistence; :meth:`~RedisServer.kill` and
  :meth:`~RedisServer.restart` (same port) to take Redis away and bring it back.
- :class:`RelayNode`: ``python -m relay`` with ``PORT``, ``HOST``, ``RELAY_NODE_ID``,
  ``RELAY_REDIS_URL`` and ``LOG_FORMAT=json``; its log lines kept for assertions
  (:meth:`~RelayNode.wait_log`); SIGKILL or SIGTERM it, restart it on the same port.
- :class:`HAProxy`: the configuration ``deploy/haproxy.py`` generates (the one shipped), run
  with ``haproxy -W -db``; the servers' states from its stats page; a reload with another set of
  servers.
- :class:`Fleet`: an async context manager holding Redis, N nodes and HAProxy, which stops them
  all on exit, whatever happened inside.

Nothing is left behind: each process runs in its own process group, which is SIGKILLed when it
is stopped (and, as a last resort, at interpreter exit). Every wait has a timeout parameter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from relay_sim.haproxy import HAProxy, check_config, haproxy_generator
from relay_sim.node import RelayNode, clean_environment
from relay_sim.processes import ProcessError
from relay_sim.redis_server import RedisServer, ping

__all__ = ["Fleet", "HAProxy", "ProcessError", "RedisServer", "RelayNode", "check_config",
           "clean_environment", "haproxy_generator", "ping"]


class Fleet:
    """Redis, N relay nodes and HAProxy in front, as one async context manager.

    On exit everything is stopped: the nodes first (SIGTERM, and their drain reaches the peers
    through HAProxy), then HAProxy, then Redis; when the body raised, all are SIGKILLed at once.
    Use :attr:`url` (through HAProxy) like a single relay's URL, or a node's own
    :attr:`RelayNode.url` to bypass HAProxy.

    Args:
        nodes: How many (named ``n1``, ``n2``, …), or their IDs.
        env: Set on every node (on top of the harness's own variables).
        node_env: Node ID → variables for that node alone.
        base_env: See :class:`RelayNode`.
        redis, haproxy: Whether to start them (a fleet without Redis runs plain relays).
        check_inter, maxconn: HAProxy's health-check interval and connection limit (HAProxy
            needs about 2 × maxconn file descriptors).
        stop_timeout: How long each node may drain on a clean exit before it is killed.
    """

    def __init__(self, nodes: int | Sequence[str] = 2, *, env: Mapping[str, str] | None = None,
                 node_env: Mapping[str, Mapping[str, str]] | None = None,
                 base_env: Mapping[str, str] | None = None, redis: bool = True,
                 haproxy: bool = True, haproxy_port: int | None = None,
                 stats_port: int | None = None, check_inter: str = "200ms", maxconn: int = 2000,
                 ready_timeout: float = 15.0, stop_timeout: float = 15.0,
                 run_dir: str | Path | None = None, detached: bool = False) -> None:
        ids = [f"n{i}" for i in range(1, nodes + 1)] if isinstance(nodes, int) else list(nodes)
        # HAProxy is the one proxy in front, and it overwrites X-Forwarded-For.
        self.env = {"RELAY_TRUST_PROXY": "true", "RELAY_TRUSTED_HOPS": "1", **(env or {})}
        self.node_env = {key: dict(value) for key, value in (node_env or {}).items()}
        self.base_env = base_env
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.detached = detached
        self.redis = RedisServer(ready_timeout=ready_timeout, detached=detached,
                                 log_file=self._log("redis")) if redis else None
        self.nodes: list[RelayNode] = [self._node(node_id) for node_id in ids]
        self.haproxy = HAProxy({}, port=haproxy_port, stats_port=stats_port,
                               check_inter=check_inter, maxconn=maxconn,
                               ready_timeout=ready_timeout,
                               run_dir=run_dir, detached=detached,
                               log_file=self._log("haproxy")) if haproxy else None

    def _log(self, name: str) -> Path | None:
        return self.run_dir / f"{name}.log" if self.run_dir is not None else None

    def _node(self, node_id: str) -> RelayNode:
        return RelayNode(node_id, env={**self.env, **self.node_env.get(node_id, {})},
                         base_env=self.base_env, ready_timeout=self.ready_timeout,
                         detached=self.detached, log_file=self._log(node_id))

    @property
    def url(self) -> str:
        """HAProxy's ``ws://`` base (or the only node's, without HAProxy)."""
        if self.haproxy is not None:
            return self.haproxy.ws_url
        if len(self.nodes) == 1:
            return self.nodes[0].url
        raise ProcessError("a fleet without HAProxy has no single URL: use a node's")

    @property
    def http(self) -> str:
        return "http" + self.url.removeprefix("ws")

    def node(self, node_id: str) -> RelayNode:
        """The node named ``node_id``."""
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)

    def servers(self) -> dict[str, str]:
        """HAProxy's servers: every node's ID → address."""
        return {node.node_id: node.address for node in self.nodes}

    async def start(self) -> None:
        """Start Redis, the nodes (together), then HAProxy; on any failure stop what started."""
        try:
            if self.run_dir is not None:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            if self.redis is not None:
                await self.redis.start()
                for node in self.nodes:
                    node.redis_url = self.redis.url
            # Together; each either listens or fails within ready_timeout.
            results = await asyncio.gather(*(node.start() for node in self.nodes),
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            if self.haproxy is not None:
                self.haproxy.servers = self.servers()
                await self.haproxy.start()
        except BaseException:
            await self.close(kill=True)
            raise

    async def add_node(self, node_id: str | None = None,
                       env: Mapping[str, str] | None = None) -> RelayNode:
        """Start one more node (named ``n<N+1>`` by default) and reload HAProxy with it."""
        node_id = node_id or f"n{len(self.nodes) + 1}"
        if env:
            self.node_env[node_id] = dict(env)
        node = self._node(node_id)
        if self.redis is not None:
            node.redis_url = self.redis.url
        await node.start()  # a node that fails to start leaves nothing behind
        self.nodes.append(node)
        if self.haproxy is not None:
            await self.haproxy.reload(self.servers())
        return node

    def process_groups(self) -> list[int]:
        """The process group of every process the fleet started (for leak checks)."""
        children = [part.child for part in (self.redis, self.haproxy, *self.nodes)
                    if part is not None and part.child is not None]
        return [child.pid for child in children if child.pid is not None]

    async def close(self, kill: bool = False) -> None:
        """Stop everything; idempotent. ``kill``: SIGKILL the nodes instead of draining them."""
        errors: list[BaseException] = []

        async def attempt(step: Any) -> None:
            try:
                await step
            except Exception as exc:  # keep stopping the rest; raise the first error after
                errors.append(exc)

        if kill and self.haproxy is not None:
            await attempt(self.haproxy.kill())
        # The nodes drain while HAProxy still carries their sockets and Redis still answers.
        stops = [node.kill() if kill else node.terminate(self.stop_timeout)
                 for node in self.nodes]
        await asyncio.gather(*(attempt(stop) for stop in stops))
        if self.haproxy is not None:
            await attempt(self.haproxy.stop())  # also removes its temporary directory
        if self.redis is not None:
            await attempt(self.redis.stop())
        if errors:
            raise errors[0]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        await self.close(kill=exc_type is not None)
