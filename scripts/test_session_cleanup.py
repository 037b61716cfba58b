#!/usr/bin/env python
"""Check that a running relay cleans up after its sessions (was ``npm run test:session-cleanup``).

Usage::

    python scripts/test_session_cleanup.py [--url ws://localhost:8081] [--timeout 120]

Works against any relay (local or deployed): it talks to it only through ``/logs``, ``/call``
and ``GET /health`` (the HTTP base is the WebSocket URL with ws→http, wss→https). Prints one
``PASS name — detail`` or ``FAIL name — detail`` line per check and exits 1 if any failed
(2 if ``/health`` cannot be reached at all).

Checks, in order:

1. frontend connection cycles — 5 × (connect ``/logs/{uuid}``, send ``job_config``, get
   ``job_config.ack`` queued, close), then ``/health`` is back to its baseline.
2. rapid connect/disconnect — 30 frontends connect and close at once; back to baseline.
3. job configuration persistence — a configured frontend pairs with a call (``sessionId`` custom
   parameter), the config is applied, ``session.end`` ends it; then "Practice again" with a new
   session ID gets no stale configuration and applies its own.
4. connection cleanup verification — ``/health`` reports no sessions, no waiting frontends and
   no open connections.

A configured session whose frontend left may linger for the relay's resume grace (``/health``
``resumeGraceS``, ``RELAY_RESUME_GRACE_S``); cleanup waits allow for it, so against a default
relay checks 1 and 2 can take that long. Run the relay with a short grace for a quick check.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

try:
    import relay  # noqa: F401  (only to learn whether the package is importable)
except ImportError:  # run from a checkout without installing: scripts/ sits next to relay/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import orjson
from relay_sim.checks import (
    FAILURES,
    CheckFailed,
    Health,
    expect,
    http_base,
    load,
    run_bounded,
    run_check,
    wait_health,
)
from relay_sim.frontend import SimulatedFrontend
from relay_sim.inbox import WaitTimeout
from relay_sim.twilio_call import SimulatedCall

JOB_A = {"role": "Backend Engineer", "company": "Acme"}
JOB_B = {"role": "Data Scientist", "company": "Globex"}
CYCLES = 5
RAPID_FRONTENDS = 30

class Relay:
    """The relay under test: its URL, its /health, and the per-step wait."""

    def __init__(self, url: str, http: aiohttp.ClientSession, wait: float) -> None:
        self.url = url.rstrip("/")
        self.health_url = http_base(url) + "/health"
        self.http = http
        self.wait = wait
        #: The relay's advertised ``resumeGraceS``: how long a configured session whose
        #: frontend left may legitimately linger. Cleanup waits allow for it.
        self.grace = 0.0

    async def health(self) -> Health:
        """GET /health and return its JSON."""
        timeout = aiohttp.ClientTimeout(total=self.wait)
        async with self.http.get(self.health_url, timeout=timeout) as response:
            response.raise_for_status()
            body: Health = await response.json(content_type=None)
            return body

    async def wait_health(
        self, condition: Callable[[Health], bool], describe: str
    ) -> tuple[Health, float]:
        """Poll /health until ``condition`` holds; return it and the seconds it took.

        The deadline is the per-step wait plus the relay's resume grace, since a session that
        holds a configuration may outlive its frontend by that much by design.
        """
        return await wait_health(self.health, condition, describe, self.wait + self.grace)

    async def frontend(self, path: str) -> SimulatedFrontend:
        return await SimulatedFrontend.connect(self.url, path, open_timeout=self.wait)

    async def call(self, session_id: str) -> SimulatedCall:
        """Open a call stream that pairs through the ``sessionId`` custom parameter."""
        call = await SimulatedCall.connect(
            self.url, "/call", custom_parameters={"sessionId": session_id}, open_timeout=self.wait
        )
        await call.start()
        await call.speak(10)
        await call.speak(5, loud=False)
        return call


def same_load(baseline: Health) -> Callable[[Health], bool]:
    """A /health condition: sessions, waiting frontends and frontends back to ``baseline``."""

    def holds(health: Health) -> bool:
        return (
            health.get("sessions") == baseline.get("sessions")
            and health.get("waitingFrontends") == baseline.get("waitingFrontends")
            and health.get("connections", {}).get("frontend")
            == baseline.get("connections", {}).get("frontend")
        )

    return holds


async def ack(frontend: SimulatedFrontend, session_id: str, status: str, wait: float) -> None:
    """Wait for ``job_config.ack`` with this status for this session."""
    message = await frontend.wait_for("job_config.ack", lambda m: m.get("status") == status, wait)
    expect(
        message.get("sessionId") in (None, session_id),
        f"ack for session {message.get('sessionId')!r}, expected {session_id}",
    )


async def end_session(frontend: SimulatedFrontend, call: SimulatedCall, wait: float) -> None:
    """Send session.end; expect ended before the relay closes the frontend and the call."""
    await frontend.send_json({"type": "session.end"})
    await frontend.wait_for("call.status_changed", lambda m: m.get("status") == "ended", wait)
    await frontend.wait_closed(wait)
    expect(frontend.closed_after("call.status_changed"), "frontend closed before ended arrived")
    await call.wait_closed(wait)


# --- The checks -------------------------------------------------------------------------------


async def check_frontend_cycles(relay: Relay, baseline: Health) -> str:
    for _ in range(CYCLES):
        session_id = str(uuid.uuid4())
        frontend = await relay.frontend(f"/logs/{session_id}")
        try:
            await frontend.send_json({"type": "job_config", "config": JOB_A})
            await ack(frontend, session_id, "queued", relay.wait)
        finally:
            await frontend.close()
    health, took = await relay.wait_health(same_load(baseline), "baseline load")
    return f"{CYCLES} cycles acked 'queued'; back to baseline in {took:.1f}s ({load(health)})"


async def check_rapid_connect_disconnect(relay: Relay, baseline: Health) -> str:
    async def connect_and_close(index: int) -> None:
        # Half bare /logs (waiting frontends), half with a session ID.
        path = "/logs" if index % 2 else f"/logs/{uuid.uuid4()}"
        frontend = await relay.frontend(path)
        await frontend.close()

    await asyncio.gather(*(connect_and_close(i) for i in range(RAPID_FRONTENDS)))
    health, took = await relay.wait_health(same_load(baseline), "baseline load")
    return f"{RAPID_FRONTENDS} frontends came and went; back to baseline in {took:.1f}s"


async def check_job_config_persistence(relay: Relay, quiet: float) -> str:
    wait = relay.wait
    peers: list[SimulatedFrontend | SimulatedCall] = []
    try:
        # The first interview: configured before the call arrives, applied once it does.
        first_id = str(uuid.uuid4())
        first = await relay.frontend(f"/logs/{first_id}")
        peers.append(first)
        await first.send_json({"type": "job_config", "config": JOB_A})
        await ack(first, first_id, "queued", wait)
        first_call = await relay.call(first_id)
        peers.append(first_call)
        associated = await first.wait_for("session.associated", timeout=wait)
        expect(
            associated.get("sessionId") == first_id
            and associated.get("callSid") == first_call.call_sid
            and associated.get("streamSid") == first_call.stream_sid,
            f"session.associated {associated} does not name this session and call",
        )
        await ack(first, first_id, "applied", wait)
        await end_session(first, first_call, wait)

        # "Practice again": a new session must start with no configuration at all.
        second_id = str(uuid.uuid4())
        second = await relay.frontend(f"/logs/{second_id}")
        peers.append(second)
        second_call = await relay.call(second_id)
        peers.append(second_call)
        associated = await second.wait_for("session.associated", timeout=wait)
        expect(associated.get("sessionId") == second_id, f"paired with {associated}")
        try:
            stale = await second.wait_for("job_config.ack", timeout=quiet)
        except WaitTimeout:
            pass
        else:
            raise CheckFailed(f"new session acked a configuration it never sent: {stale}")
        await second.send_json({"type": "job_config", "config": JOB_B})
        await ack(second, second_id, "applied", wait)
        expect(
            b"Acme" not in orjson.dumps(second.received),
            "the new session's messages mention the previous interview's company",
        )
        await end_session(second, second_call, wait)
        return "config queued→applied; ended; new session stayed clean, then applied its own"
    finally:
        for peer in peers:
            await peer.close()


async def check_connection_cleanup(relay: Relay) -> str:
    def empty(health: Health) -> bool:
        connections = health.get("connections", {})
        return (
            health.get("sessions") == 0
            and health.get("waitingFrontends") == 0
            and all(connections.get(kind) == 0 for kind in ("call", "frontend", "upstream"))
        )

    health, _ = await relay.wait_health(empty, "no sessions and no connections")
    return f"{load(health)}; ended by reason {health.get('endedByReason', {})}"


# --- Running ----------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    async with aiohttp.ClientSession() as http:
        relay = Relay(args.url, http, args.wait)
        try:
            baseline = await relay.health()
        except FAILURES as exc:
            print(f"FAIL health — cannot read {relay.health_url}: {exc}", flush=True)
            return 2
        relay.grace = float(baseline.get("resumeGraceS") or 0)
        print(
            f"relay {relay.url} ({baseline.get('model')}, resume grace {relay.grace:g}s); "
            f"baseline {load(baseline)}"
        )
        results = [
            await run_check(
                "multiple frontend connection cycles", check_frontend_cycles(relay, baseline)
            ),
            await run_check(
                "rapid connect/disconnect", check_rapid_connect_disconnect(relay, baseline)
            ),
            await run_check(
                "job configuration persistence into a new session",
                check_job_config_persistence(relay, args.quiet),
            ),
            await run_check("connection cleanup verification", check_connection_cleanup(relay)),
        ]
    passed = results.count("PASS")
    print(f"{passed}/{len(results)} checks passed")
    return 0 if passed == len(results) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://localhost:8081", help="the relay's WebSocket URL")
    parser.add_argument("--timeout", type=float, default=120.0, help="overall limit in seconds")
    parser.add_argument("--wait", type=float, default=10.0, help="limit for each expected event")
    parser.add_argument(
        "--quiet",
        type=float,
        default=1.0,
        help="how long a new session must stay without a stale job_config.ack",
    )
    args = parser.parse_args()

    return run_bounded(main_async, args)


if __name__ == "__main__":
    sys.exit(main())
