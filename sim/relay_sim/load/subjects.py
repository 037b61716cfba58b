"""The relays a benchmark measures, and how each one is started.

- ``relay``: this checkout, ``python -m relay``.
- ``relay@REF``: another commit of relay, checked out with ``git worktree add`` into a
  temporary directory and run with ``PYTHONPATH`` pointing at it (same interpreter, same
  dependencies), so "before" and "after" are measured in one run.
- ``python``: the minimal Python relay (``scripts/baseline_relay.py``: websockets, orjson,
  uvloop, no session logic).
- ``node``: the minimal Node relay (``scripts/node-baseline/``: ``ws``, one small file),
  installed with ``npm ci`` the first time.

Every relay gets the same environment (the operator's relay variables are not inherited) plus
what its own kind needs; the baselines take ``--port``, ``--upstream-url`` and
``--mark-every-ms`` instead of relay's variables.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from relay_sim.load.processes import HarnessError

#: Prefixes of the variables relay reads: the operator's own values are not inherited, so every
#: run measures relay's defaults plus exactly what the benchmark (and ``--relay-env``) sets.
_RELAY_ENV_PREFIXES = ("RELAY_", "OPENAI_", "TWILIO_", "HEYGEN_", "LOG_")
_DROPPED = ("PORT", "HOST", "PUBLIC_URL", "PYTHONPATH", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS")


def bench_relay_settings(calls: int) -> dict[str, str]:
    """What the benchmark sets for relay, printed with every report."""
    return {
        "RELAY_MODEL": "openai", "OPENAI_API_KEY": "bench", "RELAY_GREET_FIRST": "0",
        "HOST": "127.0.0.1", "LOG_LEVEL": "WARNING",
        # Every simulated call comes from 127.0.0.1: the per-IP connection rate limit is an
        # abuse guard, not a capacity limit, so it is off; the session cap is raised to N.
        "RELAY_CONN_RATE_PER_S": "0",
        "RELAY_MAX_SESSIONS": str(max(1000, calls)),
    }


@dataclass(frozen=True)
class Subject:
    """One relay under test."""

    name: str
    argv: tuple[str, ...]
    cwd: Path
    #: Added to the common environment.
    env: Mapping[str, str] = field(default_factory=dict)
    #: A minimal relay: no session logic, no /logs; configured by its arguments.
    baseline: bool = False
    #: ``python`` or ``node``: how it is told to trust the model's certificate.
    runtime: str = "python"

    def command(self, port: int, model_url: str, mark_ms: int) -> list[str]:
        """The command line for one run."""
        if not self.baseline:
            return list(self.argv)
        return [*self.argv, "--port", str(port), "--upstream-url", model_url,
                "--mark-every-ms", str(mark_ms)]

    def environment(self, model_url: str, port: int, calls: int, *, ca_file: str | None,
                    relay_env: Mapping[str, str]) -> dict[str, str]:
        """The environment of one run: the same for every kind, plus its own."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(_RELAY_ENV_PREFIXES) and k not in _DROPPED}
        env.update(bench_relay_settings(calls))
        env.update(OPENAI_REALTIME_URL=model_url, PORT=str(port))
        env.update(self.env)
        if not self.baseline:
            env.update(relay_env)
        if ca_file is not None:
            # Python's ssl (through OpenSSL's default verify paths) and Node each read their
            # own variable; either way the system's roots and the throw-away CA are trusted.
            env["NODE_EXTRA_CA_CERTS" if self.runtime == "node" else "SSL_CERT_FILE"] = ca_file
        return env


def this_relay(repo: Path, relay_cmd: list[str] | None = None) -> Subject:
    """relay from this checkout (or ``relay_cmd``, a variant of it)."""
    return Subject("relay", tuple(relay_cmd or [sys.executable, "-m", "relay"]), repo)


def python_baseline(scripts: Path) -> Subject:
    """The minimal Python relay."""
    return Subject("python", (sys.executable, str(scripts / "baseline_relay.py")), scripts.parent,
                   baseline=True)


def node_baseline(scripts: Path) -> Subject:
    """The minimal Node relay; its one dependency is installed with ``npm ci`` if missing.

    Raises:
        HarnessError: Node or npm is not installed, or the install failed.
    """
    here = scripts / "node-baseline"
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise HarnessError("the Node baseline needs node and npm on PATH (or leave it out: "
                           "--relays relay,python)")
    if not (here / "node_modules" / "ws" / "package.json").is_file():
        print(f"… npm ci in {here}", file=sys.stderr, flush=True)
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=here, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise HarnessError(f"npm ci in {here} failed:\n{done.stderr[-2000:]}")
    return Subject("node", (node, str(here / "relay.js")), here, baseline=True, runtime="node")


def checkout(directory: Path, label: str) -> Subject:
    """relay from another checkout: the same interpreter, that checkout's package first."""
    return Subject(f"relay@{label}", (sys.executable, "-m", "relay"), directory,
                   env={"PYTHONPATH": str(directory)})


class Worktree:
    """A temporary ``git worktree`` of one commit (removed on exit).

    Usage: ``async with Worktree(repo, "21e8cb2") as tree: checkout(tree.path, tree.label)``.
    """

    def __init__(self, repo: Path, ref: str) -> None:
        self.repo, self.ref = repo, ref
        self.path = Path(tempfile.mkdtemp(prefix="relay-bench-ref-")) / "relay"
        self.label = ref

    async def _git(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "git", "-C", str(self.repo), *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise HarnessError(f"git {' '.join(args)}: {err.decode(errors='replace').strip()}")
        return out.decode().strip()

    async def __aenter__(self) -> Worktree:
        sha = await self._git("rev-parse", "--verify", "--short", f"{self.ref}^{{commit}}")
        self.label = self.ref if self.ref.startswith(sha[:7]) else f"{self.ref}({sha[:7]})"
        await self._git("worktree", "add", "--detach", str(self.path), sha)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self._git("worktree", "remove", "--force", str(self.path))
        finally:
            shutil.rmtree(self.path.parent, ignore_errors=True)
