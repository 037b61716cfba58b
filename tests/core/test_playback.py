"""Unit tests for relay.core.playback: marks, play-out estimate, barge-in truncation, base64 lengths."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core.playback import BYTES_PER_MS, Playback, Truncation, b64_decoded_len

T0 = 100.0
INTERVAL_BYTES = 100 * BYTES_PER_MS  # the default 100 ms mark interval


# -- b64_decoded_len ------------------------------------------------------------------------------


@given(st.binary(max_size=4096))
def test_b64_decoded_len_matches_decoding_padded(data: bytes) -> None:
    """For padded base64 of any length (0, 1 or 2 '=' signs), the length equals the decoded length."""
    encoded = base64.b64encode(data).decode()
    assert b64_decoded_len(encoded) == len(base64.b64decode(encoded)) == len(data)


@given(st.binary(max_size=4096))
def test_b64_decoded_len_matches_decoding_unpadded(data: bytes) -> None:
    """Base64 with its padding stripped still gives the exact decoded length."""
    encoded = base64.b64encode(data).decode().rstrip("=")
    assert b64_decoded_len(encoded) == len(data)


@pytest.mark.parametrize(
    ("encoded", "length"),
    [("", 0), ("/w==", 1), ("//8=", 2), ("////", 3), ("/w", 1), ("//8", 2), ("//////8=", 5)],
)
def test_b64_decoded_len_padding_cases(encoded: str, length: int) -> None:
    """Each padding case (none, one '=', two '=', absent) gives the right byte count."""
    assert b64_decoded_len(encoded) == length


def test_twilio_frame_is_160_bytes() -> None:
    """A 20 ms μ-law frame (160 bytes, 216 base64 characters) is counted as 160 bytes."""
    frame = base64.b64encode(bytes(range(160))).decode()
    assert len(frame) == 216
    assert b64_decoded_len(frame) == 160


# -- marks ---------------------------------------------------------------------------------------


def test_nothing_playing_initially() -> None:
    """A new Playback plays nothing, has no marks pending and has heard nothing."""
    playback = Playback()
    assert not playback.playing
    assert playback.item_id is None and playback.sent_bytes == 0
    assert playback.marks_pending == 0
    assert playback.heard_ms(T0) == 0
    assert playback.barge_in(T0) is None


def test_mark_every_interval_of_audio() -> None:
    """With 20 ms chunks and a 100 ms interval, a mark follows every fifth chunk."""
    playback = Playback(mark_interval_ms=100)
    marks = [playback.on_audio("item_1", 160, T0) for _ in range(15)]
    assert marks == [*[None] * 4, "relay-1", *[None] * 4, "relay-2", *[None] * 4, "relay-3"]
    assert playback.sent_bytes == 15 * 160
    assert playback.marks_pending == 3
    assert playback.playing and playback.item_id == "item_1"


@pytest.mark.parametrize("interval_ms", [20, 40, 100, 250])
def test_mark_interval_is_configurable(interval_ms: int) -> None:
    """The first mark comes once mark_interval_ms of audio is unmarked."""
    playback = Playback(mark_interval_ms=interval_ms)
    needed = interval_ms * BYTES_PER_MS
    assert playback.on_audio("item_1", needed - 1, T0) is None
    assert playback.on_audio("item_1", 1, T0) == "relay-1"


def test_zero_interval_marks_every_chunk() -> None:
    """A zero interval is treated as one byte: every chunk gets a mark."""
    playback = Playback(mark_interval_ms=0)
    assert [playback.on_audio("i", 10, T0) for _ in range(3)] == ["relay-1", "relay-2", "relay-3"]


@given(st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=60),
       st.integers(min_value=1, max_value=500))
def test_unmarked_audio_stays_below_interval(chunks: list[int], interval_ms: int) -> None:
    """After every chunk, the audio sent since the last mark is less than one interval."""
    playback = Playback(mark_interval_ms=interval_ms)
    interval = interval_ms * BYTES_PER_MS
    marked = 0
    for nbytes in chunks:
        if playback.on_audio("item", nbytes, T0) is not None:
            marked = playback.sent_bytes
        assert 0 <= playback.sent_bytes - marked < interval
    assert playback.sent_bytes == sum(chunks)


def test_final_mark_at_audio_done() -> None:
    """on_audio_done always returns a new mark, even right after an interval mark."""
    playback = Playback()
    assert playback.on_audio("item_1", INTERVAL_BYTES, T0) == "relay-1"
    assert playback.on_audio_done("item_1") == "relay-2"
    assert playback.audio_done and playback.marks_pending == 2


def test_audio_done_for_other_item_is_ignored() -> None:
    """on_audio_done for an item that is not playing returns None and changes nothing."""
    playback = Playback()
    playback.on_audio("item_1", 160, T0)
    assert playback.on_audio_done("item_2") is None
    assert not playback.audio_done and playback.marks_pending == 0


def test_mark_names_are_unique_across_items() -> None:
    """Mark names keep counting across items, so an old echo never matches a new mark."""
    playback = Playback()
    assert playback.on_audio("item_1", INTERVAL_BYTES, T0) == "relay-1"
    playback.barge_in(T0)
    assert playback.on_audio("item_2", INTERVAL_BYTES, T0) == "relay-2"


def test_item_completes_only_when_final_mark_echoes() -> None:
    """on_mark is True only for the echo that follows on_audio_done; then nothing plays."""
    playback = Playback()
    playback.on_audio("item_1", INTERVAL_BYTES, T0)  # relay-1
    playback.on_audio("item_1", 400, T0)
    final = playback.on_audio_done("item_1")  # relay-2
    assert playback.on_mark("relay-1", T0 + 0.125) is False
    assert playback.playing
    assert playback.on_mark(final, T0 + 0.25) is True
    assert not playback.playing and playback.marks_pending == 0


def test_mark_echo_before_audio_done_does_not_complete() -> None:
    """Every mark echoed but the item's audio not done: still playing."""
    playback = Playback()
    playback.on_audio("item_1", INTERVAL_BYTES, T0)
    assert playback.on_mark("relay-1", T0 + 0.125) is False
    assert playback.playing and playback.marks_pending == 0


def test_later_echo_acknowledges_earlier_marks() -> None:
    """An echo of a later mark also retires the earlier pending ones."""
    playback = Playback()
    for _ in range(3):
        playback.on_audio("item_1", INTERVAL_BYTES, T0)
    assert playback.on_mark("relay-2", T0 + 0.25) is False
    assert playback.marks_pending == 1
    assert playback.heard_ms(T0 + 0.25) == 200
    assert playback.on_mark("relay-1", T0 + 0.25) is False  # already retired: ignored
    assert playback.marks_pending == 1


def test_unknown_mark_is_ignored() -> None:
    """An echo of a name relay never sent (or already forgot) returns False and changes nothing."""
    playback = Playback()
    playback.on_audio("item_1", INTERVAL_BYTES, T0)
    assert playback.on_mark("someone-else", T0 + 1) is False
    assert playback.marks_pending == 1
    assert playback.heard_ms(T0 + 0.0625) == 62


def test_a_new_item_keeps_the_last_ones_pending_marks() -> None:
    """Audio of a new item while the last one still plays: both are tracked, no mark forgotten."""
    playback = Playback()
    playback.on_audio("item_1", INTERVAL_BYTES, T0)  # relay-1 at 100 ms of item_1
    playback.on_audio("item_1", 400, T0)
    assert playback.on_audio_done("item_1") == "relay-2"  # at 150 ms
    playback.on_audio("item_2", 400, T0 + 0.01)
    assert playback.items == ["item_1", "item_2"] and playback.marks_pending == 2
    assert playback.item_id == "item_2" and playback.sent_bytes == 400
    assert playback.on_mark("relay-1", T0 + 0.125) is False  # echoes of item_1 still count
    assert playback.heard_ms(T0 + 0.125 + 0.03125) == 131  # still in item_1
    assert playback.on_mark("relay-2", T0 + 0.1875) is False  # item_1 played; item_2 plays now
    assert playback.items == ["item_2"]
    assert playback.heard_ms(T0 + 0.1875 + 0.03125) == 31


def test_heard_moves_on_to_the_next_item_at_real_time_speed() -> None:
    """With no echo yet, the estimate runs through the first item, then into the next."""
    playback = Playback()
    playback.on_audio("item_1", 800, T0)  # 100 ms
    playback.on_audio_done("item_1")
    playback.on_audio("item_2", 800, T0)
    assert playback.heard_ms(T0 + 0.0625) == 62  # item_1
    assert playback._position(T0 + 0.125)[0].id == "item_2"  # type: ignore[index]
    assert playback.heard_ms(T0 + 0.125) == 25
    assert playback.heard_ms(T0 + 5) == 100  # capped at what was sent of item_2


def test_an_item_sent_after_a_gap_plays_from_its_arrival() -> None:
    """Twilio cannot play an item before it arrives: a late item's clock starts at its first chunk."""
    playback = Playback()
    playback.on_audio("item_1", 800, T0)
    playback.on_audio_done("item_1")
    playback.on_audio("item_2", 800, T0 + 1)
    assert playback.heard_ms(T0 + 1.0625) == 62


def test_barge_in_truncates_the_item_being_heard() -> None:
    """A barge-in while item_1 still plays truncates item_1 at its offset, not item_2."""
    playback = Playback()
    for _ in range(3):
        playback.on_audio("item_1", INTERVAL_BYTES, T0)  # relay-1..3
    playback.on_audio_done("item_1")
    playback.on_audio("item_2", INTERVAL_BYTES, T0)
    playback.on_mark("relay-2", T0 + 0.25)  # 200 ms of item_1 heard
    assert playback.barge_in(T0 + 0.25 + 0.0625) == Truncation("item_1", 262)
    assert not playback.playing and playback.marks_pending == 0
    assert playback.was_truncated("item_1") and playback.was_truncated("item_2")
    assert not playback.was_truncated("item_3")


# -- heard estimate and barge-in -------------------------------------------------------------------


def test_heard_before_first_mark_is_elapsed_since_first_chunk() -> None:
    """Until a mark echoes, heard = time since the first chunk at 8 bytes per ms, capped at sent."""
    playback = Playback()
    playback.on_audio("item_1", 4000, T0)  # 500 ms
    playback.on_audio("item_1", 4000, T0 + 0.25)  # later chunks do not restart the clock
    assert playback.heard_ms(T0) == 0
    assert playback.heard_ms(T0 + 0.125) == 125
    assert playback.heard_ms(T0 + 0.5) == 500
    assert playback.heard_ms(T0 + 5) == 1000  # capped at the 8000 bytes sent


def test_heard_after_echo_is_acked_plus_elapsed() -> None:
    """After an echo, heard = audio before that mark + time since the echo, capped at sent."""
    playback = Playback()
    for _ in range(3):
        playback.on_audio("item_1", INTERVAL_BYTES, T0)  # marks at 100, 200, 300 ms
    playback.on_mark("relay-1", T0 + 0.5)  # a late echo: Twilio started playing late
    assert playback.heard_ms(T0 + 0.5) == 100
    assert playback.heard_ms(T0 + 0.5625) == 162
    assert playback.heard_ms(T0 + 10) == 300


def test_heard_never_negative_for_an_earlier_clock() -> None:
    """A now before the last echo counts no elapsed time."""
    playback = Playback()
    playback.on_audio("item_1", INTERVAL_BYTES, T0)  # relay-1 at 100 ms
    playback.on_audio("item_1", INTERVAL_BYTES, T0)  # relay-2 at 200 ms
    playback.on_mark("relay-1", T0 + 1)
    assert playback.heard_ms(T0) == 100


@given(
    interval_ms=st.integers(min_value=1, max_value=2000),
    extra=st.integers(min_value=0, max_value=50_000),
    ticks=st.integers(min_value=0, max_value=30_000),
    echoed=st.booleans(),
)
def test_heard_ms_formula(interval_ms: int, extra: int, ticks: int, echoed: bool) -> None:
    """heard_ms = min(sent, acked + elapsed_ms * 8) // 8, elapsed counted from the echo or first chunk."""
    playback = Playback(mark_interval_ms=interval_ms)
    first = interval_ms * BYTES_PER_MS
    assert playback.on_audio("item", first, T0) == "relay-1"
    playback.on_audio("item", extra, T0)
    sent = first + extra
    acked = 0
    if echoed:
        assert playback.on_mark("relay-1", T0) is False
        acked = first
    elapsed_s = ticks / 1024  # a binary fraction: the arithmetic below is exact
    expected_bytes = min(sent, acked + int(elapsed_s * 1000 * BYTES_PER_MS))
    assert playback.heard_ms(T0 + elapsed_s) == expected_bytes // BYTES_PER_MS


def test_barge_in_returns_truncation_and_forgets_item() -> None:
    """barge_in gives the item and heard ms, then nothing plays and pending marks are dropped."""
    playback = Playback()
    for _ in range(3):
        playback.on_audio("item_1", INTERVAL_BYTES, T0)
    playback.on_mark("relay-1", T0 + 0.125)
    truncation = playback.barge_in(T0 + 0.1875)
    assert truncation == Truncation("item_1", 162)
    assert not playback.playing and playback.marks_pending == 0
    assert playback.barge_in(T0 + 0.25) is None


def test_marks_from_before_a_clear_are_ignored() -> None:
    """Echoes of marks sent before a barge-in neither complete nor move the new item's estimate."""
    playback = Playback()
    playback.on_audio("item_1", INTERVAL_BYTES, T0)  # relay-1
    playback.on_audio_done("item_1")  # relay-2
    playback.barge_in(T0 + 0.0625)
    playback.on_audio("item_2", 400, T0 + 0.125)
    assert playback.on_mark("relay-1", T0 + 0.125) is False
    assert playback.on_mark("relay-2", T0 + 0.125) is False
    assert playback.playing and playback.item_id == "item_2"
    assert playback.heard_ms(T0 + 0.15625) == 31


def test_barge_in_after_completion_gives_nothing() -> None:
    """Once the final mark echoed, there is nothing left to truncate."""
    playback = Playback()
    playback.on_audio("item_1", 400, T0)
    final = playback.on_audio_done("item_1")
    assert final is not None
    assert playback.on_mark(final, T0 + 0.0625) is True
    assert playback.barge_in(T0 + 0.125) is None
