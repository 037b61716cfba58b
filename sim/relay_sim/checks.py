"""Checks against a running relay, one printed line each (the scripts' shared harness).

``scripts/test_session_cleanup.py`` and ``scripts/abuse.py`` drive a relay and
print ``PASS name — detail``, ``FAIL name — detail`` or ``SKIP name — why`` per
check; this module holds what they share.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aiohttp
from websockets.exceptions import WebSocketException

from relay_sim.inbox import SimError

Health = dict[str, Any]
Outcome = Literal["PASS", "FAIL", "SKIP"]


class CheckFailed(Exception):
    """A check found the relay misbehaving; the message says how."""


class Skipped(Exception):
    """A check does not apply to this relay's mode; the message says why."""


#: What a check may raise when the relay misbehaves or is unreachable (anything else is a bug
#: in the script and keeps its traceback).
FAILURES = (CheckFailed, SimError, WebSocketException, OSError, aiohttp.ClientError, TimeoutError)


def expect(condition: bool, detail: str) -> None:
    """Fail the current check with ``detail`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(detail)


def http_base(ws_url: str) -> str:
    """Return the relay's HTTP base URL for a WebSocket URL (ws→http, wss→https)."""
    if ws_url.startswith("wss://"):
        return "https://" + ws_url[len("wss://") :].rstrip("/")
    if ws_url.startswith("ws://"):
        return "http://" + ws_url[len("ws://") :].rstrip("/")
    return ws_url.rstrip("/")


def load(health: Health) -> str:
    """The counts of a /health answer, as a check's detail shows them."""
    return (f"sessions={health.get('sessions')} waitingFrontends={health.get('waitingFrontends')} "
            f"connections={health.get('connections', {})}")


async def wait_health(health: Callable[[], Awaitable[Health]], condition: Callable[[Health], bool],
                      describe: str, limit: float) -> tuple[Health, float]:
    """Poll /health through ``health`` until ``condition`` holds; return it and the time it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        answer = await health()
        if condition(answer):
            return answer, loop.time() - started
        if loop.time() - started >= limit:
            raise CheckFailed(f"{describe} not reached in {limit:g}s; /health: {load(answer)}")
        await asyncio.sleep(0.05)  # polling interval, not synchronisation


async def run_check(name: str, check: Awaitable[str], limit: float | None = None) -> Outcome:
    """Run one check (within ``limit`` seconds, if given), print its line, return its outcome."""
    try:
        async with asyncio.timeout(limit):
            detail = await check
    except Skipped as exc:
        print(f"SKIP {name} — {exc}", flush=True)
        return "SKIP"
    except FAILURES as exc:
        print(f"FAIL {name} — {type(exc).__name__}: {exc}", flush=True)
        return "FAIL"
    print(f"PASS {name} — {detail}", flush=True)
    return "PASS"


def run_bounded(main_async: Callable[[argparse.Namespace], Awaitable[int]],
                args: argparse.Namespace) -> int:
    """Run a script's checks within ``args.timeout`` seconds; return its exit status."""

    async def bounded() -> int:
        try:
            async with asyncio.timeout(args.timeout):
                return await main_async(args)
        except TimeoutError:
            print(f"FAIL overall — not finished within {args.timeout:g}s", flush=True)
            return 1

    return asyncio.run(bounded())
