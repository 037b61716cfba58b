"""The interviewer calls the candidate: ``POST /api/calls`` and Twilio's callbacks for it.

``POST /api/calls`` ``{"to": "+15551234567", "sessionId": "…"}`` places the
session's call through Twilio (inline TwiML naming ``/call/{sessionId}`` and a
stream token, signed status callbacks, ``Timeout`` and ``TimeLimit``) and
answers ``201 {"callSid", "sessionId", "status"}``. Every refusal is a 4xx
made before any request to Twilio: a number not in E.164 or outside
``RELAY_DIAL_ALLOWED_PREFIXES`` (toll fraud is the classic attack on a "call
me" button), a session with a live call already (409), a user over their
rate of placed calls (429), another user's session (403).

``POST /api/calls/status`` and ``POST /api/calls/amd`` receive Twilio's status
and answering-machine callbacks; a forged or unsigned one is refused with 403
and changes nothing. Each reaches the session on whichever node runs it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import orjson

from relay.core.outbound import AnsweredBy, CallStatus, Placed, Progress, parse_status
from relay.errors import Forbidden, PairingRefused
from relay.lifecycle.runner import SessionRunner
from relay.logs import Ev, get_logger
from relay.messages.twiml import APOLOGY, connect_stream_twiml, stream_url
from relay.providers.twilio_dial import Dial, DialError
from relay.transport.routes import HttpRoute
from relay.transport.state import AppState
from relay.wire.compat import Request
from relay.wire.httpbody import form_fields, request_body

E164 = re.compile(r"\+[1-9][0-9]{7,14}\Z")
_SESSION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
#: Extra seconds Twilio's own TimeLimit allows past relay's hard cap (a net under every relay).
TIME_LIMIT_MARGIN_S = 60

_log = get_logger(component="calls")


class CallRequestError(Exception):
    """A ``POST /api/calls`` refused before any request to Twilio."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def destination_ok(to: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``to`` is E.164 and, when prefixes are set, starts with one of them; pure."""
    return bool(E164.match(to)) and (not allowed or to.startswith(allowed))


def parse_request(body: bytes, allowed: tuple[str, ...]) -> tuple[str, str]:
    """``(to, sessionId)`` from the JSON body.

    Raises:
        CallRequestError: 400 for a body, number or session ID relay will not dial.
    """
    try:
        data = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        raise CallRequestError(400, "bad_request", "send JSON: {\"to\", \"sessionId\"}") from None
    if not isinstance(data, dict):
        raise CallRequestError(400, "bad_request", "send JSON: {\"to\", \"sessionId\"}")
    to, session_id = data.get("to"), data.get("sessionId")
    if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
        raise CallRequestError(400, "bad_session_id", "sessionId is not valid")
    if not isinstance(to, str) or not E164.match(to):
        raise CallRequestError(400, "invalid_number",
                               "give the number in E.164 form, e.g. +15551234567")
    if not destination_ok(to, allowed):
        raise CallRequestError(403, "destination_not_allowed",
                               "relay does not call numbers there (RELAY_DIAL_ALLOWED_PREFIXES)")
    return to, session_id


async def place_here(state: AppState, runner: SessionRunner, to: str,
                     public: str) -> tuple[int, dict[str, Any]]:
    """Place the call of a session this node runs; the HTTP answer (status, body)."""
    settings = state.settings
    session = runner.session
    if session.call is not None or session.dialing.live or runner.placing_call:
        return 409, {"error": "call_in_progress", "message": "this session already has a call"}
    # Marked before the first wait: a second request meanwhile (two tabs) must not ring twice.
    runner.placing_call = True
    try:
        return await _place(state, runner, to, public)
    finally:
        runner.placing_call = False


async def _place(state: AppState, runner: SessionRunner, to: str,
                 public: str) -> tuple[int, dict[str, Any]]:
    settings = state.settings
    session = runner.session
    sid = session.id
    directory = state.registry.directory
    parameters = {"sessionId": sid}
    token = None
    if state.gate.signatures is not None:
        token = await directory.mint_dial_token(sid, settings.ring_timeout_s + 120)
        parameters["streamToken"] = token
    twiml = connect_stream_twiml(stream_url(public, f"/call/{quote(sid, safe='')}"), parameters,
                                 apology=APOLOGY if settings.apology_s > 0 else None)
    callbacks = public.rstrip("/") + "/api/calls/"
    detection = None
    if settings.machine_detection:
        detection = "DetectMessageEnd" if settings.voicemail == "message" else "Enable"
    dial = Dial(
        to=to, from_=settings.twilio_from_number, twiml=twiml,
        status_callback=f"{callbacks}status?sessionId={quote(sid, safe='')}",
        ring_timeout_s=max(5, int(settings.ring_timeout_s)),
        time_limit_s=int(settings.max_session_s) + TIME_LIMIT_MARGIN_S,
        machine_detection=detection,
        amd_callback=f"{callbacks}amd?sessionId={quote(sid, safe='')}" if detection else None,
    )
    try:
        placed = await state.dialer.place(dial)
    except DialError as exc:
        _log.warning(Ev.DIAL_REFUSED, sessionId=sid, code=exc.code, twilioCode=exc.twilio_code)
        return exc.status, {"error": exc.code, "message": exc.message}
    await directory.learn_call(placed.call_sid)
    await directory.bind_call(placed.call_sid, sid)
    if token is not None:
        await directory.bind_dial_token(token, placed.call_sid)
    runner.dial_report(Placed(placed.call_sid, parse_status(placed.status) or CallStatus.QUEUED))
    return 201, {"callSid": placed.call_sid, "sessionId": sid, "status": placed.status}


async def place_call(state: AppState, request: Request, route: HttpRoute,
                     public: str) -> tuple[int, dict[str, Any]]:
    """``POST /api/calls``: the HTTP answer (status, body)."""
    settings = state.settings
    if not (settings.twilio_from_number and state.dialer.configured):
        return 503, {"error": "not_configured", "message": "outbound calls need TWILIO_ACCOUNT_SID, "
                                                           "TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER"}
    caller = state.gate.api_caller(request, route.query)
    try:
        to, session_id = parse_request(request_body(request), settings.dial_allowed_prefixes)
    except CallRequestError as exc:
        _log.warning(Ev.DIAL_REFUSED, code=exc.code)
        return exc.status, {"error": exc.code, "message": exc.message}
    if not caller.admin and caller.user_id is None:
        return 401, {"error": "unauthorized", "message": "a user is required to place a call"}
    if caller.user_id is not None and not state.dial_rate.allow(caller.user_id, state.gate.clock()):
        _log.warning(Ev.DIAL_REFUSED, sessionId=session_id, code="rate_limited")
        return 429, {"error": "rate_limited", "message": "too many calls placed; wait a while"}
    try:
        target = await state.registry.dial_session(session_id, caller.user_id)
    except Forbidden as exc:
        return 403, {"error": "forbidden", "message": str(exc)}
    except PairingRefused as exc:
        return 409, {"error": "session_ended", "message": str(exc)}
    if isinstance(target, str):
        fleet = state.fleet
        assert fleet is not None, "a session on another node needs the fleet"
        answer = await fleet.place_call(target, session_id, to, caller.user_id, public)
        return int(answer.get("status", 502)), dict(answer.get("body") or {})
    return await place_here(state, target, to, public)


async def status_callback(state: AppState, request: Request, route: HttpRoute) -> None:
    """``POST /api/calls/status``: Twilio's signed status callback (403 when it is not)."""
    state.gate.admit_webhook(request)
    form = form_fields(request)
    session_id, call_sid = route.query.get("sessionId", ""), form.get("CallSid", "")
    status = parse_status(form.get("CallStatus"))
    if not session_id or not call_sid or status is None:
        return
    try:
        sequence: int | None = int(form.get("SequenceNumber", ""))
    except ValueError:
        sequence = None
    await state.registry.dial_report(session_id, Progress(call_sid, status, sequence))
    answered_by = form.get("AnsweredBy")
    if answered_by:
        await state.registry.dial_report(session_id, AnsweredBy(call_sid, answered_by[:32]))


async def amd_callback(state: AppState, request: Request, route: HttpRoute) -> None:
    """``POST /api/calls/amd``: the asynchronous answering-machine verdict, signed."""
    state.gate.admit_webhook(request)
    form = form_fields(request)
    session_id, call_sid = route.query.get("sessionId", ""), form.get("CallSid", "")
    answered_by = form.get("AnsweredBy", "")
    if session_id and call_sid and answered_by:
        await state.registry.dial_report(session_id, AnsweredBy(call_sid, answered_by[:32]))
