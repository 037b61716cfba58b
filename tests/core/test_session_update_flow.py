"""A frontend's session.update against a model that behaves as the real API does.

Turn detection whose type changes replaces relay's (it is never merged into a
shape GA does not have); a refused first update falls back at once to relay's
own configuration, so the phone audio stays μ-law; a voice change after the
model has spoken is reported in the ack. The fixtures check every update relay
sends against the openai package's types.
"""

from __future__ import annotations

import uuid
from typing import Any

from relay_sim.frontend import SimulatedFrontend
from relay_sim.realtime_server import RealtimeConnection
from relay_sim.twilio_call import SimulatedCall

from relay.core.configuration import VOICE_LOCKED
from relay.core.merge import merge_session
from tests.conftest import Relay, RelayFactory

PCMU = {"type": "audio/pcmu"}


async def start(relay: Relay, *updates: dict[str, Any], wait: bool = True,
                ) -> tuple[SimulatedFrontend, SimulatedCall, RealtimeConnection]:
    """A call configured by ``updates``; ``wait=False`` lets the test answer the model's updates."""
    relay.model.auto_session_updated = wait
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    for session in updates:
        await fe.send_json({"type": "session.update", "session": session})
        await fe.wait_for("job_config.ack", lambda m: m["status"] == "queued")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    if wait:
        await upstream.wait_for("session.update")
    return fe, call, upstream


# -- turn detection: a changed type replaces ---------------------------------------------------


def test_merge_replaces_an_object_whose_type_changes() -> None:
    """semantic_vad over server_vad keeps none of server_vad's settings; the same type merges."""
    base = {"turn_detection": {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 500}}
    assert merge_session(base, {"turn_detection": {"type": "semantic_vad", "eagerness": "low"}}) == {
        "turn_detection": {"type": "semantic_vad", "eagerness": "low"}}
    assert merge_session(base, {"turn_detection": {"type": "server_vad", "threshold": 0.7}}) == {
        "turn_detection": {"type": "server_vad", "threshold": 0.7, "silence_duration_ms": 500}}


async def test_a_browsers_semantic_vad_reaches_the_model_as_sent(relay: Relay) -> None:
    """A beta turn_detection of type semantic_vad replaces relay's server_vad, with nothing of it left."""
    fe, call, upstream = await start(relay, {"turn_detection": {"type": "semantic_vad",
                                                                "eagerness": "high"}})
    update = next(e for e in upstream.received if e["type"] == "session.update")
    assert update["session"]["audio"]["input"]["turn_detection"] == {"type": "semantic_vad",
                                                                     "eagerness": "high"}
    await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
    # Back to server_vad during the call: relay's server_vad is not resurrected either.
    await fe.send_json({"type": "session.update", "session": {"audio": {"input": {
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 800}}}}})
    live = await upstream.wait_for("session.update")
    turn_detection = live["session"]["audio"]["input"]["turn_detection"]
    assert turn_detection["type"] == "server_vad" and "eagerness" not in turn_detection
    assert turn_detection["silence_duration_ms"] == 800  # over relay's server_vad, same type: merged
    assert upstream.session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
    await call.hang_up()
    await relay.wait_idle()


# -- a refused first update falls back to relay's own -----------------------------------------


async def test_a_refused_first_update_falls_back_to_relays_own_configuration(relay: Relay) -> None:
    """The model refuses the browser's overrides: relay's own configuration follows at once, μ-law both ways."""
    relay.model.refusals_expected = True  # type: ignore[attr-defined]
    fe, call, upstream = await start(
        relay, {"instructions": "Browser prompt.", "audio": {"output": {"voice": "ash"}}}, wait=False)
    first = await upstream.wait_for("session.update")
    # As the real API may do with any field it does not like: refuse the whole update.
    await upstream.send_error("invalid_value", "Invalid value for voice.",
                              param="session.audio.output.voice", event_id=first["event_id"])
    fallback = await upstream.wait_for("session.update")
    session = fallback["session"]
    assert session["audio"]["input"]["format"] == session["audio"]["output"]["format"] == PCMU
    assert session["instructions"] != "Browser prompt."  # relay's own prompt
    assert session["audio"]["output"]["voice"] == "marin"  # RELAY_VOICE, not the browser's
    assert fallback["event_id"] != first["event_id"]
    await upstream.send_event({"type": "session.updated", "session": session})
    error = await fe.wait_for("error", lambda m: m.get("source") == "relay")
    assert error["code"] == "config_rejected"
    assert "session.audio.output.voice" in error["message"]
    ack = await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
    assert {note["field"] for note in ack["notApplied"]} == {"instructions", "audio.output.voice"}
    assert all("refused by the model" in note["reason"] for note in ack["notApplied"])
    await call.hang_up()
    await relay.wait_idle()


async def test_a_refused_fallback_falls_back_to_the_minimum(relay: Relay) -> None:
    """If relay's own configuration is refused too, the phone's formats still go out, alone with the prompt."""
    relay.model.refusals_expected = True  # type: ignore[attr-defined]
    fe, call, upstream = await start(relay, {"instructions": "Browser prompt."}, wait=False)
    for _ in range(2):
        refused = await upstream.wait_for("session.update")
        await upstream.send_error("invalid_value", "No.", event_id=refused["event_id"])
    minimal = (await upstream.wait_for("session.update"))["session"]
    assert minimal["audio"] == {"input": {"format": PCMU}, "output": {"format": PCMU}}
    assert set(minimal) == {"type", "instructions", "audio", "tools"}
    await upstream.send_error("invalid_value", "Still no.", event_id=(
        next(e for e in reversed(upstream.received) if e["type"] == "session.update")["event_id"]))
    await fe.wait_for("error", lambda m: m.get("source") == "model" and "Still" in m["error"]["message"])
    assert [e["type"] for e in upstream.received].count("session.update") == 3  # no loop
    await call.hang_up()
    await relay.wait_idle()


async def test_a_refused_live_update_keeps_what_the_model_accepted(relay: Relay) -> None:
    """A refused update during the call is reported; the next update carries no trace of it."""
    relay.model.refusals_expected = True  # type: ignore[attr-defined]
    fe, call, upstream = await start(relay)
    upstream._auto_session_updated = False  # the test answers from here on
    await fe.send_json({"type": "session.update", "session": {"audio": {"input": {
        "noise_reduction": {"type": "far_field"}}}}})
    refused = await upstream.wait_for("session.update")
    await upstream.send_error("invalid_value", "Not here.", param="session.audio.input.noise_reduction",
                              event_id=refused["event_id"])
    error = await fe.wait_for("error", lambda m: m.get("code") == "config_rejected")
    assert "noise_reduction" in error["message"]
    await fe.send_json({"type": "session.update", "session": {"instructions": "Be brief."}})
    later = (await upstream.wait_for("session.update"))["session"]
    assert later["instructions"] == "Be brief."
    assert "noise_reduction" not in later["audio"]["input"]
    await upstream.send_event({"type": "session.updated", "session": later})
    await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
    await call.hang_up()
    await relay.wait_idle()


# -- the voice after the model has spoken --------------------------------------------------------


async def test_a_voice_change_after_the_model_spoke_is_reported_not_applied(relay: Relay) -> None:
    """The ack says the voice was not applied and why; the update leaves the voice out, so the API accepts it."""
    fe, call, upstream = await start(relay, {"audio": {"output": {"voice": "ash"}}})
    await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
    await upstream.respond_with_audio(b"\xff" * 800, "Hello.")
    await call.wait_for("media")
    await fe.send_json({"type": "session.update", "session": {"voice": "coral", "instructions": "Hi."}})
    update = (await upstream.wait_for("session.update"))["session"]
    assert "voice" not in update["audio"]["output"] and update["instructions"] == "Hi."
    ack = await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
    assert ack["notApplied"] == [{"field": "voice", "reason": VOICE_LOCKED}]
    await fe.send_json({"type": "job_config", "config": {"role": "Chef", "voice": "ash"}})
    same = await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
    assert "notApplied" not in same  # the voice in force: nothing refused
    await fe.send_json({"type": "job_config", "config": {"role": "Chef", "voice": "sage"}})
    other = await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
    assert other["notApplied"][0]["field"] == "voice"
    assert not upstream.refused
    await call.hang_up()
    await relay.wait_idle()


# -- GA settings a phone deployment wants --------------------------------------------------------


async def test_phone_settings_reach_the_model(make_relay: RelayFactory) -> None:
    """Idle timeout, noise reduction and the transcription language go into relay's session.update."""
    relay = await make_relay(vad_idle_timeout_ms=8000, noise_reduction="near_field",
                             transcription_language="de", transcription_model="gpt-4o-transcribe")
    fe, call, upstream = await start(relay)
    audio_in = next(e for e in upstream.received if e["type"] == "session.update")["session"]["audio"]["input"]
    assert audio_in["turn_detection"]["type"] == "server_vad"
    assert audio_in["turn_detection"]["idle_timeout_ms"] == 8000
    assert audio_in["noise_reduction"] == {"type": "near_field"}
    assert audio_in["transcription"] == {"model": "gpt-4o-transcribe", "language": "de"}
    # idle_timeout_ms exists only on server_vad: a frontend's semantic_vad does not inherit it.
    await fe.send_json({"type": "session.update", "session": {"turn_detection": {"type": "semantic_vad"}}})
    live = (await upstream.wait_for("session.update"))["session"]["audio"]["input"]
    assert live["turn_detection"] == {"type": "semantic_vad"}
    await call.hang_up()
    await relay.wait_idle()


async def test_phone_settings_are_off_by_default(relay: Relay) -> None:
    """By default relay sends no idle timeout, no noise reduction and no transcription language."""
    fe, call, upstream = await start(relay)
    audio_in = next(e for e in upstream.received if e["type"] == "session.update")["session"]["audio"]["input"]
    assert "idle_timeout_ms" not in audio_in["turn_detection"] and "noise_reduction" not in audio_in
    assert set(audio_in["transcription"]) == {"model"}
    await call.hang_up()
    await relay.wait_idle()


async def test_a_voice_change_racing_the_models_first_words_is_retried_without_it(relay: Relay) -> None:
    """The model spoke before relay knew: cannot_update_voice, so the update goes again without the voice."""
    relay.model.refusals_expected = True  # type: ignore[attr-defined]
    fe, call, upstream = await start(relay)
    upstream.spoke = True  # its audio is on the way; relay has not seen any yet
    await fe.send_json({"type": "session.update", "session": {"voice": "coral", "instructions": "Hi."}})
    first = await upstream.wait_for("session.update")
    assert first["session"]["audio"]["output"]["voice"] == "coral"
    retry = await upstream.wait_for("session.update")
    assert "voice" not in retry["session"]["audio"]["output"]
    assert retry["session"]["instructions"] == "Hi."
    ack = await fe.wait_for("job_config.ack", lambda m: m["status"] == "applied")
    assert ack["notApplied"] == [{"field": "voice", "reason": VOICE_LOCKED}]
    assert [e["type"] for e in upstream.refused] == ["session.update"]
    assert not [m for m in fe.received if m.get("code") == "config_rejected"]
    await call.hang_up()
    await relay.wait_idle()
