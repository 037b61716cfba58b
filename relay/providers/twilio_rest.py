"""Ending phone calls through Twilio's REST API.

Closing the Media Stream socket does not hang up a bidirectional call: the caller
would sit in silence until Twilio's own time limit. relay ends the call by
updating the Calls resource::

    POST {base}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json
    Status=completed        (or Status=canceled for a call still queued or ringing)

with HTTP basic auth (AccountSid, AuthToken). Twilio answers 200 with the call
resource. Reference: https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource

A call that is already over counts as ended: Twilio answers 404 (error 20404)
for a call it no longer knows and 400 with error 21220 ("Invalid call state")
for a realtime operation on a call that is not in progress
(https://www.twilio.com/docs/errors/21220).

The retry policy is a pure function, :func:`classify`; :class:`CallHangUp` is the
thin I/O shell around it. Overload (429, 5xx) and network failures are retried
with bounded exponential back-off; other refusals (401 bad credentials, 400) are
final at once. The auth token and the ``Authorization`` header never reach a log.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any

import aiohttp
import structlog

from relay.logs import get_logger
from relay.providers.rest import RestClient, Verdict, basic_auth

# Event strings (to join relay.logs.Ev): one emoji, a fixed sentence.
HANGUP_REQUESTED = "📴 Hanging up the phone call through Twilio"
HANGUP_ENDED = "☎️ Twilio ended the phone call"
HANGUP_ALREADY_ENDED = "💤 The phone call had already ended"
HANGUP_ANSWERED_MEANWHILE = "↪️ The call was answered meanwhile; completing it instead"
HANGUP_RETRY = "🔁 Twilio hang-up failed, retrying"
HANGUP_FAILED = "🔴 Could not hang up the phone call: it may stay up"
HANGUP_NOT_CONFIGURED = "⚠️ No Twilio credentials: the phone call may stay up"
HANGUP_REFUSED = "🚫 Refused to hang up a malformed call SID"

#: A real Call SID is ``CA`` + 32 hex digits; simulated peers use other shapes,
#: so any short alphanumeric token is accepted. Anything else never reaches a URL.
SID_PATTERN = re.compile(r"[A-Za-z0-9]{2,64}")

#: Twilio error codes meaning "this call is already over".
#: 20404: the requested resource was not found; 21220: invalid call state (not in progress).
ALREADY_ENDED_CODES = frozenset({20404, 21220})

#: Call statuses (in Twilio's answer) in which the call is still connected.
_STILL_UP = "in-progress"


class HangUpResult(enum.Enum):
    """What :meth:`CallHangUp.hang_up` achieved."""

    #: Twilio accepted the update: the call is ending.
    ENDED = "ended"
    #: The call was already over (404 / 20404, or 21220): nothing left to end.
    ALREADY_ENDED = "already_ended"
    #: Every attempt failed, a refusal was final (401, 400), or the SID was malformed.
    FAILED = "failed"
    #: No credentials are configured; no request was sent.
    NOT_CONFIGURED = "not_configured"

    @property
    def ok(self) -> bool:
        """Whether the call is known to be over (ENDED or ALREADY_ENDED)."""
        return self in (HangUpResult.ENDED, HangUpResult.ALREADY_ENDED)


def classify(status: int, body: Any) -> Verdict:
    """Decide what one answer to a call update means; pure, for tests.

    Args:
        status: the HTTP status code.
        body: the decoded JSON body, or ``None`` if there was none or it was not JSON.
    """
    code = body.get("code") if isinstance(body, Mapping) else None
    if 200 <= status < 300:
        return Verdict.DONE
    if status == 404 or code in ALREADY_ENDED_CODES:
        return Verdict.GONE
    if status == 400 and isinstance(body, Mapping):
        # Twilio's wording for 21220 when the code is missing or differs by product.
        message = str(body.get("message", "")).lower()
        if "not in-progress" in message or "not in progress" in message:
            return Verdict.GONE
    if status in (408, 429) or status >= 500:
        return Verdict.RETRY
    return Verdict.FAIL


class CallHangUp(RestClient):
    """Ends phone calls through Twilio's Calls resource.

    One instance serves every session; :meth:`hang_up` may run concurrently for
    different calls. Use it as an async context manager, or call :meth:`close`.

    Args:
        account_sid: the Twilio Account SID (``AC…``); empty means not configured.
        auth_token: the account's auth token; empty means not configured. Never logged.
        base_url: Twilio's API origin; tests use :class:`relay_sim.twilio_api.FakeTwilioApi`.
        session: an aiohttp session to use and leave open; by default one is
            created on first use and closed by :meth:`close`.
        attempts: requests per hang-up at most (1 disables retries).
        backoff_initial: seconds before the first retry; doubles each time.
        backoff_max: cap on one back-off delay, also on an honoured ``Retry-After``.
        timeout: seconds one request may take in total.

    Raises:
        ValueError: ``attempts`` < 1, or a malformed ``account_sid``.

    A hang-up can therefore take up to about ``attempts * timeout`` plus the
    back-off delays; bound it from outside if teardown has a tighter budget.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str = "https://api.twilio.com",
        session: aiohttp.ClientSession | None = None,
        attempts: int = 3,
        backoff_initial: float = 0.2,
        backoff_max: float = 2.0,
        timeout: float = 5.0,
    ) -> None:
        if account_sid and not SID_PATTERN.fullmatch(account_sid):
            # It goes into every URL: refuse it once, here, rather than on each call.
            raise ValueError("malformed Twilio Account SID")
        self._account_sid = account_sid
        # A header of our own: aiohttp.BasicAuth is deprecated (3.14) and its repr shows the token.
        auth = None
        if account_sid and auth_token:
            auth = {"Authorization": basic_auth(account_sid, auth_token)}
        super().__init__(base_url, auth, session=session, attempts=attempts,
                         backoff_initial=backoff_initial, backoff_max=backoff_max,
                         timeout=timeout)

    def __repr__(self) -> str:
        return f"CallHangUp(account_sid={self._account_sid!r}, base_url={self._base_url!r})"

    async def hang_up(self, call_sid: str, *, answered: bool = True) -> HangUpResult:
        """End the call ``call_sid``; never raises for provider or network failures.

        Args:
            call_sid: the call to end (``CA…``). A malformed SID is refused
                (FAILED) without a request.
            answered: whether the call was answered. ``False`` sends
                ``Status=canceled``, which Twilio applies only to queued or
                ringing calls; if Twilio reports the call in progress after all
                (answered meanwhile), ``Status=completed`` follows. When unsure,
                leave it ``True``: ``completed`` ends a call in any state.

        Returns:
            ENDED or ALREADY_ENDED when the call is over (see
            :attr:`HangUpResult.ok`), FAILED otherwise, NOT_CONFIGURED without
            credentials.

        Raises:
            RuntimeError: after :meth:`close`.
        """
        self._check_open()
        log = get_logger(callSid=call_sid[:80])
        if not self.configured:
            log.warning(HANGUP_NOT_CONFIGURED)
            return HangUpResult.NOT_CONFIGURED
        if not SID_PATTERN.fullmatch(call_sid):
            log.warning(HANGUP_REFUSED)
            return HangUpResult.FAILED
        status = "completed" if answered else "canceled"
        log.info(HANGUP_REQUESTED, status=status)
        result, call_status = await self._update(call_sid, status, log)
        if result is HangUpResult.ENDED and status == "canceled" and call_status == _STILL_UP:
            # "canceled" does not affect calls already in progress (Twilio docs).
            log.info(HANGUP_ANSWERED_MEANWHILE)
            result, _ = await self._update(call_sid, "completed", log)
        if result is HangUpResult.ENDED:
            log.info(HANGUP_ENDED)
        elif result is HangUpResult.ALREADY_ENDED:
            log.info(HANGUP_ALREADY_ENDED)
        return result

    retry_event = HANGUP_RETRY
    fail_event = HANGUP_FAILED
    classify = staticmethod(classify)

    async def _update(
        self, call_sid: str, status: str, log: structlog.stdlib.BoundLogger
    ) -> tuple[HangUpResult, str | None]:
        """POST one status update with retries; return the result and Twilio's call status."""
        path = f"/2010-04-01/Accounts/{self._account_sid}/Calls/{call_sid}.json"
        answer = await self._call("POST", path, log, data={"Status": status})
        if answer.verdict is Verdict.DONE:
            body = answer.body
            call_status = body.get("status") if isinstance(body, Mapping) else None
            return HangUpResult.ENDED, call_status if isinstance(call_status, str) else None
        if answer.verdict is Verdict.GONE:
            return HangUpResult.ALREADY_ENDED, None
        return HangUpResult.FAILED, None
