"""The harness every abuse check uses: the relay under test, reached as each party would.

:class:`Target` says where the relay is and which secrets the checker holds;
:class:`Relay` reads the relay's ``/health`` (its ``security`` block decides
what each check expects) and offers frontends, calls, signed webhooks, tokens
and raw sockets that retry through the relay's own rate limit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from relay_sim.checks import CheckFailed, Health, expect, http_base, load, wait_health
from relay_sim.frontend import SimulatedFrontend
from relay_sim.inbox import WaitTimeout
from relay_sim.rawsocket import HandshakeRefused, RawSocket
from relay_sim.twilio_call import SimulatedCall, new_sid

T = TypeVar("T")

JOB = {"role": "Backend Engineer", "company": "Acme"}
SUBPROTOCOL = "relay.v1"
#: Outbound Twilio events; anything else is a provider error.
TWILIO_OUTBOUND = {"media", "mark", "clear"}
#: The close code of a connection over its inbound budget (README close codes).
BUDGET_CLOSE = 4029


@dataclass(frozen=True)
class Target:
    """The relay to check and what the checker knows about it.

    Attributes:
        url: The relay's WebSocket URL (``ws://localhost:8081``).
        wait: Seconds to wait for each expected event.
        auth_secret, auth_audience: To mint frontend tokens (RELAY_AUTH_SECRET).
        twilio_auth_token, public_url: To sign as Twilio (TWILIO_AUTH_TOKEN, PUBLIC_URL).
        admin_token: RELAY_ADMIN_TOKEN; only wrong ones are sent, so a reset never succeeds.
        handshake_timeout: RELAY_HANDSHAKE_TIMEOUT_S if known (0: unknown).
        expect_rate_limit: Fail the connection flood unless some handshakes get 429.
        flood: Handshakes in the connection flood.
    """

    url: str = "ws://localhost:8081"
    wait: float = 10.0
    auth_secret: str = ""
    auth_audience: str = "relay"
    twilio_auth_token: str = ""
    public_url: str = ""
    admin_token: str = ""
    handshake_timeout: float = 0.0
    expect_rate_limit: bool = False
    flood: int = 200


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
    #: Whether operator endpoints are on (None: the relay does not say).
    admin: bool | None = None

    @classmethod
    def from_health(cls, health: Health) -> Mode:
        security = health.get("security")
        if not isinstance(security, dict):
            return cls(False, False, ("*",))
        origins = security.get("origins") or ["*"]
        admin = security.get("adminToken")
        return cls(bool(security.get("auth")), bool(security.get("twilioSignatures")),
                   tuple(str(o) for o in origins), None if admin is None else bool(admin))

    @property
    def open_origins(self) -> bool:
        return "*" in self.origins

    @property
    def app_origin(self) -> str:
        """An origin the relay lets in: the first allowed one (``:*`` as port 3000)."""
        first = next((o for o in self.origins if o != "*"), "http://localhost:3000")
        return first[:-2] + ":3000" if first.endswith(":*") else first

    def describe(self) -> str:
        admin = "" if self.admin is None else f", operator endpoints {'on' if self.admin else 'off'}"
        return (f"auth {'on' if self.auth else 'off'}, Twilio signatures "
                f"{'on' if self.signatures else 'off'}, origins {list(self.origins)}{admin}")


class Relay:
    """The relay under test: its URL, its mode, and ways to reach it as each party would."""

    def __init__(self, target: Target, http: aiohttp.ClientSession) -> None:
        self.target = target
        self.url = target.url.rstrip("/")
        self.http_url = http_base(self.url)
        self.http = http
        self.wait: float = target.wait
        self.grace = 0.0
        self.mode = Mode(False, False, ("*",))
        self.baseline: Health = {}
        #: Whether the relay was idle at the start, so "no session opened" can be asserted.
        self.quiet = False
        self.account_sid = new_sid("AC")
        self.retried_429 = 0
        self._stream_prefix: str | None = None

    async def prepare(self) -> None:
        """Read ``/health``: the baseline load, the mode it enforces, its resume grace."""
        self.baseline = await self.health()
        self.grace = float(self.baseline.get("resumeGraceS") or 0)
        self.mode = Mode.from_health(self.baseline)
        connections = self.baseline.get("connections", {})
        self.quiet = self.baseline.get("sessions") == 0 and not any(connections.values())

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
                      data: Any = None, as_app: bool = True) -> tuple[int, str]:
        """One HTTP request; returns the status and body (429 is retried).

        ``as_app``: a POST to the API carries ``X-Relay-Request: 1``, as the app's own
        requests do (False: as a cross-site form would, without it).
        """
        timeout = aiohttp.ClientTimeout(total=self.wait)
        if as_app and method == "POST" and path.startswith("/api/"):
            headers = {"X-Relay-Request": "1", **(headers or {})}

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
        return await wait_health(self.health, condition, describe, self.wait + self.grace)

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
              drop: tuple[str, ...] = (), claims: dict[str, Any] | None = None) -> str:
        """A frontend JWT (HS256) as the app's backend would mint it, or a bad variant."""
        if not self.target.auth_secret and secret is None:
            raise CheckFailed("the relay requires tokens: pass --auth-secret (and --auth-audience)")
        try:
            import jwt  # PyJWT; only needed against a relay with auth on
        except ImportError:
            raise CheckFailed("minting tokens needs PyJWT: pip install pyjwt") from None

        extra = claims
        now = int(time.time())
        claims = {"sub": user, "aud": audience or self.target.auth_audience,
                  "iat": now, "exp": now + int(exp_in)}
        if sid is not None:
            claims["sid"] = sid
        for name, value in (extra or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        for name in drop:
            claims.pop(name, None)
        return jwt.encode(claims, secret or self.target.auth_secret, algorithm="HS256")

    def unsigned_token(self, user: str) -> str:
        """A JWT with ``alg: none`` and no signature (must never be accepted)."""
        now = int(time.time())
        header = b64url(orjson.dumps({"alg": "none", "typ": "JWT"}))
        claims = {"sub": user, "aud": self.target.auth_audience, "iat": now, "exp": now + 300}
        return f"{header}.{b64url(orjson.dumps(claims))}."

    def sign(self, url: str, params: dict[str, str] | None = None, *,
             auth_token: str | None = None) -> str:
        """Twilio's X-Twilio-Signature for ``url`` and POST ``params``."""
        token = auth_token or self.target.twilio_auth_token
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
        if not self.target.public_url:
            raise CheckFailed("the relay checks Twilio signatures: pass --public-url")
        return self.target.public_url.rstrip("/") + path

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
            origin = self.mode.app_origin
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

    def frontend_headers(self, session_id: str | None, user: str | None = None) -> dict[str, str]:
        """The handshake headers the app's page would send (token, Origin) for a raw socket."""
        subprotocols, origin = self.frontend_options(session_id, user or fresh("raw"), None, None)
        headers = {"Sec-WebSocket-Protocol": ", ".join(subprotocols)} if subprotocols else {}
        if origin is not None:
            headers["Origin"] = origin
        return headers

    async def raw_logs(self, session_id: str) -> RawSocket:
        """A raw ``/logs/{session_id}`` socket, admitted as the app's page would be."""
        user = fresh("raw")
        return await self.raw_socket(self.logs_path(session_id, user, None),
                                     self.frontend_headers(session_id, user))

    async def raw_socket(self, path: str, headers: dict[str, str] | None = None) -> RawSocket:
        """A raw WebSocket (any frames at all), opened through the rate limit."""

        async def once() -> RawSocket:
            try:
                return await RawSocket.connect(self.url, path, headers=headers,
                                               timeout=self.wait)
            except HandshakeRefused as exc:
                if exc.status == 429:
                    raise RateLimited(f"{path}: 429 for over {self.wait:g}s") from None
                raise

        return await self._retry_429(once)

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

    async def raw_status(self, data: bytes, *, retry: bool = True) -> int | None:
        """Send ``data`` on a fresh connection; the response status, or None if dropped.

        Raises:
            RateLimited: answered 429 (at once when ``retry`` is False, else for
                longer than the wait).
        """

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

        return await (self._retry_429(once) if retry else once())


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
