"""Unit tests for relay.messages.frontend: what a browser may send on /logs, and what relay sends it.

Every accepted type parses into its typed value; everything else is refused
with a BadInput whose ``code`` is what the browser receives in an ``error``.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.errors import BadInput, MalformedMessage, UnknownMessage
from relay.messages import frontend as fmsg
from relay.messages.jobconfig import JobConfig

#: A HeyGen streaming session ID (streaming.new answers UUIDs).
AVATAR = "b7c1e0f2-4a5d-4f7e-9c3b-2d8a6e1f0a94"


def parse(msg: Any) -> fmsg.FrontendMessage:
    return fmsg.parse_message(orjson.dumps(msg).decode())


def refused(msg: Any) -> BadInput:
    """The BadInput parse_message raises for ``msg`` (text is passed through as is)."""
    text = msg if isinstance(msg, str) else orjson.dumps(msg).decode()
    with pytest.raises(BadInput) as info:
        fmsg.parse_message(text)
    return info.value


# -- accepted --------------------------------------------------------------------------------


def test_job_config_snake_case() -> None:
    """A job_config is validated into a JobConfig."""
    msg = parse({"type": "job_config", "config": {"role": "Chef", "company": "Bistro"}})
    assert msg == fmsg.JobConfigMessage(JobConfig(role="Chef", company="Bistro"),
                                        used=("role", "company"))


def test_job_config_camel_case() -> None:
    """The reference frontend's camelCase fields map onto the same JobConfig."""
    msg = parse(
        {
            "type": "job_config",
            "config": {
                "role": "Backend engineer",
                "jobDescription": "Python and Postgres",
                "interviewStyle": "friendly",
                "candidateName": "Ana",
                "durationMinutes": "15",
                "voice": "Marin",
            },
        }
    )
    assert msg == fmsg.JobConfigMessage(
        JobConfig(
            role="Backend engineer",
            job_description="Python and Postgres",
            interview_style="friendly",
            candidate_name="Ana",
            duration_minutes=15,
            voice="marin",
        ),
        used=("role", "jobDescription", "interviewStyle", "candidateName", "durationMinutes",
              "voice"),
    )


def test_session_update_is_translated_to_ga() -> None:
    """A beta session.update becomes a GA partial session."""
    msg = parse(
        {
            "type": "session.update",
            "session": {
                "modalities": ["text", "audio"],
                "voice": "alloy",
                "input_audio_format": "g711_ulaw",
                "instructions": "Be brief.",
            },
        }
    )
    assert msg == fmsg.SessionUpdateMessage(
        session={
            "output_modalities": ["audio"],
            "instructions": "Be brief.",
            "audio": {"output": {"voice": "alloy"}, "input": {"format": {"type": "audio/pcmu"}}},
        },
    )


def test_session_update_ga_passes_through() -> None:
    """A GA session.update passes through unchanged."""
    session = {"type": "realtime", "instructions": "Hi", "audio": {"output": {"voice": "cedar"}}}
    assert parse({"type": "session.update", "session": session}) == fmsg.SessionUpdateMessage(
        session=session
    )


def test_activity() -> None:
    """``activity`` is accepted (extra fields ignored)."""
    assert parse({"type": "activity", "at": 123}) == fmsg.Activity()


def test_session_end() -> None:
    """``session.end`` is accepted."""
    assert parse({"type": "session.end"}) == fmsg.SessionEnd()


def test_avatar_attach() -> None:
    """``avatar.attach`` for HeyGen gives the provider and the avatar session ID."""
    msg = parse({"type": "avatar.attach", "provider": "heygen", "avatarSessionId": AVATAR})
    assert msg == fmsg.AvatarAttach(provider="heygen", avatar_session_id=AVATAR)


def test_item_create_function_call_output() -> None:
    """A function_call_output item is forwarded with only its vetted fields."""
    msg = parse(
        {
            "type": "conversation.item.create",
            "event_id": "evt_1",
            "item": {
                "type": "function_call_output",
                "call_id": "call_1",
                "output": '{"ok": true}',
                "status": "completed",
            },
        }
    )
    assert msg == fmsg.ClientEvent(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"ok": true}'},
        }
    )


def test_item_create_function_call_output_call_id_is_cut_to_64() -> None:
    """A long call_id is cut to 64 characters."""
    msg = parse(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "c" * 100, "output": ""},
        }
    )
    assert isinstance(msg, fmsg.ClientEvent)
    assert msg.event["item"]["call_id"] == "c" * 64


@pytest.mark.parametrize("role", ["user", "system"])
def test_item_create_message_with_input_text(role: str) -> None:
    """A user or system message of input_text parts is forwarded with only its vetted fields."""
    msg = parse(
        {
            "type": "conversation.item.create",
            "item": {
                "id": "item_1",
                "type": "message",
                "role": role,
                "content": [
                    {"type": "input_text", "text": "Hello"},
                    {"type": "input_text", "text": "there", "extra": 1},
                ],
            },
        }
    )
    assert msg == fmsg.ClientEvent(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": role,
                "content": [
                    {"type": "input_text", "text": "Hello"},
                    {"type": "input_text", "text": "there"},
                ],
            },
        }
    )


def test_response_create_without_instructions() -> None:
    """A bare response.create is forwarded bare."""
    assert parse({"type": "response.create"}) == fmsg.ClientEvent({"type": "response.create"})


def test_response_create_with_instructions() -> None:
    """response.create may carry response.instructions, forwarded as is."""
    msg = parse({"type": "response.create", "response": {"instructions": "Say goodbye."}})
    assert msg == fmsg.ClientEvent(
        {"type": "response.create", "response": {"instructions": "Say goodbye."}}
    )


def test_response_cancel() -> None:
    """response.cancel is forwarded with nothing but its type."""
    msg = parse({"type": "response.cancel", "response_id": "resp_1"})
    assert msg == fmsg.ClientEvent({"type": "response.cancel"})


def test_every_frontend_type_is_accepted_in_some_shape() -> None:
    """Each FrontendType has at least one accepted message (this file covers them all)."""
    examples = {
        "job_config": {"config": {"role": "Chef"}},
        "session.update": {"session": {}},
        "activity": {},
        "session.end": {},
        "conversation.item.create": {
            "item": {"type": "function_call_output", "call_id": "c", "output": "o"}
        },
        "response.create": {},
        "response.cancel": {},
        "avatar.attach": {"provider": "heygen", "avatarSessionId": AVATAR},
    }
    assert set(examples) == {t.value for t in fmsg.FrontendType}
    for kind, fields in examples.items():
        parse({"type": kind, **fields})


# -- refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "hello", '{"type": "activity"', "[]", '"activity"', "3", "null", '[{"type":"activity"}]'],
    ids=["empty", "text", "truncated", "array", "string", "number", "null", "array-of-object"],
)
def test_not_a_json_object_is_malformed_message(text: str) -> None:
    """Text that is not a JSON object is refused with malformed_message."""
    exc = refused(text)
    assert isinstance(exc, MalformedMessage)
    assert exc.code == "malformed_message"


@pytest.mark.parametrize(
    "msg",
    [
        {},
        {"type": None},
        {"type": "input_audio_buffer.append", "audio": "AAAA"},
        {"type": "session.created"},
        {"type": "Activity"},
        {"type": 1},
        {"type": ["activity"]},
        {"type": {"activity": True}},
        {"kind": "activity"},
    ],
    ids=repr,
)
def test_unknown_type_is_unknown_message_type(msg: dict[str, Any]) -> None:
    """A missing, unknown or mistyped ``type`` is refused with unknown_message_type."""
    exc = refused(msg)
    assert isinstance(exc, UnknownMessage)
    assert exc.code == "unknown_message_type"


def test_unknown_type_message_is_short_and_names_missing() -> None:
    """The refusal quotes at most 60 characters of the type, and says when there is none."""
    assert len(refused({"type": "x" * 10_000}).message) < 120
    assert "(none)" in refused({}).message


@pytest.mark.parametrize(
    "item",
    [
        {"type": "function_call", "name": "end_interview", "call_id": "c", "arguments": "{}"},
        {"type": "function_call_output_x"},
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": None},
    ],
    ids=repr,
)
def test_item_of_other_kind_is_unknown_message_type(item: dict[str, Any]) -> None:
    """Only function_call_output and message items may be created; others are unknown_message_type."""
    exc = refused({"type": "conversation.item.create", "item": item})
    assert isinstance(exc, UnknownMessage)
    assert exc.code == "unknown_message_type"


TOO_LONG = "x" * 8001


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "session.update"},
        {"type": "session.update", "session": "realtime"},
        {"type": "session.update", "session": []},
        {"type": "conversation.item.create"},
        {"type": "conversation.item.create", "item": "hi"},
        {"type": "conversation.item.create",
         "item": {"type": "function_call_output", "output": "o"}},
        {"type": "conversation.item.create",
         "item": {"type": "function_call_output", "call_id": "c"}},
        {"type": "conversation.item.create",
         "item": {"type": "function_call_output", "call_id": 1, "output": "o"}},
        {"type": "conversation.item.create",
         "item": {"type": "function_call_output", "call_id": "c", "output": {"ok": True}}},
        {"type": "conversation.item.create",
         "item": {"type": "function_call_output", "call_id": "c", "output": TOO_LONG}},
        {"type": "conversation.item.create",
         "item": {"type": "message", "role": "assistant",
                  "content": [{"type": "input_text", "text": "hi"}]}},
        {"type": "conversation.item.create", "item": {"type": "message", "role": "user"}},
        {"type": "conversation.item.create",
         "item": {"type": "message", "role": "user", "content": []}},
        {"type": "conversation.item.create",
         "item": {"type": "message", "role": "user", "content": "hi"}},
        {"type": "conversation.item.create",
         "item": {"type": "message", "role": "user", "content": ["hi"]}},
        {"type": "conversation.item.create",
         "item": {"type": "message", "role": "user",
                  "content": [{"type": "input_audio", "audio": "AAAA"}]}},
        {"type": "conversation.item.create",
         "item": {"type": "message", "role": "user", "content": [{"type": "input_text"}]}},
        {"type": "conversation.item.create",
         "item": {"type": "message", "role": "user",
                  "content": [{"type": "input_text", "text": 5}]}},
        {"type": "conversation.item.create",
         "item": {"type": "message", "role": "user",
                  "content": [{"type": "input_text", "text": TOO_LONG}]}},
        {"type": "response.create", "response": "now"},
        {"type": "response.create", "response": {"instructions": "x", "tools": []}},
        {"type": "response.create", "response": {"modalities": ["text"]}},
        {"type": "response.create", "response": {"instructions": 5}},
        {"type": "response.create", "response": {"instructions": TOO_LONG}},
        {"type": "avatar.attach", "avatarSessionId": "abc"},
        {"type": "avatar.attach", "provider": "did", "avatarSessionId": "abc"},
        {"type": "avatar.attach", "provider": "HeyGen", "avatarSessionId": "abc"},
        {"type": "avatar.attach", "provider": "heygen"},
        {"type": "avatar.attach", "provider": "heygen", "avatarSessionId": ""},
        {"type": "avatar.attach", "provider": "heygen", "avatarSessionId": "a/b"},
        {"type": "avatar.attach", "provider": "heygen", "avatarSessionId": "a b"},
        {"type": "avatar.attach", "provider": "heygen", "avatarSessionId": "a" * 129},
        {"type": "avatar.attach", "provider": "heygen", "avatarSessionId": 12},
        {"type": "avatar.attach", "provider": "heygen", "avatarSessionId": "abc_DEF-123"},
        {"type": "avatar.attach", "provider": "heygen", "avatarSessionId": AVATAR + "0"},
        {"type": "avatar.attach", "provider": "heygen", "avatarSessionId": AVATAR.replace("-", "")},
        {"type": "avatar.attach", "provider": "heygen", "avatarSessionId": AVATAR + "\n"},
    ],
    ids=repr,
)
def test_wrong_fields_are_malformed_message(msg: dict[str, Any]) -> None:
    """An accepted type with missing, mistyped, too long or disallowed fields is refused with malformed_message."""
    exc = refused(msg)
    assert isinstance(exc, MalformedMessage)
    assert exc.code == "malformed_message"


def test_longest_texts_are_accepted() -> None:
    """8000 characters is the longest output, text or instructions accepted."""
    limit = "x" * 8000
    parse({"type": "conversation.item.create",
           "item": {"type": "function_call_output", "call_id": "c", "output": limit}})
    parse({"type": "conversation.item.create",
           "item": {"type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": limit}]}})
    parse({"type": "response.create", "response": {"instructions": limit}})


@pytest.mark.parametrize(
    "config",
    [
        None,
        "role=Chef",
        [],
        {},
        {"role": "   "},
        {"role": 5},
        {"role": "x" * 201},
        {"voice": "robot"},
        {"durationMinutes": 0},
        {"durationMinutes": "ten"},
        {"durationMinutes": True},
        {"role": "Chef", "requirements": "x" * 2001},
    ],
    ids=repr,
)
def test_bad_job_config_is_invalid_job_config(config: Any) -> None:
    """A job_config relay cannot use reaches the session as JobConfigRefused, with a reason."""
    msg: dict[str, Any] = {"type": "job_config"}
    if config is not None:
        msg["config"] = config
    parsed = parse(msg)
    assert isinstance(parsed, fmsg.JobConfigRefused) and parsed.reason


def test_an_apps_own_job_object_is_used_not_refused() -> None:
    """Synonyms, other details, identifiers and nested objects: relay uses what it can and says so."""
    parsed = parse({"type": "job_config", "config": {
        "id": "job_42", "jobTitle": "Backend Engineer", "companyName": "Acme",
        "description": "Build APIs.", "style": "technical", "seniority": "Senior",
        "requirements": ["Python", "PostgreSQL"], "salary": 120000, "remote": True,
        "company_logo": {"url": "https://x"}, "createdAt": "2025-01-01"}})
    assert parsed == fmsg.JobConfigMessage(
        JobConfig(role="Backend Engineer", company="Acme", job_description="Build APIs.",
                  interview_style="technical",
                  extras=(("seniority", "Senior"), ("requirements", "Python; PostgreSQL"),
                          ("salary", "120000"), ("remote", "yes"))),
        used=("jobTitle", "companyName", "description", "style", "seniority", "requirements",
              "salary", "remote"),
        ignored=("id", "company_logo", "createdAt"))


def test_a_job_config_nested_too_deeply_is_refused_not_dropped() -> None:
    """A too-deep job_config still reaches the session (its receipt is logged) as refused."""
    deep = "[" * 40 + "1" + "]" * 40
    parsed = fmsg.parse_message('{"type": "job_config", "config": {"role": "x", "a": ' + deep + "}}")
    assert isinstance(parsed, fmsg.JobConfigRefused) and "nested" in parsed.reason


@pytest.mark.parametrize("role", [[], {}, ["user"]], ids=repr)
def test_unhashable_item_role_is_malformed(role: Any) -> None:
    """A message item whose role is a list or an object is refused as malformed_message."""
    exc = refused({"type": "conversation.item.create",
                   "item": {"type": "message", "role": role,
                            "content": [{"type": "input_text", "text": "hi"}]}})
    assert exc.code == "malformed_message"


@pytest.mark.parametrize("provider", [[], {}, ["heygen"]], ids=repr)
def test_unhashable_avatar_provider_is_malformed(provider: Any) -> None:
    """An avatar.attach whose provider is a list or an object is refused as malformed_message."""
    exc = refused({"type": "avatar.attach", "provider": provider, "avatarSessionId": "abc"})
    assert exc.code == "malformed_message"


# -- never anything but BadInput --------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
TYPES = st.sampled_from([t.value for t in fmsg.FrontendType])


def part() -> st.SearchStrategy[Any]:
    return JSON_VALUES | st.fixed_dictionaries(
        {}, optional={"type": st.just("input_text") | JSON_SCALARS, "text": JSON_VALUES}
    )


ITEMS = JSON_VALUES | st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["message", "function_call_output", "function_call"]) | JSON_SCALARS,
        "role": st.sampled_from(["user", "system", "assistant"]) | JSON_VALUES,
        "content": JSON_VALUES | st.lists(part(), max_size=10),
        "call_id": JSON_VALUES,
        "output": JSON_VALUES,
    },
)
STRUCTURED = st.fixed_dictionaries(
    {"type": TYPES},
    optional={
        "config": JSON_VALUES
        | st.dictionaries(
            st.sampled_from(["role", "jobDescription", "voice", "durationMinutes", "duration_minutes",
                             "candidateName", "instructions", "other"]),
            JSON_VALUES,
        ),
        "session": JSON_VALUES
        | st.dictionaries(
            st.sampled_from(["modalities", "output_modalities", "voice", "audio", "input_audio_format",
                             "turn_detection", "max_response_output_tokens", "tools", "model"]),
            JSON_VALUES,
        ),
        "item": ITEMS,
        "response": JSON_VALUES
        | st.dictionaries(st.sampled_from(["instructions", "modalities"]), JSON_VALUES),
        "provider": st.just("heygen") | JSON_VALUES,
        "avatarSessionId": JSON_VALUES,
    },
)


def parses_or_refuses(text: str) -> None:
    try:
        fmsg.parse_message(text)
    except BadInput as exc:
        assert isinstance(exc.code, str) and exc.code
        assert isinstance(exc.message, str)


@given(st.text())
def test_parse_raises_only_bad_input_for_arbitrary_text(text: str) -> None:
    """Whatever text a browser sends, parse_message returns a message or raises BadInput."""
    parses_or_refuses(text)


@given(JSON_VALUES)
def test_parse_raises_only_bad_input_for_arbitrary_json(value: Any) -> None:
    """Any JSON value gives a message or BadInput, never another exception."""
    parses_or_refuses(orjson.dumps(value).decode())


@given(STRUCTURED)
def test_parse_raises_only_bad_input_for_accepted_types_with_arbitrary_fields(
    msg: dict[str, Any],
) -> None:
    """An accepted type with arbitrary JSON in its fields gives a message or BadInput, never another exception."""
    parses_or_refuses(orjson.dumps(msg).decode())


# -- relay -> frontend -----------------------------------------------------------------------


def test_session_associated_shape() -> None:
    """session.associated names the session, the call and the stream."""
    assert fmsg.session_associated("s1", "CA1", "MZ1") == {
        "type": "session.associated",
        "sessionId": "s1",
        "callSid": "CA1",
        "streamSid": "MZ1",
    }


@pytest.mark.parametrize("status", ["queued", "applied"])
def test_job_config_ack_shape(status: str) -> None:
    """job_config.ack carries the session and the status."""
    assert fmsg.job_config_ack("s1", status) == {
        "type": "job_config.ack",
        "sessionId": "s1",
        "status": status,
    }


def test_call_status_changed_connected_shape() -> None:
    """call.status_changed for a connected call has a null reason."""
    assert fmsg.call_status_changed("s1", "connected", "MZ1") == {
        "type": "call.status_changed",
        "status": "connected",
        "sessionId": "s1",
        "streamSid": "MZ1",
        "reason": None,
    }


def test_call_status_changed_ended_shape() -> None:
    """call.status_changed for an ended call carries the reason, and a null stream when none."""
    assert fmsg.call_status_changed("s1", "ended", None, "inactivity") == {
        "type": "call.status_changed",
        "status": "ended",
        "sessionId": "s1",
        "streamSid": None,
        "reason": "inactivity",
    }


def test_error_shape() -> None:
    """error carries a code, a message and source relay (the model's own errors say source model)."""
    assert fmsg.error("malformed_message", "message is not valid JSON") == {
        "type": "error",
        "code": "malformed_message",
        "message": "message is not valid JSON",
        "source": "relay",
    }


def test_error_from_a_refusal_round_trips_as_json() -> None:
    """A refusal's code and message make an error that serialises as JSON."""
    exc = refused("nope")
    out = orjson.loads(orjson.dumps(fmsg.error(exc.code, exc.message)))
    assert out == {"type": "error", "code": "malformed_message", "message": exc.message,
                   "source": "relay"}
