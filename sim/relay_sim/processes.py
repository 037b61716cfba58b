"""Child processes for the fleet harness: each in its own process group, never left behind.

:class:`Child` starts one program (``redis-server``, ``haproxy``, ``python -m relay``) in a new
session, so its process group holds it and everything it forks (HAProxy's workers), and a
signal to the group reaches them all. Its output is kept, bounded, in :attr:`Child.lines`, and
:meth:`Child.wait_line` waits for a line without sleeping blindly. A child that is attached
(the default) is also registered for an ``atexit`` SIGKILL of its group, the last resort when
a test run dies before its ``finally`` blocks; a detached one (``scripts/fleet up``) writes to
a log file and outlives this process.

Ports are picked by binding port 0 and reading it back (:func:`free_port`); another process may
take the port before the child binds it, so the starters retry once with a fresh port when the
child says its address is in use (:func:`port_clash`).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path

#: Where Debian puts daemons, which a non-root PATH often lacks.
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")

#: Process groups of attached children still running: the atexit last resort kills them. The
#: one piece of module state here, because atexit cannot reach objects a crashed test dropped.
_LIVE_GROUPS: set[int] = set()


class ProcessError(RuntimeError):
    """A child did not start, did not become ready in time, or could not be found.

    Attributes:
        output: The child's last output lines, for the failure message.
    """

    def __init__(self, message: str, output: Sequence[str] = ()) -> None:
        tail = "\n".join(output[-20:])
        super().__init__(f"{message}\n--- last output ---\n{tail}" if tail else message)
        self.output = list(output)


def find_binary(name: str) -> str | None:
    """The path of program ``name`` on PATH or in the sbin directories, or None."""
    found = shutil.which(name)
    if found:
        return found
    return shutil.which(name, path=os.pathsep.join(_SBIN_DIRS))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_clash(lines: Iterable[str]) -> bool:
    """Whether a child's output says it could not bind its port."""
    text = "\n".join(lines).lower()
    return ("address already in use" in text or "cannot bind" in text
            or f"errno {errno.EADDRINUSE}" in text)


async def port_accepts(host: str, port: int) -> bool:
    """Whether a TCP connection to ``host:port`` is accepted right now."""
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def poll(check: Callable[[], object], timeout: float, what: str,
               interval: float = 0.02, alive: Callable[[], bool] | None = None) -> None:
    """Await ``check()`` (sync or async) until it is true, at most ``timeout`` seconds.

    Raises:
        TimeoutError: ``check`` did not hold in time.
        ProcessError: ``alive`` returned False first (the child died).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if alive is not None and not alive():
            raise ProcessError(f"the process exited while waiting for {what}")
        if loop.time() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        await asyncio.sleep(interval)


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel whether the group still exists
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ")".
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to process group ``pgid``, if it still exists."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@atexit.register
def _kill_leftovers() -> None:
    for pgid in list(_LIVE_GROUPS):
        kill_group(pgid)
    _LIVE_GROUPS.clear()


class Child:
    """One program in its own process group, with its output kept for assertions.

    Args:
        name: For messages (``redis``, ``haproxy``, ``relay n1``).
        argv: The command line.
        env: The whole environment of the child (None: this process's).
        log_lines: Output lines kept in :attr:`lines` (the oldest are dropped).
        log_file: Detached children write their output here instead.
        detached: Outlive this process: no pipe, no atexit kill.
    """

    def __init__(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None, log_lines: int = 5000,
                 log_file: str | Path | None = None, detached: bool = False) -> None:
        if detached and log_file is None:
            raise ValueError("a detached child needs a log_file")
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.detached = detached
        self.log_file = Path(log_file) if log_file is not None else None
        self.lines: collections.deque[str] = collections.deque(maxlen=log_lines)
        self._popen: subprocess.Popen[bytes] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._line_added = asyncio.Event()

    @property
    def pid(self) -> int | None:
        """The child's pid (also its process group), once started."""
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit status once it exited (negative: killed by that signal), else None."""
        return self._popen.poll() if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    async def start(self) -> None:
        """Start the program. Idempotent while it runs; after an exit, starts it again."""
        if self.running:
            return
        await self._forget()
        if self.detached:
            assert self.log_file is not None
            with open(self.log_file, "ab") as out:
                self._popen = subprocess.Popen(
                    self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            return
        self._popen = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        _LIVE_GROUPS.add(self._popen.pid)
        assert self._popen.stdout is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                     self._popen.stdout)
        self._reader = asyncio.create_task(self._read(reader), name=f"output of {self.name}")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # a line over the limit: keep going with the rest
                continue
            if not line:
                return
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._line_added.set()

    async def wait_line(self, predicate: Callable[[str], bool], timeout: float,
                        since: int = 0) -> str:
        """The first kept output line, from index ``since`` on, for which ``predicate`` holds.

        Raises:
            TimeoutError: No such line in time (also when the child exits without one).
        """
        async with asyncio.timeout(timeout):
            seen = since
            while True:
                lines = list(self.lines)
                for line in lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(lines)
                if self._reader is None or self._reader.done():
                    raise TimeoutError(f"{self.name} exited without the awaited line")
                self._line_added.clear()
                await self._line_added.wait()

    async def wait(self, timeout: float) -> int:
        """Wait for the child to exit; its exit status.

        Raises:
            TimeoutError: It still runs after ``timeout`` seconds.
        """
        if self._popen is None:
            raise ProcessError(f"{self.name} was never started")
        await poll(lambda: self.returncode is not None, timeout, f"{self.name} to exit",
                   interval=0.01)
        code = self._popen.wait()
        await self._finish_reader(timeout)
        return code

    async def kill(self, timeout: float = 5.0) -> int | None:
        """SIGKILL the whole process group and reap the child; its exit status."""
        if self._popen is None:
            return None
        # Once the child is reaped and its group empty, its pid may belong to someone else.
        if self._popen.poll() is None or group_members(self._popen.pid):
            kill_group(self._popen.pid)
        code = await self.wait(timeout)
        _LIVE_GROUPS.discard(self._popen.pid)
        return code

    async def terminate(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Send ``sig`` to the child, wait up to ``timeout``, then SIGKILL the group.

        Whatever the child does, its group is gone when this returns. Returns the exit status
        of the child (``-9`` when it had to be killed).
        """
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                await poll(lambda: self.returncode is not None, timeout,
                           f"{self.name} to exit", interval=0.01)
        # Its forks (HAProxy's workers) go with it; a child that ignored sig is killed.
        return await self.kill()

    async def _finish_reader(self, timeout: float) -> None:
        if self._reader is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        except TimeoutError:  # a grandchild holds the pipe open: kill the group, stop reading
            if self._popen is not None:
                kill_group(self._popen.pid)
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _forget(self) -> None:
        if self._popen is not None and not self.detached:
            await self.kill()
        self._popen = None
        self._reader = None

    def output(self, count: int = 50) -> list[str]:
        """Its last ``count`` output lines (from the log file for a detached child)."""
        if self.log_file is not None and self.detached:
            try:
                return self.log_file.read_text(errors="replace").splitlines()[-count:]
            except OSError:
                return []
        return list(self.lines)[-count:]

    def group_alive(self) -> list[int]:
        """The live processes left in the child's process group."""
        return group_members(self._popen.pid) if self._popen is not None else []


def require_binary(name: str, given: str | None) -> str:
    """``given``, else the path of ``name``; raises :class:`ProcessError` when there is none."""
    path = given or find_binary(name)
    if not path:
        raise ProcessError(f"{name} not found: scripts/install_fleet_services.sh installs it")
    return path


async def launch(name: str, port: int | None, make: Callable[[int], Child],
                 ready: Callable[[Child, int], Awaitable[None]]) -> tuple[Child, int]:
    """Start ``make(port)`` and await ``ready``; retry once on a fresh port if it was taken."""
    for attempt in (1, 2):
        chosen = port if port is not None else free_port()
        child = make(chosen)
        await child.start()
        try:
            await ready(child, chosen)
        except (ProcessError, TimeoutError) as exc:
            await child.kill()
            if port is None and attempt == 1 and port_clash(child.output()):
                continue
            raise ProcessError(f"{name} did not start on port {chosen}: {exc}",
                               child.output()) from exc
        except BaseException:
            await child.kill()
            raise
        return child, chosen
    raise AssertionError("unreachable")
