"""What a frontend may set in the model's session: a whitelist, a size cap, a depth limit.

Unit tests for relay.messages.overrides and relay.messages.depth, then the
same refusals over real sockets: nothing refused ever reaches the model.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from relay.core.configuration import MAX_OVERRIDES_BYTES, Configuration
from relay.errors import MalformedMessage
from relay.messages import frontend as fmsg
from relay.messages import twilio
from relay.messages.depth import MAX_FRONTEND_DEPTH, MAX_TWILIO_DEPTH, depth_exceeds
from tests.conftest import Relay
from tests.ga_types import check_client_event

FUNCTION = {"type": "function", "name": "lookup_weather", "description": "Weather.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def vetted(session: dict[str, Any]) -> dict[str, Any]:
    msg = fmsg.parse_message(orjson.dumps({"type": "session.update", "session": session}).decode())
    assert isinstance(msg, fmsg.SessionUpdateMessage)
    return msg.session


def refusal(session: dict[str, Any]) -> MalformedMessage:
    with pytest.raises(MalformedMessage) as info:
        vetted(session)
    return info.value


def deep_text(depth: int) -> str:
    """A JSON array nested ``depth`` levels (orjson would refuse to write one this deep)."""
    return "[" * depth + '"x"' + "]" * depth


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


# -- the whitelist ------------------------------------------------------------------------------


def test_every_whitelisted_field_passes_and_is_valid_ga() -> None:
    """A session.update using every field a frontend may set passes unchanged and is valid GA."""
    session = {
        "type": "realtime",
        "instructions": "Be brief.",
        "tools": [FUNCTION],
        "tool_choice": {"type": "function", "name": "lookup_weather"},
        "output_modalities": ["audio"],
        "max_output_tokens": 800,
        "truncation": {"type": "retention_ratio", "retention_ratio": 0.5,
                       "token_limits": {"post_instructions": 4000}},
        "audio": {
            "input": {"format": {"type": "audio/pcmu"},
                      "transcription": {"model": "whisper-1", "language": "en", "prompt": "Jobs."},
                      "turn_detection": {"type": "semantic_vad", "eagerness": "low",
                                         "create_response": True, "interrupt_response": True},
                      "noise_reduction": {"type": "near_field"}},
            "output": {"format": {"type": "audio/pcmu"}, "voice": "cedar", "speed": 1.1},
        },
    }
    assert vetted(session) == session
    check_client_event({"type": "session.update", "session": session})


def test_the_reference_apps_save_passes() -> None:
    """What the reference demo's Save button sends is accepted as is."""
    assert vetted({"instructions": "You are a helpful assistant in a phone call.", "voice": "ash",
                   "tools": [FUNCTION]}) == {
        "instructions": "You are a helpful assistant in a phone call.", "tools": [FUNCTION],
        "audio": {"output": {"voice": "ash"}}}


@pytest.mark.parametrize(("session", "field"), [
    ({"prompt": {"id": "pmpt_123"}}, "session.prompt"),
    ({"tracing": "auto"}, "session.tracing"),
    ({"include": ["item.input_audio_transcription.logprobs"]}, "session.include"),
    ({"model": "gpt-realtime"}, "session.model"),
    ({"temperature": 0.8}, "session.temperature"),
    ({"reasoning": {"effort": "high"}}, "session.reasoning"),
    ({"tools": [{"type": "mcp", "server_label": "x", "server_url": "https://evil.example"}]},
     "session.tools[0].type"),
    ({"tools": [{**FUNCTION, "strict": True}]}, "session.tools[0].strict"),
    ({"tool_choice": {"type": "mcp", "server_label": "x"}}, "session.tool_choice.type"),
    ({"audio": {"input": {"echo": True}}}, "session.audio.input.echo"),
    ({"audio": {"output": {"voice": "ash", "pitch": 2}}}, "session.audio.output.pitch"),
    ({"turn_detection": {"type": "semantic_vad", "threshold": 0.5}},
     "session.audio.input.turn_detection.threshold"),
])
def test_fields_a_frontend_may_not_set_are_refused_by_name(session: dict[str, Any], field: str) -> None:
    """prompt, tracing, include, model, MCP tools and anything else unlisted: field_not_allowed, named."""
    exc = refusal(session)
    assert exc.code == "field_not_allowed"
    assert field in exc.message


@pytest.mark.parametrize(("session", "field"), [
    ({"type": "transcription"}, "session.type"),
    ({"instructions": 5}, "session.instructions"),
    ({"instructions": "x" * 16_001}, "session.instructions"),
    ({"tools": {"type": "function"}}, "session.tools"),
    ({"tools": [FUNCTION] * 33}, "session.tools"),
    ({"tools": [FUNCTION, FUNCTION]}, "session.tools"),
    ({"tools": [{"type": "function"}]}, "session.tools[0].name"),
    ({"tools": [{"type": "function", "name": "a b"}]}, "session.tools[0].name"),
    ({"tools": [{"name": "x"}]}, "session.tools[0].type"),
    ({"tools": [{**FUNCTION, "parameters": "object"}]}, "session.tools[0].parameters"),
    ({"turn_detection": {"threshold": 0.5}}, "session.audio.input.turn_detection.type"),
    ({"turn_detection": []}, "session.audio.input.turn_detection"),
    ({"turn_detection": {"type": "server_vad", "threshold": 2}},
     "session.audio.input.turn_detection.threshold"),
    ({"turn_detection": {"type": "server_vad", "silence_duration_ms": True}},
     "session.audio.input.turn_detection.silence_duration_ms"),
    ({"audio": {"output": {"speed": 3}}}, "session.audio.output.speed"),
    ({"audio": {"output": {"voice": {"name": "x"}}}}, "session.audio.output.voice"),
    ({"audio": {"input": {"format": {"type": "audio/mp3"}}}}, "session.audio.input.format"),
    ({"max_output_tokens": 0}, "session.max_output_tokens"),
    ({"output_modalities": ["text", "video"]}, "session.output_modalities"),
    ({"modalities": "audio"}, "session.modalities"),
    ({"truncation": "sometimes"}, "session.truncation"),
])
def test_whitelisted_fields_with_wrong_values_are_malformed(session: dict[str, Any], field: str) -> None:
    """A field a frontend may set, with a value GA would refuse: malformed_message, named."""
    exc = refusal(session)
    assert exc.code == "malformed_message"
    assert field in exc.message


def test_turn_detection_null_and_custom_voice_pass() -> None:
    """turn_detection null (push-to-talk), noise_reduction null and a custom voice ID are accepted."""
    assert vetted({"audio": {"input": {"turn_detection": None, "noise_reduction": None},
                             "output": {"voice": {"id": "voice_1234"}}}}) == {
        "audio": {"input": {"turn_detection": None, "noise_reduction": None},
                  "output": {"voice": {"id": "voice_1234"}}}}


# -- the size cap -------------------------------------------------------------------------------


def test_merged_overrides_are_capped() -> None:
    """Updates that would grow the merged overrides past the cap are refused and change nothing."""
    config = Configuration("sid")
    assert config.merge_overrides({"instructions": "é" * 16_000})  # 32 KB of UTF-8
    tools = [{"type": "function", "name": f"t{n}", "description": "é" * 1024,
              "parameters": {"type": "object"}} for n in range(32)]
    before = dict(config.overrides)
    assert not config.merge_overrides({"tools": tools})
    assert config.overrides == before
    assert len(orjson.dumps(config.overrides)) <= MAX_OVERRIDES_BYTES


# -- the depth limit ----------------------------------------------------------------------------


def test_depth_is_measured_without_recursion() -> None:
    """depth_exceeds counts levels of objects and arrays, and copes with any depth."""
    assert not depth_exceeds("x", 0)
    assert not depth_exceeds({"a": [1]}, 2)
    assert depth_exceeds({"a": [1]}, 1)
    assert depth_exceeds(nested(100_000), 50)


def test_a_frontend_message_nested_too_deeply_is_refused() -> None:
    """A frontend message deeper than the limit is malformed_message, whatever its type."""
    tool = {**FUNCTION, "parameters": {"type": "object", "x": nested(MAX_FRONTEND_DEPTH)}}
    with pytest.raises(MalformedMessage, match="nested more than"):
        fmsg.parse_message(orjson.dumps({"type": "session.update", "session": {"tools": [tool]}}).decode())
    fine = {**FUNCTION, "parameters": {"type": "object", "x": nested(MAX_FRONTEND_DEPTH - 6)}}
    fmsg.parse_message(orjson.dumps({"type": "session.update", "session": {"tools": [fine]}}).decode())


def test_a_twilio_message_nested_too_deeply_is_refused() -> None:
    """A Media Streams message deeper than the limit is malformed (str() of it would recurse)."""
    start = {"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA1",
                                         "customParameters": {"x": nested(MAX_TWILIO_DEPTH)}}}
    with pytest.raises(MalformedMessage, match="nested more than"):
        twilio.parse_message(orjson.dumps(start).decode())
    deep = ('{"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA1", '
            '"customParameters": {"x": ' + deep_text(900) + "}}}")
    with pytest.raises(MalformedMessage):
        twilio.parse_message(deep)


# -- over real sockets --------------------------------------------------------------------------


async def test_forbidden_fields_never_reach_the_model(relay: Relay) -> None:
    """prompt, tracing and an MCP tool get an error naming the field; the model sees none of them."""
    _, fe, call, upstream = await relay.live_session()
    for session, field in (({"prompt": {"id": "pmpt_1"}}, "session.prompt"),
                           ({"tracing": "auto"}, "session.tracing"),
                           ({"tools": [{"type": "mcp", "server_label": "x",
                                        "server_url": "https://evil.example"}]}, "session.tools[0].type")):
        await fe.send_json({"type": "session.update", "session": session})
        error = await fe.wait_for("error", lambda m: m["code"] == "field_not_allowed")
        assert field in error["message"]
    await fe.send_json({"type": "session.update", "session": {"instructions": "Be brief."}})
    update = await upstream.wait_for("session.update")
    assert update["session"]["instructions"] == "Be brief."
    sent = [e for e in upstream.received if e["type"] == "session.update"]
    assert not any({"prompt", "tracing"} & set(e["session"]) for e in sent)
    assert all(t["type"] == "function" for e in sent for t in e["session"].get("tools", []))
    await call.hang_up()
    await relay.wait_idle()


async def test_a_deeply_nested_tool_schema_is_refused_and_the_call_lives(relay: Relay) -> None:
    """A session.update nested past the limit is refused with an error; the session goes on."""
    _, fe, call, upstream = await relay.live_session()
    await fe.send_raw('{"type": "session.update", "session": {"tools": [{"type": "function", '
                      '"name": "deep", "parameters": {"type": "object", "x": ' + deep_text(300) + "}}]}}")
    error = await fe.wait_for("error")
    assert error["code"] == "malformed_message" and "nested" in error["message"]
    await fe.send_json({"type": "session.update", "session": {"instructions": "Still here."}})
    assert (await upstream.wait_for("session.update"))["session"]["instructions"] == "Still here."
    assert (await relay.health())["sessions"] == 1
    await call.hang_up()
    await relay.wait_idle()


async def test_overrides_past_the_cap_are_refused(relay: Relay) -> None:
    """Updates that would grow the merged configuration past its cap get config_too_large."""
    _, fe, call, upstream = await relay.live_session()
    # Each message fits the 64 KiB message limit; together they do not fit the cap.
    await fe.send_json({"type": "session.update", "session": {"instructions": "é" * 16_000}})
    await upstream.wait_for("session.update")
    tools = [{"type": "function", "name": f"t{n}", "description": "é" * 1024,
              "parameters": {"type": "object"}} for n in range(20)]
    await fe.send_json({"type": "session.update", "session": {"tools": tools}})
    error = await fe.wait_for("error")
    assert error["code"] == "config_too_large"
    await fe.send_json({"type": "session.update", "session": {"tools": tools[:2]}})
    assert [t["name"] for t in (await upstream.wait_for("session.update"))["session"]["tools"]][-2:] \
        == ["t0", "t1"]
    await call.hang_up()
    await relay.wait_idle()
