#!/usr/bin/env python
"""Abuse a running relay, then check that a normal call still works and nothing leaked.

Usage::

    python scripts/abuse.py [--url ws://localhost:8081] [--timeout 180] [--wait 10]
        [--auth-secret S [--auth-audience relay]]
        [--twilio-auth-token T --public-url https://relay.example.com]
        [--admin-token A] [--handshake-timeout SECONDS] [--expect-rate-limit] [--flood 200]
        [--only NAME ...]

Talks only to ``--url`` (``/logs``, ``/call``, ``/twiml``, ``/api/…``, ``/`` and ``/health``;
the HTTP base is the WebSocket URL with ws→http, wss→https). It reads ``/health`` first: its
``security`` block (``auth``, ``twilioSignatures``, ``origins``, ``adminToken``; absent means
all off, development mode) decides what each check expects, and its counts are the baseline
the relay must return to.

Prints one ``PASS name — detail``, ``FAIL name — detail`` or ``SKIP name — why`` line per
check as it ends, then a summary table (check, the class of problem it covers, outcome, time)
and a totals line. Exits 1 if any check failed, 2 if ``/health`` cannot be read at all.

The checks live in ``relay_sim.abuse`` (sim/relay_sim/abuse/catalog.py lists them); the test
suite runs the same functions (tests/security/test_abuse.py), against a development and a secured
relay. They cover malformed, binary, oversized and out-of-order input; floods the inbound
budget must end with 4029 (tiny messages, malformed JSON, empty frames, empty continuation
frames, pings, large messages, media at ten times real time) while ``/health`` answers;
repeated headers (400); calls nobody owns; operator endpoints that fail closed and take the
admin token in a header only; cross-site form posts; browser origins; Twilio signatures and
stream tokens (one-time, bound to their call and session); foreign and bad session IDs;
expired, malformed and too long-lived tokens; framing of the live sessions page; the rate
limit before any signature check; slow handshakes, huge requests and a connection flood; a
normal call end to end; and ``/health`` back at its baseline.

Handshakes refused with 429 are retried with back-off (bounded by ``--wait``), so a rate limit
never fails a check that is not about the rate limit. A reset is never sent with the real
admin token. Shutdown and a model that never answers are not checked here (they would stop
the relay or need its model): the test suite covers them (tests/transport/test_drain.py,
tests/providers/test_upstream_budget.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

try:
    import relay  # noqa: F401  (only to learn whether the package is importable)
except ImportError:  # run from a checkout without installing: scripts/ sits next to relay/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relay_sim.abuse import BY_NAME, Target, run_all, summary
from relay_sim.checks import FAILURES


async def main_async(args: argparse.Namespace) -> int:
    target = Target(url=args.url, wait=args.wait, auth_secret=args.auth_secret,
                    auth_audience=args.auth_audience, twilio_auth_token=args.twilio_auth_token,
                    public_url=args.public_url, admin_token=args.admin_token,
                    handshake_timeout=args.handshake_timeout,
                    expect_rate_limit=args.expect_rate_limit, flood=args.flood)
    try:
        async with asyncio.timeout(args.timeout):
            results = await run_all(target, args.only)
    except TimeoutError:
        print(f"FAIL overall — not finished within {args.timeout:g}s", flush=True)
        return 1
    except FAILURES as exc:
        print(f"FAIL health — cannot read {args.url} /health: {exc}", flush=True)
        return 2
    outcomes = [r.outcome for r in results]
    print()
    print(summary(results))
    print(f"{outcomes.count('PASS')}/{len(results)} checks passed, {outcomes.count('FAIL')} "
          f"failed, {outcomes.count('SKIP')} skipped", flush=True)
    return 1 if "FAIL" in outcomes else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://localhost:8081", help="the relay's WebSocket URL")
    parser.add_argument("--timeout", type=float, default=180.0, help="overall limit in seconds")
    parser.add_argument("--wait", type=float, default=10.0, help="limit for each expected event")
    parser.add_argument("--auth-secret", default="", help="RELAY_AUTH_SECRET, to mint tokens")
    parser.add_argument("--auth-audience", default="relay", help="RELAY_AUTH_AUDIENCE")
    parser.add_argument("--twilio-auth-token", default="", help="TWILIO_AUTH_TOKEN, to sign")
    parser.add_argument("--public-url", default="", help="PUBLIC_URL, the URL Twilio calls")
    parser.add_argument("--admin-token", default="",
                        help="RELAY_ADMIN_TOKEN: says the relay has one; it is never sent where "
                        "a relay that wrongly accepted it would reset anything")
    parser.add_argument("--handshake-timeout", type=float, default=0.0,
                        help="RELAY_HANDSHAKE_TIMEOUT_S, if known: slow handshakes must be "
                        "dropped within it (plus a margin)")
    parser.add_argument("--expect-rate-limit", action="store_true",
                        help="fail the connection flood unless some handshakes get 429")
    parser.add_argument("--flood", type=int, default=200, help="handshakes in the connection flood")
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), metavar="NAME",
                        help="run only this check (repeatable)")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
