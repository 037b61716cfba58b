"""Unit tests for relay.core.session: the session state machine, driven by a fake clock.

No sockets and no sleeps: every input is an ``on_*`` call, every output is read
from :attr:`Session.effects`, and time is whatever :class:`FakeClock` says.
Clock values are binary fractions so the heard-audio arithmetic is exact.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from relay.core.deadlines import Limits
from relay.core.effects import ModelEvent, OpenUpstream, RunTool, Teardown
from relay.core.instructions import build_instructions
from relay.core.session import (
    EndReason,
    FrontendInfo,
    Session,
    SessionOptions,
    State,
    append_event,
)
from relay.core.tools import Effect, ToolOutcome
from relay.logs import Ev
from relay.messages import frontend as fmsg
from relay.messages import twilio
from relay.messages.jobconfig import JobConfig
from tests.recording import Recorder

SID = "3f2c9a7e-1b2d-4c5e-8f90-a1b2c3d4e5f6"
START = twilio.Start(
    stream_sid="MZ00000000000000000000000000000001",
    call_sid="CA00000000000000000000000000000001",
    account_sid="AC00000000000000000000000000000001",
)
STREAM = START.stream_sid
T0 = 100.0
# 100 ms of μ-law at 8 kHz: one default mark interval.
CHUNK = 800


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_session(
    clock: FakeClock | None = None, *, claimable: bool = False, **options: Any
) -> tuple[Session, FakeClock]:
    clock = clock or FakeClock()
    limits = {k: options.pop(k) for k in ("resume_grace_s", "farewell_timeout_s") if k in options}
    if limits:
        options["limits"] = Limits(**limits)
    return Recorder(Session(SID, SessionOptions(**options), clock, claimable=claimable)), clock


def live_session(
    *, fids: tuple[int, ...] = (1,), **options: Any
) -> tuple[Session, FakeClock]:
    """A LIVE session with frontends ``fids``, its effects so far cleared."""
    options.setdefault("greet_first", False)
    session, clock = make_session(**options)
    for fid in fids:
        session.add_frontend(fid, FrontendInfo())
    session.on_call_started(START)
    session.on_upstream_open()
    session.effects.clear()
    return session, clock


def upstream(session: Session) -> list[dict[str, Any]]:
    return [orjson.loads(frame) for frame in session.effects.upstream]


def upstream_types(session: Session) -> list[str]:
    return [event["type"] for event in upstream(session)]


def call_frames(session: Session) -> list[dict[str, Any]]:
    return [orjson.loads(frame) for frame in session.effects.call]


def to_frontends(session: Session) -> list[tuple[int | None, dict[str, Any]]]:
    """Relay's own messages to frontends (model events left out)."""
    return [(fid, m) for fid, m in session.effects.frontend if not isinstance(m, ModelEvent)]


def model(target: Session, kind: str, /, **fields: Any) -> None:
    target.on_upstream_text(orjson.dumps({"type": kind, **fields}).decode())


def audio_delta(session: Session, nbytes: int, item_id: str = "item_1") -> str:
    delta = base64.b64encode(b"\xff" * nbytes).decode()
    model(session, "response.output_audio.delta", response_id="resp_1", item_id=item_id,
          output_index=0, content_index=0, delta=delta)
    return delta


def job_config(role: str = "Backend Engineer", **fields: Any) -> fmsg.JobConfigMessage:
    return fmsg.JobConfigMessage(JobConfig(role=role, **fields))


def state_changes(logs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["old"], e["new"]) for e in logs if e["event"] == Ev.SESSION_STATE]


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def function_call(session: Session, call_id: str = "call_1", name: str = "end_interview",
                  arguments: str | None = "{}") -> None:
    item: dict[str, Any] = {"type": "function_call", "call_id": call_id, "name": name}
    if arguments is not None:
        item["arguments"] = arguments
    model(session, "response.output_item.done", response_id="resp_1", output_index=0, item=item)


END_OUTCOME = ToolOutcome({"ok": True}, effect=Effect.END_INTERVIEW)


# -- states and their log lines --------------------------------------------------------


def test_new_session_waits() -> None:
    """A new session starts WAITING, not ended, model not ready, nothing to do."""
    session, clock = make_session()
    assert session.state is State.WAITING
    assert not session.ended and not session.model_ready
    assert session.created_at == session.last_activity == clock.now
    assert session.stream_sid is None
    # Only the reaping clocks run: inactivity warning first.
    assert session.deadline() == clock.now + session.options.limits.inactivity_warning_s
    assert not session.effects


def test_full_lifecycle_logs_each_transition_once() -> None:
    """WAITING→CONNECTING→LIVE→FAREWELL→ENDING→ENDED, each transition logged exactly once."""
    with capture_logs() as logs:
        session, _ = make_session(greet_first=False)
        session.add_frontend(1, FrontendInfo())
        session.on_call_started(START)
        session.on_upstream_open()
        session.on_tool_result("call_1", END_OUTCOME)
        model(session, "response.created", response={"id": "resp_2"})
        model(session, "response.done", response={"id": "resp_2"})
        session.mark_ended()
    assert state_changes(logs) == [
        ("WAITING", "CONNECTING"),
        ("CONNECTING", "LIVE"),
        ("LIVE", "FAREWELL"),
        ("FAREWELL", "ENDING"),
        ("ENDING", "ENDED"),
    ]
    assert all(e["sessionId"] == SID for e in events(logs, Ev.SESSION_STATE))
    assert session.state is State.ENDED
    assert session.end_reason is EndReason.INTERVIEW_COMPLETED


@pytest.mark.parametrize("reach", [State.WAITING, State.CONNECTING, State.LIVE, State.FAREWELL])
def test_end_from_any_live_state_goes_to_ending(reach: State) -> None:
    """end() moves WAITING, CONNECTING, LIVE and FAREWELL straight to ENDING, logged once."""
    session, _ = make_session(greet_first=False)
    if reach >= State.CONNECTING:
        session.on_call_started(START)
    if reach >= State.LIVE:
        session.on_upstream_open()
    if reach >= State.FAREWELL:
        session.on_tool_result("call_1", END_OUTCOME)
    assert session.state is reach
    with capture_logs() as logs:
        session.end(EndReason.RESET)
    assert state_changes(logs) == [(reach.name, "ENDING")]
    assert session.ended and not session.model_ready


def test_backward_transition_raises() -> None:
    """The state only moves forward: a repeated call start or second mark_ended raises."""
    session, _ = make_session()
    session.on_call_started(START)
    with pytest.raises(AssertionError, match="CONNECTING to CONNECTING"):
        session.on_call_started(START)
    session.on_upstream_open()
    with pytest.raises(AssertionError, match="LIVE to CONNECTING"):
        session._set_state(State.CONNECTING)
    session.end(EndReason.RESET)
    session.mark_ended()
    with pytest.raises(AssertionError, match="ENDED to ENDED"):
        session.mark_ended()
    assert session.state is State.ENDED


def test_end_is_idempotent() -> None:
    """A second end() changes nothing: one reason, one ended message, one Teardown, one log."""
    session, _ = live_session()
    with capture_logs() as logs:
        session.end(EndReason.CALLER_HUNG_UP)
        session.end(EndReason.SHUTDOWN)
        session.on_call_closed()
    assert session.end_reason is EndReason.CALLER_HUNG_UP
    assert session.effects.commands == [Teardown("caller_hung_up")]
    assert len(to_frontends(session)) == 1
    assert len(events(logs, Ev.SESSION_ENDING)) == 1
    assert len(state_changes(logs)) == 1


def test_end_queues_ended_for_frontends_before_teardown() -> None:
    """call.status_changed ended (with reason and streamSid) is queued before Teardown is."""
    session, _ = live_session(fids=(1, 2))
    seen_at_teardown: list[list[Any]] = []

    class Watch(list):  # type: ignore[type-arg]
        def append(self, item: Any) -> None:
            seen_at_teardown.append(list(session.effects.frontend))
            super().append(item)

    session.effects.commands = Watch()
    with capture_logs() as logs:
        session.end(EndReason.FRONTEND_ENDED)
    ended = fmsg.call_status_changed(SID, "ended", STREAM, "frontend_ended")
    assert seen_at_teardown == [[(None, ended)]]
    assert list(session.effects.commands) == [Teardown("frontend_ended")]
    notify = events(logs, Ev.CALL_ENDED_NOTIFY)
    assert len(notify) == 1 and notify[0]["frontends"] == 2
    assert events(logs, Ev.SESSION_ENDING)[0]["reason"] == "frontend_ended"


def test_end_without_frontends_still_tears_down() -> None:
    """With no frontend, end() queues no message and logs no notification, but tears down."""
    session, _ = make_session()
    with capture_logs() as logs:
        session.end(EndReason.ABANDONED)
    assert session.effects.frontend == []
    assert session.effects.commands == [Teardown("abandoned")]
    assert events(logs, Ev.CALL_ENDED_NOTIFY) == []


def test_inputs_after_end_are_ignored() -> None:
    """Once ending, frontend messages, model events and caller audio produce nothing."""
    session, _ = live_session()
    session.end(EndReason.RESET)
    session.effects.clear()
    session.on_frontend_message(1, job_config())
    session.on_frontend_message(1, fmsg.SessionEnd())
    model(session, "input_audio_buffer.speech_started")
    audio_delta(session, CHUNK)
    session.on_call_media("AAAA")
    session.on_upstream_open()
    session.on_tool_result("call_1", END_OUTCOME)
    assert not session.effects
    assert session.end_reason is EndReason.RESET


# -- frontends and the call ---------------------------------------------------------------


def test_call_start_tells_frontends_and_opens_upstream() -> None:
    """on_call_started: session.associated and connected to every frontend, then OpenUpstream."""
    with capture_logs() as logs:
        session, _ = make_session(claimable=True)
        session.add_frontend(1, FrontendInfo())
        session.on_call_started(START)
    assert session.state is State.CONNECTING and not session.claimable
    assert session.stream_sid == STREAM
    assert to_frontends(session) == [
        (None, fmsg.session_associated(SID, START.call_sid, STREAM)),
        (None, fmsg.call_status_changed(SID, "connected", STREAM)),
    ]
    assert session.effects.commands == [OpenUpstream()]
    paired = events(logs, Ev.SESSION_PAIRED)
    assert paired[0]["callSid"] == START.call_sid and paired[0]["streamSid"] == STREAM


def test_frontend_joining_after_call_learns_of_it() -> None:
    """A frontend that joins once the call is here gets session.associated, addressed to it."""
    session, _ = live_session(fids=(1,))
    session.add_frontend(7, FrontendInfo())
    assert to_frontends(session) == [(7, fmsg.session_associated(SID, START.call_sid, STREAM))]


def test_frontend_joining_before_call_gets_nothing() -> None:
    """Before the call, joining queues no message (there is nothing to associate yet)."""
    session, _ = make_session()
    session.add_frontend(1, FrontendInfo())
    assert not session.effects


def test_caller_hang_up_ends_session() -> None:
    """Twilio stop ends with caller_hung_up; the socket closing afterwards changes nothing."""
    session, _ = live_session()
    with capture_logs() as logs:
        session.on_call_message(twilio.Stop(START.call_sid))
        session.on_call_closed()
    assert session.end_reason is EndReason.CALLER_HUNG_UP
    assert len(events(logs, Ev.CALL_STOPPED)) == 1
    assert session.effects.commands == [Teardown("caller_hung_up")]


def test_call_socket_closing_ends_as_dropped() -> None:
    """The stream socket closing without stop ends the session as call_dropped."""
    session, _ = live_session()
    session.on_call_closed()
    assert session.end_reason is EndReason.CALL_DROPPED


def test_repeated_stream_setup_is_logged_and_ignored() -> None:
    """A second connected/start on a paired call is a logged wrong_order, not a transition."""
    session, _ = live_session()
    with capture_logs() as logs:
        session.on_call_message(twilio.Connected("1.0.0"))
        session.on_call_message(START)
    assert session.state is State.LIVE
    bad = events(logs, Ev.BAD_INPUT)
    assert len(bad) == 2 and all(e["code"] == "wrong_order" for e in bad)
    assert not session.effects


def test_dtmf_counts_as_activity_and_reaches_the_model_in_words() -> None:
    """A key press refreshes last_activity and becomes a user text item for the model."""
    session, clock = live_session()
    clock.advance(5)
    session.on_call_message(twilio.Dtmf("5"))
    assert session.last_activity == clock.now
    assert upstream(session) == [{"type": "conversation.item.create", "item": {
        "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "The caller pressed 5"}]}}]
    assert not session.effects.call and not session.effects.frontend


def test_dtmf_to_model_can_be_turned_off() -> None:
    """With dtmf_to_model off, a key press is activity only."""
    session, clock = live_session(dtmf_to_model=False)
    clock.advance(5)
    session.on_call_message(twilio.Dtmf("#"))
    assert session.last_activity == clock.now and not session.effects


def test_dtmf_before_the_model_is_open_or_odd_digits_send_nothing() -> None:
    """Before the model connection opens, and for a digit no keypad has, nothing is sent."""
    session, _ = make_session()
    session.on_call_started(START)
    session.effects.clear()
    session.on_call_message(twilio.Dtmf("5"))
    assert not session.effects
    live, _ = live_session()
    live.on_call_message(twilio.Dtmf("x"))
    assert not live.effects


# -- job configuration ---------------------------------------------------------------------


def test_job_config_before_model_is_queued_for_sender_only() -> None:
    """A job_config before the model is ready is stored and acked queued to its sender only."""
    with capture_logs() as logs:
        session, _ = make_session()
        session.add_frontend(1, FrontendInfo())
        session.add_frontend(2, FrontendInfo())
        session.on_frontend_message(1, job_config(company="Acme"))
    assert session.job_config == JobConfig(role="Backend Engineer", company="Acme")
    assert to_frontends(session) == [(1, fmsg.job_config_ack(SID, "queued"))]
    assert session.effects.upstream == []
    received = events(logs, Ev.JOB_CONFIG_RECEIVED)
    assert len(received) == 1
    assert received[0]["sessionId"] == SID
    assert "Backend Engineer" not in str(received[0])  # field names are logged, never the user's text
    assert len(events(logs, Ev.JOB_CONFIG_QUEUED)) == 1


def test_queued_job_config_applied_when_model_confirms() -> None:
    """On open the queued config goes out as session.update; session.updated acks it applied."""
    session, _ = make_session(greet_first=True)
    session.add_frontend(1, FrontendInfo())
    session.on_frontend_message(1, job_config())
    session.on_call_started(START)
    session.effects.clear()
    session.on_upstream_open()
    sent = upstream(session)
    assert [e["type"] for e in sent] == ["session.update", "response.create"]
    update = sent[0]
    assert update["event_id"] == "relay_update_1"
    assert update["session"]["type"] == "realtime"
    assert update["session"]["instructions"] == build_instructions(JobConfig(role="Backend Engineer"))
    assert update["session"]["audio"]["output"]["voice"] == "marin"
    assert to_frontends(session) == []
    session.effects.clear()
    with capture_logs() as logs:
        model(session, "session.updated", session={})
    assert to_frontends(session) == [(1, fmsg.job_config_ack(SID, "applied"))]
    assert len(events(logs, Ev.JOB_CONFIG_APPLIED)) == 1


def test_two_configs_queued_before_open_are_acked_by_one_update() -> None:
    """Configs queued by two frontends go out in one session.update; its session.updated acks both."""
    session, _ = make_session(greet_first=False)
    session.add_frontend(1, FrontendInfo())
    session.add_frontend(2, FrontendInfo())
    session.on_frontend_message(1, job_config(role="Designer"))
    session.on_frontend_message(2, job_config(role="Engineer"))
    session.on_call_started(START)
    session.effects.clear()
    session.on_upstream_open()
    sent = upstream(session)
    assert [e["type"] for e in sent] == ["session.update"]
    assert "Engineer" in sent[0]["session"]["instructions"]  # the latest config wins
    model(session, "session.updated", session={})
    assert to_frontends(session) == [
        (1, fmsg.job_config_ack(SID, "applied")),
        (2, fmsg.job_config_ack(SID, "applied")),
    ]


def test_same_frontend_queueing_twice_is_acked_applied_once() -> None:
    """One frontend's two queued configs are merged into one update and one applied ack."""
    session, _ = make_session(greet_first=False)
    session.add_frontend(1, FrontendInfo())
    session.on_frontend_message(1, job_config(role="Designer"))
    session.on_frontend_message(1, job_config(role="Engineer"))
    session.on_call_started(START)
    session.on_upstream_open()
    session.effects.clear()
    model(session, "session.updated", session={})
    assert to_frontends(session) == [(1, fmsg.job_config_ack(SID, "applied"))]


def test_live_update_acks_only_its_sender() -> None:
    """A job_config on a live session is sent at once and only its sender hears applied."""
    session, _ = live_session(fids=(1, 2))
    model(session, "session.updated", session={})  # the opening update, acking nobody
    session.effects.clear()
    with capture_logs() as logs:
        session.on_frontend_message(2, job_config(role="Data Scientist"))
    sent = upstream(session)
    assert [e["type"] for e in sent] == ["session.update"]
    assert sent[0]["event_id"] == "relay_update_2"
    assert "Data Scientist" in sent[0]["session"]["instructions"]
    assert to_frontends(session) == []  # no "queued" ack for a live update
    assert len(events(logs, Ev.JOB_CONFIG_LIVE_UPDATE)) == 1
    assert events(logs, Ev.JOB_CONFIG_LIVE_UPDATE)[0]["sessionId"] == SID
    model(session, "session.updated", session={})
    assert to_frontends(session) == [(2, fmsg.job_config_ack(SID, "applied"))]


def test_pending_live_updates_are_acked_in_order() -> None:
    """Two live updates in flight: each session.updated acks the oldest one's sender."""
    session, _ = live_session(fids=(1, 2))
    model(session, "session.updated", session={})
    session.on_frontend_message(1, job_config(role="A"))
    session.on_frontend_message(2, job_config(role="B"))
    session.effects.clear()
    model(session, "session.updated", session={})
    assert to_frontends(session) == [(1, fmsg.job_config_ack(SID, "applied"))]
    session.effects.clear()
    model(session, "session.updated", session={})
    assert to_frontends(session) == [(2, fmsg.job_config_ack(SID, "applied"))]
    session.effects.clear()
    model(session, "session.updated", session={})  # unsolicited: acks nobody
    assert to_frontends(session) == []


def test_rejected_config_reported_to_its_sender() -> None:
    """An error naming the update's event_id sends config_rejected to its sender, not an ack."""
    session, _ = live_session(fids=(1, 2))
    model(session, "session.updated", session={})
    session.on_frontend_message(2, job_config())
    event_id = upstream(session)[0]["event_id"]
    session.effects.clear()
    with capture_logs() as logs:
        model(session, "error", error={"type": "invalid_request_error", "code": "invalid_value",
                                       "message": "Invalid voice.", "event_id": event_id})
    assert to_frontends(session) == [
        (2, fmsg.error("config_rejected", "the model refused the configuration: Invalid voice."))]
    rejected = events(logs, Ev.JOB_CONFIG_REJECTED)
    assert len(rejected) == 1 and rejected[0]["code"] == "invalid_value"
    session.effects.clear()
    model(session, "session.updated", session={})
    assert to_frontends(session) == []  # the rejected update is not acked later


def test_unrelated_model_error_rejects_nothing() -> None:
    """An error without a matching event_id is logged and leaves pending updates alone."""
    session, _ = live_session(fids=(1,))
    model(session, "session.updated", session={})
    session.on_frontend_message(1, job_config())
    session.effects.clear()
    with capture_logs() as logs:
        model(session, "error", error={"code": "rate_limit", "message": "x", "event_id": "other"})
        model(session, "error", error="not an object")
    assert to_frontends(session) == []
    assert [e["code"] for e in events(logs, Ev.UPSTREAM_ERROR)] == ["rate_limit", None]
    assert events(logs, Ev.JOB_CONFIG_REJECTED) == []
    model(session, "session.updated", session={})
    assert to_frontends(session) == [(1, fmsg.job_config_ack(SID, "applied"))]


def test_session_update_overrides_are_deep_merged() -> None:
    """Frontend session.update objects merge key by key into the update sent at open."""
    session, _ = make_session(greet_first=False)
    session.add_frontend(1, FrontendInfo())
    with capture_logs() as logs:
        session.on_frontend_message(1, fmsg.SessionUpdateMessage(
            {"instructions": "Be terse.", "audio": {"output": {"voice": "cedar"}}}))
        session.on_frontend_message(1, fmsg.SessionUpdateMessage(
            {"audio": {"output": {"speed": 1.1}}}))
    assert events(logs, Ev.JOB_CONFIG_RECEIVED)[0]["fields"] == ["audio", "instructions"]
    assert session.config.overrides == {
        "instructions": "Be terse.", "audio": {"output": {"voice": "cedar", "speed": 1.1}}}
    session.on_call_started(START)
    session.effects.clear()
    session.on_upstream_open()
    update = upstream(session)[0]["session"]
    assert update["instructions"] == "Be terse."
    assert update["audio"]["output"]["voice"] == "cedar"
    assert update["audio"]["output"]["speed"] == 1.1
    assert update["audio"]["output"]["format"] == {"type": "audio/pcmu"}


def test_voice_left_out_once_model_has_spoken() -> None:
    """After model audio exists, later session.updates carry no voice (the API refuses a change)."""
    session, _ = live_session()
    audio_delta(session, 160)
    session.effects.clear()
    session.on_frontend_message(1, job_config(voice="cedar"))
    assert "voice" not in upstream(session)[0]["session"]["audio"]["output"]


def test_open_without_config_sends_generic_interview() -> None:
    """With no configuration the opening update carries the generic interview prompt."""
    session, _ = make_session(greet_first=False)
    session.on_call_started(START)
    session.effects.clear()
    session.on_upstream_open()
    assert upstream(session)[0]["session"]["instructions"] == build_instructions(None)


# -- other frontend messages --------------------------------------------------------------------


def test_client_event_needs_a_live_call() -> None:
    """A client event before the model is ready is refused wrong_order to its sender only."""
    session, _ = make_session()
    session.add_frontend(1, FrontendInfo())
    session.add_frontend(2, FrontendInfo())
    session.on_frontend_message(2, fmsg.ClientEvent({"type": "response.create"}))
    assert to_frontends(session) == [
        (2, fmsg.error("wrong_order", "response.create needs a live call"))]
    assert session.effects.upstream == []


def test_client_event_forwarded_when_live() -> None:
    """A vetted client event on a live session goes to the model unchanged."""
    session, _ = live_session()
    event = {"type": "conversation.item.create",
             "item": {"type": "function_call_output", "call_id": "c1", "output": "{}"}}
    session.on_frontend_message(1, fmsg.ClientEvent(event))
    assert upstream(session) == [event]
    assert to_frontends(session) == []


def test_activity_refreshes_last_activity() -> None:
    """Any frontend message, activity included, moves last_activity to now and sends nothing."""
    session, clock = make_session()
    session.add_frontend(1, FrontendInfo())
    clock.advance(42)
    session.on_frontend_message(1, fmsg.Activity())
    assert session.last_activity == clock.now
    assert not session.effects


def test_session_end_message_ends_session() -> None:
    """session.end from a frontend ends the session as frontend_ended."""
    session, _ = live_session()
    session.on_frontend_message(1, fmsg.SessionEnd())
    assert session.end_reason is EndReason.FRONTEND_ENDED
    assert session.effects.commands == [Teardown("frontend_ended")]


# -- caller audio ----------------------------------------------------------------------------


def test_append_event_shape() -> None:
    """append_event wraps a base64 payload as an input_audio_buffer.append event."""
    assert orjson.loads(append_event("f39/fw==")) == {
        "type": "input_audio_buffer.append", "audio": "f39/fw=="}


def test_media_before_call_start_is_dropped() -> None:
    """Caller audio while WAITING is neither held nor sent."""
    session, _ = make_session(greet_first=False)
    session.on_call_media("AAAA")
    session.on_call_started(START)
    session.effects.clear()
    session.on_upstream_open()
    assert upstream_types(session) == ["session.update"]


def test_held_audio_released_in_order_after_open() -> None:
    """Audio held while CONNECTING follows the session.update and greeting, oldest first."""
    session, _ = make_session(greet_first=True)
    session.on_call_started(START)
    frames = [base64.b64encode(bytes([i]) * 160).decode() for i in range(5)]
    for frame in frames:
        session.on_call_message(twilio.Media(frame))
    assert session.effects.upstream == []
    session.effects.clear()
    session.on_upstream_open()
    sent = upstream(session)
    assert [e["type"] for e in sent[:2]] == ["session.update", "response.create"]
    assert sent[2:] == [{"type": "input_audio_buffer.append", "audio": f} for f in frames]
    session.effects.clear()
    session.on_upstream_open()  # a second open is ignored: nothing released twice
    assert not session.effects


def test_held_audio_bounded_oldest_dropped() -> None:
    """At most pre_open_audio_frames are held; the oldest frames are dropped first."""
    session, _ = make_session(greet_first=False, pre_open_audio_frames=3)
    session.on_call_started(START)
    for i in range(7):
        session.on_call_media(f"frame{i}")
    session.effects.clear()
    session.on_upstream_open()
    assert [e.get("audio") for e in upstream(session)[1:]] == ["frame4", "frame5", "frame6"]


def test_live_media_goes_straight_to_model() -> None:
    """On a live session each caller frame becomes one append event, at once."""
    session, _ = live_session()
    session.on_call_message(twilio.Media("AAAA"))
    session.on_call_media("BBBB")
    assert session.effects.upstream == [append_event("AAAA"), append_event("BBBB")]


def test_media_payload_with_quotes_cannot_inject_model_events() -> None:
    """A media payload holding quotes (decoded from JSON escapes) never yields a second event type."""
    session, _ = live_session()
    payload = 'AAAA","type":"response.create'
    session.on_call_message(twilio.Media(payload))
    for frame in session.effects.upstream:
        event = orjson.loads(frame)
        assert event == {"type": "input_audio_buffer.append", "audio": payload}


def test_greet_first_off_sends_no_response_create() -> None:
    """With greet_first off, opening sends only the session.update."""
    session, _ = make_session(greet_first=False)
    session.on_call_started(START)
    session.effects.clear()
    session.on_upstream_open()
    assert upstream_types(session) == ["session.update"]


def test_upstream_failure_tells_frontends_and_ends() -> None:
    """No model connection: frontends get upstream_failed, then the session ends."""
    session, _ = make_session()
    session.add_frontend(1, FrontendInfo())
    session.on_call_started(START)
    session.effects.clear()
    session.on_upstream_failed("HTTP 401")
    assert to_frontends(session) == [
        (None, fmsg.error("upstream_failed", "HTTP 401")),
        (None, fmsg.call_status_changed(SID, "ended", STREAM, "upstream_failed")),
    ]
    assert session.end_reason is EndReason.UPSTREAM_FAILED


def test_upstream_closed_ends_session() -> None:
    """The model connection closing ends the session as upstream_closed."""
    session, _ = live_session()
    session.on_upstream_closed()
    assert session.end_reason is EndReason.UPSTREAM_CLOSED


# -- model events and playback ------------------------------------------------------------------


def test_model_audio_goes_to_caller_with_marks() -> None:
    """Audio deltas become Twilio media (payload untouched); a mark follows each 100 ms."""
    session, _ = live_session()
    delta = audio_delta(session, 400)
    assert call_frames(session) == [
        {"event": "media", "streamSid": STREAM, "media": {"payload": delta}}]
    session.effects.clear()
    audio_delta(session, 400)
    assert call_frames(session)[1] == {"event": "mark", "streamSid": STREAM,
                                       "mark": {"name": "relay-1"}}
    assert session.playback.marks_pending == 1


def test_model_events_forwarded_to_frontends_verbatim() -> None:
    """Every parsed model event, audio included, reaches frontends as a ModelEvent with its text."""
    session, _ = live_session()
    text = '{"type":"response.output_audio_transcript.delta","delta":"Hi"}'
    session.on_upstream_text(text)
    audio_delta(session, 160)
    kinds = [(fid, m.type) for fid, m in session.effects.frontend if isinstance(m, ModelEvent)]
    assert kinds == [(None, "response.output_audio_transcript.delta"),
                     (None, "response.output_audio.delta")]
    assert session.effects.frontend[0][1] == ModelEvent(text, orjson.loads(text), kinds[0][1])


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"text"', "{}", "42"])
def test_unparseable_model_event_logged_and_dropped(text: str) -> None:
    """A model frame that is not an object with a type is logged as bad input and dropped."""
    session, _ = live_session()
    with capture_logs() as logs:
        session.on_upstream_text(text)
    assert not session.effects
    assert events(logs, Ev.BAD_INPUT)[0]["source"] == "model"


@pytest.mark.parametrize("kind", [5, None, ["error"], {"a": 1}, "", True])
def test_model_events_with_a_malformed_type_are_dropped_and_logged_once(kind: Any) -> None:
    """Events whose type is a number, null, a list, … never reach frontends; one log line per session."""
    session, _ = live_session()
    with capture_logs() as logs:
        for _ in range(3):
            session.on_upstream_text(orjson.dumps({"type": kind, "error": {"message": "x"}}).decode())
    assert not session.effects
    assert len(events(logs, Ev.BAD_INPUT)) == 1
    assert session.malformed_model_events == 3
    with capture_logs() as logs:
        session.end(EndReason.CALLER_HUNG_UP)
    assert events(logs, Ev.SESSION_ENDING)[0]["malformedModelEvents"] == 3


def test_model_errors_reach_frontends_marked_as_the_models() -> None:
    """The model's error events are forwarded with source model; relay's own errors say source relay."""
    session, _ = live_session()
    error = {"type": "error", "event_id": "event_1",
             "error": {"type": "invalid_request_error", "code": "response_cancel_not_active",
                       "message": "No active response.", "param": None, "event_id": None}}
    model(session, "error", **{k: v for k, v in error.items() if k != "type"})
    [(_, forwarded)] = session.effects.frontend
    assert isinstance(forwarded, ModelEvent)
    assert orjson.loads(forwarded.text) == forwarded.event == {**error, "source": "model"}
    assert fmsg.error("wrong_order", "x")["source"] == "relay"


def test_audio_done_sends_final_mark() -> None:
    """response.output_audio.done sends a final mark, even right after an interval mark."""
    session, _ = live_session()
    audio_delta(session, CHUNK)
    session.effects.clear()
    model(session, "response.output_audio.done", item_id="item_1")
    assert call_frames(session) == [{"event": "mark", "streamSid": STREAM,
                                     "mark": {"name": "relay-2"}}]
    session.effects.clear()
    model(session, "response.output_audio.done", item_id="other_item")
    assert call_frames(session) == []


def test_barge_in_truncates_to_heard_audio_and_clears() -> None:
    """speech_started while audio plays: truncate at the heard estimate and clear Twilio."""
    session, clock = live_session()
    for _ in range(3):
        audio_delta(session, CHUNK)  # marks relay-1..3 at 800, 1600, 2400 bytes
    clock.advance(0.125)
    session.on_call_message(twilio.Mark("relay-1"))  # 800 bytes (100 ms) played
    clock.advance(0.0625)  # + 62.5 ms since the echo
    session.effects.clear()
    with capture_logs() as logs:
        model(session, "input_audio_buffer.speech_started", audio_start_ms=1000, item_id="in_1")
    assert upstream(session) == [{"type": "conversation.item.truncate", "item_id": "item_1",
                                  "content_index": 0, "audio_end_ms": 162}]
    assert call_frames(session) == [{"event": "clear", "streamSid": STREAM}]
    assert events(logs, Ev.BARGE_IN)[0]["audioEndMs"] == 162
    assert not session.playback.playing
    assert session.last_activity == clock.now


def test_barge_in_before_any_mark_uses_elapsed_time() -> None:
    """With no mark echoed yet, the heard estimate is the time since the first chunk."""
    session, clock = live_session()
    audio_delta(session, 4 * CHUNK)
    clock.advance(0.0625)
    session.effects.clear()
    model(session, "input_audio_buffer.speech_started")
    assert upstream(session)[0]["audio_end_ms"] == 62


def test_barge_in_estimate_capped_at_audio_sent() -> None:
    """The heard estimate never exceeds what relay sent to Twilio."""
    session, clock = live_session()
    audio_delta(session, 400)  # 50 ms
    clock.advance(10)
    session.effects.clear()
    model(session, "input_audio_buffer.speech_started")
    assert upstream(session)[0]["audio_end_ms"] == 50


def test_no_truncate_when_nothing_plays() -> None:
    """speech_started with no model audio playing sends neither truncate nor clear."""
    session, _ = live_session()
    model(session, "input_audio_buffer.speech_started")
    assert session.effects.upstream == [] and session.effects.call == []
    # Audio that has fully played (final mark echoed) is not playing any more.
    audio_delta(session, 400)
    model(session, "response.output_audio.done", item_id="item_1")
    session.on_call_message(twilio.Mark("relay-1"))
    session.effects.clear()
    model(session, "input_audio_buffer.speech_started")
    assert session.effects.upstream == [] and session.effects.call == []


def test_marks_from_before_a_clear_are_ignored() -> None:
    """A mark echoed after a barge-in (Twilio flushes them on clear) changes nothing."""
    session, clock = live_session()
    audio_delta(session, CHUNK)
    model(session, "input_audio_buffer.speech_started")
    audio_delta(session, 400, item_id="item_2")
    clock.advance(0.0625)
    session.on_call_message(twilio.Mark("relay-1"))
    assert session.playback.playing and session.playback.item_id == "item_2"
    assert session.playback.heard_ms(clock.now) == 50  # not moved by the stale mark


def test_audio_without_item_id_is_not_played() -> None:
    """An audio delta missing item_id or delta is forwarded to frontends but not to the call."""
    session, _ = live_session()
    model(session, "response.output_audio.delta", delta="AAAA")
    model(session, "response.output_audio.delta", item_id="item_1")
    assert session.effects.call == []
    assert not session.playback.playing


# -- tools and the farewell -----------------------------------------------------------------------


def test_function_call_becomes_run_tool_command() -> None:
    """A function_call output item asks the runner to run it; missing arguments become {}."""
    session, _ = live_session()
    with capture_logs() as logs:
        function_call(session, "call_1", "get_interview_time", '{"a": 1}')
        function_call(session, "call_2", "end_interview", None)
        model(session, "response.output_item.done", item={"type": "message"})
        model(session, "response.output_item.done", item={"type": "function_call", "name": "x"})
    assert session.effects.commands == [
        RunTool("call_1", "get_interview_time", '{"a": 1}'),
        RunTool("call_2", "end_interview", "{}"),
    ]
    assert [e["tool"] for e in events(logs, Ev.TOOL_CALL)] == ["get_interview_time",
                                                               "end_interview"]


def test_plain_tool_result_answers_and_asks_for_response() -> None:
    """A tool without effect: function_call_output to the model, then response.create."""
    session, _ = live_session()
    function_call(session, "call_1", "get_interview_time")
    session.effects.clear()
    session.on_tool_result("call_1", ToolOutcome({"elapsed_seconds": 65}))
    sent = upstream(session)
    assert sent == [
        {"type": "conversation.item.create",
         "item": {"type": "function_call_output", "call_id": "call_1",
                  "output": '{"elapsed_seconds":65}'}},
        {"type": "response.create"},
    ]
    assert session.state is State.LIVE


def test_tool_result_ignored_when_model_not_ready() -> None:
    """A tool result arriving after the session ended sends nothing."""
    session, _ = live_session()
    session.end(EndReason.RESET)
    session.effects.clear()
    session.on_tool_result("call_1", END_OUTCOME)
    assert not session.effects


def _speak_goodbye_and_call_end(session: Session) -> None:
    model(session, "response.created", response={"id": "resp_1"})
    audio_delta(session, 400)
    model(session, "response.output_audio.done", item_id="item_1")  # final mark relay-1
    function_call(session)


def test_end_interview_disables_turns_and_waits_for_goodbye() -> None:
    """end_interview → FAREWELL: turn detection off, no new response while the goodbye plays."""
    session, _ = live_session()
    _speak_goodbye_and_call_end(session)
    session.effects.clear()
    with capture_logs() as logs:
        session.on_tool_result("call_1", END_OUTCOME)
    assert session.state is State.FAREWELL
    sent = upstream(session)
    assert sent[0]["type"] == "conversation.item.create"
    assert sent[1]["type"] == "session.update"
    assert sent[1]["session"] == {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
    assert "response.create" not in [e["type"] for e in sent]
    assert len(events(logs, Ev.FAREWELL)) == 1
    assert session.deadline() == session.clock() + 15.0


@pytest.mark.parametrize("order", ["done_then_mark", "mark_then_done"])
def test_farewell_ends_after_response_done_and_final_mark(order: str) -> None:
    """The session ends interview_completed only once both response.done and the final mark came."""
    session, _ = live_session()
    _speak_goodbye_and_call_end(session)
    session.on_tool_result("call_1", END_OUTCOME)
    steps = [lambda: model(session, "response.done", response={"id": "resp_1"}),
             lambda: session.on_call_message(twilio.Mark("relay-1"))]
    if order == "mark_then_done":
        steps.reverse()
    steps[0]()
    assert session.state is State.FAREWELL
    steps[1]()
    assert session.state is State.ENDING
    assert session.end_reason is EndReason.INTERVIEW_COMPLETED
    assert session.effects.commands[-1] == Teardown("interview_completed")


def test_farewell_after_goodbye_already_played_ends_at_once() -> None:
    """If the goodbye finished (done and echoed) before the tool result, end_interview ends now."""
    session, _ = live_session()
    _speak_goodbye_and_call_end(session)
    model(session, "response.done", response={"id": "resp_1"})
    session.on_call_message(twilio.Mark("relay-1"))
    session.on_tool_result("call_1", END_OUTCOME)
    assert session.end_reason is EndReason.INTERVIEW_COMPLETED


def test_end_interview_without_goodbye_asks_for_one() -> None:
    """With no goodbye audio, relay sends response.create with goodbye instructions and waits."""
    session, _ = live_session()
    model(session, "response.created", response={"id": "resp_1"})
    function_call(session)
    model(session, "response.done", response={"id": "resp_1"})
    session.effects.clear()
    session.on_tool_result("call_1", END_OUTCOME)
    sent = upstream(session)
    assert [e["type"] for e in sent] == ["conversation.item.create", "session.update",
                                         "response.create"]
    assert "goodbye" in sent[2]["response"]["instructions"]
    assert session.state is State.FAREWELL
    # The goodbye response: created, audio, done; the end waits for its final mark.
    model(session, "response.created", response={"id": "resp_2"})
    audio_delta(session, 400, item_id="item_bye")
    model(session, "response.output_audio.done", item_id="item_bye")
    model(session, "response.done", response={"id": "resp_2"})
    assert session.state is State.FAREWELL
    mark = call_frames(session)[-1]["mark"]["name"]
    session.on_call_message(twilio.Mark(mark))
    assert session.end_reason is EndReason.INTERVIEW_COMPLETED


def test_end_interview_before_response_done_defers_goodbye_request() -> None:
    """end_interview answered before its response is done: the goodbye is asked for after response.done."""
    session, _ = live_session()
    model(session, "response.created", response={"id": "resp_1"})
    function_call(session)
    session.effects.clear()
    session.on_tool_result("call_1", END_OUTCOME)  # the tool ran before response.done arrived
    assert "response.create" not in upstream_types(session)
    session.effects.clear()
    model(session, "response.done", response={"id": "resp_1"})
    assert session.state is State.FAREWELL
    assert "response.create" in upstream_types(session)


def test_tool_result_before_response_done_defers_response_create() -> None:
    """A plain tool answered before its response is done asks for the next response after response.done."""
    session, _ = live_session()
    model(session, "response.created", response={"id": "resp_1"})
    function_call(session, name="get_interview_time")
    session.effects.clear()
    session.on_tool_result("call_1", ToolOutcome({"elapsed_seconds": 3}))
    assert upstream_types(session) == ["conversation.item.create"]
    session.effects.clear()
    model(session, "response.done", response={"id": "resp_1"})
    assert upstream_types(session) == ["response.create"]


def test_config_update_during_farewell_keeps_turns_disabled() -> None:
    """A job_config arriving during the farewell does not turn turn detection back on."""
    session, _ = live_session()
    _speak_goodbye_and_call_end(session)
    session.on_tool_result("call_1", END_OUTCOME)
    session.effects.clear()
    session.on_frontend_message(1, job_config(role="Another role"))
    for event in upstream(session):
        if event["type"] == "session.update":
            assert event["session"]["audio"]["input"].get("turn_detection") is None


def test_farewell_times_out() -> None:
    """A goodbye that never finishes playing ends the session at farewell_timeout_s."""
    session, clock = live_session(farewell_timeout_s=2.0)
    _speak_goodbye_and_call_end(session)
    session.on_tool_result("call_1", END_OUTCOME)
    assert session.deadline() == clock.now + 2.0
    clock.advance(1.5)
    session.on_timer()
    assert session.state is State.FAREWELL
    clock.advance(0.5)
    session.on_timer()
    assert session.end_reason is EndReason.INTERVIEW_COMPLETED
    assert session.deadlines.grace_at is None


def test_second_end_interview_during_farewell_changes_nothing() -> None:
    """Another end_interview result while in FAREWELL only answers the model."""
    session, _ = live_session()
    _speak_goodbye_and_call_end(session)
    session.on_tool_result("call_1", END_OUTCOME)
    session.effects.clear()
    with capture_logs() as logs:
        session.on_tool_result("call_2", END_OUTCOME)
    assert upstream_types(session) == ["conversation.item.create"]
    assert state_changes(logs) == []


# -- deadlines and frontends leaving -------------------------------------------------------------


def test_configured_session_abandoned_after_grace() -> None:
    """A configured session whose frontend left with no call ends abandoned at the grace deadline."""
    session, clock = make_session(resume_grace_s=30.0)
    session.add_frontend(1, FrontendInfo())
    session.on_frontend_message(1, job_config())
    session.remove_frontend(1)
    assert not session.ended
    assert session.deadline() == clock.now + 30.0
    clock.advance(29.75)
    session.on_timer()
    assert not session.ended
    clock.advance(0.25)
    session.on_timer()
    assert session.end_reason is EndReason.ABANDONED
    assert session.effects.commands[-1] == Teardown("abandoned")


def test_returning_frontend_cancels_grace() -> None:
    """A frontend coming back within the grace window keeps the session alive."""
    session, clock = make_session(resume_grace_s=30.0)
    session.add_frontend(1, FrontendInfo())
    session.on_frontend_message(1, job_config())
    session.remove_frontend(1)
    clock.advance(10)
    session.add_frontend(2, FrontendInfo())
    assert session.deadlines.grace_at is None
    clock.advance(60)
    session.on_timer()
    assert not session.ended


def test_call_arriving_cancels_grace() -> None:
    """A call pairing within the grace window clears the deadline."""
    session, clock = make_session()
    session.add_frontend(1, FrontendInfo())
    session.on_frontend_message(1, job_config())
    session.remove_frontend(1)
    session.on_call_started(START)
    assert session.deadlines.grace_at is None
    clock.advance(60)  # past the grace window, not the inactivity timeout
    session.on_timer()
    assert not session.ended


def test_session_update_overrides_count_as_configuration() -> None:
    """A session configured only by session.update also waits out the grace window."""
    session, _ = make_session()
    session.add_frontend(1, FrontendInfo())
    session.on_frontend_message(1, fmsg.SessionUpdateMessage({"instructions": "x"}))
    session.remove_frontend(1)
    assert not session.ended and session.deadline() is not None


def test_claimable_session_ends_when_last_frontend_leaves() -> None:
    """A bare /logs session ends frontend_left at once when its last frontend leaves, config or not."""
    session, _ = make_session(claimable=True)
    session.add_frontend(1, FrontendInfo())
    session.add_frontend(2, FrontendInfo())
    session.on_frontend_message(1, job_config())
    session.remove_frontend(1)
    assert not session.ended
    session.remove_frontend(2)
    assert session.end_reason is EndReason.FRONTEND_LEFT
    assert session.deadlines.grace_at is None


def test_unconfigured_session_ends_when_frontend_leaves() -> None:
    """A named session holding no configuration ends frontend_left when its frontend leaves."""
    session, _ = make_session()
    session.add_frontend(1, FrontendInfo())
    session.remove_frontend(1)
    assert session.end_reason is EndReason.FRONTEND_LEFT


def test_frontend_leaving_during_call_keeps_session() -> None:
    """The call keeps the session alive when every frontend leaves mid-call."""
    session, _ = live_session()
    session.remove_frontend(1)
    assert session.state is State.LIVE and session.deadlines.grace_at is None


def test_removing_unknown_frontend_does_nothing() -> None:
    """Removing a frontend that is not attached neither ends the session nor sets a deadline."""
    session, _ = make_session()
    session.remove_frontend(99)
    assert not session.ended and session.deadlines.grace_at is None and not session.effects


def test_grace_deadline_with_frontend_present_does_not_end() -> None:
    """on_timer at a passed grace deadline ends nothing if a frontend is attached again."""
    session, clock = make_session(resume_grace_s=1.0)
    session.add_frontend(1, FrontendInfo())
    session.on_frontend_message(1, job_config())
    session.remove_frontend(1)
    session.frontends[2] = FrontendInfo()  # attached without add_frontend's reset
    clock.advance(2)
    session.on_timer()
    assert not session.ended and session.deadlines.grace_at is None
