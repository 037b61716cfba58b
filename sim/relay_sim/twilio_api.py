"""A fake Twilio REST API (the Calls resource) on loopback, for tests and demos.

:class:`FakeTwilioApi` is a real ``aiohttp.web`` server on ``127.0.0.1`` port 0
that answers call updates the way Twilio documents them::

    POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json   Status=completed|canceled
    GET  /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json
    POST /2010-04-01/Accounts/{AccountSid}/Calls.json             (place a call: see
                                                                  relay_sim.twilio_outbound)

- bad or missing basic auth: 401, error 20003;
- an unknown call (or one marked with :meth:`mark_ended`): 404, error 20404;
- an update to a call it has already ended: 400, error 21220 ("Call is not in-progress");
- ``Status=canceled`` ends only queued or ringing calls and leaves an
  in-progress call up, answering 200 with its unchanged status (as Twilio does);
- scripted trouble per call: :meth:`fail_next` (503, 429, …) and :meth:`stall_next`
  (no answer until :meth:`stop`, to exercise client timeouts).

Errors carry Twilio's JSON shape: ``{"code", "message", "more_info", "status"}``.
Every request is recorded (:attr:`requests`), and tests wait for one with
:meth:`wait_for_request`, never with a sleep.

Reference: https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from relay_sim.requestlog import LoopbackApp, RequestLog
from relay_sim.twilio_outbound import OutboundCalls, read_form

_CALL_PATH = re.compile(r"/2010-04-01/Accounts/([^/]+)/Calls/([^/]+)\.json")
_CALLS_PATH = re.compile(r"/2010-04-01/Accounts/([^/]+)/Calls\.json")
_ENDED = frozenset({"completed", "canceled", "busy", "failed", "no-answer"})
_REASONS = {401: "Authenticate", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class RecordedRequest:
    """One request the fake received.

    Attributes:
        method: the HTTP method.
        path: the request path.
        form: the decoded form body (empty for GET).
        auth_ok: whether basic auth matched the account's credentials.
        call_sid: the call SID in the path, if the path named one.
        answer: the HTTP status answered, ``None`` while stalled.
    """

    method: str
    path: str
    form: dict[str, str]
    auth_ok: bool
    call_sid: str | None
    answer: int | None = None


@dataclass
class FakeCall:
    """One call as the fake knows it.

    Attributes:
        sid: the call SID.
        status: ``queued``, ``ringing``, ``in-progress``, ``completed``, ``canceled``, …
        not_found: answer every request about this call with 404 / 20404.
        updates: status updates answered with 2xx.
    """

    sid: str
    status: str = "in-progress"
    not_found: bool = False
    updates: int = 0


@dataclass
class _Script:
    failures: list[tuple[int, float | None]] = field(default_factory=list)
    stalls: int = 0


def twilio_error(status: int, code: int, message: str) -> web.Response:
    """A Twilio-shaped JSON error response."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status)


class FakeTwilioApi(LoopbackApp):
    """A fake Twilio Calls API on loopback.

    Args:
        account_sid: the only account it serves.
        auth_token: the token basic auth must carry.
        auto_create: treat a call SID it has never seen as an in-progress call
            (handy when the call comes from :class:`relay_sim.twilio_call.SimulatedCall`);
            if false, unknown calls get 404 / 20404 like the real API.
    """

    def __init__(self, account_sid: str, auth_token: str, *, auto_create: bool = True) -> None:
        super().__init__()
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.auto_create = auto_create
        self.calls: dict[str, FakeCall] = {}
        self._log: RequestLog[RecordedRequest] = RequestLog("Twilio API")
        self._scripts: dict[str, _Script] = {}
        self._release = asyncio.Event()
        #: Calls placed through ``Calls.json``, and their callbacks.
        self.outbound = OutboundCalls(account_sid, auth_token)
        self.outbound.on_status = self._follow

    def _follow(self, call_sid: str, status: str) -> None:
        call = self.calls.get(call_sid)
        if call is not None and call.status not in _ENDED:
            call.status = status

    async def start(self) -> str:
        """Start listening on 127.0.0.1, port 0; return the base URL."""
        self._release.clear()
        return await super().start()

    async def stop(self) -> None:
        """Answer stalled requests with 503 and stop listening; idempotent."""
        self._release.set()
        await super().stop()

    # Scripting -----------------------------------------------------------------

    def add_call(self, call_sid: str, status: str = "in-progress") -> FakeCall:
        """Register a call in ``status`` (``queued``, ``ringing``, ``in-progress``, …)."""
        call = self.calls[call_sid] = FakeCall(call_sid, status)
        return call

    def mark_ended(self, call_sid: str) -> None:
        """Make every later request about ``call_sid`` answer 404 with error 20404."""
        call = self.calls.setdefault(call_sid, FakeCall(call_sid))
        call.status = "completed"
        call.not_found = True

    def fail_next(
        self, call_sid: str, status: int = 503, times: int = 1, *, retry_after: float | None = None
    ) -> None:
        """Answer the next ``times`` requests about ``call_sid`` with ``status``.

        ``retry_after`` adds a ``Retry-After`` header (seconds), as Twilio may on 429/503.
        """
        self._scripts.setdefault(call_sid, _Script()).failures.extend(
            [(status, retry_after)] * times
        )

    def stall_next(self, call_sid: str, times: int = 1) -> None:
        """Leave the next ``times`` requests about ``call_sid`` unanswered until :meth:`stop`."""
        self._scripts.setdefault(call_sid, _Script()).stalls += times

    # Inspection ----------------------------------------------------------------

    def hangups(self, call_sid: str) -> int:
        """How many status updates of ``call_sid`` were answered with success."""
        call = self.calls.get(call_sid)
        return call.updates if call is not None else 0

    def requests_for(self, call_sid: str) -> list[RecordedRequest]:
        """The recorded requests that named ``call_sid``, in arrival order."""
        return [r for r in self.requests if r.call_sid == call_sid]

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in arrival order."""
        return self._log.requests

    async def wait_for_request(
        self, predicate: Callable[[RecordedRequest], bool] = lambda _: True, timeout: float = 5.0
    ) -> RecordedRequest:
        """Return the first recorded request matching ``predicate``, waiting for one if needed.

        Raises:
            WaitTimeout: none arrived within ``timeout`` seconds.
        """
        return await self._log.wait_for(predicate, timeout)

    # Serving -------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        full_form = await read_form(request)
        form = {key: values[-1] for key, values in full_form.items()}
        if _CALLS_PATH.fullmatch(request.path) and request.method == "POST":
            record = RecordedRequest(request.method, request.path, form, self._auth_ok(request),
                                     None)
            await self._log.record(record)
            if not record.auth_ok:
                status, body = 401, {"code": 20003, "message": "Authenticate", "status": 401}
            else:
                status, body = self.outbound.create(full_form)
                if status == 201:
                    self.add_call(str(body["sid"]), "queued")
            record.answer = status
            return web.json_response(body, status=status)
        match = _CALL_PATH.fullmatch(request.path)
        call_sid = match.group(2) if match else None
        record = RecordedRequest(
            request.method, request.path, form, self._auth_ok(request), call_sid
        )
        await self._log.record(record)
        response = await self._answer(request, record, match)
        record.answer = response.status
        return response

    def _auth_ok(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            login, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            return False
        return (
            scheme.lower() == "basic" and login == self.account_sid and password == self._auth_token
        )

    async def _answer(
        self, request: web.Request, record: RecordedRequest, match: re.Match[str] | None
    ) -> web.Response:
        script = self._scripts.get(record.call_sid or "")
        if script is not None and script.stalls:
            script.stalls -= 1
            await self._release.wait()
            return twilio_error(503, 20503, "Service Unavailable")
        if script is not None and script.failures:
            status, retry_after = script.failures.pop(0)
            response = twilio_error(status, 20000 + status, _REASONS.get(status, "Error"))
            if retry_after is not None:
                response.headers["Retry-After"] = str(retry_after)
            return response
        if not record.auth_ok:
            response = twilio_error(401, 20003, "Authenticate")
            response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return response
        if match is None or match.group(1) != self.account_sid or record.call_sid is None:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        call = self.calls.get(record.call_sid)
        if call is None and self.auto_create:
            call = self.add_call(record.call_sid)
        if call is None or call.not_found:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        if request.method == "GET":
            return web.json_response(self._resource(call, request.path))
        if request.method != "POST":
            return twilio_error(405, 20004, "Method not allowed")
        return self._update(call, record.form, request.path)

    def _update(self, call: FakeCall, form: dict[str, str], path: str) -> web.Response:
        wanted = form.get("Status")
        if wanted not in ("completed", "canceled"):
            return twilio_error(400, 20001, "Status must be 'completed' or 'canceled'")
        if call.status in _ENDED:
            return twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.")
        if wanted == "completed":
            call.status = "completed"
        elif call.status in ("queued", "ringing"):
            call.status = "canceled"
        # else: "canceled" does not affect a call in progress; Twilio still answers 200.
        call.updates += 1
        return web.json_response(self._resource(call, path))

    def _resource(self, call: FakeCall, path: str) -> dict[str, Any]:
        return {
            "sid": call.sid,
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "status": call.status,
            "uri": path,
        }
