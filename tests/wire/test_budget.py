"""relay.wire.budget: what a peer may send, with the clock passed in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.wire.budget import BudgetLimits, InboundBudget, Overrun

CONT, TEXT, BINARY, PING = 0x0, 0x1, 0x2, 0x9


def limits(**changes: float) -> BudgetLimits:
    values = {"messages_per_s": 10.0, "message_burst": 5, "bytes_per_s": 0.0,
              "max_fragments": 0, "max_message": 100, **changes}
    return BudgetLimits.for_endpoint(**values)  # type: ignore[arg-type]


def test_burst_then_the_rate() -> None:
    """``burst`` frames at once, then one per 1/rate seconds."""
    budget = InboundBudget(limits(), now=0.0)
    assert all(budget.charge(TEXT, True, 10, 0.0) is None for _ in range(5))
    assert budget.charge(TEXT, True, 10, 0.0) is Overrun.MESSAGES
    budget = InboundBudget(limits(), now=0.0)
    for _ in range(5):
        budget.charge(TEXT, True, 10, 0.0)
    assert budget.charge(TEXT, True, 10, 0.1) is None  # refilled one
    assert budget.charge(TEXT, True, 10, 0.1) is Overrun.MESSAGES


def test_every_frame_counts_empty_and_control_frames_too() -> None:
    """Empty frames and pings cost a message each: they make relay work as much as any."""
    budget = InboundBudget(limits(), now=0.0)
    for opcode in (TEXT, PING, TEXT, PING, TEXT):
        assert budget.charge(opcode, True, 2, 0.0) is None
    assert budget.charge(PING, True, 2, 0.0) is Overrun.MESSAGES


def test_bytes_a_second() -> None:
    """The byte bucket holds the message burst's seconds of bytes, refilled at the rate."""
    rules = limits(bytes_per_s=1000.0, messages_per_s=0.0, max_message=100)
    assert rules.byte_burst == 1000.0  # 1 s (no message rate), above 2 × (100 + 14)
    budget = InboundBudget(rules, now=0.0)
    assert budget.charge(TEXT, True, 900, 0.0) is None
    assert budget.charge(TEXT, True, 200, 0.0) is Overrun.BYTES
    assert budget.charge(TEXT, True, 200, 0.2) is None


def test_the_byte_burst_always_fits_two_of_the_largest_messages() -> None:
    """A tiny byte rate never refuses one message of the endpoint's maximum size."""
    rules = limits(bytes_per_s=10.0, max_message=16_384)
    assert rules.byte_burst >= 2 * 16_384
    assert InboundBudget(rules, now=0.0).charge(TEXT, True, 16_384 + 14, 0.0) is None


def test_fragments_per_message() -> None:
    """A message may come in at most ``max_fragments`` frames; pings between them do not count."""
    budget = InboundBudget(limits(max_fragments=3, messages_per_s=0.0), now=0.0)
    assert budget.charge(TEXT, False, 2, 0.0) is None
    assert budget.charge(PING, True, 2, 0.0) is None
    assert budget.charge(CONT, False, 2, 0.0) is None
    assert budget.charge(CONT, True, 2, 0.0) is None  # three frames: fine
    assert budget.charge(BINARY, False, 2, 0.0) is None
    assert budget.charge(CONT, False, 2, 0.0) is None
    assert budget.charge(CONT, False, 2, 0.0) is Overrun.FRAGMENTS  # a fourth is coming


def test_endless_empty_continuations_are_refused_early() -> None:
    """Empty continuation frames that never end a message trip the fragment limit at once."""
    budget = InboundBudget(limits(max_fragments=32, messages_per_s=0.0), now=0.0)
    verdicts = [budget.charge(TEXT, False, 2, 0.0)]
    verdicts += [budget.charge(CONT, False, 2, 0.0) for _ in range(1_000)]
    assert verdicts.index(Overrun.FRAGMENTS) == 31  # the 32nd frame says a 33rd is coming


def test_zero_turns_a_part_off() -> None:
    """A rate of 0 (and max_fragments 0) lets everything through."""
    budget = InboundBudget(limits(messages_per_s=0.0, bytes_per_s=0.0), now=0.0)
    assert all(budget.charge(CONT if i else TEXT, False, 10_000, 0.0) is None
               for i in range(10_000))


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=200))
def test_never_more_than_burst_plus_rate_times_time(gaps: list[float]) -> None:
    """However frames are spaced, accepted ones never exceed burst + rate × elapsed."""
    rules = limits(messages_per_s=10.0, message_burst=5)
    budget = InboundBudget(rules, now=0.0)
    now = accepted = 0
    for gap in gaps:
        now += gap
        accepted += budget.charge(TEXT, True, 1, now) is None
        assert accepted <= 5 + 10.0 * now + 1e-9
