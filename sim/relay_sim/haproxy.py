"""HAProxy with the configuration relay ships (``deploy/haproxy.py``), for the fleet harness.

:class:`HAProxy` writes the generated configuration (with fast health checks) to a run
directory, runs ``haproxy -W -db`` (master-worker in the foreground, so a reload is a signal),
and reads the servers' states from the stats page's CSV. :func:`check_config` runs
``haproxy -c`` on a configuration text.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import importlib.util
import io
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import aiohttp

from relay_sim.processes import (
    Child,
    ProcessError,
    free_port,
    group_members,
    launch,
    poll,
    port_accepts,
    require_binary,
)

#: The repository root: the harness runs the product's own HAProxy generator.
REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATOR = REPO_ROOT / "deploy" / "haproxy.py"
LOOPBACK = "127.0.0.1"


@functools.cache
def haproxy_generator() -> ModuleType:
    """``deploy/haproxy.py`` as a module (it is a script beside the packages, not installed)."""
    spec = importlib.util.spec_from_file_location("relay_deploy_haproxy", GENERATOR)
    if spec is None or spec.loader is None or not GENERATOR.is_file():
        raise ProcessError(f"{GENERATOR} is missing: the harness needs relay's checkout")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


class HAProxy:
    """HAProxy with the configuration ``deploy/haproxy.py`` generates, in front of ``servers``.

    Args:
        servers: Server name → ``HOST:PORT`` (a fleet names them after the nodes' IDs).
        port, stats_port: Fixed ports; by default free ones.
        check_inter, fall, rise: Health checks (fast by default, so a dead node is marked down
            within about ``fall × check_inter``).
        run_dir: Where the configuration is written (default: a temporary directory).
        ready_timeout: How long :meth:`start` and :meth:`reload` wait.
    """

    def __init__(self, servers: Mapping[str, str], *, port: int | None = None,
                 stats_port: int | None = None, check_inter: str = "200ms", fall: int = 2,
                 rise: int = 1, maxconn: int = 2000, binary: str | None = None,
                 run_dir: str | Path | None = None, ready_timeout: float = 10.0,
                 log_file: str | Path | None = None, detached: bool = False) -> None:
        self.servers = dict(servers)
        self.port = port
        self.stats_port = stats_port
        self._stats_fixed = stats_port is not None
        self.check = (check_inter, fall, rise)
        self.maxconn = maxconn
        self.binary = binary
        self.ready_timeout = ready_timeout
        self.log_file = log_file
        self.detached = detached
        self._own_dir = run_dir is None
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.child: Child | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the fleet's one address."""
        return f"http://{LOOPBACK}:{self._port()}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT``: the base of ``/call/{id}`` and ``/logs/{id}``."""
        return f"ws://{LOOPBACK}:{self._port()}"

    @property
    def stats_url(self) -> str:
        return f"http://{LOOPBACK}:{self.stats_port}/stats"

    @property
    def config_path(self) -> Path:
        if self.run_dir is None:
            raise ProcessError("HAProxy has not started yet")
        return self.run_dir / "haproxy.cfg"

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child else None

    def _port(self) -> int:
        if self.port is None:
            raise ProcessError("HAProxy has not started yet")
        return self.port

    def arguments(self, port: int, stats_port: int, servers: Mapping[str, str]) -> list[str]:
        """The ``deploy/haproxy.py`` command line for these ports and servers."""
        inter, fall, rise = self.check
        argv = ["--bind", f"{LOOPBACK}:{port}", "--stats", f"{LOOPBACK}:{stats_port}",
                "--check-inter", inter, "--fall", str(fall), "--rise", str(rise),
                "--maxconn", str(self.maxconn)]
        for name, address in servers.items():
            argv += ["--server", f"{name}={address}"]
        return argv

    def config(self, port: int, stats_port: int, servers: Mapping[str, str]) -> str:
        """The configuration text for these ports and servers, as the generator writes it."""
        gen = haproxy_generator()
        return str(gen.render(gen.options_from_args(self.arguments(port, stats_port, servers))))

    def _child(self, port: int) -> Child:
        assert self.run_dir is not None
        if self.stats_port is None or (self.port is None and not self._stats_fixed):
            self.stats_port = free_port()  # a fresh one with each fresh main port
        self.config_path.write_text(self.config(port, self.stats_port, self.servers))
        argv = [require_binary("haproxy", self.binary), "-W", "-db", "-f", str(self.config_path)]
        return Child("haproxy", argv, log_file=self.log_file, detached=self.detached)

    async def _ready(self, child: Child, port: int) -> None:
        async def listening() -> bool:
            # Still running once both accept: then they are its ports, not another's.
            return (await port_accepts(LOOPBACK, port)
                    and await port_accepts(LOOPBACK, self.stats_port or 0) and child.running)

        await poll(listening, self.ready_timeout, f"HAProxy on port {port}",
                   alive=lambda: child.running)

    async def start(self, wait_up: bool = True) -> None:
        """Start it; with ``wait_up``, also wait until it routes to every server.

        HAProxy takes a server as ``UP`` until a check fails, so this does not wait for the
        first check (which comes within ``check_inter``).
        """
        if self.child is not None and self.child.running:
            return
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="relay-haproxy-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.child, self.port = await launch("haproxy", self.port, self._child, self._ready)
        if wait_up:
            await self.wait_servers({name: "UP" for name in self.servers}, exact=False)

    async def stats(self, timeout: float = 2.0) -> list[dict[str, str]]:
        """The stats page's CSV rows of the relay backend's servers."""
        async with aiohttp.ClientSession() as http, http.get(
                self.stats_url + ";csv", timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            text = await r.text()
        return server_rows(text)

    async def server_states(self) -> dict[str, str]:
        """Server name → HAProxy's status (``UP``, ``DOWN``, ``UP 1/2``, ``MAINT``, …)."""
        return {row["svname"]: row["status"] for row in await self.stats()}

    async def wait_servers(self, states: Mapping[str, str], timeout: float | None = None,
                           exact: bool = True) -> None:
        """Wait until each named server has the given status (``UP``, ``DOWN``, …).

        ``exact=False`` compares the first word only: ``UP 1/2`` (up, one failed check or none
        yet) counts as ``UP``.

        Raises:
            TimeoutError: Not in time; the message shows the last states seen.
        """
        seen: dict[str, str] = {}

        async def reached() -> bool:
            nonlocal seen
            try:
                seen = await self.server_states()
            except (aiohttp.ClientError, OSError, TimeoutError):
                return False
            return all((seen.get(name) if exact else seen.get(name, "").split(" ")[0]) == state
                       for name, state in states.items())

        try:
            await poll(reached, timeout or self.ready_timeout, f"HAProxy servers {states}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last seen {seen}") from None

    async def reload(self, servers: Mapping[str, str], wait_up: bool = True) -> None:
        """Reload with another set of servers (``SIGUSR2`` to the master; open tunnels stay).

        With ``wait_up``, waits until HAProxy routes to the servers this reload added.

        Raises:
            ProcessError: The new configuration is refused by ``haproxy -c``.
        """
        if self.child is None or not self.child.running:
            raise ProcessError("HAProxy is not running")
        text = self.config(self._port(), self.stats_port or 0, servers)
        code, output = await check_config(text, self.binary)
        if code != 0:
            raise ProcessError("haproxy -c refused the new configuration", output.splitlines())
        added = set(servers) - set(self.servers)
        assert self.child.pid is not None
        master = self.child.pid
        workers_before = set(group_members(master)) - {master}
        self.servers = dict(servers)
        self.config_path.write_text(text)
        os.kill(master, signal.SIGUSR2)

        async def reloaded() -> bool:
            # A new worker answers the stats page with the new servers.
            if not set(group_members(master)) - workers_before - {master}:
                return False
            try:
                rows = await self.stats()
            except (aiohttp.ClientError, OSError, TimeoutError):
                return False
            return {row["svname"] for row in rows} == set(servers)

        await poll(reloaded, self.ready_timeout, "HAProxy to reload")
        if wait_up:
            await self.wait_servers({name: "UP" for name in added}, exact=False)

    async def kill(self) -> None:
        """SIGKILL the master and its workers."""
        if self.child is not None:
            await self.child.kill()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop it (SIGTERM: a hard stop of every worker) and remove its own run directory."""
        if self.child is not None:
            await self.child.terminate(timeout)
        if self._own_dir and self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def server_rows(stats_csv: str) -> list[dict[str, str]]:
    """The relay backend's server rows of the stats page's CSV (``/stats;csv``)."""
    rows = csv.DictReader(io.StringIO(stats_csv.removeprefix("# ")))
    backend = haproxy_generator().BACKEND
    return [row for row in rows if row.get("pxname") == backend and row.get("svname") != "BACKEND"]


async def check_config(text: str, binary: str | None = None) -> tuple[int, str]:
    """Run ``haproxy -c`` on a configuration text; its exit status and output."""
    with tempfile.TemporaryDirectory(prefix="relay-haproxy-check-") as folder:
        path = Path(folder) / "haproxy.cfg"
        path.write_text(text)
        proc = await asyncio.create_subprocess_exec(
            require_binary("haproxy", binary), "-c", "-f", str(path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode(errors="replace")
