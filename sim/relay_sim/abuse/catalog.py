"""Every abuse check, in the order they run, with the class of problem (issue 9) it covers,
and how to run them: one line per check as it finishes, then a summary table."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from relay_sim.abuse import connections, floods, identity, messages, session
from relay_sim.abuse.harness import Relay, Target
from relay_sim.checks import FAILURES, Outcome, Skipped, load

CheckFunction = Callable[[Relay], Awaitable[str]]


@dataclass(frozen=True)
class Check:
    name: str
    run: CheckFunction
    #: What it covers: a class of problem of issue 9 ("1" … "12") or the protocol ("input").
    covers: str


CHECKS: list[Check] = [
    Check("security mode", session.check_security_mode, "setup"),
    Check("malformed JSON on /logs", messages.check_logs_malformed, "input"),
    Check("binary frame on /logs", messages.check_logs_binary, "input"),
    Check("oversized frames on /logs", messages.check_logs_oversized, "input"),
    Check("malformed first messages on /call", messages.check_call_malformed, "input"),
    Check("binary frame on /call", messages.check_call_binary, "input"),
    Check("oversized frame on /call", messages.check_call_oversized, "input"),
    Check("wrong-order events on /call", messages.check_call_wrong_order, "input"),
    Check("wrong-order events on /logs", messages.check_logs_wrong_order, "input"),
    Check("floods on /logs", floods.check_logs_floods, "1 inbound budget"),
    Check("media flood on /call", floods.check_call_flood, "1, 9 inbound budget"),
    Check("/health during floods", floods.check_health_during_floods, "1 inbound budget"),
    Check("repeated headers", connections.check_repeated_headers, "2 refusals"),
    Check("calls nobody owns", identity.check_ownerless_calls, "3 ownership"),
    Check("operator endpoints", identity.check_operator_endpoints, "4 operator endpoints"),
    Check("cross-site posts", identity.check_cross_site_posts, "4 operator endpoints"),
    Check("browser origins", identity.check_origins, "5 development mode"),
    Check("forged Twilio signatures", identity.check_forged_signatures, "signatures"),
    Check("stream tokens", identity.check_stream_tokens, "6 stream tokens"),
    Check("stream tokens bound to a session", identity.check_stream_token_binding,
          "6 stream tokens"),
    Check("foreign session IDs", identity.check_foreign_sessions, "3 ownership"),
    Check("bad session IDs", identity.check_bad_session_ids, "input"),
    Check("expired and malformed tokens", identity.check_bad_tokens, "auth"),
    Check("token lifetime", identity.check_token_lifetime, "9 token lifetime"),
    Check("framing", identity.check_framing, "9 framing"),
    Check("rate limit before signatures", connections.check_rate_limit_first, "9 rate limit"),
    Check("slow handshakes", connections.check_slow_handshakes, "limits"),
    Check("huge requests", connections.check_huge_requests, "limits"),
    Check("connection flood", connections.check_connection_flood, "limits"),
    Check("normal call end to end", session.check_normal_call, "setup"),
    Check("back to baseline", session.check_back_to_baseline, "setup"),
]

BY_NAME = {check.name: check for check in CHECKS}


@dataclass(frozen=True)
class Result:
    check: Check
    outcome: Outcome
    detail: str
    seconds: float


async def run_one(relay: Relay, check: Check, limit: float | None = None) -> Result:
    """Run one check (within ``limit`` seconds); its outcome, never an exception it expects."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            detail = await check.run(relay)
        outcome: Outcome = "PASS"
    except Skipped as exc:
        outcome, detail = "SKIP", str(exc)
    except FAILURES as exc:
        outcome, detail = "FAIL", f"{type(exc).__name__}: {exc}"
    return Result(check, outcome, detail, time.monotonic() - started)


async def connect(target: Target, http: aiohttp.ClientSession) -> Relay:
    """The relay under test, its mode and baseline read from ``/health``."""
    relay = Relay(target, http)
    await relay.prepare()
    return relay


def summary(results: list[Result], width: int = 64) -> str:
    """A table: one row per check, its class, outcome, time and a shortened detail."""
    name_w = max(len(r.check.name) for r in results)
    cover_w = max(len(r.check.covers) for r in results)
    rows = [f"{'check':<{name_w}}  {'covers':<{cover_w}}  result  {'time':>6}  detail",
            "-" * (name_w + cover_w + width + 20)]
    for r in results:
        detail = r.detail if len(r.detail) <= width else r.detail[:width - 1] + "…"
        rows.append(f"{r.check.name:<{name_w}}  {r.check.covers:<{cover_w}}  {r.outcome:<6}  "
                    f"{r.seconds:>5.1f}s  {detail}")
    return "\n".join(rows)


async def run_all(target: Target, names: list[str] | None = None) -> list[Result]:
    """Run every check (or those named) against ``target``, printing a line as each ends."""
    chosen = [BY_NAME[name] for name in names] if names else CHECKS
    async with aiohttp.ClientSession() as http:
        relay = await connect(target, http)
        print(f"relay {relay.url} ({relay.baseline.get('model')}, {relay.mode.describe()}, "
              f"resume grace {relay.grace:g}s); baseline {load(relay.baseline)}", flush=True)
        results = []
        for check in chosen:
            result = await run_one(relay, check, relay.wait * 4 + relay.grace)
            print(f"{result.outcome} {check.name} — {result.detail}", flush=True)
            results.append(result)
    return results
