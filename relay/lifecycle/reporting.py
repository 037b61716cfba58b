"""What the live sessions page, ``/health`` and ``/metrics`` read: counts and snapshots.

Nothing here is on the per-frame path; every figure is computed when asked.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from relay.core.session import State

if TYPE_CHECKING:
    from relay.lifecycle.runner import SessionRunner


class Reporting:
    """Ends by reason, the last ended sessions, and frames of forgotten sessions."""

    def __init__(self, recent: int = 50) -> None:
        self.ended_by_reason: Counter[str] = Counter()
        #: The last ended sessions, newest last (for the live sessions page).
        self.recently_ended: deque[dict[str, object]] = deque(maxlen=recent)
        self._frames_done = [0, 0]  # caller→model, model→caller

    def forgotten(self, runner: SessionRunner) -> None:
        """A session's teardown finished: count it."""
        session = runner.session
        self._frames_done[0] += runner.frames_in
        self._frames_done[1] += session.frames_out
        reason = session.end_reason.value if session.end_reason else "unknown"
        self.ended_by_reason[reason] += 1
        self.recently_ended.append({
            "sessionId": session.id,
            "userId": session.user_id,
            "callSid": session.call.call_sid if session.call else None,
            "reason": reason,
            "endedAt": time.time(),
            "durationS": round(session.clock() - session.created_at, 1),
        })

    def frames_relayed(self, runners: Iterable[SessionRunner]) -> tuple[int, int]:
        """Audio frames relayed since start: caller→model, model→caller."""
        to_model, to_caller = self._frames_done
        for runner in runners:
            to_model += runner.frames_in
            to_caller += runner.session.frames_out
        return to_model, to_caller


def snapshot_row(runner: SessionRunner, waiting: bool) -> dict[str, object]:
    """One live session as the live sessions page shows it."""
    session = runner.session
    now = session.clock()
    upstream = runner.upstream
    return {
        "sessionId": session.id,
        "state": session.state.name.lower(),
        "userId": session.user_id,
        "callSid": session.call.call_sid if session.call else None,
        "streamSid": session.stream_sid,
        "call": "connected" if runner.call_open else ("ended" if session.call else "none"),
        "frontends": len(runner.frontends),
        "model": "open" if upstream is not None and upstream.is_open else (
            "connecting" if session.state is State.CONNECTING else "none"),
        "ageS": round(now - session.created_at, 1),
        "idleS": round(now - session.last_activity, 1),
        "warnings": session.deadlines.warnings,
        "waiting": waiting,
        "avatars": len(session.avatars),
    }


def counts(runners: Iterable[SessionRunner]) -> dict[str, int]:
    """Sessions, waiting frontends, and open connections by kind."""
    sessions = waiting = calls = frontends = upstreams = 0
    for runner in runners:
        sessions += 1
        if runner.session.claimable:
            waiting += len(runner.frontends)
        frontends += len(runner.frontends)
        if runner.call is not None and not runner.done and runner.call_open:
            calls += 1
        if runner.upstream is not None and runner.upstream.is_open:
            upstreams += 1
    return {"sessions": sessions, "waitingFrontends": waiting, "call": calls,
            "frontend": frontends, "upstream": upstreams}
