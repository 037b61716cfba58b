"""Tests for relay.messages.dialect: beta <-> GA translation."""

from __future__ import annotations

import copy

import pytest

from relay.messages.dialect import (
    BETA_SESSION_FIELDS,
    GA_SESSION_FIELDS,
    event_name_to_beta,
    event_to_beta,
    session_to_ga,
)

# --- session_to_ga ------------------------------------------------------------------


def test_beta_session_translated() -> None:
    """Every beta field with a GA home is moved there."""
    beta = {
        "modalities": ["text", "audio"],
        "instructions": "Be nice.",
        "voice": "alloy",
        "speed": 1.1,
        "input_audio_format": "g711_ulaw",
        "output_audio_format": "g711_alaw",
        "input_audio_transcription": {"model": "whisper-1"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 600},
        "input_audio_noise_reduction": {"type": "near_field"},
        "max_response_output_tokens": "inf",
        "tools": [{"type": "function", "name": "f"}],
        "tool_choice": "auto",
    }
    ga, dropped = session_to_ga(beta)
    assert dropped == []
    assert ga == {
        "output_modalities": ["audio"],
        "instructions": "Be nice.",
        "max_output_tokens": "inf",
        "tools": [{"type": "function", "name": "f"}],
        "tool_choice": "auto",
        "audio": {
            "input": {
                "format": {"type": "audio/pcmu"},
                "transcription": {"model": "whisper-1"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 600},
                "noise_reduction": {"type": "near_field"},
            },
            "output": {"voice": "alloy", "speed": 1.1, "format": {"type": "audio/pcma"}},
        },
    }


def test_pcm16_becomes_24khz_pcm() -> None:
    """Beta pcm16 maps to GA audio/pcm at 24 kHz."""
    ga, _ = session_to_ga({"input_audio_format": "pcm16"})
    assert ga == {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}}}


def test_ga_session_passes_through() -> None:
    """A GA session object comes out equal to what went in."""
    ga_in = {
        "type": "realtime",
        "instructions": "x",
        "output_modalities": ["text"],
        "audio": {"output": {"voice": "marin", "format": {"type": "audio/pcmu"}}},
        "tools": [],
        "tool_choice": "none",
        "max_output_tokens": 100,
        "tracing": "auto",
        "truncation": "auto",
        "prompt": None,
        "include": ["item.input_audio_transcription.logprobs"],
    }
    assert session_to_ga(ga_in) == (ga_in, [])


def test_ga_spelling_wins_in_mixed_sessions() -> None:
    """When a setting is given both ways the GA spelling wins, in any key order."""
    ga, dropped = session_to_ga(
        {
            "voice": "alloy",
            "audio": {"output": {"voice": "cedar"}},
            "output_modalities": ["text"],
            "modalities": ["audio"],
            "max_response_output_tokens": 10,
            "max_output_tokens": 20,
        }
    )
    assert dropped == []
    assert ga == {
        "audio": {"output": {"voice": "cedar"}},
        "output_modalities": ["text"],
        "max_output_tokens": 20,
    }


def test_mixed_session_merges_beta_into_ga_audio() -> None:
    """Beta audio settings fill the gaps of a partial GA audio object."""
    ga, _ = session_to_ga({"audio": {"input": {"format": {"type": "audio/pcmu"}}}, "voice": "sage"})
    assert ga == {"audio": {"input": {"format": {"type": "audio/pcmu"}}, "output": {"voice": "sage"}}}


def test_modalities_normalised_to_one() -> None:
    """GA takes exactly one output modality; audio wins, unusable values are dropped."""
    assert session_to_ga({"modalities": ["audio", "text"]})[0] == {"output_modalities": ["audio"]}
    assert session_to_ga({"modalities": ["text"]})[0] == {"output_modalities": ["text"]}
    assert session_to_ga({"output_modalities": ["text", "audio"]})[0] == {"output_modalities": ["audio"]}
    assert session_to_ga({"modalities": []}) == ({}, ["modalities"])
    assert session_to_ga({"modalities": "audio"}) == ({}, ["modalities"])
    assert session_to_ga({"output_modalities": ["video"]}) == ({}, ["output_modalities"])


def test_unknown_fields_are_dropped_and_reported() -> None:
    """Fields GA does not know are removed and named in dropped, in order."""
    ga, dropped = session_to_ga(
        {
            "temperature": 0.8,
            "instructions": "x",
            "model": "gpt-4o-realtime",
            "object": "realtime.session",
            "id": "sess_1",
            "conversation_mode": "x",
        }
    )
    assert ga == {"instructions": "x"}
    assert dropped == ["temperature", "model", "object", "id", "conversation_mode"]


def test_unknown_audio_format_is_dropped() -> None:
    """An audio format name that beta never had is dropped, not guessed."""
    assert session_to_ga({"output_audio_format": "mp3"}) == ({}, ["output_audio_format"])
    assert session_to_ga({"input_audio_format": None}) == ({}, ["input_audio_format"])


def test_null_beta_settings_are_kept() -> None:
    """null turn_detection or transcription (meaning "off") is carried over as null."""
    ga, _ = session_to_ga({"turn_detection": None, "input_audio_transcription": None})
    assert ga == {"audio": {"input": {"turn_detection": None, "transcription": None}}}


def test_session_input_not_mutated_or_shared() -> None:
    """The input session is untouched and the result does not alias it."""
    beta = {
        "turn_detection": {"type": "server_vad"},
        "audio": {"output": {"voice": "ash"}},
        "tools": [{"a": 1}],
    }
    before = copy.deepcopy(beta)
    ga, _ = session_to_ga(beta)
    ga["audio"]["input"]["turn_detection"]["type"] = "semantic_vad"
    ga["audio"]["output"]["voice"] = "echo"
    ga["tools"][0]["a"] = 2
    assert beta == before


def test_non_dict_session_raises() -> None:
    """A session that is not an object is a TypeError."""
    with pytest.raises(TypeError):
        session_to_ga(["voice"])  # type: ignore[arg-type]


def test_field_constants() -> None:
    """The allowed GA fields are exported for callers that filter, and disjoint from beta ones."""
    assert {"type", "instructions", "tools", "tool_choice", "output_modalities", "audio"} <= GA_SESSION_FIELDS
    assert "temperature" not in GA_SESSION_FIELDS
    assert not GA_SESSION_FIELDS & BETA_SESSION_FIELDS
    for name in BETA_SESSION_FIELDS:
        assert session_to_ga({name: None})[1] in ([], [name])


# --- events -------------------------------------------------------------------------

RENAMES = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}


def test_event_names_to_beta() -> None:
    """GA server event names map to their beta names; others are unchanged."""
    for ga_name, beta_name in RENAMES.items():
        assert event_name_to_beta(ga_name) == beta_name
    for same in ("session.created", "response.done", "input_audio_buffer.speech_started", "error"):
        assert event_name_to_beta(same) == same


def test_audio_delta_renamed_and_copied() -> None:
    """An audio delta gets the beta name in a new dict; the input is untouched."""
    event = {"type": "response.output_audio.delta", "event_id": "e", "delta": "AAAA", "item_id": "i"}
    out = event_to_beta(event)
    assert out == {"type": "response.audio.delta", "event_id": "e", "delta": "AAAA", "item_id": "i"}
    assert event["type"] == "response.output_audio.delta"


def test_content_part_types_translated() -> None:
    """output_audio/output_text parts become audio/text in content_part events."""
    for ga_type, beta_type in (("output_audio", "audio"), ("output_text", "text"), ("audio", "audio")):
        out = event_to_beta(
            {"type": "response.content_part.added", "part": {"type": ga_type, "transcript": ""}}
        )
        assert out == {"type": "response.content_part.added", "part": {"type": beta_type, "transcript": ""}}


def test_item_content_types_translated() -> None:
    """Item content is translated, input_* types are left alone, and the item event is renamed."""
    event = {
        "type": "conversation.item.added",
        "item": {
            "id": "item_1",
            "role": "user",
            "content": [
                {"type": "input_audio", "transcript": None},
                {"type": "input_text", "text": "hi"},
                {"type": "output_text", "text": "yo"},
            ],
        },
    }
    before = copy.deepcopy(event)
    out = event_to_beta(event)
    assert out is not None and out["type"] == "conversation.item.created"
    assert [part["type"] for part in out["item"]["content"]] == ["input_audio", "input_text", "text"]
    assert event == before


def test_response_done_output_translated() -> None:
    """The items inside response.done are translated too."""
    event = {
        "type": "response.done",
        "response": {
            "id": "resp_1",
            "output": [{"id": "item_1", "content": [{"type": "output_audio", "transcript": "hi"}]}],
        },
    }
    out = event_to_beta(event)
    assert out is not None
    assert out["response"]["output"][0]["content"][0] == {"type": "audio", "transcript": "hi"}
    assert event["response"]["output"][0]["content"][0]["type"] == "output_audio"


def test_function_call_item_passes() -> None:
    """Items without content (function calls) pass through unchanged."""
    event = {"type": "response.output_item.done", "item": {"type": "function_call", "name": "end_interview"}}
    assert event_to_beta(event) == event


def test_item_done_hidden_from_beta_clients() -> None:
    """conversation.item.done has no beta equivalent and is suppressed."""
    assert event_to_beta({"type": "conversation.item.done", "item": {"id": "item_1"}}) is None


def test_event_without_string_type_is_copied() -> None:
    """An event with no usable type is returned as an unchanged copy."""
    event = {"foo": 1}
    out = event_to_beta(event)
    assert out == event and out is not event
