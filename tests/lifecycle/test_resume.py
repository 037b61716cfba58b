"""A page refresh does not lose the interview: the session runs on and replays what was missed."""

from __future__ import annotations

import uuid

from tests.conftest import Relay, RelayFactory, wait_until


async def test_refresh_and_resume_replays_missed_events(relay: Relay) -> None:
    """A frontend that drops mid-call and reconnects gets the events it missed, in order."""
    sid, fe, call, upstream = await relay.live_session()
    await fe.close()  # the tab refreshes: no session.end
    await upstream.respond_with_audio(b"\xff" * 800, "What brings you here?")
    await call.wait_for("media")  # the call carried on meanwhile
    item = await upstream.speech_started()
    await upstream.input_transcript(item, "I love backend work.")
    again = await relay.frontend(f"/logs/{sid}")
    associated = await again.wait_for("session.associated")
    assert associated["callSid"] == call.call_sid
    resumed = await again.wait_for("session.resumed")
    assert resumed["sessionId"] == sid and resumed["missed"] >= 3 and resumed["dropped"] == 0
    said = await again.wait_for("response.output_audio_transcript.done")
    assert said["transcript"] == "What brings you here?"
    heard = await again.wait_for("conversation.item.input_audio_transcription.completed")
    assert heard["transcript"] == "I love backend work."
    assert "response.output_audio.delta" not in again.types()  # audio is the caller's
    order = again.types()
    assert order.index("response.output_audio_transcript.done") < order.index(
        "conversation.item.input_audio_transcription.completed")
    await call.hang_up()
    await again.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    await relay.wait_idle()


async def test_resume_buffer_is_bounded(make_relay: RelayFactory) -> None:
    """Past RELAY_RESUME_BUFFER_EVENTS the oldest missed events are dropped and counted."""
    relay = await make_relay(resume_buffer_events=5)
    sid, fe, call, upstream = await relay.live_session()
    await fe.close()
    for i in range(12):
        await upstream.transcript_done(f"item_{i}", f"line {i}")
    await upstream.response_done()  # a marker that everything above was sent
    session = relay.server.registry.sessions[sid].session
    await wait_until(lambda: len(session.replay) and session.replay._missed[-1].type == "response.done")
    again = await relay.frontend(f"/logs/{sid}")
    resumed = await again.wait_for("session.resumed")
    assert resumed["missed"] == 5 and resumed["dropped"] == 8
    await call.hang_up()
    await relay.wait_idle()


async def test_no_resume_after_the_grace_window(relay: Relay) -> None:
    """A configured session with no call whose frontend does not return in time ends; a late
    frontend gets a fresh session, not the old one."""
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    await fe.send_json({"type": "job_config", "config": {"role": "Chef"}})
    await fe.wait_for("job_config.ack")
    await fe.close()
    await relay.wait_idle()  # the grace window (0.3 s in tests) passed
    assert relay.server.health()["endedByReason"] == {"abandoned": 1}
    # No call ever came, so the ID is still free (the call may yet arrive
    # with it): the late frontend starts a fresh session, with nothing stale.
    late = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    update = await upstream.wait_for("session.update")
    assert "Chef" not in update["session"]["instructions"]
    assert "session.resumed" not in late.types()
    await call.hang_up()
    await relay.wait_idle()


async def test_returning_to_a_finished_interview_is_told_it_ended(relay: Relay) -> None:
    """A frontend reconnecting after its interview ended hears how it ended, then a close."""
    sid, fe, call, upstream = await relay.live_session()
    await fe.close()  # the browser is away...
    await call.hang_up()  # ...when the caller hangs up
    await relay.wait_idle()
    back = await relay.frontend(f"/logs/{sid}")
    ended = await back.wait_for("call.status_changed")
    assert ended["status"] == "ended" and ended["reason"] == "caller_hung_up"
    code, _ = await back.wait_closed()
    assert code == 1000
    assert relay.server.registry.sessions == {}


async def test_resume_within_grace_keeps_the_queued_config(relay: Relay) -> None:
    """A refresh before the call arrives keeps the queued configuration for the grace window."""
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    await fe.send_json({"type": "job_config", "config": {"role": "Pilot"}})
    await fe.wait_for("job_config.ack")
    await fe.close()
    again = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    update = await upstream.wait_for("session.update")
    assert "Pilot" in update["session"]["instructions"]
    await again.wait_for("session.associated")
    await call.hang_up()
    await relay.wait_idle()


async def test_call_before_frontend_gets_the_backlog(relay: Relay) -> None:
    """Events from before any frontend joined (the greeting) reach the first frontend."""
    sid = str(uuid.uuid4())
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")  # the model speaks once configured
    await upstream.respond_with_audio(b"\xff" * 800, "Hello, shall we start?")
    await call.wait_for("media")
    fe = await relay.frontend(f"/logs/{sid}")
    greeting = await fe.wait_for("response.output_audio_transcript.done")
    assert greeting["transcript"] == "Hello, shall we start?"
    await call.hang_up()
    await relay.wait_idle()
