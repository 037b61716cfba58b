"""Placing the interview call through Twilio's REST API ("call me now").

::

    POST {base}/2010-04-01/Accounts/{AccountSid}/Calls.json   (form-encoded)
         To, From, Twiml, StatusCallback, StatusCallbackEvent (repeated),
         Timeout, TimeLimit[, MachineDetection, AsyncAmd, AsyncAmdStatusCallback]
         → 201 {"sid": "CA…", "status": "queued", …}

Reference: https://www.twilio.com/docs/voice/api/call-resource#create-a-call-resource.
Twilio refusals come back as :class:`DialError` with what the person or the
operator must do about them (:func:`explain`, pure). Overload (429, 5xx) is
retried with back-off; a refusal is final. Creating a call is not idempotent,
so only answers that say nothing was created are retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay.errors import RelayError
from relay.logs import Ev, get_logger
from relay.providers.rest import RestClient, Verdict, basic_auth

#: Statuses Twilio reports a call in after creating it.
_CREATED = frozenset({"queued", "initiated", "ringing", "in-progress"})


@dataclass(frozen=True, slots=True)
class Dial:
    """What to ask Twilio for one outbound call."""

    to: str
    from_: str
    twiml: str
    status_callback: str
    ring_timeout_s: int
    time_limit_s: int
    #: ``Enable`` or ``DetectMessageEnd`` (answering-machine detection), or None.
    machine_detection: str | None = None
    amd_callback: str | None = None

    def form(self) -> list[tuple[str, str]]:
        """The form fields, ``StatusCallbackEvent`` repeated as Twilio wants it."""
        fields = [("To", self.to), ("From", self.from_), ("Twiml", self.twiml),
                  ("StatusCallback", self.status_callback), ("StatusCallbackMethod", "POST")]
        fields += [("StatusCallbackEvent", event)
                   for event in ("initiated", "ringing", "answered", "completed")]
        fields += [("Timeout", str(self.ring_timeout_s)), ("TimeLimit", str(self.time_limit_s))]
        if self.machine_detection is not None:
            fields += [("MachineDetection", self.machine_detection), ("AsyncAmd", "true")]
            if self.amd_callback:
                fields += [("AsyncAmdStatusCallback", self.amd_callback),
                           ("AsyncAmdStatusCallbackMethod", "POST")]
        return fields


@dataclass(frozen=True, slots=True)
class Placed:
    """Twilio accepted the call."""

    call_sid: str
    status: str


class DialError(RelayError):
    """Twilio did not place the call.

    Attributes:
        status: the HTTP status to answer the browser with.
        code: a stable machine-readable code.
        message: what to fix, safe to show.
        twilio_code: Twilio's error code, when it gave one.
    """

    def __init__(self, status: int, code: str, message: str, twilio_code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.twilio_code = twilio_code


# Twilio error code -> (HTTP status for the browser, code, what to fix).
_EXPLAINED: dict[int, tuple[int, str, str]] = {
    20003: (502, "twilio_auth", "Twilio refused relay's credentials: the operator must check "
                                "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN."),
    21211: (400, "invalid_number", "That phone number is not valid: give it in E.164 form, "
                                   "e.g. +15551234567."),
    21214: (400, "unreachable_number", "That phone number cannot be reached; check it."),
    21217: (400, "invalid_number", "That phone number does not look valid; check it."),
    21219: (403, "unverified_number", "This Twilio account is a trial account, which can only "
                                      "call verified numbers: verify this number in the Twilio "
                                      "console, or upgrade the account."),
    21215: (403, "number_not_allowed", "The Twilio account may not call this country: the "
                                       "operator must allow it in Twilio's Voice Geo Permissions."),
    21216: (403, "number_not_allowed", "The Twilio account may not call this number."),
    13227: (403, "number_not_allowed", "The Twilio account may not call this country: the "
                                       "operator must allow it in Twilio's Voice Geo Permissions."),
    21210: (502, "bad_from_number", "TWILIO_FROM_NUMBER is not a verified caller ID of the "
                                    "account; the operator must fix it."),
    21212: (502, "bad_from_number", "TWILIO_FROM_NUMBER is not a valid phone number; the "
                                    "operator must fix it."),
    21213: (502, "bad_from_number", "TWILIO_FROM_NUMBER is not set; the operator must set it."),
}


def explain(status: int | None, body: Any) -> DialError:
    """What a refusal (or no answer) means for the person who asked for the call; pure."""
    code = body.get("code") if isinstance(body, Mapping) else None
    if isinstance(code, int) and code in _EXPLAINED:
        http, key, message = _EXPLAINED[code]
        return DialError(http, key, message, code)
    if status == 401:
        http, key, message = _EXPLAINED[20003]
        return DialError(http, key, message, code if isinstance(code, int) else None)
    if status is None or status in (408, 429) or status >= 500:
        return DialError(503, "twilio_unavailable", "Twilio is not answering right now; "
                                                    "try again in a minute.",
                         code if isinstance(code, int) else None)
    return DialError(502, "twilio_refused", "Twilio refused to place the call"
                     + (f" (error {code})" if isinstance(code, int) else "") + ".",
                     code if isinstance(code, int) else None)


def classify(status: int, body: Any) -> Verdict:
    """What one answer to a create means; pure."""
    if status in (200, 201) and isinstance(body, Mapping) and isinstance(body.get("sid"), str):
        return Verdict.DONE
    if status in (408, 429) or status >= 500:
        return Verdict.RETRY
    return Verdict.FAIL


class CallDialer(RestClient):
    """Places calls through Twilio's Calls resource (one instance per server)."""

    retry_event = Ev.DIAL_RETRY
    fail_event = Ev.DIAL_FAILED
    classify = staticmethod(classify)

    def __init__(self, account_sid: str, auth_token: str, *, base_url: str = "https://api.twilio.com",
                 attempts: int = 3, backoff_initial: float = 0.3, backoff_max: float = 2.0,
                 timeout: float = 10.0) -> None:
        self._account_sid = account_sid
        auth = {"Authorization": basic_auth(account_sid, auth_token)} \
            if account_sid and auth_token else None
        super().__init__(base_url, auth, session=None, attempts=attempts,
                         backoff_initial=backoff_initial, backoff_max=backoff_max,
                         timeout=timeout)

    def __repr__(self) -> str:
        return f"CallDialer(account_sid={self._account_sid!r}, base_url={self._base_url!r})"

    async def place(self, dial: Dial) -> Placed:
        """Ask Twilio to place ``dial``.

        Raises:
            DialError: Twilio refused, or could not be reached; its message says what to fix.
        """
        self._check_open()
        log = get_logger(component="dialer")
        if not self.configured:
            raise DialError(503, "not_configured", "Outbound calls need TWILIO_ACCOUNT_SID, "
                                                   "TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER.")
        log.info(Ev.DIAL_REQUESTED)
        answer = await self._call("POST", f"/2010-04-01/Accounts/{self._account_sid}/Calls.json",
                                  log, data=dial.form())
        if answer.verdict is not Verdict.DONE:
            raise explain(answer.status, answer.body)
        body = answer.body
        status = body.get("status") if isinstance(body.get("status"), str) else "queued"
        log.info(Ev.DIAL_PLACED, callSid=body["sid"], status=status)
        return Placed(body["sid"], status if status in _CREATED else "queued")
