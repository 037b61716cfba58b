"""One relay node (``python -m relay``) as a child process, for the fleet harness."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from relay_sim.processes import Child, ProcessError, launch, poll

LOOPBACK = "127.0.0.1"

#: Prefixes and names of relay's configuration: a node does not inherit these from the
#: caller's environment unless told to (its behaviour must not depend on the shell).
_RELAY_PREFIXES = ("RELAY_", "OPENAI_", "TWILIO_", "HEYGEN_")
_RELAY_NAMES = frozenset({"PORT", "HOST", "PUBLIC_URL", "LOG_FORMAT", "LOG_LEVEL"})


def clean_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) without relay's own configuration variables."""
    env = os.environ if environ is None else environ
    return {key: value for key, value in env.items()
            if not key.startswith(_RELAY_PREFIXES) and key not in _RELAY_NAMES}


class RelayNode:
    """One ``python -m relay`` process: a node of the fleet.

    Args:
        node_id: ``RELAY_NODE_ID``, and its server name in HAProxy.
        redis_url: ``RELAY_REDIS_URL``; none set when empty (a plain relay).
        env: Variables set on top (``RELAY_ADMIN_TOKEN``, ``RELAY_CONN_RATE_PER_S``, …).
        base_env: The environment they are added to, as is; by default this process's without
            relay's own variables (so without ``OPENAI_API_KEY``: the built-in local model runs).
        port: Fixed port; by default a free one, kept across :meth:`restart`.
        ready_timeout: How long :meth:`start` waits for ``GET /health`` to answer.
    """

    def __init__(self, node_id: str, *, redis_url: str = "", env: Mapping[str, str] | None = None,
                 base_env: Mapping[str, str] | None = None, port: int | None = None,
                 python: str = sys.executable, ready_timeout: float = 15.0,
                 log_lines: int = 5000, log_file: str | Path | None = None,
                 detached: bool = False) -> None:
        self.node_id = node_id
        self.redis_url = redis_url
        self.env = dict(env or {})
        self.base_env = clean_environment() if base_env is None else dict(base_env)
        self.port = port
        self.python = python
        self.ready_timeout = ready_timeout
        self.log_lines = log_lines
        self.log_file = log_file
        self.detached = detached
        self.child: Child | None = None

    def __repr__(self) -> str:
        return f"RelayNode({self.node_id!r}, port={self.port}, pid={self.pid})"

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT``: the node itself, bypassing HAProxy."""
        return f"ws://{LOOPBACK}:{self._port()}"

    @property
    def http(self) -> str:
        return f"http://{LOOPBACK}:{self._port()}"

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as HAProxy reaches it."""
        return f"{LOOPBACK}:{self._port()}"

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child else None

    @property
    def running(self) -> bool:
        return self.child is not None and self.child.running

    @property
    def lines(self) -> list[str]:
        """The output lines of the current (or last) process, oldest first (bounded)."""
        return list(self.child.lines) if self.child else []

    def records(self) -> list[dict[str, Any]]:
        """Its JSON log records (lines that are not JSON are skipped)."""
        out = []
        for line in self.lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    out.append(record)
        return out

    def _port(self) -> int:
        if self.port is None:
            raise ProcessError(f"relay node {self.node_id} has not started yet")
        return self.port

    def environment(self, port: int) -> dict[str, str]:
        """The child's whole environment for ``port``."""
        env = {**self.base_env, "LOG_FORMAT": "json", "RELAY_NODE_ID": self.node_id}
        if self.redis_url:
            env["RELAY_REDIS_URL"] = self.redis_url
        env.update(self.env)
        env.update(PORT=str(port), HOST=LOOPBACK)
        return env

    def _child(self, port: int) -> Child:
        return Child(f"relay {self.node_id}", [self.python, "-m", "relay"],
                     env=self.environment(port), log_lines=self.log_lines,
                     log_file=self.log_file, detached=self.detached)

    async def _ready(self, child: Child, port: int) -> None:
        async with aiohttp.ClientSession() as http:
            async def answers() -> bool:
                try:
                    async with http.get(f"http://{LOOPBACK}:{port}/health",
                                        timeout=aiohttp.ClientTimeout(total=2)) as response:
                        document = await response.json(content_type=None)
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                    return False
                # Any status: listening is enough (fleet mode may answer 503 while it waits).
                # Still running once it answered: then the port is its own, not another's.
                return isinstance(document, dict) and "status" in document and child.running

            await poll(answers, self.ready_timeout, f"relay {self.node_id} on port {port}",
                       interval=0.05, alive=lambda: child.running)

    async def start(self) -> None:
        """Start it and wait until it answers ``GET /health`` (whatever the status)."""
        if self.running:
            return
        self.child, self.port = await launch(f"relay {self.node_id}", self.port, self._child,
                                              self._ready)

    async def restart(self) -> None:
        """Stop it (SIGTERM) if it runs, then start it again on the same port."""
        await self.terminate()
        await self.start()

    async def kill(self) -> int | None:
        """SIGKILL it, as a crash or a power cut would; its exit status."""
        return await self.child.kill() if self.child else None

    async def terminate(self, timeout: float = 15.0) -> int | None:
        """SIGTERM it and wait for its drain (SIGKILL after ``timeout``); its exit status."""
        return await self.child.terminate(timeout) if self.child else None

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      token: str | None = None, timeout: float = 5.0) -> tuple[int, Any]:
        """``method path`` on this node; the status and the JSON answer (None if not JSON).

        Args:
            token: Sent as ``Authorization: Bearer …`` (default: its RELAY_ADMIN_TOKEN, if set;
                ``""`` sends none).
        """
        token = self.env.get("RELAY_ADMIN_TOKEN") if token is None else token
        # As relay's own clients do: a POST without it is refused as a cross-site form post.
        headers = {"X-Relay-Request": "1", **({"Authorization": f"Bearer {token}"} if token else {})}
        async with aiohttp.ClientSession() as http, http.request(
                method, self.http + path, headers=headers, json=json_body,
                timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, None

    async def get(self, path: str, *, token: str | None = None, timeout: float = 5.0) -> Any:
        """``GET path`` on this node; the JSON answer, whatever the status (see :meth:`request`)."""
        return (await self.request("GET", path, token=token, timeout=timeout))[1]

    async def health(self, timeout: float = 5.0) -> dict[str, Any]:
        """Its ``GET /health`` document."""
        return await self.get("/health", timeout=timeout)

    async def sessions(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Its live sessions (``GET /api/sessions``, with its admin token when it has one)."""
        answer = await self.get("/api/sessions", timeout=timeout)
        if "sessions" not in answer:
            raise ProcessError(f"relay {self.node_id} refused /api/sessions: {answer}")
        return list(answer["sessions"])

    async def wait_log(self, event: str | Callable[[dict[str, Any]], bool], timeout: float = 10.0,
                       since: int = 0) -> dict[str, Any]:
        """The first JSON log record (from line index ``since``) with this ``event`` or match.

        Raises:
            TimeoutError: None came in time.
        """
        def matches(line: str) -> bool:
            try:
                record = json.loads(line)
            except ValueError:
                return False
            if not isinstance(record, dict):
                return False
            return event(record) if callable(event) else record.get("event") == event

        if self.child is None:
            raise ProcessError(f"relay node {self.node_id} has not started yet")
        return json.loads(await self.child.wait_line(matches, timeout, since))
