"""Unit tests for relay.messages.twilio: Media Streams messages in, media/mark/clear out.

Inbound frames are written in the provider's exact shapes (Twilio docs,
"Media Streams - WebSocket Messages"). No sockets: every test is text in,
a typed value (or a typed refusal) out.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from relay.errors import BadInput, MalformedMessage, UnknownMessage
from relay.messages import twilio

ACCOUNT = "AC00000000000000000000000000000001"
CALL = "CA00000000000000000000000000000001"
STREAM = "MZ00000000000000000000000000000001"

CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": ACCOUNT,
        "streamSid": STREAM,
        "callSid": CALL,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"sessionId": "3f2c9a7e", "FirstName": "Jane"},
    },
    "streamSid": STREAM,
}
MEDIA = {
    "event": "media",
    "sequenceNumber": "3",
    "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": "no+JhoaJjpzSHxAKBgYJ"},
    "streamSid": STREAM,
}
DTMF = {
    "event": "dtmf",
    "streamSid": STREAM,
    "sequenceNumber": "5",
    "dtmf": {"track": "inbound_track", "digit": "1"},
}
MARK = {"event": "mark", "sequenceNumber": "4", "streamSid": STREAM, "mark": {"name": "my label"}}
STOP = {
    "event": "stop",
    "sequenceNumber": "5",
    "streamSid": STREAM,
    "stop": {"accountSid": ACCOUNT, "callSid": CALL},
}


def dumps(msg: Any) -> str:
    return orjson.dumps(msg).decode()


def with_start(**fields: Any) -> str:
    """The START frame with ``start`` fields replaced (a None value removes the field)."""
    start = {k: v for k, v in {**START["start"], **fields}.items() if v is not None}
    return dumps({**START, "start": start})


# -- inbound: every kind, in the provider's shapes --------------------------------------------


def test_connected() -> None:
    """A ``connected`` frame gives the protocol version."""
    assert twilio.parse_message(dumps(CONNECTED)) == twilio.Connected(version="1.0.0")


def test_start_with_tracks_media_format_and_custom_parameters() -> None:
    """A full ``start`` frame gives the SIDs and the custom parameters; tracks and mediaFormat are accepted."""
    assert twilio.parse_message(dumps(START)) == twilio.Start(
        stream_sid=STREAM,
        call_sid=CALL,
        account_sid=ACCOUNT,
        custom_parameters={"sessionId": "3f2c9a7e", "FirstName": "Jane"},
    )


def test_start_without_custom_parameters() -> None:
    """A ``start`` with no customParameters has an empty parameter dict."""
    msg = twilio.parse_message(with_start(customParameters=None))
    assert isinstance(msg, twilio.Start)
    assert msg.custom_parameters == {}


def test_start_takes_stream_sid_from_top_level_when_start_lacks_it() -> None:
    """The top-level ``streamSid`` stands in when ``start.streamSid`` is absent."""
    msg = twilio.parse_message(with_start(streamSid=None))
    assert isinstance(msg, twilio.Start)
    assert msg.stream_sid == STREAM


def test_start_accepts_short_non_twilio_sids() -> None:
    """Test and self-hosted peers may use any short ID of letters, digits, '_' and '-'."""
    msg = twilio.parse_message(with_start(streamSid="stream_1", callSid="call-1"))
    assert isinstance(msg, twilio.Start)
    assert (msg.stream_sid, msg.call_sid) == ("stream_1", "call-1")


def test_start_truncates_long_custom_parameters() -> None:
    """Custom parameter names are cut to 64 characters and values to 512."""
    msg = twilio.parse_message(with_start(customParameters={"k" * 100: "v" * 1000}))
    assert isinstance(msg, twilio.Start)
    assert msg.custom_parameters == {"k" * 64: "v" * 512}


def test_start_accepts_exactly_32_custom_parameters() -> None:
    """32 custom parameters is the most a start may carry."""
    params = {f"p{i}": str(i) for i in range(32)}
    msg = twilio.parse_message(with_start(customParameters=params))
    assert isinstance(msg, twilio.Start)
    assert msg.custom_parameters == params


def test_media() -> None:
    """A ``media`` frame gives its base64 payload untouched."""
    assert twilio.parse_message(dumps(MEDIA)) == twilio.Media(payload=MEDIA["media"]["payload"])


def test_dtmf() -> None:
    """A ``dtmf`` frame gives the pressed digit."""
    assert twilio.parse_message(dumps(DTMF)) == twilio.Dtmf(digit="1")


def test_mark() -> None:
    """A ``mark`` echo gives the mark's name."""
    assert twilio.parse_message(dumps(MARK)) == twilio.Mark(name="my label")


def test_stop() -> None:
    """A ``stop`` frame gives the call SID."""
    assert twilio.parse_message(dumps(STOP)) == twilio.Stop(call_sid=CALL)


def test_stop_without_stop_object() -> None:
    """A ``stop`` without its object still ends the stream, with an empty call SID."""
    assert twilio.parse_message(dumps({"event": "stop"})) == twilio.Stop(call_sid="")


def test_parses_frames_with_spaces_after_colons() -> None:
    """Pretty-printed frames (spaces after ':' and ',') parse like compact ones."""
    for frame in (CONNECTED, START, MEDIA, DTMF, MARK, STOP):
        spaced = orjson.dumps(frame, option=orjson.OPT_INDENT_2).decode()
        assert twilio.parse_message(spaced) == twilio.parse_message(dumps(frame))


# -- inbound: refusals ----------------------------------------------------------------------


def test_error_classes_and_codes() -> None:
    """Both refusals are BadInput with stable codes."""
    assert issubclass(MalformedMessage, BadInput) and issubclass(UnknownMessage, BadInput)
    assert MalformedMessage("x").code == "malformed_message"
    assert UnknownMessage("x").code == "unknown_message_type"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        '{"event": "media"',
        "[]",
        '"media"',
        "42",
        "null",
        '[{"event": "media"}]',
    ],
    ids=["empty", "text", "truncated", "array", "string", "number", "null", "array-of-object"],
)
def test_not_a_json_object_is_malformed(text: str) -> None:
    """Text that is not a JSON object raises MalformedMessage."""
    with pytest.raises(MalformedMessage) as info:
        twilio.parse_message(text)
    assert info.value.code == "malformed_message"


@pytest.mark.parametrize(
    "msg",
    [
        {"event": "media"},
        {"event": "media", "media": "AAAA"},
        {"event": "media", "media": {}},
        {"event": "media", "media": {"payload": 42}},
        {"event": "media", "media": {"payload": None}},
        {"event": "dtmf"},
        {"event": "dtmf", "dtmf": {}},
        {"event": "dtmf", "dtmf": {"digit": "12"}},
        {"event": "dtmf", "dtmf": {"digit": ""}},
        {"event": "dtmf", "dtmf": {"digit": 1}},
        {"event": "mark"},
        {"event": "mark", "mark": []},
        {"event": "mark", "mark": {"name": 7}},
        {"event": "start"},
        {"event": "start", "start": "x"},
    ],
    ids=repr,
)
def test_missing_or_mistyped_fields_are_malformed(msg: dict[str, Any]) -> None:
    """A known event whose required fields are missing or of the wrong type raises MalformedMessage."""
    with pytest.raises(MalformedMessage):
        twilio.parse_message(dumps(msg))


@pytest.mark.parametrize(
    "fields",
    [
        {"callSid": None},
        {"callSid": 42},
        {"callSid": ""},
        {"callSid": "CA 123"},
        {"callSid": 'CA"},{"x'},
        {"callSid": "CA\n123"},
        {"callSid": "CA/../123"},
        {"callSid": "C" * 65},
        {"streamSid": None},
        {"streamSid": "MZ\\u0000"},
        {"streamSid": "MZ\u00e9"},
        {"streamSid": ["MZ1"]},
    ],
    ids=repr,
)
def test_start_with_bad_sid_is_malformed(fields: dict[str, Any]) -> None:
    """A start whose streamSid or callSid is missing, too long or has characters outside [A-Za-z0-9_-] is refused."""
    text = with_start(**fields)
    if fields.get("streamSid", 0) is None:
        # Remove the top-level fallback too, so the SID is really missing.
        msg = orjson.loads(text)
        del msg["streamSid"]
        text = dumps(msg)
    with pytest.raises(MalformedMessage):
        twilio.parse_message(text)


def test_sid_of_64_characters_is_accepted() -> None:
    """64 characters is the longest SID accepted."""
    msg = twilio.parse_message(with_start(callSid="C" * 64))
    assert isinstance(msg, twilio.Start)


def test_too_many_custom_parameters_is_malformed() -> None:
    """A start with more than 32 custom parameters raises MalformedMessage."""
    params = {f"p{i}": str(i) for i in range(33)}
    with pytest.raises(MalformedMessage):
        twilio.parse_message(with_start(customParameters=params))


@pytest.mark.parametrize("params", [["a", "b"], "a=b", 5, True], ids=repr)
def test_custom_parameters_not_an_object_is_malformed(params: Any) -> None:
    """customParameters that is not an object raises MalformedMessage."""
    with pytest.raises(MalformedMessage):
        twilio.parse_message(with_start(customParameters=params))


@pytest.mark.parametrize(
    "msg",
    [
        {},
        {"event": None},
        {"event": "clear"},
        {"event": "Media"},
        {"event": "closed"},
        {"event": 3},
        {"event": ["media"]},
        {"event": {"media": 1}},
        {"type": "media"},
    ],
    ids=repr,
)
def test_unknown_event_raises_unknown_message(msg: dict[str, Any]) -> None:
    """An object whose ``event`` is missing or not one Twilio sends raises UnknownMessage."""
    with pytest.raises(UnknownMessage) as info:
        twilio.parse_message(dumps(msg))
    assert info.value.code == "unknown_message_type"


def test_unknown_event_message_is_short() -> None:
    """A huge unknown event name is cut short in the error message."""
    with pytest.raises(UnknownMessage) as info:
        twilio.parse_message(dumps({"event": "x" * 10_000}))
    assert len(info.value.message) < 100


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=16,
)


@given(st.text())
def test_parse_raises_only_bad_input_for_arbitrary_text(text: str) -> None:
    """Whatever text arrives, parse_message returns a message or raises BadInput."""
    try:
        twilio.parse_message(text)
    except BadInput:
        pass


@given(
    st.sampled_from([e.value for e in twilio.TwilioEvent]),
    st.dictionaries(
        st.sampled_from(["start", "media", "dtmf", "mark", "stop", "streamSid", "version"]),
        JSON_VALUES,
    ),
)
def test_parse_raises_only_bad_input_for_known_events_with_arbitrary_fields(
    event: str, fields: dict[str, Any]
) -> None:
    """A known event with arbitrary JSON in its fields gives a message or BadInput, never another error."""
    try:
        twilio.parse_message(dumps({"event": event, **fields}))
    except BadInput:
        pass


# -- media_payload: the fast path ----------------------------------------------------------


def real_frame(payload: str, *, order: list[str], inner: list[str], spaced: bool) -> str:
    """A Twilio media frame with 'event' first, the other fields in ``order``."""
    media = {"track": "inbound", "chunk": "42", "timestamp": "840", "payload": payload}
    rest = {"sequenceNumber": "44", "media": {k: media[k] for k in inner}, "streamSid": STREAM}
    msg = {"event": "media", **{k: rest[k] for k in order}}
    # json.dumps' default separators are ", " and ": ", as Twilio's docs print frames.
    return json.dumps(msg) if spaced else dumps(msg)


@given(
    payload=st.binary(max_size=640).map(lambda b: base64.b64encode(b).decode()),
    order=st.permutations(["sequenceNumber", "media", "streamSid"]),
    inner=st.permutations(["track", "chunk", "timestamp", "payload"]),
    spaced=st.booleans(),
)
@example(payload="", order=["sequenceNumber", "media", "streamSid"],
         inner=["track", "chunk", "timestamp", "payload"], spaced=True)
def test_media_payload_agrees_with_parse_message(
    payload: str, order: list[str], inner: list[str], spaced: bool
) -> None:
    """On real media frames (any field order after 'event', compact or spaced) the fast path answers, and agrees with parse_message."""
    text = real_frame(payload, order=list(order), inner=list(inner), spaced=spaced)
    parsed = twilio.parse_message(text)
    assert isinstance(parsed, twilio.Media)
    assert twilio.media_payload(text) == parsed.payload == payload


def test_media_payload_on_the_documented_frame() -> None:
    """The fast path reads the payload of the frame as Twilio documents it."""
    assert twilio.media_payload(dumps(MEDIA)) == "no+JhoaJjpzSHxAKBgYJ"


@pytest.mark.parametrize("frame", [CONNECTED, START, DTMF, MARK, STOP], ids=lambda f: f["event"])
def test_media_payload_is_none_for_other_events(frame: dict[str, Any]) -> None:
    """Non-media frames are left to parse_message."""
    assert twilio.media_payload(dumps(frame)) is None
    assert twilio.media_payload(orjson.dumps(frame, option=orjson.OPT_INDENT_2).decode()) is None


@pytest.mark.parametrize(
    "text",
    [
        r'{"event":"media","media":{"payload":"ab\/cd"}}',
        r'{"event":"media","media":{"payload":"ab\"cd"}}',
        r'{"event":"media","media":{"payload":"\u0041AAA"}}',
        r'{"event":"media","media":{"payload":"AAAA\\"}}',
    ],
)
def test_media_payload_is_none_when_payload_has_a_backslash(text: str) -> None:
    """A payload with any JSON escape is left to parse_message, which decodes it."""
    assert twilio.media_payload(text) is None
    assert isinstance(twilio.parse_message(text), twilio.Media)


@pytest.mark.parametrize(
    "text",
    [
        dumps({"streamSid": STREAM, "event": "media", "media": {"payload": "AAAA"}}),
        dumps({"sequenceNumber": "44", "event": "media", "media": {"payload": "AAAA"}}),
        '{' + " " * 30 + '"event":"media","media":{"payload":"AAAA"}}',
        dumps({"media": {"payload": "AAAA"}, "event": "media"}),
    ],
    ids=["streamSid-first", "sequenceNumber-first", "padded", "event-last"],
)
def test_media_payload_is_none_when_event_is_not_near_the_start(text: str) -> None:
    """When "event" is not within the first characters, the fast path declines."""
    assert twilio.media_payload(text) is None
    assert twilio.parse_message(text) == twilio.Media(payload="AAAA")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "media",
        '{"event":"media"}',
        '{"event":"media","media":{"payload":"AAAA',
        '{"event":"mediaX","media":{"payload":"AAAA"}}',
        '{"event":"stop","note":"media","media":{"payload":"AAAA"}}',
    ],
    ids=["empty", "bare", "no-payload", "unterminated", "other-event", "media-elsewhere"],
)
def test_media_payload_is_none_for_unrecognised_text(text: str) -> None:
    """Text that is not plainly a media frame gives None, never a guess."""
    assert twilio.media_payload(text) is None


@pytest.mark.parametrize(
    "text",
    [
        '{"event":"media","media":{"payload":1,"a":"b"}}',
        '{"x":"event","media":{"payload":"AAAA"}}',
        '{"event":"media","media":{"track":"payload","payload":"AAAA"}}',
    ],
    ids=["numeric-payload", "event-as-value", "payload-as-value"],
)
def test_media_payload_only_answers_what_parse_message_agrees_with(text: str) -> None:
    """When the fast path answers, parse_message gives a Media with the same payload."""
    fast = twilio.media_payload(text)
    try:
        parsed: Any = twilio.parse_message(text)
    except BadInput:
        parsed = None
    assert fast is None or parsed == twilio.Media(payload=fast)


@pytest.mark.parametrize(
    "text",
    [
        '{"event":"media","payload":"AAAA","media":{"payload":"BBBB"}}',
        '{"event":"media","payload":"AAAA"}',
        '{"event": "media", "streamSid": {"payload": "AAAA"}, "media": {"payload": "BBBB"}}',
    ],
    ids=["before-media", "no-media", "in-another-object"],
)
def test_media_payload_reads_only_the_media_objects_payload(text: str) -> None:
    """A "payload" key outside the media object is never taken for the audio."""
    fast = twilio.media_payload(text)
    try:
        parsed: Any = twilio.parse_message(text)
    except BadInput:
        parsed = None
    assert fast is None or parsed == twilio.Media(payload=fast)


# -- outbound ------------------------------------------------------------------------------


def test_media_message_shape() -> None:
    """An outbound media message is exactly event, streamSid and media.payload."""
    out = twilio.media_message(STREAM, "AAAA")
    assert isinstance(out, bytes)
    assert orjson.loads(out) == {"event": "media", "streamSid": STREAM, "media": {"payload": "AAAA"}}


def test_mark_message_shape() -> None:
    """An outbound mark is exactly event, streamSid and mark.name."""
    out = twilio.mark_message(STREAM, "m-7")
    assert isinstance(out, bytes)
    assert orjson.loads(out) == {"event": "mark", "streamSid": STREAM, "mark": {"name": "m-7"}}


def test_clear_message_shape() -> None:
    """An outbound clear is exactly event and streamSid."""
    out = twilio.clear_message(STREAM)
    assert isinstance(out, bytes)
    assert orjson.loads(out) == {"event": "clear", "streamSid": STREAM}


def test_outbound_messages_are_compact_json() -> None:
    """Outbound messages carry no whitespace (they go out 50 times a second)."""
    assert twilio.clear_message(STREAM) == b'{"event":"clear","streamSid":"' + STREAM.encode() + b'"}'


def test_outbound_mark_escapes_its_name() -> None:
    """A mark name with quotes stays one JSON string that Twilio echoes back verbatim."""
    out = twilio.mark_message(STREAM, 'say "hi"')
    echo = {"event": "mark", "streamSid": STREAM, "mark": orjson.loads(out)["mark"]}
    assert twilio.parse_message(dumps(echo)) == twilio.Mark(name='say "hi"')


@given(st.binary(max_size=640).map(lambda b: base64.b64encode(b).decode()))
def test_outbound_media_is_read_by_the_fast_path(payload: str) -> None:
    """A media message relay builds is one the fast path reads back unchanged."""
    assert twilio.media_payload(twilio.media_message(STREAM, payload).decode()) == payload
