"""Tests for relay.providers.local: the offline stand-in for the Realtime API."""

from __future__ import annotations

import base64
import math
from typing import Any

import orjson

from relay.messages.dialect import event_to_beta
from relay.providers.local import (
    DEFAULT_GREETING,
    LocalModel,
    linear_to_ulaw,
    ulaw_rms,
    ulaw_to_linear,
)

SILENCE = b"\xff" * 160  # u-law 0xFF decodes to 0
LOUD = bytes([0x00, 0x80]) * 80  # full-scale square wave


def frames(chunk: bytes, count: int) -> bytes:
    return chunk * count


def sine(ms: int, hz: float = 300.0, amplitude: int = 8000) -> bytes:
    return linear_to_ulaw(round(amplitude * math.sin(2 * math.pi * hz * i / 8000)) for i in range(ms * 8))


def send(model: LocalModel, event: dict[str, Any]) -> list[dict[str, Any]]:
    return [orjson.loads(text) for text in model.receive(orjson.dumps(event).decode())]


def append(model: LocalModel, audio: bytes, step: int = 160) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, len(audio), step):
        chunk = base64.b64encode(audio[start : start + step]).decode()
        out += send(model, {"type": "input_audio_buffer.append", "audio": chunk})
    return out


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def played(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )


def model(**kwargs: Any) -> LocalModel:
    return LocalModel(session_id_factory=lambda: "sess_test", **kwargs)


RESPONSE = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_audio_transcript.delta",
    "response.output_audio_transcript.done",
]
RESPONSE_END = [
    "response.output_audio.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


# --- u-law ----------------------------------------------------------------------------


def test_ulaw_known_values() -> None:
    """The codec matches the G.711 table at silence and at both full-scale ends."""
    assert ulaw_to_linear(b"\xff\x7f\x00\x80") == [0, 0, -32124, 32124]
    assert linear_to_ulaw([0, -32124, 32124, -40000, 40000]) == b"\xff\x00\x80\x00\x80"


def test_ulaw_round_trip() -> None:
    """Encoding then decoding stays within u-law's quantisation step, sign included."""
    for sample in (-32768, -20000, -1000, -100, -5, 0, 5, 100, 1000, 20000, 32767):
        (decoded,) = ulaw_to_linear(linear_to_ulaw([sample]))
        assert abs(decoded - max(-32124, min(32124, sample))) <= max(8, abs(sample) // 16)
        assert decoded == 0 or (decoded > 0) == (sample > 0)
    every_byte = bytes(range(256))
    # 0x7F and 0xFF are both zero; every other code word survives a round trip.
    assert linear_to_ulaw(ulaw_to_linear(every_byte)).replace(b"\x7f", b"\xff") == every_byte.replace(
        b"\x7f", b"\xff"
    )


def test_ulaw_rms() -> None:
    """RMS is zero for silence and full scale for the square wave."""
    assert ulaw_rms(SILENCE) == 0.0
    assert ulaw_rms(b"") == 0.0
    assert ulaw_rms(LOUD) == 32124.0


# --- session --------------------------------------------------------------------------


def test_open_sends_session_created() -> None:
    """Opening yields one GA session.created for a realtime pcmu session."""
    (created,) = [orjson.loads(text) for text in model().open()]
    assert created["type"] == "session.created" and created["event_id"].startswith("event_")
    session = created["session"]
    assert (
        session["type"] == "realtime"
        and session["id"] == "sess_test"
        and session["object"] == "realtime.session"
    )
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert session["output_modalities"] == ["audio"]


def test_session_update_echoes_effective_session() -> None:
    """session.updated carries the defaults merged with the update."""
    m = model()
    (updated,) = send(
        m,
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": "Interview me.",
                "audio": {
                    "output": {"voice": "cedar"},
                    "input": {"turn_detection": {"silence_duration_ms": 700}},
                },
                "tools": [{"type": "function", "name": "end_interview"}],
            },
        },
    )
    assert updated["type"] == "session.updated"
    session = updated["session"]
    assert session["instructions"] == "Interview me."
    assert session["audio"]["output"] == {"format": {"type": "audio/pcmu"}, "voice": "cedar", "speed": 1.0}
    assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 700
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["tools"] == [{"type": "function", "name": "end_interview"}]
    assert session["id"] == "sess_test"


def test_session_update_refuses_beta_fields() -> None:
    """A beta field in session.update is an unknown_parameter error, like the GA API."""
    (error,) = send(model(), {"type": "session.update", "event_id": "c1", "session": {"voice": "alloy"}})
    assert error["type"] == "error"
    assert error["error"]["code"] == "unknown_parameter"
    assert error["error"]["param"] == "session.voice"
    assert error["error"]["event_id"] == "c1"


def test_session_update_refuses_non_pcmu() -> None:
    """The local model only plays u-law, so another audio format is refused."""
    (error,) = send(
        model(),
        {
            "type": "session.update",
            "session": {"audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}}}},
        },
    )
    assert error["error"]["param"] == "session.audio.output.format"


def test_voice_locked_after_audio() -> None:
    """Changing the voice after the model has spoken is refused; the same voice is fine."""
    m = model()
    send(m, {"type": "response.create"})
    (error,) = send(m, {"type": "session.update", "session": {"audio": {"output": {"voice": "ash"}}}})
    assert error["error"]["code"] == "cannot_update_voice"
    (ok,) = send(m, {"type": "session.update", "session": {"audio": {"output": {"voice": "marin"}}}})
    assert ok["type"] == "session.updated"


# --- errors ---------------------------------------------------------------------------


def test_bad_json_is_an_error_event() -> None:
    """Malformed JSON produces one GA invalid_request_error."""
    (error,) = [orjson.loads(text) for text in model().receive("{not json")]
    assert error["type"] == "error" and error["event_id"].startswith("event_")
    assert error["error"] == {
        "type": "invalid_request_error",
        "code": "invalid_json",
        "message": "The event is not valid JSON.",
        "param": None,
        "event_id": None,
    }


def test_unknown_event_type_is_an_error() -> None:
    """An unknown client event type is refused, echoing the client's event_id."""
    (error,) = send(model(), {"type": "response.explode", "event_id": "evt_client"})
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["code"] == "invalid_value"
    assert error["error"]["event_id"] == "evt_client"


def test_non_object_and_typeless_events_are_errors() -> None:
    """JSON that is not an event object, or lacks a type, is refused."""
    m = model()
    assert [orjson.loads(t)["type"] for t in m.receive("[1, 2]")] == ["error"]
    (error,) = send(m, {"audio": "AAAA"})
    assert error["error"]["code"] == "missing_required_parameter"


def test_bad_base64_is_an_error() -> None:
    """Audio that is not base64 is refused without disturbing the buffer."""
    (error,) = send(model(), {"type": "input_audio_buffer.append", "audio": "!!notbase64!!"})
    assert error["error"]["param"] == "audio"


def test_response_cancel_with_nothing_active() -> None:
    """Responses finish synchronously, so a cancel gets the API's not-active error."""
    (error,) = send(model(), {"type": "response.cancel"})
    assert error["error"]["code"] == "response_cancel_not_active"


# --- voice activity and turns -----------------------------------------------------------


def test_full_turn_event_sequence_and_playback() -> None:
    """Speech then silence yields the GA turn events and a response playing the utterance back."""
    m = model()
    audio = frames(SILENCE, 25) + frames(LOUD, 70) + frames(SILENCE, 30)
    events = append(m, audio)
    n_chunks = math.ceil((1400 + 300 + 500) / 100)  # speech + prefix padding + closing silence
    assert types(events) == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.completed",
        *RESPONSE,
        *["response.output_audio.delta"] * n_chunks,
        *RESPONSE_END,
    ]
    started, stopped, committed, added, _, transcribed = events[:6]
    # Onset at 500 ms, padded back 300 ms; stop after 500 ms of silence following 1.9 s.
    assert started["audio_start_ms"] == 200
    assert stopped["audio_end_ms"] == 2400
    item_id = started["item_id"]
    assert item_id.startswith("item_")
    assert (
        stopped["item_id"] == committed["item_id"] == added["item"]["id"] == transcribed["item_id"] == item_id
    )
    assert added["item"]["role"] == "user" and added["item"]["content"][0]["type"] == "input_audio"
    assert transcribed["transcript"] == "(1.4 seconds of speech)" and transcribed["content_index"] == 0
    assert played(events) == audio[200 * 8 : 2400 * 8]
    deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
    assert all(len(base64.b64decode(e["delta"])) == 800 for e in deltas[:-1])
    done = events[-1]
    assert done["response"]["status"] == "completed" and done["response"]["id"].startswith("resp_")
    assert done["response"]["output"][0]["content"] == [
        {"type": "output_audio", "transcript": "I heard 1.4 seconds from you. Tell me more."}
    ]


def test_response_events_share_ids() -> None:
    """Every event of one response names the same response, item and indexes."""
    events = append(model(), frames(LOUD, 10) + frames(SILENCE, 25))
    response_id = next(e for e in events if e["type"] == "response.created")["response"]["id"]
    assistant = next(e for e in events if e["type"] == "response.output_item.added")["item"]
    for event in events:
        if event["type"].startswith("response.") and "item_id" in event:
            assert (
                event["response_id"],
                event["item_id"],
                event["output_index"],
                event["content_index"],
            ) == (
                response_id,
                assistant["id"],
                0,
                0,
            )
    added = [e for e in events if e["type"] == "conversation.item.added"]
    assert added[1]["previous_item_id"] == added[0]["item"]["id"]
    assert len({e["event_id"] for e in events}) == len(events)


def test_sine_speech_detected_in_odd_chunks() -> None:
    """A sine-wave utterance sent in chunks that straddle frames still gives one turn."""
    audio = frames(SILENCE, 10) + sine(800) + frames(SILENCE, 30)
    events = append(model(), audio, step=333)
    assert types(events).count("input_audio_buffer.speech_started") == 1
    assert types(events).count("response.done") == 1
    start = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")["audio_start_ms"]
    end = next(e for e in events if e["type"] == "input_audio_buffer.speech_stopped")["audio_end_ms"]
    assert played(events) == audio[start * 8 : end * 8]


def test_quiet_noise_and_short_blips_are_not_speech() -> None:
    """Audio below the threshold, or loud for less than 60 ms, starts no turn."""
    m = model()
    quiet = sine(2000, amplitude=300)
    blips = (frames(LOUD, 2) + frames(SILENCE, 5)) * 20
    assert append(m, quiet + blips) == []


def test_thresholds_are_constructor_args() -> None:
    """A lower threshold and shorter silence change when turns start and end."""
    m = model(speech_threshold_rms=100.0, silence_end_ms=200, prefix_padding_ms=0)
    events = append(m, sine(400, amplitude=300) + frames(SILENCE, 10))
    started, stopped = events[0], events[1]
    assert (started["audio_start_ms"], stopped["audio_end_ms"]) == (0, 600)


def test_utterance_audio_is_capped() -> None:
    """A turn longer than max_utterance_ms plays back only its first part."""
    m = model(max_utterance_ms=1000, prefix_padding_ms=0)
    audio = frames(LOUD, 100) + frames(SILENCE, 25)
    events = append(m, audio)
    assert played(events) == audio[: 1000 * 8]
    transcribed = next(e for e in events if e["type"].endswith("transcription.completed"))
    assert transcribed["transcript"] == "(2.0 seconds of speech)"


def test_two_turns_in_a_row() -> None:
    """After one turn the detector is ready for the next, with fresh item ids."""
    m = model()
    first = append(m, frames(LOUD, 10) + frames(SILENCE, 25))
    second = append(m, frames(LOUD, 10) + frames(SILENCE, 25))
    assert types(first) == types(second)
    assert first[0]["item_id"] != second[0]["item_id"]
    # The first turn ended at 700 ms; no quiet audio precedes the second one to pad it.
    assert second[0]["audio_start_ms"] == 700


def test_create_response_false_waits_for_response_create() -> None:
    """Without create_response a turn is committed only; response.create then plays it back."""
    m = model()
    send(
        m,
        {
            "type": "session.update",
            "session": {"audio": {"input": {"turn_detection": {"create_response": False}}}},
        },
    )
    audio = frames(LOUD, 20) + frames(SILENCE, 25)
    events = append(m, audio)
    assert "response.created" not in types(events)
    reply = send(m, {"type": "response.create"})
    assert played(reply) == audio
    assert reply[4]["delta"] == "I heard 0.4 seconds from you. Tell me more."


def test_transcription_off_means_no_transcript_event() -> None:
    """With transcription set to null no transcription event is sent."""
    m = model()
    send(m, {"type": "session.update", "session": {"audio": {"input": {"transcription": None}}}})
    events = append(m, frames(LOUD, 10) + frames(SILENCE, 25))
    assert not [t for t in types(events) if "transcription" in t]


def test_clear_abandons_turn_in_progress() -> None:
    """input_audio_buffer.clear drops a started turn: no stop, no response."""
    m = model()
    assert types(append(m, frames(LOUD, 10))) == ["input_audio_buffer.speech_started"]
    assert types(send(m, {"type": "input_audio_buffer.clear"})) == ["input_audio_buffer.cleared"]
    assert append(m, frames(SILENCE, 50)) == []


# --- manual turns ---------------------------------------------------------------------


def test_manual_commit_without_vad() -> None:
    """With turn detection off, commit makes a user item and response.create echoes it."""
    m = model()
    send(m, {"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
    audio = frames(LOUD, 10) + frames(SILENCE, 10)
    assert append(m, audio) == []
    events = send(m, {"type": "input_audio_buffer.commit"})
    assert types(events) == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert played(send(m, {"type": "response.create"})) == audio
    # The echo is consumed: the next response.create greets.
    assert send(m, {"type": "response.create"})[4]["delta"] == DEFAULT_GREETING


def test_commit_of_too_little_audio_is_an_error() -> None:
    """Committing under 100 ms of audio gets the API's commit_empty error."""
    m = model()
    send(m, {"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
    append(m, frames(LOUD, 4))
    (error,) = send(m, {"type": "input_audio_buffer.commit"})
    assert error["error"]["code"] == "input_audio_buffer_commit_empty"


def test_commit_during_vad_speech_ends_the_turn() -> None:
    """A manual commit mid-turn commits the turn under its announced item id."""
    m = model()
    started = append(m, frames(LOUD, 10))[0]
    events = send(m, {"type": "input_audio_buffer.commit"})
    assert events[0] == {**events[0], "type": "input_audio_buffer.committed", "item_id": started["item_id"]}
    assert append(m, frames(SILENCE, 50)) == []


# --- responses and conversation items ---------------------------------------------------


def test_response_create_greets_with_a_tone() -> None:
    """response.create with nothing to answer speaks the greeting over 300 ms of soft tone."""
    m = model(greeting="Hi there.")
    events = send(m, {"type": "response.create", "response": {"instructions": "Greet the candidate."}})
    assert types(events) == [*RESPONSE, *["response.output_audio.delta"] * 3, *RESPONSE_END]
    assert events[4]["delta"] == "Hi there." and events[5]["transcript"] == "Hi there."
    assert events[3]["part"] == {"type": "output_audio", "transcript": ""}
    audio = played(events)
    assert len(audio) == 300 * 8
    assert 500 < ulaw_rms(audio) < 3000


def test_truncate_assistant_audio() -> None:
    """Truncating a played item reports conversation.item.truncated."""
    m = model()
    item_id = send(m, {"type": "response.create"})[1]["item"]["id"]
    (truncated,) = send(
        m, {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 120}
    )
    assert truncated["type"] == "conversation.item.truncated"
    assert (truncated["item_id"], truncated["content_index"], truncated["audio_end_ms"]) == (item_id, 0, 120)
    (error,) = send(
        m, {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 200}
    )
    assert error["error"]["param"] == "audio_end_ms"


def test_truncate_unknown_item_is_an_error() -> None:
    """Truncating an item that is not assistant audio is refused."""
    (error,) = send(
        model(),
        {"type": "conversation.item.truncate", "item_id": "item_x", "content_index": 0, "audio_end_ms": 0},
    )
    assert error["type"] == "error" and error["error"]["param"] == "item_id"


def test_item_create_function_call_output() -> None:
    """A function_call_output item is added and done, after the previous item."""
    m = model()
    previous = send(m, {"type": "response.create"})[1]["item"]["id"]
    item = {"type": "function_call_output", "call_id": "call_1", "output": '{"ok":true}'}
    added, done = send(m, {"type": "conversation.item.create", "item": item})
    assert types([added, done]) == ["conversation.item.added", "conversation.item.done"]
    assert added["previous_item_id"] == previous
    assert added["item"]["id"].startswith("item_") and added["item"]["call_id"] == "call_1"
    assert added["item"]["type"] == "function_call_output" and done["item"] == added["item"]


def test_item_create_refuses_bad_items() -> None:
    """Items of unknown type or with a duplicate id are refused."""
    m = model()
    for kind in ("banana", ["message"], {"message": 1}):
        (error,) = send(m, {"type": "conversation.item.create", "item": {"type": kind}})
        assert error["error"]["param"] == "item.type"
    send(
        m,
        {
            "type": "conversation.item.create",
            "item": {"id": "item_a", "type": "message", "role": "user", "content": []},
        },
    )
    (error,) = send(
        m,
        {
            "type": "conversation.item.create",
            "item": {"id": "item_a", "type": "message", "role": "user", "content": []},
        },
    )
    assert error["error"]["param"] == "item.id"


def test_events_translate_cleanly_to_beta() -> None:
    """Every local-model event has a beta form with no GA-only names or content types left."""
    m = model()
    events = append(m, frames(LOUD, 10) + frames(SILENCE, 25)) + send(m, {"type": "response.create"})
    beta = [b for b in (event_to_beta(e) for e in events) if b is not None]
    text = orjson.dumps(beta).decode()
    assert "output_audio" not in text and "conversation.item.added" not in text
    assert "conversation.item.done" not in text
    assert "response.audio.delta" in text and "conversation.item.created" in text
