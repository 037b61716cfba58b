"""Abuse checks that bracket the others: the relay's mode, a normal call end to end, and
nothing left behind."""

from __future__ import annotations

import uuid

from relay_sim.abuse.harness import (
    JOB,
    SUBPROTOCOL,
    Relay,
    load,
    same_load,
    twilio_only,
)
from relay_sim.checks import expect

# --- The checks: a normal call, then nothing left ---------------------------------------------


async def check_normal_call(relay: Relay) -> str:
    session_id = str(uuid.uuid4())
    fe = await relay.frontend(session_id)
    call = None
    try:
        if relay.mode.auth:
            expect(fe.subprotocol == SUBPROTOCOL,
                   f"relay selected subprotocol {fe.subprotocol!r}, expected {SUBPROTOCOL!r}")
        await fe.send_json({"type": "job_config", "config": JOB})
        ack = await fe.wait_for("job_config.ack", timeout=relay.wait)
        expect(ack.get("status") == "queued", f"job_config before the call: {ack}")
        call, params = await relay.place_call(session_id)
        await call.speak(10)
        await call.speak(5, loud=False)
        associated = await fe.wait_for("session.associated", timeout=relay.wait)
        expect(associated.get("sessionId") == session_id
               and associated.get("callSid") == call.call_sid
               and associated.get("streamSid") == call.stream_sid,
               f"session.associated {associated} does not name this session and call")
        await fe.wait_for("job_config.ack", lambda m: m.get("status") == "applied", relay.wait)
        await fe.send_json({"type": "session.end"})
        ended = await fe.wait_for("call.status_changed", lambda m: m.get("status") == "ended",
                                  relay.wait)
        await fe.wait_closed(relay.wait)
        expect(fe.closed_after("call.status_changed"), "frontend closed before ended arrived")
        await call.wait_closed(relay.wait)
        twilio_only(call)
    finally:
        await fe.close()
        if call is not None:
            await call.close()
    how = "signed /twiml + stream token" if relay.mode.signatures else "/twiml"
    return (f"{how}: associated, config queued→applied, ended ({ended.get('reason')}); "
            f"start parameters {sorted(params)}")


async def check_back_to_baseline(relay: Relay) -> str:
    health, took = await relay.wait_health(same_load(relay.baseline), "baseline load")
    expect(health.get("status") == "ok", f"/health status {health.get('status')!r}")
    before = relay.baseline.get("endedByReason", {})
    ended = {k: n - before.get(k, 0) for k, n in health.get("endedByReason", {}).items()
             if n != before.get(k, 0)}
    return f"{load(health)} after {took:.1f}s; sessions ended meanwhile by reason {ended}"


async def check_security_mode(relay: Relay) -> str:
    mode, args = relay.mode, relay.target  # what the relay says, what we were told
    problems = []
    if mode.auth and not args.auth_secret:
        problems.append("the relay requires tokens but no --auth-secret was given")
    if args.auth_secret and not mode.auth:
        problems.append("--auth-secret was given but the relay does not require tokens "
                        "(RELAY_AUTH_SECRET unset?)")
    if mode.signatures and not (args.twilio_auth_token and args.public_url):
        problems.append("the relay checks Twilio signatures but --twilio-auth-token and "
                        "--public-url were not both given")
    if args.twilio_auth_token and not mode.signatures:
        problems.append("--twilio-auth-token was given but the relay does not check Twilio "
                        "signatures (TWILIO_AUTH_TOKEN unset?)")
    if args.admin_token and mode.admin is False:
        problems.append("--admin-token was given but the relay has no RELAY_ADMIN_TOKEN")
    expect(not problems, "; ".join(problems) + f" ({mode.describe()})")
    if not (mode.auth or mode.signatures):
        return f"development mode ({mode.describe()}): checks that need secrets are skipped"
    return mode.describe()


