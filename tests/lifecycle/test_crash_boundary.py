"""A crash in one session ends that session alone, whichever of its entry points it hit.

Each case makes one input of one session raise (a frontend's message, the
call's messages and keypad digits, the call's start, the model's opening and its
events, the session's timer, the registry's sweep, a tool's result, a resuming
frontend's attach, the model connection task, and ending itself). The session must end with
``internal_error`` — its frontends told, its call hung up, its avatar stopped —
with the traceback logged once, while a second session on the same relay goes
on as if nothing happened.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from relay_sim.frontend import SimulatedFrontend
from relay_sim.realtime_server import RealtimeConnection
from relay_sim.twilio_call import SimulatedCall
from structlog.testing import capture_logs

from relay.lifecycle.runner import SessionRunner
from relay.logs import Ev
from tests.conftest import Relay, wait_until
from tests.timing import WAIT


class Injected(RuntimeError):
    """The crash a test provokes; nothing in relay raises it."""


def boom(name: str) -> Callable[..., Any]:
    """A stand-in for the session's input ``name`` that raises."""
    def crash(*_args: Any, **_kwargs: Any) -> Any:
        raise Injected(f"injected crash in {name}")
    crash.__name__ = name
    return crash


@dataclass
class Live:
    """One live session: its frontend, its call and its model connection."""

    sid: str
    fe: SimulatedFrontend
    call: SimulatedCall
    upstream: RealtimeConnection
    avatar: str

    def runner(self, relay: Relay) -> SessionRunner:
        return relay.server.registry.sessions[self.sid]


async def live_with_avatar(relay: Relay) -> Live:
    sid, fe, call, upstream = await relay.live_session()
    avatar = str(uuid.uuid4())
    relay.heygen.add_session(avatar)
    await fe.send_json({"type": "avatar.attach", "provider": "heygen", "avatarSessionId": avatar})
    await wait_until(lambda: avatar in relay.server.registry.sessions[sid].session.avatars,
                     WAIT, "the avatar to be attached")
    return Live(sid, fe, call, upstream, avatar)


Provoke = Callable[[Relay, Live], Awaitable[None]]


def patch_session(method: str) -> Callable[[Relay, Live], None]:
    def apply(relay: Relay, live: Live) -> None:
        setattr(live.runner(relay).session, method, boom(method))
    return apply


async def send_activity(relay: Relay, live: Live) -> None:
    await live.fe.send_json({"type": "activity"})


async def send_mark(relay: Relay, live: Live) -> None:
    await live.call.send_mark("m-1")


async def send_dtmf(relay: Relay, live: Live) -> None:
    await live.call.send_dtmf("5")


async def model_event(relay: Relay, live: Live) -> None:
    item = await live.upstream.speech_started()
    await live.upstream.input_transcript(item, "hello")


async def run_sweep(relay: Relay, live: Live) -> None:
    relay.server.registry.sweep()


async def fire_timer(relay: Relay, live: Live) -> None:
    live.runner(relay)._on_timer()


async def tool_result(relay: Relay, live: Live) -> None:
    await live.upstream.function_call("get_interview_time", {})


async def second_frontend(relay: Relay, live: Live) -> None:
    # A page that comes back (a refresh) in the reference app's beta names.
    await relay.frontend(f"/logs/{live.sid}?dialect=beta")


CASES: dict[str, tuple[str, Provoke]] = {
    "a frontend's message": ("on_frontend_message", send_activity),
    "the call's message": ("on_call_message", send_mark),
    "the call's keypad digit": ("on_call_message", send_dtmf),
    "the model's event": ("on_upstream_text", model_event),
    "the registry's sweep": ("on_timer", run_sweep),
    "the session's timer": ("on_timer", fire_timer),
    "a tool's result": ("on_tool_result", tool_result),
    "a resuming frontend's attach": ("add_frontend", second_frontend),
}


async def assert_ended_by_the_crash(relay: Relay, sid: str, fe: SimulatedFrontend,
                                    call: SimulatedCall) -> None:
    """The frontend told ``internal_error`` before its socket closed, the call closed, forgotten."""
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "internal_error"
    await fe.wait_closed()
    await call.wait_closed()
    await wait_until(lambda: sid not in relay.server.registry.sessions, WAIT,
                     "the crashed session to be forgotten")


def crash_sites(logs: list[dict[str, Any]]) -> list[Any]:
    return [e.get("where") for e in logs if e.get("event") == Ev.HANDLER_CRASHED]


async def assert_model_events_flow(live: Live, words: str) -> None:
    item = await live.upstream.speech_started()
    await live.upstream.input_transcript(item, words)
    got = await live.fe.wait_for("conversation.item.input_audio_transcription.completed")
    assert got["transcript"] == words


async def assert_unharmed_then_end(relay: Relay, other: Live) -> None:
    """The other session lost nothing: still live, its model events still flow, nothing ended."""
    assert other.sid in relay.server.registry.sessions
    assert not other.fe.is_closed and not other.call.is_closed
    await assert_model_events_flow(other, "still here")
    assert relay.twilio.hangups(other.call.call_sid) == 0
    assert other.avatar not in relay.heygen.stopped
    await other.fe.send_json({"type": "session.end"})
    await other.fe.wait_closed()
    await relay.wait_idle()


@pytest.mark.parametrize("where", list(CASES))
async def test_a_crash_ends_only_its_own_session(relay: Relay, where: str) -> None:
    method, provoke = CASES[where]
    crashed = await live_with_avatar(relay)
    other = await live_with_avatar(relay)
    patch_session(method)(relay, crashed)
    with capture_logs() as logs:
        await provoke(relay, crashed)
        await assert_ended_by_the_crash(relay, crashed.sid, crashed.fe, crashed.call)
        await asyncio.wait_for(crashed.upstream.closed.wait(), WAIT)
        assert relay.twilio.hangups(crashed.call.call_sid) == 1
        assert crashed.avatar in relay.heygen.stopped
        crashes = [e for e in logs if e.get("event") == Ev.HANDLER_CRASHED]
        assert len(crashes) == 1, crashes
        assert crashes[0].get("exc_info"), crashes[0]
        assert crashes[0].get("where") == method
        assert crashes[0].get("sessionId", crashed.sid) == crashed.sid
    await assert_unharmed_then_end(relay, other)


async def test_a_crash_while_ending_still_tells_hangs_up_and_stops(relay: Relay) -> None:
    """Even when ending itself raises, the frontends are told and the call and avatar end."""
    crashed = await live_with_avatar(relay)
    other = await live_with_avatar(relay)
    session = crashed.runner(relay).session
    session.on_frontend_message = boom("on_frontend_message")  # type: ignore[method-assign]
    session.end = boom("end")  # type: ignore[method-assign]
    with capture_logs() as logs:
        await send_activity(relay, crashed)
        await assert_ended_by_the_crash(relay, crashed.sid, crashed.fe, crashed.call)
        assert relay.twilio.hangups(crashed.call.call_sid) == 1
        assert crashed.avatar in relay.heygen.stopped
        # The crash, and the failed end after it: each once.
        assert crash_sites(logs) == ["on_frontend_message", "end after crash"]
    await assert_unharmed_then_end(relay, other)


async def test_a_value_nested_too_deeply_is_refused_and_the_call_goes_on(relay: Relay) -> None:
    """The crash the issue provoked from outside: now an error, and the session stays live."""
    live = await live_with_avatar(relay)
    deep = '{"type": "session.update", "session": {"instructions": "x", "metadata": ' + \
        "[" * 200 + "]" * 200 + "}}"
    await live.fe.send_raw(deep)
    err = await live.fe.wait_for("error")
    assert "nested" in err["message"].lower() or "deep" in err["message"].lower(), err
    await assert_model_events_flow(live, "after the deep value")
    assert live.sid in relay.server.registry.sessions
    await live.fe.send_json({"type": "session.end"})
    await live.fe.wait_closed()
    await relay.wait_idle()


def test_the_cases_cover_every_input_the_runner_enters() -> None:
    """A new input of the session gets a case here (or is listed as not provoked, and why)."""
    entered = set(re.findall(r"_enter\(self\.session\.(\w+)", inspect.getsource(SessionRunner)))
    in_cases = {method for method, _ in CASES.values()}
    in_other_tests = {"end", "on_upstream_open", "on_call_started"}
    # The same door, reached only as a call or the model closes or fails, as a first audio
    # frame races the model's opening, or as Twilio reports a dial: not provoked here.
    not_provoked = {"on_upstream_closed", "on_upstream_failed", "on_call_media", "on_call_closed",
                    "on_dial_report", "remove_frontend"}
    left = entered - in_cases - in_other_tests - not_provoked
    assert left == set(), left


# A crash in the start itself leaves the session without the call's SID, so
# relay cannot hang up over REST; closing the stream ends the call (its TwiML
# has nothing after <Connect>).
@pytest.mark.parametrize(("method", "hangups"), [
    ("on_call_started", 0), ("on_upstream_open", 1), ("model connection", 1)])
async def test_a_crash_as_the_call_starts_or_the_model_opens_ends_only_that_session(
        relay: Relay, method: str, hangups: int) -> None:
    """Before a session is live: the call's start, the model's opening, the task reaching it."""
    other = await live_with_avatar(relay)
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    await wait_until(lambda: sid in relay.server.registry.sessions, WAIT, "the session")
    runner = relay.server.registry.sessions[sid]
    if method == "model connection":  # a task of the session, not one of its inputs
        async def dies() -> None:
            raise Injected("the model connection task died")
        runner._run_upstream = dies  # type: ignore[method-assign]
    else:
        setattr(runner.session, method, boom(method))
    with capture_logs() as logs:
        call = await relay.call(f"/call/{sid}")
        await call.start()
        await assert_ended_by_the_crash(relay, sid, fe, call)
        assert relay.twilio.hangups(call.call_sid) == hangups
        assert crash_sites(logs) == [method]
    await assert_unharmed_then_end(relay, other)
