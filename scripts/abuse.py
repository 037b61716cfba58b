#!/usr/bin/env python
"""Abuse a running relay, then check that a normal call still works and nothing leaked.

Usage::

    python scripts/abuse.py [--url ws://localhost:8081] [--timeout 120] [--wait 10]
        [--auth-secret S [--auth-audience relay]]
        [--twilio-auth-token T --public-url https://relay.example.com]
        [--admin-token A] [--handshake-timeout SECONDS] [--expect-rate-limit] [--flood 200]

Talks only to ``--url`` (``/logs``, ``/call``, ``/twiml``, ``/api/…`` and ``GET /health``; the HTTP
base is the WebSocket URL with ws→http, wss→https). It reads ``/health`` first: its ``security``
block (``auth``, ``twilioSignatures``, ``origins``; absent means all off, development mode)
decides what each check expects, and its counts are the baseline the relay must return to.

Prints one ``PASS name — detail``, ``FAIL name — detail`` or ``SKIP name — why`` line per check,
then a summary line. Exits 1 if any check failed, 2 if ``/health`` cannot be read at all.

Checks, in order (dev = no secrets configured; secured = RELAY_AUTH_SECRET / TWILIO_AUTH_TOKEN):

1. security mode — the secrets given to this script match what the relay enforces.
2. malformed JSON on /logs — bad JSON, non-objects, unknown types, deep nesting each get an
   ``error``; the connection stays usable. Invalid UTF-8 closes with 1007.
3. binary frame on /logs — an ``error``; the connection stays usable.
4. oversized frames on /logs — one frame, and a fragmented message, over 64 KiB: close 1009.
5. malformed first messages on /call — close 1008, no session opened.
6. binary frame on /call — close 1003.  7. oversized frame on /call — over 16 KiB: close 1009.
8. wrong-order events on /call — media, mark, stop, dtmf before start: close 1008.
9. wrong-order events on /logs — session.end first (ended, then close 1000); job_config twice
   (queued twice); response.create and conversation.item.create before a call (``error``).
10. forged Twilio signatures — secured: ``/twiml`` and the ``/call`` upgrade with a missing,
    forged or replayed-elsewhere signature get 403; dev: skipped (signatures off).
11. stream tokens — secured: a start with no, a forged, another call's or an already used
    ``streamToken`` is closed with 1008 before any session opens; dev: skipped.
12. foreign session IDs — secured: another user's token (or a token for another session) gets
    403 on ``/logs`` and on the stop beacon; dev: ``?userId=`` owners, refused (403, or close
    1008 after the upgrade). Both: the owner's session is unharmed.
13. bad session IDs — bad characters or length: 400 on ``/logs``, ``/logs?sessionId=``, ``/call``.
14. expired and malformed tokens — secured: missing, expired, wrong audience, wrong secret,
    ``alg: none``, garbage, no ``exp``/``aud``/``sub``: 401 on ``/logs`` and ``/api``; dev: skipped.
15. browser origins — an Origin outside ``RELAY_ALLOWED_ORIGINS`` gets 403; skipped for ``*``.
16. operator endpoints — ``/api/sessions/reset`` refuses a missing or wrong admin token (401);
    skipped without ``--admin-token`` (against a relay without one a reset would succeed).
17. slow handshakes — half-sent requests do not block others and are dropped within
    ``--handshake-timeout`` + margin; with the timeout unknown, closed by us after 2 s.
18. huge requests — a long URL gets 414, a long header or too many headers 431, a big body
    413, and bytes that are not HTTP are dropped.
19. message flood on /logs — 2,000 ``activity`` messages as fast as possible: the connection
    survives (a job_config is still acked) or is closed with 1008/1013.
20. message flood on /call — 2,000 media frames as fast as possible on a real call: same rule.
21. connection flood — ``--flood`` handshakes at once: each succeeds (then is closed) or is
    refused with 429 (rate limit) or 503 (session cap); with ``--expect-rate-limit`` some 429s.
22. normal call end to end — frontend with a valid token, job_config queued; a call placed
    through ``POST /twiml`` (signed, with its stream token, when signatures are on); the
    frontend sees ``session.associated`` and ``job_config.ack`` applied; ``session.end`` ends it.
23. back to baseline — ``/health`` shows the baseline sessions and connections again.

Handshakes refused with 429 are retried with back-off (bounded by ``--wait``), so a rate limit
never fails a check that is not about the rate limit. A configured session whose frontend left
may linger for the relay's resume grace (``resumeGraceS``); waits allow for it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import secrets
import ssl
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

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
    Skipped,
    expect,
    http_base,
    load,
    run_bounded,
    run_check,
)
from relay_sim.frontend import SimulatedFrontend
from relay_sim.inbox import SimError, WaitTimeout
from relay_sim.twilio_call import SimulatedCall, new_sid
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

T = TypeVar("T")

JOB = {"role": "Backend Engineer", "company": "Acme"}
SUBPROTOCOL = "relay.v1"
FLOOD_MESSAGES = 2000
#: Close codes a flooded connection may legitimately get (README close codes).
FLOOD_CLOSES = {1008, 1013, 4029}
#: Outbound Twilio events; anything else is a provider error.
TWILIO_OUTBOUND = {"media", "mark", "clear"}
SLOW_HANDSHAKES = 10
UNKNOWN_HANDSHAKE_WAIT = 2.0


class RateLimited(CheckFailed):
    """The relay kept answering 429 for longer than the wait."""


def fresh(prefix: str) -> str:
    """A unique name, so no check supersedes another's session (one session per user)."""
    return f"abuse-{prefix}-{secrets.token_hex(4)}"


def with_query(path: str, **params: str) -> str:
    """Append query parameters to a path that may already have some."""
    if not params:
        return path
    return path + ("&" if "?" in path else "?") + urlencode(params)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def twilio_only(call: SimulatedCall) -> None:
    """Fail unless the relay sent this call nothing but media, mark and clear."""
    odd = sorted({str(m.get("event")) for m in call.received} - TWILIO_OUTBOUND)
    expect(not odd and not call.unparsed and not call.protocol_errors,
           f"relay sent Twilio {odd or call.unparsed[:2] or call.protocol_errors[:2]}: "
           "Twilio accepts only media, mark and clear")


def parse_twiml(body: str) -> tuple[str, dict[str, str]]:
    """The ``<Stream url>`` and its ``<Parameter>``s from a TwiML document."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise CheckFailed(f"TwiML is not XML: {exc}") from exc
    stream = root.find(".//Stream")
    expect(stream is not None and bool(stream.get("url")), f"no <Stream url> in TwiML: {body!r}")
    assert stream is not None
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return str(stream.get("url")), params


def twilio_form(call_sid: str, account_sid: str) -> dict[str, str]:
    """The form Twilio POSTs to a voice webhook for an incoming call (the fields relay may use)."""
    return {
        "AccountSid": account_sid, "ApiVersion": "2010-04-01", "CallSid": call_sid,
        "CallStatus": "ringing", "Called": "+15005550006", "Caller": "+15005550001",
        "Direction": "inbound", "From": "+15005550001", "To": "+15005550006",
    }


@dataclass(frozen=True)
class Mode:
    """What the relay says it enforces (``/health`` ``security``; absent means all off)."""

    auth: bool
    signatures: bool
    origins: tuple[str, ...]

    @classmethod
    def from_health(cls, health: Health) -> Mode:
        security = health.get("security")
        if not isinstance(security, dict):
            return cls(False, False, ("*",))
        origins = security.get("origins") or ["*"]
        return cls(bool(security.get("auth")), bool(security.get("twilioSignatures")),
                   tuple(str(o) for o in origins))

    @property
    def open_origins(self) -> bool:
        return "*" in self.origins

    def describe(self) -> str:
        return (f"auth {'on' if self.auth else 'off'}, Twilio signatures "
                f"{'on' if self.signatures else 'off'}, origins {list(self.origins)}")


class Relay:
    """The relay under test: its URL, its mode, and ways to reach it as each party would."""

    def __init__(self, args: argparse.Namespace, http: aiohttp.ClientSession) -> None:
        self.args = args
        self.url = args.url.rstrip("/")
        self.http_url = http_base(self.url)
        self.http = http
        self.wait: float = args.wait
        self.grace = 0.0
        self.mode = Mode(False, False, ("*",))
        self.baseline: Health = {}
        #: Whether the relay was idle at the start, so "no session opened" can be asserted.
        self.quiet = False
        self.account_sid = new_sid("AC")
        self.retried_429 = 0
        self._stream_prefix: str | None = None

    # --- Retrying through a rate limit ------------------------------------------------------

    async def _retry_429(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt``; while it is refused with 429, back off and retry (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        delay = 0.05
        while True:
            try:
                return await attempt()
            except InvalidStatus as exc:
                if exc.response.status_code != 429 or loop.time() + delay > deadline:
                    raise
            except RateLimited:
                if loop.time() + delay > deadline:
                    raise
            self.retried_429 += 1
            await asyncio.sleep(delay)  # back-off while a rate limit refills, not synchronisation
            delay = min(delay * 2, 0.5)

    # --- HTTP -------------------------------------------------------------------------------

    async def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                      data: Any = None) -> tuple[int, str]:
        """One HTTP request; returns the status and body (429 is retried)."""
        timeout = aiohttp.ClientTimeout(total=self.wait)

        async def once() -> tuple[int, str]:
            async with self.http.request(method, self.http_url + path, headers=headers,
                                         data=data, timeout=timeout) as response:
                body = await response.text()
                if response.status == 429:
                    raise RateLimited(f"{method} {path}: 429 for over {self.wait:g}s")
                return response.status, body

        return await self._retry_429(once)

    async def health(self) -> Health:
        """GET /health and return its JSON."""
        status, body = await self.request("GET", "/health")
        expect(status == 200, f"/health answered {status}")
        health: Health = orjson.loads(body)
        return health

    async def wait_health(
        self, condition: Callable[[Health], bool], describe: str
    ) -> tuple[Health, float]:
        """Poll /health until ``condition`` holds (within the wait plus the resume grace)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        limit = self.wait + self.grace
        while True:
            health = await self.health()
            if condition(health):
                return health, loop.time() - started
            if loop.time() - started >= limit:
                raise CheckFailed(f"{describe} not reached in {limit:g}s; /health: {load(health)}")
            await asyncio.sleep(0.05)  # polling interval, not synchronisation

    @contextlib.asynccontextmanager
    async def no_new_sessions(self, what: str) -> AsyncIterator[None]:
        """Assert that nothing in the block opened a session (only when the relay was idle)."""
        if not self.quiet:
            yield
            return
        await self.wait_health(same_load(self.baseline), "baseline load")
        before = sum((await self.health()).get("endedByReason", {}).values())
        yield
        after = await self.health()
        expect(after.get("sessions") == self.baseline.get("sessions")
               and after.get("connections", {}).get("upstream")
               == self.baseline.get("connections", {}).get("upstream")
               and sum(after.get("endedByReason", {}).values()) == before,
               f"{what} opened a session or a model connection: {load(after)}, "
               f"ended {after.get('endedByReason')}")

    @property
    def no_session(self) -> str:
        """How a refusal's detail line reports the "no session opened" assertion."""
        return "no session" if self.quiet else "sessions not compared (the relay was not idle)"

    # --- Tokens and signatures ----------------------------------------------------------------

    def token(self, user: str, *, sid: str | None = None, exp_in: float = 300,
              audience: str | None = None, secret: str | None = None,
              drop: tuple[str, ...] = ()) -> str:
        """A frontend JWT (HS256) as the app's backend would mint it, or a bad variant."""
        if not self.args.auth_secret and secret is None:
            raise CheckFailed("the relay requires tokens: pass --auth-secret (and --auth-audience)")
        try:
            import jwt  # PyJWT; only needed against a relay with auth on
        except ImportError:
            raise CheckFailed("minting tokens needs PyJWT: pip install pyjwt") from None

        now = int(time.time())
        claims: dict[str, Any] = {"sub": user, "aud": audience or self.args.auth_audience,
                                  "iat": now, "exp": now + int(exp_in)}
        if sid is not None:
            claims["sid"] = sid
        for name in drop:
            claims.pop(name, None)
        return jwt.encode(claims, secret or self.args.auth_secret, algorithm="HS256")

    def unsigned_token(self, user: str) -> str:
        """A JWT with ``alg: none`` and no signature (must never be accepted)."""
        now = int(time.time())
        header = b64url(orjson.dumps({"alg": "none", "typ": "JWT"}))
        claims = {"sub": user, "aud": self.args.auth_audience, "iat": now, "exp": now + 300}
        return f"{header}.{b64url(orjson.dumps(claims))}."

    def sign(self, url: str, params: dict[str, str] | None = None, *,
             auth_token: str | None = None) -> str:
        """Twilio's X-Twilio-Signature for ``url`` and POST ``params``."""
        token = auth_token or self.args.twilio_auth_token
        if not token:
            raise CheckFailed("the relay checks Twilio signatures: pass --twilio-auth-token "
                              "and --public-url")
        try:
            from twilio.request_validator import RequestValidator
        except ImportError:
            raise CheckFailed("signing needs Twilio's helper: pip install twilio") from None

        return str(RequestValidator(token).compute_signature(url, params or {}))

    def public(self, path: str) -> str:
        """The URL Twilio calls for ``path`` (``--public-url`` + path)."""
        if not self.args.public_url:
            raise CheckFailed("the relay checks Twilio signatures: pass --public-url")
        return self.args.public_url.rstrip("/") + path

    # --- Frontends ----------------------------------------------------------------------------

    def frontend_options(self, session_id: str | None, user: str, token: str | bool | None,
                         origin: str | None) -> tuple[list[str] | None, str | None]:
        """Subprotocols and Origin for a frontend, as the app would send them."""
        if token is False:
            subprotocols = None
        elif token is True:
            subprotocols = [SUBPROTOCOL]
        elif isinstance(token, str):
            subprotocols = [SUBPROTOCOL, token]
        elif self.mode.auth:
            subprotocols = [SUBPROTOCOL, self.token(user, sid=session_id)]
        else:
            subprotocols = None
        if origin is None and not self.mode.open_origins:
            origin = self.mode.origins[0]
        return subprotocols, origin

    def logs_path(self, session_id: str | None, user: str, path: str | None) -> str:
        path = path or (f"/logs/{session_id}" if session_id else "/logs")
        # Until token auth is on, the user is the ?userId= query parameter.
        return path if self.mode.auth or not user else with_query(path, userId=user)

    async def frontend(self, session_id: str | None, *, user: str | None = None,
                       token: str | bool | None = None, origin: str | None = None,
                       path: str | None = None, retry: bool = True) -> SimulatedFrontend:
        """Connect a browser-like frontend.

        Args:
            session_id: The session to join (``/logs/{id}``) and the token's ``sid``.
            user: The token's ``sub`` (or ``?userId=``); fresh if None, anonymous if "".
            token: None mints a valid one when auth is on; a str is offered as is; False
                offers no subprotocol at all; True offers only ``relay.v1``.
            path: Overrides ``/logs/{session_id}``.
        """
        user = fresh("user") if user is None else user
        subprotocols, origin = self.frontend_options(session_id, user, token, origin)
        full_path = self.logs_path(session_id, user, path)

        async def once() -> SimulatedFrontend:
            return await SimulatedFrontend.connect(self.url, full_path, subprotocols=subprotocols,
                                                   origin=origin, open_timeout=self.wait)

        return await (self._retry_429(once) if retry else once())

    async def raw_frontend(self, session_id: str) -> ClientConnection:
        """A frontend as a bare websockets connection, to send what the simulator cannot."""
        user = fresh("raw")
        subprotocols, origin = self.frontend_options(session_id, user, None, None)
        uri = self.url + self.logs_path(session_id, user, None)

        async def once() -> ClientConnection:
            return await connect(uri, subprotocols=subprotocols,  # type: ignore[arg-type]
                                 origin=origin, proxy=None,  # type: ignore[arg-type]
                                 open_timeout=self.wait, max_size=None)

        return await self._retry_429(once)

    async def refusal(self, open_peer: Callable[[], Awaitable[Any]]) -> int:
        """Attempt a handshake expected to be refused; return its HTTP status (101 if it opened).

        A connection that opened is closed again at once.
        """
        try:
            peer = await open_peer()
        except InvalidStatus as exc:
            return int(exc.response.status_code)
        await peer.close()
        return 101

    # --- Calls ------------------------------------------------------------------------------

    async def stream_prefix(self) -> str:
        """The stream URL Twilio signs, minus ``/call`` (from the relay's own TwiML)."""
        if self._stream_prefix is None:
            status, body = await self.twiml(new_sid("CA"))
            expect(status == 200, f"POST /twiml answered {status}: {body[:200]}")
            url, _ = parse_twiml(body)
            self._stream_prefix = url[: url.rfind("/call")]
        return self._stream_prefix

    async def twiml(self, call_sid: str, session_id: str | None = None) -> tuple[int, str]:
        """POST /twiml as Twilio's voice webhook does (signed when signatures are on)."""
        path = "/twiml" + (f"?{urlencode({'sessionId': session_id})}" if session_id else "")
        form = twilio_form(call_sid, self.account_sid)
        headers = {}
        if self.mode.signatures:
            headers["X-Twilio-Signature"] = self.sign(self.public(path), form)
        return await self.request("POST", path, headers=headers, data=form)

    async def call(self, path: str = "/call", *, signature: str | None = None,
                   signed: bool = True, call_sid: str | None = None) -> SimulatedCall:
        """Open a Media Stream as Twilio does (signed when signatures are on); no start yet."""
        headers = {}
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        elif signed and self.mode.signatures:
            headers["X-Twilio-Signature"] = self.sign(await self.stream_prefix() + path)

        async def once() -> SimulatedCall:
            return await SimulatedCall.connect(self.url, path, call_sid=call_sid,
                                               account_sid=self.account_sid,
                                               extra_headers=headers, open_timeout=self.wait)

        return await self._retry_429(once)

    async def place_call(self, session_id: str) -> tuple[SimulatedCall, dict[str, str]]:
        """A real call: POST /twiml, open the stream it names, send its parameters in start."""
        call_sid = new_sid("CA")
        status, body = await self.twiml(call_sid, session_id)
        expect(status == 200, f"POST /twiml answered {status}: {body[:200]}")
        url, params = parse_twiml(body)
        if self.mode.signatures:
            expect(bool(params.get("streamToken")), f"TwiML has no streamToken: {body[:300]}")
        path = urlsplit(url).path
        path = path[path.rfind("/call"):]
        call = await self.call(path, call_sid=call_sid)
        await call.start(params)
        return call, params

    # --- Raw TCP ----------------------------------------------------------------------------

    async def open_tcp(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        parts = urlsplit(self.url)
        tls = parts.scheme == "wss"
        port = parts.port or (443 if tls else 80)
        return await asyncio.wait_for(asyncio.open_connection(
            parts.hostname, port, ssl=ssl.create_default_context() if tls else None,
            server_hostname=parts.hostname if tls else None), self.wait)

    @property
    def host_header(self) -> str:
        return urlsplit(self.url).netloc

    async def raw_status(self, data: bytes) -> int | None:
        """Send ``data`` on a fresh connection; the response status, or None if dropped."""

        async def once() -> int | None:
            reader, writer = await self.open_tcp()
            try:
                writer.write(data)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                try:
                    line = await asyncio.wait_for(reader.readline(), self.wait)
                except ConnectionError:
                    line = b""  # reset without an answer: dropped
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    await writer.wait_closed()
            fields = line.split()
            if len(fields) < 2 or not fields[1].isdigit():
                return None
            if int(fields[1]) == 429:
                raise RateLimited(f"raw request: 429 for over {self.wait:g}s")
            return int(fields[1])

        return await self._retry_429(once)


def same_load(baseline: Health) -> Callable[[Health], bool]:
    """A /health condition: sessions, waiting frontends and every connection back to baseline."""

    def holds(health: Health) -> bool:
        return (health.get("sessions") == baseline.get("sessions")
                and health.get("waitingFrontends") == baseline.get("waitingFrontends")
                and health.get("connections") == baseline.get("connections"))

    return holds


async def expect_close(peer: SimulatedFrontend | SimulatedCall, codes: set[int], what: str,
                       wait: float) -> int:
    """Wait for the relay to close ``peer``; fail unless with one of ``codes``."""
    try:
        code, reason = await peer.wait_closed(wait)
    except WaitTimeout:
        raise CheckFailed(f"{what}: still open after {wait:g}s, expected close "
                          f"{sorted(codes)}") from None
    expect(code in codes, f"{what}: closed with {code} {reason!r}, expected {sorted(codes)}")
    return int(code or 0)


async def end_frontend(fe: SimulatedFrontend, wait: float) -> None:
    """End the frontend's session (session.end) so it does not linger for the resume grace."""
    if fe.is_closed:
        return
    try:
        await fe.send_json({"type": "session.end"})
    except ConnectionClosed:
        return
    await fe.wait_closed(wait)


# --- The checks: input on /logs ---------------------------------------------------------------

LOGS_GARBAGE = [
    ("bad JSON", "{not json"),
    ("array", "[1, 2, 3]"),
    ("string", '"hello"'),
    ("unknown type", '{"type": "rm -rf"}'),
    ("no type", '{"no_type": true}'),
    ("model-only event", '{"type": "input_audio_buffer.append", "audio": "AAAA"}'),
    ("session.update of a string", '{"type": "session.update", "session": "x"}'),
    ("job_config of a string", '{"type": "job_config", "config": "x"}'),
    ("deep nesting", "[" * 5000 + "]" * 5000),
    ("NUL", "\u0000"),
]


async def check_logs_malformed(relay: Relay) -> str:
    session_id = str(uuid.uuid4())
    fe = await relay.frontend(session_id)
    try:
        codes = []
        for name, raw in LOGS_GARBAGE:
            await fe.send_raw(raw)
            error = await fe.wait_for("error", timeout=relay.wait)
            expect(bool(error.get("code")) and bool(error.get("message")),
                   f"{name}: error without code or message: {error}")
            codes.append(str(error["code"]))
        await fe.send_json({"type": "job_config", "config": JOB})
        ack = await fe.wait_for("job_config.ack", timeout=relay.wait)
        expect(ack.get("status") == "queued", f"after the garbage, job_config got {ack}")
        await end_frontend(fe, relay.wait)
    finally:
        await fe.close()
    raw = await relay.raw_frontend(str(uuid.uuid4()))
    try:
        await raw.send(b"\xff\xfe{", text=True)
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(relay.wait):
                async for _ in raw:
                    pass
        expect(raw.close_code == 1007, f"invalid UTF-8 text closed with {raw.close_code}, "
               "expected 1007")
    finally:
        await raw.close()
    return (f"{len(LOGS_GARBAGE)} bad messages each got an error ({', '.join(sorted(set(codes)))})"
            "; still usable; invalid UTF-8 closed with 1007")


async def check_logs_binary(relay: Relay) -> str:
    fe = await relay.frontend(str(uuid.uuid4()))
    try:
        await fe.send_raw(b"\x00\x01\x02binary")
        error = await fe.wait_for("error", timeout=relay.wait)
        await fe.send_json({"type": "activity"})
        await fe.send_json({"type": "job_config", "config": JOB})
        await fe.wait_for("job_config.ack", timeout=relay.wait)
        await end_frontend(fe, relay.wait)
    finally:
        await fe.close()
    return f"error {error.get('code')!r}; the connection stayed usable"


async def check_logs_oversized(relay: Relay) -> str:
    fe = await relay.frontend(str(uuid.uuid4()))
    try:
        await fe.send_raw('{"type":"activity","pad":"' + "x" * 100_000 + '"}')
        await expect_close(fe, {1009}, "a 100 KB frame", relay.wait)
    finally:
        await fe.close()
    raw = await relay.raw_frontend(str(uuid.uuid4()))
    try:
        with contextlib.suppress(ConnectionClosed):
            # One message in 8 fragments of 10 KB: the limit holds across fragments.
            await raw.send(['{"type":"activity","pad":"'] + ["y" * 10_000] * 8 + ['"}'])
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(relay.wait):
                async for _ in raw:
                    pass
        expect(raw.close_code == 1009,
               f"a fragmented 80 KB message closed with {raw.close_code}, expected 1009")
    finally:
        await raw.close()
    return "a 100 KB frame and a fragmented 80 KB message (limit 64 KiB) both closed with 1009"


# --- The checks: input on /call ---------------------------------------------------------------

CALL_GARBAGE = [
    ("not JSON", "not json at all"),
    ("array", "[]"),
    ("unknown event", '{"event": "teleport"}'),
    ("start without a body", '{"event": "start"}'),
    ("start with a hostile streamSid",
     '{"event":"start","start":{"streamSid":"MZ 1; drop","callSid":"CA1"},"streamSid":"MZ 1"}'),
]


async def refused_stream(relay: Relay, send: Callable[[SimulatedCall], Awaitable[None]],
                         codes: set[int], what: str) -> int:
    """Open a signed stream, misbehave with ``send``, expect a close code and no session."""
    async with relay.no_new_sessions(what):
        call = await relay.call()
        try:
            with contextlib.suppress(ConnectionClosed):
                await send(call)
            code = await expect_close(call, codes, what, relay.wait)
            twilio_only(call)
        finally:
            await call.close()
    return code


async def check_call_malformed(relay: Relay) -> str:
    for name, raw in CALL_GARBAGE:
        async def send(call: SimulatedCall, raw: str = raw) -> None:
            await call.send_connected()
            await call.send_raw(raw)

        await refused_stream(relay, send, {1008}, name)
    return f"{len(CALL_GARBAGE)} malformed first messages each closed with 1008; {relay.no_session}"


async def check_call_binary(relay: Relay) -> str:
    async def send(call: SimulatedCall) -> None:
        await call.send_raw(b"\x00\x01\x02")

    await refused_stream(relay, send, {1003}, "a binary frame")
    return f"closed with 1003; {relay.no_session}"


async def check_call_oversized(relay: Relay) -> str:
    async def send(call: SimulatedCall) -> None:
        await call.send_connected()
        await call.send_raw('{"event":"media","media":{"payload":"' + "A" * 20_000 + '"}}')

    await refused_stream(relay, send, {1009}, "a 20 KB frame")
    return f"a 20 KB frame (limit 16 KiB) closed with 1009; {relay.no_session}"


async def check_call_wrong_order(relay: Relay) -> str:
    firsts: dict[str, Callable[[SimulatedCall], Awaitable[None]]] = {
        "media": lambda call: call.send_media(b"\xff" * 160),
        "mark": lambda call: call.send_mark("m1"),
        "stop": lambda call: call.send_stop(),
        "dtmf": lambda call: call.send_dtmf("5"),
    }
    for name, first in firsts.items():
        async def send(call: SimulatedCall, first: Any = first) -> None:
            await call.send_connected()
            await first(call)

        await refused_stream(relay, send, {1008}, f"{name} before start")
    return f"media, mark, stop and dtmf before start each closed with 1008; {relay.no_session}"


async def check_logs_wrong_order(relay: Relay) -> str:
    fe = await relay.frontend(str(uuid.uuid4()))
    try:
        await fe.send_json({"type": "session.end"})
        ended = await fe.wait_for("call.status_changed", timeout=relay.wait)
        await expect_close(fe, {1000}, "session.end first", relay.wait)
        expect(ended.get("status") == "ended" and fe.closed_after("call.status_changed"),
               f"session.end first: got {ended} before the close")
    finally:
        await fe.close()
    fe = await relay.frontend(str(uuid.uuid4()))
    try:
        await fe.send_json({"type": "job_config", "config": JOB})
        await fe.send_json({"type": "job_config", "config": {"role": "Chef"}})
        for _ in range(2):
            ack = await fe.wait_for("job_config.ack", timeout=relay.wait)
            expect(ack.get("status") == "queued", f"job_config twice: got {ack}")
        codes = []
        for event in ({"type": "response.create"},
                      {"type": "conversation.item.create", "item": {
                          "type": "message", "role": "user",
                          "content": [{"type": "input_text", "text": "hi"}]}}):
            await fe.send_json(event)
            codes.append(str((await fe.wait_for("error", timeout=relay.wait)).get("code")))
        await end_frontend(fe, relay.wait)
    finally:
        await fe.close()
    return (f"session.end first: ended then 1000; job_config twice: queued twice; "
            f"model events before a call: errors {codes}")


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
        "wrong audience": relay.token(user, audience="not-" + relay.args.auth_audience),
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
    for origin in ("https://evil.example", "null", relay.mode.origins[0] + ".evil.example"):
        status = await relay.refusal(lambda o=origin: relay.frontend(str(uuid.uuid4()), origin=o))
        expect(status == 403, f"Origin {origin}: {status}, expected 403")
    fe = await relay.frontend(str(uuid.uuid4()), origin=relay.mode.origins[0])
    await fe.close()
    return f"3 foreign origins got 403; {relay.mode.origins[0]} is let in"


async def check_operator_endpoints(relay: Relay) -> str:
    if not relay.args.admin_token:
        raise Skipped("no --admin-token given (without one a reset would end every session)")
    cases = {
        "no token": {},
        "wrong token": {"Authorization": "Bearer wrong-" + secrets.token_hex(8)},
        "basic auth": {"Authorization": "Basic " + b64url(b"admin:" + b"x" * 8)},
    }
    if relay.mode.auth:
        cases["a user's JWT"] = {"Authorization": f"Bearer {relay.token(fresh('op'))}"}
    for name, headers in cases.items():
        status, _ = await relay.request("POST", "/api/sessions/reset", headers=headers)
        expect(status in (401, 403), f"reset with {name}: {status}, expected 401")
    return f"/api/sessions/reset refused {', '.join(cases)}"


# --- The checks: connections ------------------------------------------------------------------


async def check_slow_handshakes(relay: Relay) -> str:
    timeout = relay.args.handshake_timeout
    partial = (f"GET /logs/{uuid.uuid4()} HTTP/1.1\r\nHost: {relay.host_header}\r\n"
               "Upgrade: websocket\r\n").encode()
    peers = []
    try:
        for _ in range(SLOW_HANDSHAKES):
            reader, writer = await relay.open_tcp()
            writer.write(partial)
            await writer.drain()
            peers.append((reader, writer))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await relay.health()  # the relay still answers while they dangle
        limit = timeout + max(1.0, timeout) if timeout else min(UNKNOWN_HANDSHAKE_WAIT, relay.wait)

        async def dropped(reader: asyncio.StreamReader) -> float | None:
            try:
                async with asyncio.timeout(limit - (loop.time() - started)):
                    while await reader.read(4096):
                        pass
            except TimeoutError:
                return None
            except ConnectionError:
                pass
            return loop.time() - started

        times = await asyncio.gather(*(dropped(r) for r, _ in peers))
    finally:
        for _, writer in peers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    gone = [t for t in times if t is not None]
    health = await relay.health()
    expect(health.get("status") == "ok", f"/health after slow handshakes: {health.get('status')}")
    if timeout:
        expect(len(gone) == len(times), f"{len(times) - len(gone)} of {len(times)} half-sent "
               f"handshakes still open after {limit:g}s (handshake timeout {timeout:g}s)")
        return (f"{len(times)} half-sent handshakes dropped after ≤{max(gone):.1f}s "
                f"(limit {limit:g}s); /health answered meanwhile")
    return (f"handshake timeout unknown (--handshake-timeout): {len(times) - len(gone)} of "
            f"{len(times)} half-sent handshakes still open after {limit:g}s, closed by us; "
            "/health answered meanwhile")


async def check_huge_requests(relay: Relay) -> str:
    def upgrade(target: str, *extra: str) -> bytes:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        lines = [f"GET {target} HTTP/1.1", f"Host: {relay.host_header}", *extra,
                 "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    webhook = (f"POST /twiml HTTP/1.1\r\nHost: {relay.host_header}\r\n"
               "Content-Type: application/x-www-form-urlencoded\r\n"
               "Content-Length: 1000000\r\n\r\n").encode()
    tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n"
    cases: dict[str, tuple[bytes, set[int | None]]] = {
        "a 10 KB URL": (upgrade(f"/logs?pad={'a' * 10_000}"), {414}),
        "a 10 KB header": (upgrade("/logs", f"X-Pad: {'a' * 10_000}"), {431}),
        "200 headers": (upgrade("/logs", *(f"X-H{i}: {i}" for i in range(200))), {431}),
        "a 1 MB webhook body": (webhook, {413}),
        "not HTTP": (tls_hello, {None}),
    }
    seen = []
    for name, (data, statuses) in cases.items():
        status = await relay.raw_status(data)
        expect(status in statuses, f"{name}: {status}, expected {sorted(map(str, statuses))}")
        seen.append(f"{name} → {status or 'dropped'}")
    await relay.health()
    return "; ".join(seen)


async def check_logs_flood(relay: Relay) -> str:
    fe = await relay.frontend(str(uuid.uuid4()))
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    try:
        try:
            async with asyncio.timeout(relay.wait * 2):
                for _ in range(FLOOD_MESSAGES):
                    await fe.send_json({"type": "activity"})
                    sent += 1
        except ConnectionClosed:
            code = await expect_close(fe, FLOOD_CLOSES, "the flooded frontend", relay.wait)
            return f"closed with {code} after {sent} messages (documented)"
        took = loop.time() - started
        try:
            await fe.send_json({"type": "job_config", "config": JOB})
            ack = await fe.wait_for("job_config.ack", timeout=relay.wait * 2)
        except (ConnectionClosed, SimError):
            code = await expect_close(fe, FLOOD_CLOSES, "the flooded frontend", relay.wait)
            return f"{sent} messages in {took:.2f}s, then closed with {code} (documented)"
        expect(ack.get("status") == "queued", f"after the flood job_config got {ack}")
        errors = [m for m in fe.received if m.get("type") == "error"]
        expect(not errors, f"activity messages got errors: {errors[:2]}")
        await end_frontend(fe, relay.wait)
    finally:
        await fe.close()
    return f"{sent} activity messages in {took:.2f}s; survived, job_config still acked"


async def check_call_flood(relay: Relay) -> str:
    session_id = str(uuid.uuid4())
    call, _ = await relay.place_call(session_id)
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    try:
        try:
            async with asyncio.timeout(relay.wait * 2):
                for _ in range(FLOOD_MESSAGES):
                    await call.send_media(b"\xff" * 160)
                    sent += 1
            took = loop.time() - started
            await call.send_stop()
        except ConnectionClosed:
            code = await expect_close(call, FLOOD_CLOSES, "the flooded call", relay.wait)
            return f"closed with {code} after {sent} frames (documented)"
        code = await expect_close(call, {1000} | FLOOD_CLOSES, "the flooded call after stop",
                                  relay.wait)
        twilio_only(call)
    finally:
        await call.close()
    return f"{sent} media frames in {took:.2f}s; survived; stop ended it ({code})"


async def check_connection_flood(relay: Relay) -> str:
    count = relay.args.flood
    outcomes: dict[str, int] = {}
    gate = asyncio.Semaphore(50)

    async def one(index: int) -> None:
        async with gate:
            try:
                fe = await relay.frontend(str(uuid.uuid4()), user=fresh(f"flood{index}"),
                                          retry=False)
            except InvalidStatus as exc:
                key = str(exc.response.status_code)
            except (WebSocketException, OSError, TimeoutError) as exc:
                key = type(exc).__name__
            else:
                key = "101"
                await fe.close()
            outcomes[key] = outcomes.get(key, 0) + 1

    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(relay.wait * 3):
        await asyncio.gather(*(one(i) for i in range(count)))
    took = loop.time() - started
    shown = ", ".join(f"{n}× {k}" for k, n in sorted(outcomes.items()))
    odd = {k: n for k, n in outcomes.items() if k not in ("101", "429", "503")}
    expect(not odd, f"{count} handshakes in {took:.2f}s: {shown}; expected only 101, 429 or 503")
    if relay.args.expect_rate_limit:
        expect(outcomes.get("429", 0) > 0, f"{shown}: no 429 though a rate limit is expected")
    await relay.wait_health(same_load(relay.baseline), "baseline load after the flood")
    limited = "rate limited" if outcomes.get("429") else "no rate limit seen"
    return f"{count} handshakes in {took:.2f}s: {shown} ({limited}); back to baseline"


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
    mode, args = relay.mode, relay.args
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
    expect(not problems, "; ".join(problems) + f" ({mode.describe()})")
    if not (mode.auth or mode.signatures):
        return f"development mode ({mode.describe()}): secured checks are skipped"
    return mode.describe()


# --- Running ----------------------------------------------------------------------------------

Check = Callable[[Relay], Awaitable[str]]

CHECKS: list[tuple[str, Check]] = [
    ("security mode", check_security_mode),
    ("malformed JSON on /logs", check_logs_malformed),
    ("binary frame on /logs", check_logs_binary),
    ("oversized frames on /logs", check_logs_oversized),
    ("malformed first messages on /call", check_call_malformed),
    ("binary frame on /call", check_call_binary),
    ("oversized frame on /call", check_call_oversized),
    ("wrong-order events on /call", check_call_wrong_order),
    ("wrong-order events on /logs", check_logs_wrong_order),
    ("forged Twilio signatures", check_forged_signatures),
    ("stream tokens", check_stream_tokens),
    ("foreign session IDs", check_foreign_sessions),
    ("bad session IDs", check_bad_session_ids),
    ("expired and malformed tokens", check_bad_tokens),
    ("browser origins", check_origins),
    ("operator endpoints", check_operator_endpoints),
    ("slow handshakes", check_slow_handshakes),
    ("huge requests", check_huge_requests),
    ("message flood on /logs", check_logs_flood),
    ("message flood on /call", check_call_flood),
    ("connection flood", check_connection_flood),
    ("normal call end to end", check_normal_call),
    ("back to baseline", check_back_to_baseline),
]


async def main_async(args: argparse.Namespace) -> int:
    async with aiohttp.ClientSession() as http:
        relay = Relay(args, http)
        try:
            relay.baseline = await relay.health()
        except FAILURES as exc:
            print(f"FAIL health — cannot read {relay.http_url}/health: {exc}", flush=True)
            return 2
        relay.grace = float(relay.baseline.get("resumeGraceS") or 0)
        relay.mode = Mode.from_health(relay.baseline)
        connections = relay.baseline.get("connections", {})
        relay.quiet = relay.baseline.get("sessions") == 0 and not any(connections.values())
        print(f"relay {relay.url} ({relay.baseline.get('model')}, {relay.mode.describe()}, "
              f"resume grace {relay.grace:g}s); baseline {load(relay.baseline)}", flush=True)
        limit = relay.wait * 4 + relay.grace
        results = [await run_check(name, check(relay), limit) for name, check in CHECKS]
    passed, failed, skipped = (results.count(k) for k in ("PASS", "FAIL", "SKIP"))
    retried = f"; {relay.retried_429} handshakes retried after 429" if relay.retried_429 else ""
    print(f"{passed}/{len(results)} checks passed, {failed} failed, {skipped} skipped{retried}",
          flush=True)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://localhost:8081", help="the relay's WebSocket URL")
    parser.add_argument("--timeout", type=float, default=120.0, help="overall limit in seconds")
    parser.add_argument("--wait", type=float, default=10.0, help="limit for each expected event")
    parser.add_argument("--auth-secret", default="", help="RELAY_AUTH_SECRET, to mint tokens")
    parser.add_argument("--auth-audience", default="relay", help="RELAY_AUTH_AUDIENCE")
    parser.add_argument("--twilio-auth-token", default="", help="TWILIO_AUTH_TOKEN, to sign")
    parser.add_argument("--public-url", default="", help="PUBLIC_URL, the URL Twilio calls")
    parser.add_argument("--admin-token", default="",
                        help="RELAY_ADMIN_TOKEN: says the relay has one; only wrong ones are sent "
                        "(against a relay without one, the reset they try would succeed)")
    parser.add_argument("--handshake-timeout", type=float, default=0.0,
                        help="RELAY_HANDSHAKE_TIMEOUT_S, if known: slow handshakes must be "
                        "dropped within it (plus a margin)")
    parser.add_argument("--expect-rate-limit", action="store_true",
                        help="fail the connection flood unless some handshakes get 429")
    parser.add_argument("--flood", type=int, default=200, help="handshakes in the connection flood")
    args = parser.parse_args()

    return run_bounded(main_async, args)


if __name__ == "__main__":
    sys.exit(main())
