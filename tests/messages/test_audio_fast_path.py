"""The model's audio without a JSON parse: relay.messages.realtime.audio_delta and what it feeds.

The fast path must answer exactly as the full parser reads the same text, or not at all; the
Twilio frames it splices must be the bytes orjson writes; and a session fed through it must
decide exactly what the full parse decides — the same frames, marks, truncations and endings.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from unittest import mock

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.core.effects import ModelEvent
from relay.core.session import FrontendInfo, Session, SessionOptions
from relay.messages import realtime as rt
from relay.messages import twilio
from tests.strategies import JSON, TEXT, mutations

SETTINGS = settings(max_examples=200, deadline=None)
IDS = st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True)
B64 = st.binary(max_size=600).map(lambda b: base64.b64encode(b).decode())


def ga_delta(event_id: str, response_id: str, item_id: str, delta: str,
             output_index: int = 0, content_index: int = 0) -> dict[str, Any]:
    """A ``response.output_audio.delta`` with the GA API's fields in its order."""
    return {"type": "response.output_audio.delta", "event_id": event_id,
            "response_id": response_id, "item_id": item_id, "output_index": output_index,
            "content_index": content_index, "delta": delta}


GA_DELTAS = st.builds(ga_delta, IDS, IDS, IDS, B64, st.integers(0, 99), st.integers(0, 9))


@SETTINGS
@given(GA_DELTAS)
def test_real_audio_deltas_are_read_without_parsing(event: dict[str, Any]) -> None:
    """Every audio delta in the GA API's compact shape is recognised, with its item and audio."""
    text = orjson.dumps(event).decode()
    assert rt.audio_delta(text) == (event["item_id"], event["delta"])


@SETTINGS
@given(GA_DELTAS.flatmap(mutations) | JSON | TEXT, st.booleans())
def test_the_fast_path_answers_only_as_the_full_parser_reads(value: Any, spaced: bool) -> None:
    """When audio_delta answers, parse_event reads the same AudioDelta from the same text."""
    text = value if isinstance(value, str) else (
        json.dumps(value) if spaced else orjson.dumps(value).decode())
    fast = rt.audio_delta(text)
    if fast is not None:
        _, typed = rt.parse_event(text)
        assert typed == rt.AudioDelta(*fast)


def test_escapes_and_other_shapes_take_the_full_parser() -> None:
    """An escaped character, another order, a space or an extra field is left to parse_event."""
    base = ga_delta("event_1", "resp_1", "item_1", "AAAA")
    text = orjson.dumps(base).decode()
    assert rt.audio_delta(text) == ("item_1", "AAAA")
    assert rt.audio_delta(text.replace("item_1", "item\\u005f1")) is None
    assert rt.audio_delta(json.dumps(base)) is None
    assert rt.audio_delta(orjson.dumps({**base, "extra": 1}).decode()) is None
    assert rt.audio_delta(orjson.dumps(dict(reversed(base.items()))).decode()) is None


@SETTINGS
@given(TEXT | IDS, TEXT | B64)
def test_spliced_twilio_frames_are_what_orjson_writes(sid: str, value: str) -> None:
    """media and mark messages are the bytes orjson writes for the same dict, escapes and all."""
    assert twilio.media_message(sid, value) == orjson.dumps(
        {"event": "media", "streamSid": sid, "media": {"payload": value}})
    assert twilio.mark_message(sid, value) == orjson.dumps(
        {"event": "mark", "streamSid": sid, "mark": {"name": value}})


# -- a session decides the same either way ---------------------------------------------------

START = twilio.Start(stream_sid="MZ00000000000000000000000000000001",
                     call_sid="CA00000000000000000000000000000001",
                     account_sid="AC00000000000000000000000000000001")
ITEMS = st.sampled_from(["item_a", "item_b", "item_c"])
STEPS = st.lists(st.one_of(
    st.tuples(st.just("delta"), ITEMS, st.integers(1, 1200)),
    st.tuples(st.just("done"), ITEMS),
    st.tuples(st.just("speech"),),
    st.tuples(st.just("mark"), st.integers(1, 12)),
    st.tuples(st.just("time"), st.integers(1, 400)),
    st.tuples(st.just("frontend"), st.booleans()),
    st.tuples(st.just("farewell"),),
), max_size=60)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drive(steps: list[tuple[Any, ...]], *, fast: bool) -> list[Any]:
    """Every effect a session hands back for ``steps``, and its playback at the end."""
    clock = Clock()
    session = Session("s", SessionOptions(greet_first=False), clock)
    log: list[Any] = []

    def record(effects: Any) -> None:
        # An audio delta for frontends is dropped by the runner unless one asked for audio,
        # and then the session takes the full parse either way: what reaches them is the rest.
        frontend = [(fid, m.text if isinstance(m, ModelEvent) else m) for fid, m in effects.frontend
                    if not (isinstance(m, ModelEvent) and m.type == rt.AUDIO_DELTA
                            and not session._audio_frontends)]
        log.append((list(effects.call), list(effects.upstream), frontend, list(effects.commands)))

    for fx in (session.add_frontend(1, FrontendInfo()), session.on_call_started(START),
               session.on_upstream_open()):
        record(fx)
    patch = mock.patch.object(rt, "audio_delta", return_value=None) if not fast else None
    with patch or mock.patch.object(rt, "audio_delta", rt.audio_delta):
        for n, step in enumerate(steps):
            match step:
                case ("delta", item, size):
                    text = orjson.dumps(ga_delta(f"event_{n}", "resp_1", item,
                                                 base64.b64encode(b"\x7f" * size).decode()))
                    record(session.on_upstream_text(text.decode()))
                case ("done", item):
                    record(session.on_upstream_text(orjson.dumps(
                        {"type": "response.output_audio.done", "item_id": item}).decode()))
                case ("speech",):
                    record(session.on_upstream_text(orjson.dumps(
                        {"type": "input_audio_buffer.speech_started", "item_id": "in"}).decode()))
                case ("mark", seq):
                    record(session.on_call_message(twilio.Mark(f"relay-{seq}")))
                case ("time", ms):
                    clock.now += ms / 1000
                    record(session.on_timer())
                case ("frontend", audio):
                    record(session.add_frontend(100 + n, FrontendInfo(wants_audio=audio)))
                case ("farewell",):
                    record(session.on_upstream_text(orjson.dumps({
                        "type": "response.output_item.done", "item": {
                            "type": "function_call", "call_id": f"c{n}", "name": "end_interview",
                            "arguments": "{}"}}).decode()))
    log.append((session.state, session.frames_out, session.playback.items,
                session.playback.marks_pending, session.playback.heard_ms(clock.now)))
    return log


@settings(max_examples=150, deadline=None)
@given(STEPS)
def test_a_session_decides_the_same_with_the_fast_path_or_without(steps: list[Any]) -> None:
    """Audio, marks, barge-ins, late deltas and the farewell: the same effects, in the same order."""
    assert drive(steps, fast=True) == drive(steps, fast=False)
