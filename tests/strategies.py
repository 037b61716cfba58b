"""Hypothesis strategies shared by the property tests: JSON, junk, odd strings, mutations.

The parser properties (tests/test_properties.py) and the audio fast-path
properties (tests/messages/test_audio_fast_path.py) draw from the same inputs.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from typing import Any

from hypothesis import example
from hypothesis import strategies as st

SID = "3f2c9a7e-1b2d-4c5e-8f90-a1b2c3d4e5f6"
ACCOUNT = "AC00000000000000000000000000000001"
CALL = "CA00000000000000000000000000000001"
STREAM = "MZ00000000000000000000000000000001"

# -- strategies: JSON, junk, real messages and their mutations -----------------------------------

ODD_STRINGS = [
    "", " ", "null", "true", "0", "-1", "1e999", "NaN", "\u0000", "\t\n", "é", "😀", "\u202e",
    "\ufeff", "media", "payload", "event", "start", "type", "job_config", "session.update",
    "response.create", "heygen", "realtime", "g711_ulaw", "pcm16", "audio", "text", "marin",
    "MARIN", "30", " 7 ", "61", "0", "²", "١٢", "①", "9" * 50, STREAM, CALL, "a" * 65,
    '{"event":"media"}', "\\", '"',
]
TEXT = st.text(max_size=24) | st.sampled_from(ODD_STRINGS)
#: Huge strings, built by repetition so they cost nothing to generate.
HUGE_TEXT = st.builds(
    operator.mul, st.sampled_from(["A", "é", "😀", '"', "\\", " ", "9", "\u0000", "/+"]),
    st.integers(min_value=4_000, max_value=70_000),
)
KNOWN_KEYS = [
    "event", "type", "media", "payload", "start", "streamSid", "callSid", "customParameters",
    "mark", "name", "dtmf", "digit", "stop", "config", "session", "item", "response", "role",
    "content", "call_id", "output", "instructions", "provider", "avatarSessionId", "audio",
    "input", "voice", "durationMinutes", "duration_minutes", "modalities", "part", "delta",
    '"event', '"payload', "event\\",
]
KEYS = st.text(max_size=8) | st.sampled_from(KNOWN_KEYS)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    JSON_SCALARS | HUGE_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
SMALL_JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
#: Duration-like values: ASCII and Unicode digit strings (incl. "²" and over-long ones), ints.
DURATIONS = (
    st.integers(min_value=-5, max_value=100)
    | st.integers(min_value=-5, max_value=100).map(lambda n: f" {n} ")
    | st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=3)
    | st.builds(operator.mul, st.sampled_from(["1", "0"]), st.integers(min_value=4290, max_value=4310))
    | JSON_SCALARS
)
#: Inputs that once broke a parser (their regression tests are at the end of the file).
MEDIA_DISAGREEMENTS = {
    "top-level-array": '[{"event":"media","media":{"payload":"AAAA"}}]',
    "nested-event": '{"x":{"event":"media"},"media":{"payload":"AAAA"}}',
    "quoted-event-key": '{"\\"event":"media","media":{"payload":"AAAA"}}',
    "quoted-payload-key": '{"event":"media","media":{"\\"payload":"AAAA","payload":"BBBB"}}',
    "duplicate-event": '{"event":"media","media":{"payload":"AAAA"},"event":"stop"}',
    "duplicate-media": '{"event":"media","media":{"payload":"AAAA"},"media":{"payload":"BBBB"}}',
    "truncated": '{"event":"media","media":{"payload":"AAAA"}',
    "trailing-junk": '{"event":"media","media":{"payload":"AAAA"}} x',
    "raw-control-character": '{"event":"media","media":{"payload":"AA\nAA"}}',
}
ODD_DIGITS = {"superscript-two": "²", "circled-one": "①", "4301-digits": "1" * 4301}
BAD_TOOLS = {"type": "session.update", "session": {"tools": [{"type": "function", "name": ["x"]}]}}
#: Arbitrary text, lone surrogates included (no websocket delivers those, but str allows them).
ANY_TEXT = st.text() | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)


def examples(*values: Any) -> Callable[[Any], Any]:
    """Each of ``values`` as an explicit example of the decorated property (hypothesis' @example)."""
    def decorate(test: Any) -> Any:
        for value in reversed(values):
            test = example(value)(test)
        return test
    return decorate


@st.composite
def mutations(draw: st.DrawFn, base: Any, keys: st.SearchStrategy[str] = KEYS) -> Any:
    """``base`` with keys dropped, values retyped, junk nested in, and strings blown up."""
    return _mutate(draw, copy.deepcopy(base), keys, depth=0)


def _mutate(draw: st.DrawFn, value: Any, keys: st.SearchStrategy[str], depth: int) -> Any:
    op = draw(st.sampled_from(["keep", "keep", "recurse", "recurse", "replace", "wrap", "blow"]))
    if op == "keep" or depth > 5:
        return value
    if op == "replace":
        return draw(JSON)
    if op == "wrap":
        return draw(st.sampled_from([lambda v: [v], lambda v: {draw(keys): v}, lambda v: [v, v]]))(value)
    if op == "blow":
        return draw(HUGE_TEXT | st.sampled_from(ODD_STRINGS)) if isinstance(value, str) else value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not draw(st.integers(min_value=0, max_value=5)):
                continue  # dropped
            out[key] = _mutate(draw, item, keys, depth + 1)
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            out[draw(keys)] = draw(JSON)
        return out
    if isinstance(value, list):
        out_list = [_mutate(draw, item, keys, depth + 1) for item in value
                    if draw(st.integers(min_value=0, max_value=5))]
        return out_list + draw(st.lists(JSON, max_size=2))
    return value
