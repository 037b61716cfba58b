"""Job configuration end to end: queued before the model, applied after, live updates, beta shapes."""

from __future__ import annotations

import uuid

from relay_sim.realtime_server import RealtimeServer
from structlog.testing import capture_logs

from relay.logs import Ev
from tests.conftest import Relay, RelayFactory

CONFIG = {
    "role": "Backend Engineer",
    "company": "Acme",
    "jobDescription": "Build APIs in Python.",
    "interviewStyle": "technical",
    "voice": "cedar",
}


async def test_config_before_call_is_queued_then_applied(relay: Relay) -> None:
    """A config sent before the call is acked queued, sent to the model at open, then acked applied."""
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    await fe.send_json({"type": "job_config", "config": CONFIG})
    ack = await fe.wait_for("job_config.ack")
    assert ack == {"type": "job_config.ack", "sessionId": sid, "status": "queued",
                   "used": list(CONFIG), "ignored": []}
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    update = await upstream.wait_for("session.update")
    session = update["session"]
    assert session["type"] == "realtime"
    assert "Backend Engineer" in session["instructions"] and "Acme" in session["instructions"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["voice"] == "cedar"
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["audio"]["input"]["transcription"]["model"]
    assert [tool["name"] for tool in session["tools"]] == ["end_interview", "get_interview_time"]
    applied = await fe.wait_for("job_config.ack")
    assert applied == {**ack, "status": "applied"}
    await call.hang_up()
    await relay.wait_idle()


async def test_config_while_model_connects_is_applied(make_relay: RelayFactory,
                                                      model: RealtimeServer) -> None:
    """A config sent after the call started but before the model opened still applies."""
    model.refuse_first = 2
    relay = await make_relay()
    sid = str(uuid.uuid4())
    call = await relay.call(f"/call/{sid}")
    await call.start()
    fe = await relay.frontend(f"/logs/{sid}")
    await fe.wait_for("session.associated")
    await fe.send_json({"type": "job_config", "config": {"role": "Nurse"}})
    first = await fe.wait_for("job_config.ack")
    upstream = await model.next_connection()
    updates = [await upstream.wait_for("session.update")]
    if first["status"] == "queued":
        await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
    else:  # the model opened before the config arrived: a live update
        updates.append(await upstream.wait_for("session.update"))
    assert "Nurse" in updates[-1]["session"]["instructions"]
    await call.hang_up()
    await relay.wait_idle()


async def test_live_reconfiguration_updates_the_model(relay: Relay) -> None:
    """A new config during a live call updates the model and logs the update line."""
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    # The model has spoken: its voice can no longer change.
    await upstream.respond_with_audio(b"\xff" * 800, "Hello!")
    await call.wait_for("media")
    with capture_logs() as logs:
        await fe.send_json({"type": "job_config", "config": {**CONFIG, "role": "Data Scientist"}})
        update = await upstream.wait_for("session.update")
        await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
    assert "Data Scientist" in update["session"]["instructions"]
    assert "voice" not in update["session"]["audio"].get("output", {})
    events = [entry["event"] for entry in logs]
    assert Ev.JOB_CONFIG_RECEIVED in events and Ev.JOB_CONFIG_LIVE_UPDATE in events
    await call.hang_up()
    await relay.wait_idle()


async def test_reference_demo_session_update_is_translated(relay: Relay) -> None:
    """The reference demo's beta-shaped session.update reaches the model in GA shape."""
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    await fe.send_json({"type": "session.update", "session": {
        "instructions": "You are a friendly interviewer.",
        "voice": "ash",
        "input_audio_transcription": {"model": "whisper-1"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 650},
        "modalities": ["text", "audio"],
        "input_audio_format": "pcm16",
    }})
    await fe.wait_for("job_config.ack", lambda m: m["status"] == "queued")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    session = (await upstream.wait_for("session.update"))["session"]
    assert session["instructions"] == "You are a friendly interviewer."
    assert session["audio"]["output"]["voice"] == "ash"
    assert session["audio"]["input"]["transcription"] == {"model": "whisper-1"}
    assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 650
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}  # phone audio wins
    assert session["output_modalities"] == ["audio"]
    for beta_field in ("voice", "modalities", "input_audio_format",
                       "turn_detection", "input_audio_transcription"):
        assert beta_field not in session
    await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
    await call.hang_up()
    await relay.wait_idle()


async def test_invalid_config_is_refused_and_session_carries_on(relay: Relay) -> None:
    """A bad job_config gets an error naming the problem; a good one after it still works."""
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    with capture_logs() as logs:
        await fe.send_json({"type": "job_config", "config": {"role": 42}})
        err = await fe.wait_for("error")
        assert err["code"] == "invalid_job_config" and "role" in err["message"]
        await fe.send_json({"type": "job_config", "config": {"role": "Chef", "notes": "n" * 2001}})
        err = await fe.wait_for("error")
        assert "notes" in err["message"]
        await fe.send_json({"type": "job_config", "config": {"role": "Chef"}})
        assert (await fe.wait_for("job_config.ack"))["status"] == "queued"
    # Every receipt is logged, the refused ones too, before anything else is decided.
    received = [e for e in logs if e["event"] == Ev.JOB_CONFIG_RECEIVED]
    assert [e.get("refused", False) for e in received] == [True, True, False]
    assert all(e["sessionId"] == sid for e in received)
    await fe.send_json({"type": "session.end"})
    await fe.wait_closed()
    await relay.wait_idle()


async def test_beta_dialect_frontend_sees_beta_event_names(relay: Relay) -> None:
    """A ?dialect=beta frontend receives model events under their beta names."""
    sid = str(uuid.uuid4())
    beta = await relay.frontend(f"/logs/{sid}?dialect=beta")
    ga = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")  # the model speaks once configured
    await upstream.respond_with_audio(b"\xff" * 1600, "Tell me about yourself.")
    transcript = await beta.wait_for("response.audio_transcript.done")
    assert transcript["transcript"] == "Tell me about yourself."
    await ga.wait_for("response.output_audio_transcript.done")
    assert "response.output_audio.delta" not in ga.types()  # audio only when asked for
    assert "response.audio.delta" not in beta.types()
    assert not [t for t in beta.types() if t and t.startswith("response.output_audio")]
    await call.hang_up()
    await relay.wait_idle()


async def test_audio_for_frontends_only_when_asked(relay: Relay) -> None:
    """A frontend connecting with ?audio=1 also receives the model's audio deltas."""
    sid = str(uuid.uuid4())
    listener = await relay.frontend(f"/logs/{sid}?audio=1")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")  # the model speaks once configured
    await upstream.respond_with_audio(b"\xff" * 800, "Hi")
    delta = await listener.wait_for("response.output_audio.delta")
    assert delta["delta"]
    await call.hang_up()
    await relay.wait_idle()


async def test_an_apps_own_job_object_reaches_the_model(relay: Relay) -> None:
    """A job object as an app stores it: synonyms and details reach the prompt; the ack says what was used."""
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    job = {"id": "job_8f2", "jobTitle": "Site Reliability Engineer", "companyName": "Initech",
           "description": "Keep the payments platform up.", "requirements": ["Linux", "Go"],
           "seniority": "Senior", "location": {"city": "Austin"}, "createdAt": "2025-11-02"}
    await fe.send_json({"type": "job_config", "config": job})
    ack = await fe.wait_for("job_config.ack")
    assert ack["status"] == "queued"
    assert ack["used"] == ["jobTitle", "companyName", "description", "requirements", "seniority"]
    assert ack["ignored"] == ["id", "location", "createdAt"]
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    instructions = (await upstream.wait_for("session.update"))["session"]["instructions"]
    for text in ("Site Reliability Engineer", "Initech", "Keep the payments platform up.",
                 "requirements: Linux; Go", "seniority: Senior"):
        assert text in instructions
    assert "job_8f2" not in instructions and "Austin" not in instructions
    await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
    await call.hang_up()
    await relay.wait_idle()
