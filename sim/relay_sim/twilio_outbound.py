"""The outbound half of the fake Twilio API: placing calls and driving their callbacks.

``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (form-encoded, as
Twilio's REST API takes it) places a call: the fake checks the fields as
Twilio does (``To`` in E.164 else 21211, ``From`` required else 21213, ``Twiml``
or ``Url``), answers ``201`` with the call resource (``status: queued``) and
keeps the request, repeated fields included (``StatusCallbackEvent``).

A test then plays the call's life: :meth:`OutboundCalls.progress` POSTs a
status callback (``CallStatus`` ringing, in-progress, completed, busy, …,
``SequenceNumber`` counting up) and :meth:`OutboundCalls.amd` the asynchronous
answering-machine result, each signed with ``X-Twilio-Signature`` over the
callback URL relay asked for — delivered to the address relay listens on,
as a proxy in front of it would. Scripted refusals (:meth:`OutboundCalls.refuse_next`)
answer with Twilio's error codes.
"""

from __future__ import annotations

import itertools
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

_E164 = re.compile(r"\+[1-9][0-9]{7,14}\Z")


@dataclass
class PlacedCall:
    """One call placed through the fake, with everything relay asked for."""

    sid: str
    to: str
    from_: str
    twiml: str
    status_callback: str
    status_events: list[str]
    timeout: str | None
    time_limit: str | None
    machine_detection: str | None
    amd_callback: str | None
    form: dict[str, list[str]]
    status: str = "queued"
    sequence: itertools.count = field(default_factory=lambda: itertools.count(0))  # type: ignore[type-arg]

    def stream(self) -> tuple[str, dict[str, str]]:
        """The ``<Stream url>`` of the call's TwiML and its ``<Parameter>`` values."""
        root = ET.fromstring(self.twiml)
        stream = next(root.iter("Stream"))
        return stream.get("url", ""), {p.get("name", ""): p.get("value", "")
                                       for p in stream.iter("Parameter")}


class OutboundCalls:
    """Calls placed through the fake Twilio API, and their callbacks."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self._validator = RequestValidator(auth_token)
        self.placed: dict[str, PlacedCall] = {}
        self._refusals: list[tuple[int, int, str]] = []
        #: Told of every status a test plays (the fake's call resource follows it).
        self.on_status: Callable[[str, str], None] | None = None

    def refuse_next(self, status: int, code: int, message: str, times: int = 1) -> None:
        """Answer the next ``times`` call creations with this Twilio error."""
        self._refusals.extend([(status, code, message)] * times)

    def create(self, form: dict[str, list[str]]) -> tuple[int, dict[str, object]]:
        """Answer one ``Calls.json`` create: (HTTP status, JSON body)."""
        if self._refusals:
            status, code, message = self._refusals.pop(0)
            return status, _error(status, code, message)

        def one(name: str) -> str | None:
            values = form.get(name)
            return values[-1] if values else None

        to, from_ = one("To") or "", one("From")
        if not from_:
            return 400, _error(400, 21213, "'From' phone number is required.")
        if not _E164.match(to):
            return 400, _error(400, 21211, f"Invalid 'To' Phone Number: {to[:20]}")
        twiml = one("Twiml")
        if not twiml and not one("Url"):
            return 400, _error(400, 21205, "Url or Twiml is required.")
        sid = "CA" + secrets.token_hex(16)
        call = PlacedCall(
            sid=sid, to=to, from_=from_, twiml=twiml or "",
            status_callback=one("StatusCallback") or "",
            status_events=form.get("StatusCallbackEvent", []),
            timeout=one("Timeout"), time_limit=one("TimeLimit"),
            machine_detection=one("MachineDetection"),
            amd_callback=one("AsyncAmdStatusCallback"), form=form,
        )
        self.placed[sid] = call
        return 201, {"sid": sid, "account_sid": self.account_sid, "to": to, "from": from_,
                     "status": "queued", "direction": "outbound-api",
                     "api_version": "2010-04-01",
                     "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{sid}.json"}

    async def progress(self, call_sid: str, status: str, deliver_to: str, *,
                       answered_by: str | None = None, signed: bool = True,
                       forge: bool = False) -> int:
        """POST a status callback for ``call_sid`` (as Twilio does); relay's HTTP status."""
        call = self.placed[call_sid]
        call.status = status
        if self.on_status is not None:
            self.on_status(call_sid, status)
        form = {"CallSid": call_sid, "AccountSid": self.account_sid, "CallStatus": status,
                "SequenceNumber": str(next(call.sequence)), "Direction": "outbound-api",
                "CallbackSource": "call-progress-events", "To": call.to, "From": call.from_,
                "Timestamp": formatdate(usegmt=True), "ApiVersion": "2010-04-01"}
        if answered_by is not None:
            form["AnsweredBy"] = answered_by
        return await self._deliver(call.status_callback, form, deliver_to, signed, forge)

    async def amd(self, call_sid: str, answered_by: str, deliver_to: str, *,
                  signed: bool = True) -> int:
        """POST the asynchronous answering-machine result for ``call_sid``."""
        call = self.placed[call_sid]
        assert call.amd_callback, "the call asked for no AMD callback"
        form = {"CallSid": call_sid, "AccountSid": self.account_sid, "AnsweredBy": answered_by,
                "MachineDetectionDuration": "2450"}
        return await self._deliver(call.amd_callback, form, deliver_to, signed, False)

    async def _deliver(self, url: str, form: dict[str, str], deliver_to: str, signed: bool,
                       forge: bool) -> int:
        headers = {}
        if signed:
            signature = self._validator.compute_signature(url, form)
            if forge:
                signature = signature[::-1]
            headers["X-Twilio-Signature"] = signature
        parts = urlsplit(url)
        target = deliver_to.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
        async with aiohttp.ClientSession() as http, http.post(
                target, data=form, headers=headers) as resp:
            return resp.status


def _error(status: int, code: int, message: str) -> dict[str, object]:
    return {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


async def read_form(request: web.Request) -> dict[str, list[str]]:
    """A form body with repeated fields kept, in order."""
    form: dict[str, list[str]] = {}
    for key, value in (await request.post()).items():
        if isinstance(value, str):
            form.setdefault(key, []).append(value)
    return form
