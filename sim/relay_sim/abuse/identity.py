"""Abuse checks: who may connect and act (Twilio signatures, stream tokens, frontend tokens,
sessions of other users, browser origins, operator endpoints)."""

from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed, InvalidStatus

from relay_sim.abuse.harness import (
    JOB,
    Relay,
    b64url,
    end_frontend,
    expect_close,
    fresh,
    parse_twiml,
    refused_stream,
    twilio_form,
    twilio_only,
)
from relay_sim.checks import Skipped, expect
from relay_sim.frontend import SimulatedFrontend
from relay_sim.twilio_call import SimulatedCall, new_sid

# --- The checks: Twilio signatures and stream tokens ------------------------------------------


async def check_forged_signatures(relay: Relay) -> str:
    if not relay.mode.signatures:
        raise Skipped("skipped (signatures off)")
    call_sid = new_sid("CA")
    session_id = str(uuid.uuid4())
    path = f"/twiml?{urlencode({'sessionId': session_id})}"
    form = twilio_form(call_sid, relay.account_sid)
    good = relay.sign(relay.public(path), form)
    other_session = f"/twiml?{urlencode({'sessionId': str(uuid.uuid4())})}"
    twiml_cases = {
        "no signature": (path, form, None),
        "wrong auth token": (path, form, relay.sign(relay.public(path), form,
                                                    auth_token="not-" + secrets.token_hex(8))),
        "tampered CallSid": (path, {**form, "CallSid": new_sid("CA")}, good),
        "other URL": (other_session, form, good),
        "garbage": (path, form, "AAAA"),
    }
    async with relay.no_new_sessions("a forged webhook"):
        for name, (p, f, signature) in twiml_cases.items():
            headers = {"X-Twilio-Signature": signature} if signature else {}
            status, body = await relay.request("POST", p, headers=headers, data=f)
            expect(status == 403, f"/twiml with {name}: {status}, expected 403")
            expect("streamToken" not in body, f"/twiml with {name} leaked a stream token")
    prefix = await relay.stream_prefix()
    call_cases = {
        "no signature": ("/call", None),
        "wrong auth token": ("/call", relay.sign(prefix + "/call",
                                                 auth_token="not-" + secrets.token_hex(8))),
        "signature for another path": (f"/call/{uuid.uuid4()}", relay.sign(prefix + "/call")),
        "the webhook's signature": ("/call", good),
    }
    async with relay.no_new_sessions("a forged stream"):
        for name, (p, signature) in call_cases.items():
            status = await relay.refusal(lambda p=p, s=signature: relay.call(
                p, signature=s, signed=False))
            expect(status == 403, f"/call upgrade with {name}: {status}, expected 403")
    status, _ = await relay.twiml(new_sid("CA"))
    expect(status == 200, f"a correctly signed /twiml got {status}")
    return (f"/twiml: {len(twiml_cases)} forgeries got 403; /call upgrade: {len(call_cases)} "
            f"forgeries got 403; {relay.no_session}; a signed webhook still gets 200")


async def check_stream_tokens(relay: Relay) -> str:
    if not relay.mode.signatures:
        raise Skipped("skipped (signatures off)")
    # A token TwiML minted for another call.
    _, params_x = await token_for(relay, new_sid("CA"))

    starts = {
        "no streamToken": lambda call: call.start({"sessionId": str(uuid.uuid4())}),
        "a forged streamToken": lambda call: call.start(
            {"sessionId": str(uuid.uuid4()), "streamToken": secrets.token_urlsafe(24)}),
        "another call's streamToken": lambda call: call.start(params_x),
    }
    for name, start in starts.items():
        await refused_stream(relay, start, {1008}, f"start with {name}")

    # Used once, properly; then replayed after that call ended.
    session_id = str(uuid.uuid4())
    fe = await relay.frontend(session_id)
    try:
        call, params = await relay.place_call(session_id)
        try:
            await fe.wait_for("session.associated", timeout=relay.wait)
            await call.hang_up()
            await fe.wait_for("call.status_changed", lambda m: m.get("status") == "ended",
                              relay.wait)
        finally:
            await call.close()
        twilio_only(call)
    finally:
        await fe.close()

    async def replay(again: SimulatedCall) -> None:
        await again.start(params)

    async with relay.no_new_sessions("a replayed stream token"):
        again = await relay.call(call_sid=call.call_sid)
        try:
            with contextlib.suppress(ConnectionClosed):
                await replay(again)
            await expect_close(again, {1008}, "a replayed streamToken", relay.wait)
            twilio_only(again)
        finally:
            await again.close()
    return (f"start with {', '.join(starts)}, or a used one replayed: 1008; {relay.no_session} "
            "(TTL not checked: unknown)")


async def token_for(relay: Relay, call_sid: str) -> tuple[str, dict[str, str]]:
    """TwiML for ``call_sid``: its stream URL and parameters (with a fresh streamToken)."""
    status, body = await relay.twiml(call_sid, str(uuid.uuid4()))
    expect(status == 200, f"POST /twiml answered {status}")
    return parse_twiml(body)


# --- The checks: sessions, tokens, origins ----------------------------------------------------


async def check_foreign_sessions(relay: Relay) -> str:
    alice, bob = fresh("alice"), fresh("bob")
    session_a, session_b = str(uuid.uuid4()), str(uuid.uuid4())
    owner = await relay.frontend(session_a, user=alice)
    try:
        await owner.send_json({"type": "job_config", "config": JOB})
        await owner.wait_for("job_config.ack", timeout=relay.wait)
        by_query = f"/logs?{urlencode({'sessionId': session_a})}"
        intruders: dict[str, Callable[[], Awaitable[SimulatedFrontend]]]
        if relay.mode.auth:
            intruders = {
                "another user's token": lambda: relay.frontend(
                    session_a, user=bob, token=relay.token(bob)),
                "another user's token naming the session": lambda: relay.frontend(
                    session_a, user=bob, token=relay.token(bob, sid=session_a)),
                "another user's token, ?sessionId=": lambda: relay.frontend(
                    session_a, user=bob, token=relay.token(bob), path=by_query),
                "the owner's token for another session": lambda: relay.frontend(
                    session_b, user=alice, token=relay.token(alice, sid=session_a)),
            }
        else:
            intruders = {
                "another user": lambda: relay.frontend(session_a, user=bob),
                "another user, ?sessionId=": lambda: relay.frontend(
                    session_a, user=bob, path=by_query),
                "no user at all": lambda: relay.frontend(session_a, user=""),
            }
        outcomes = []
        for name, attempt in intruders.items():
            outcomes.append(await intruder_refused(relay, name, attempt))
        beacon = f"/api/sessions/{session_a}/stop"
        beacon += (f"?{urlencode({'token': relay.token(bob)})}" if relay.mode.auth
                   else f"?{urlencode({'userId': bob})}")
        status, _ = await relay.request("POST", beacon, data=b"{}")
        expect(status == 403, f"another user's stop beacon got {status}, expected 403")
        await owner.send_json({"type": "activity"})
        await owner.send_json({"type": "job_config", "config": JOB})
        ack = await owner.wait_for("job_config.ack", timeout=relay.wait)
        expect(not owner.is_closed and ack.get("sessionId") in (None, session_a),
               f"the owner's session was harmed: {owner.types()}")
        errors = [m for m in owner.received if m.get("type") == "error"]
        expect(not errors, f"the owner got errors: {errors}")
        await end_frontend(owner, relay.wait)
    finally:
        await owner.close()
    return (f"{len(outcomes)} intruders refused ({', '.join(sorted(set(outcomes)))}); "
            "stop beacon 403; the owner's session unharmed")


async def intruder_refused(relay: Relay, name: str,
                           attempt: Callable[[], Awaitable[SimulatedFrontend]]) -> str:
    """With auth on: HTTP 403. In development mode 403 or a close with 1008 after the upgrade."""
    try:
        fe = await attempt()
    except InvalidStatus as exc:
        status = exc.response.status_code
        expect(status == 403, f"{name}: HTTP {status}, expected 403")
        return "403"
    try:
        expect(not relay.mode.auth, f"{name}: the handshake succeeded, expected 403")
        await expect_close(fe, {1008}, name, relay.wait)
        leaked = [t for t in fe.types() if t not in ("error",)]
        expect(not leaked, f"{name}: received {leaked} before the close")
    finally:
        await fe.close()
    return "close 1008"


async def check_bad_session_ids(relay: Relay) -> str:
    bad = ["bad%20id%3B", "x" * 65, "%2E%2E%2F%2E%2E%2Fetc", "%00", "%F0%9F%92%A5"]
    for raw in bad:
        for path in (f"/logs/{raw}", f"/logs?sessionId={raw}"):
            status = await relay.refusal(lambda path=path: relay.frontend(None, path=path))
            expect(status in (400, 404) if "%2F" in raw else status == 400,
                   f"{path}: {status}, expected 400")
        status = await relay.refusal(lambda raw=raw: relay.call(f"/call/{raw}"))
        allowed = {400, 403, 404} if relay.mode.signatures or "%2F" in raw else {400}
        expect(status in allowed, f"/call/{raw}: {status}, expected {sorted(allowed)}")
    return f"{len(bad)} bad IDs refused on /logs/…, /logs?sessionId=… and /call/… (400)"


async def check_bad_tokens(relay: Relay) -> str:
    if not relay.mode.auth:
        raise Skipped("skipped (auth off)")
    user = fresh("tokens")
    tokens: dict[str, str | bool] = {
        "no subprotocol": False,
        "no token": True,
        "expired": relay.token(user, exp_in=-600),
        "wrong audience": relay.token(user, audience="not-" + relay.target.auth_audience),
        "wrong secret": relay.token(user, secret="not-the-secret-" + secrets.token_hex(16)),
        "alg none": relay.unsigned_token(user),
        "garbage": "not-a-jwt",
        "truncated": relay.token(user)[:-10],
        "no exp": relay.token(user, drop=("exp",)),
        "no aud": relay.token(user, drop=("aud",)),
        "no sub": relay.token(user, drop=("sub",)),
    }
    for name, token in tokens.items():
        status = await relay.refusal(lambda token=token: relay.frontend(
            str(uuid.uuid4()), user=user, token=token))
        expect(status == 401, f"/logs with {name}: {status}, expected 401")
    api = {
        "stop_all, expired bearer": ("/api/sessions/stop_all",
                                     {"Authorization": f"Bearer {tokens['expired']}"}),
        "stop_all, no credentials": ("/api/sessions/stop_all", {}),
        "stop beacon, garbage ?token=": (
            f"/api/sessions/{uuid.uuid4()}/stop?token=not-a-jwt", {}),
        "stop beacon, alg none": (
            f"/api/sessions/{uuid.uuid4()}/stop?{urlencode({'token': tokens['alg none']})}", {}),
    }
    for name, (path, headers) in api.items():
        status, _ = await relay.request("POST", path, headers=headers, data=b"{}")
        expect(status == 401, f"{name}: {status}, expected 401")
    status = await relay.refusal(lambda: relay.frontend(str(uuid.uuid4())))
    expect(status == 101, f"a valid token got {status}")
    return f"{len(tokens)} bad tokens got 401 on /logs, {len(api)} on /api; a valid one opens"


async def check_origins(relay: Relay) -> str:
    if relay.mode.open_origins:
        raise Skipped("every origin is allowed (RELAY_ALLOWED_ORIGINS=*)")
    app = relay.mode.app_origin
    for origin in ("https://evil.example", "null", app + ".evil.example"):
        status = await relay.refusal(lambda o=origin: relay.frontend(str(uuid.uuid4()), origin=o))
        expect(status == 403, f"Origin {origin}: {status}, expected 403")
        status, _ = await relay.request("OPTIONS", "/api/sessions/stop_all", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        expect(status == 403, f"CORS preflight from {origin}: {status}, expected 403")
    fe = await relay.frontend(str(uuid.uuid4()), origin=app)
    await fe.close()
    status, _ = await relay.request("OPTIONS", "/api/sessions/stop_all", headers={
        "Origin": app, "Access-Control-Request-Method": "POST"})
    expect(status == 204, f"CORS preflight from {app}: {status}, expected 204")
    local = " (development mode: pages on this machine only)" if not relay.mode.auth else ""
    return f"3 foreign origins got 403 on /logs and on CORS preflights; {app} is let in{local}"


OPERATOR_ENDPOINTS = [("GET", "/api/sessions"), ("GET", "/metrics"),
                      ("POST", "/api/sessions/reset"), ("POST", "/api/heygen/stop_all_sessions")]


async def check_operator_endpoints(relay: Relay) -> str:
    if relay.mode.admin is False or (relay.mode.admin is None and not relay.target.admin_token):
        for method, path in OPERATOR_ENDPOINTS:
            status, body = await relay.request(method, path)
            expect(status == 403 and "RELAY_ADMIN_TOKEN" in body,
                   f"{method} {path} without RELAY_ADMIN_TOKEN: {status} {body[:120]}, "
                   "expected 403 saying how to turn it on")
        return f"off without RELAY_ADMIN_TOKEN: {len(OPERATOR_ENDPOINTS)} endpoints answered 403"
    cases = {
        "no token": {},
        "wrong token": {"Authorization": "Bearer wrong-" + secrets.token_hex(8)},
        "basic auth": {"Authorization": "Basic " + b64url(b"admin:" + b"x" * 8)},
    }
    if relay.mode.auth:
        cases["a user's JWT"] = {"Authorization": f"Bearer {relay.token(fresh('op'))}"}
    for name, headers in cases.items():
        status, _ = await relay.request("POST", "/api/sessions/reset", headers=headers)
        expect(status == 401, f"reset with {name}: {status}, expected 401")
    detail = f"/api/sessions/reset refused {', '.join(cases)} (401)"
    if relay.target.admin_token:
        # The real token in the query string must not count (it is a GET: harmless if it did).
        status, _ = await relay.request(
            "GET", f"/api/sessions?{urlencode({'token': relay.target.admin_token})}")
        expect(status == 401, f"/api/sessions?token=<admin token>: {status}, expected 401")
        detail += "; the admin token in ?token= refused (401)"
    return detail


async def check_cross_site_posts(relay: Relay) -> str:
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"}
    user = fresh("csrf")
    path = f"/api/sessions/stop_all?{urlencode({'userId': user})}"
    headers = dict(form)
    if relay.mode.auth:
        headers["Authorization"] = f"Bearer {relay.token(user)}"  # even with the user's own token
    status, body = await relay.request("POST", path, headers=headers, data="a=1", as_app=False)
    expect(status == 403 and "custom_header_required" in body,
           f"a form POST to stop_all: {status} {body[:100]}, expected 403 custom_header_required")
    # Operator endpoints refuse it too (never sent with the real admin token: a relay that
    # wrongly accepted it would end every session).
    for path in ("/api/sessions/reset", "/api/heygen/stop_all_sessions"):
        status, _ = await relay.request("POST", path, headers=form, data="a=1", as_app=False)
        expect(status in (401, 403), f"a form POST to {path}: {status}, expected 401 or 403")
    return ("a form POST (no JSON, no X-Relay-Request) to stop_all: 403 custom_header_required; "
            "operator endpoints refuse it too")


async def check_token_lifetime(relay: Relay) -> str:
    if not relay.mode.auth:
        raise Skipped("skipped (auth off)")
    user = fresh("ttl")
    now = int(time.time())
    cases = {"a 30-day token": {"iat": now, "exp": now + 30 * 86_400},
             "no iat": {"iat": None, "exp": now + 300},
             "iat an hour ahead": {"iat": now + 3_600, "exp": now + 3_900}}
    for name, claims in cases.items():
        token = relay.token(user, claims=claims)
        status = await relay.refusal(lambda t=token: relay.frontend(
            str(uuid.uuid4()), user=user, token=t))
        expect(status == 401, f"/logs with {name}: {status}, expected 401")
    return f"{', '.join(cases)}: 401 (RELAY_AUTH_MAX_TTL_S, counted from iat)"


async def check_framing(relay: Relay) -> str:
    async with relay.http.get(relay.http_url + "/") as response:
        frame_options = response.headers.get("X-Frame-Options", "")
        csp = response.headers.get("Content-Security-Policy", "")
    expect(frame_options.upper() == "DENY", f"GET / X-Frame-Options: {frame_options!r}")
    expect("frame-ancestors 'none'" in csp, f"GET / CSP without frame-ancestors 'none': {csp!r}")
    return "the live sessions page sends X-Frame-Options: DENY and frame-ancestors 'none'"


async def check_stream_token_binding(relay: Relay) -> str:
    if not relay.mode.signatures:
        raise Skipped("skipped (signatures off)")
    session_a, call_sid = str(uuid.uuid4()), new_sid("CA")
    _, params = await token_for_session(relay, call_sid, session_a)

    async def elsewhere(call: SimulatedCall) -> None:
        await call.start({"sessionId": str(uuid.uuid4()), "streamToken": params["streamToken"]})

    async with relay.no_new_sessions("a stream token used for another session"):
        other = await relay.call(call_sid=call_sid)
        try:
            with contextlib.suppress(ConnectionClosed):
                await elsewhere(other)
            await expect_close(other, {1008}, "a token for session A naming session B", relay.wait)
        finally:
            await other.close()
    fe = await relay.frontend(session_a)
    try:
        call = await relay.call(f"/call/{session_a}", call_sid=call_sid)
        try:
            await call.start(params)
            await fe.wait_for("session.associated", timeout=relay.wait)
            await call.hang_up()
        finally:
            await call.close()
        await fe.wait_for("call.status_changed", lambda m: m.get("status") == "ended", relay.wait)
    finally:
        await fe.close()
    return ("a token minted for session A naming session B: 1008, and not spent: "
            "the real stream then went live")


async def token_for_session(relay: Relay, call_sid: str,
                            session_id: str) -> tuple[str, dict[str, str]]:
    status, body = await relay.twiml(call_sid, session_id)
    expect(status == 200, f"POST /twiml answered {status}")
    return parse_twiml(body)


async def check_ownerless_calls(relay: Relay) -> str:
    if not (relay.mode.auth and relay.mode.signatures):
        raise Skipped("skipped (needs auth and signatures on)")
    call_sid = new_sid("CA")
    status, body = await relay.twiml(call_sid)
    expect(status == 200, f"POST /twiml answered {status}")
    _, params = parse_twiml(body)
    call = await relay.call("/call", call_sid=call_sid)
    try:
        await call.start(params)
        stranger = fresh("stranger")
        outcomes = []
        for path in (f"/logs/{call_sid}", f"/logs?{urlencode({'callSid': call_sid})}"):
            try:
                fe = await relay.frontend(None, user=stranger, path=path,
                                          token=relay.token(stranger))
            except InvalidStatus as exc:
                outcomes.append(str(exc.response.status_code))
                continue
            try:
                with contextlib.suppress(Exception):
                    await fe.wait_for("session.associated", timeout=min(1.0, relay.wait))
                associated = [m for m in fe.received if m.get("type") == "session.associated"
                              and m.get("callSid") == call_sid]
                expect(not associated, f"a stranger's {path} joined the call: {associated}")
                outcomes.append("no events")
            finally:
                await fe.close()
    finally:
        await call.hang_up()
        await call.close()
    return f"a call that named no session: a stranger's /logs/{{CallSid}} and ?callSid= got " \
           f"{', '.join(outcomes)}"
