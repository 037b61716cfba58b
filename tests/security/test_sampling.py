"""relay.security.sampling: refusals of a client are logged in full a few times, then counted."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.security.sampling import RefusalSampler, Sample


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_first_n_in_full_then_counts_at_powers_of_ten() -> None:
    """First three logged; then one count line at 1, 10, 100 and 1000 unlogged refusals."""
    sampler = RefusalSampler(3, 60.0, Clock())
    samples = [sampler.note("1.2.3.4") for _ in range(1_003)]
    logged = [(i, s) for i, s in enumerate(samples) if s is not None]
    assert [s for _, s in logged[:3]] == [Sample(full=True)] * 3
    assert [(i, s.suppressed) for i, s in logged[3:]] == [(3, 1), (12, 10), (102, 100),
                                                         (1002, 1000)]


def test_keys_are_independent() -> None:
    """One noisy client does not silence another."""
    sampler = RefusalSampler(1, 60.0, Clock())
    for _ in range(50):
        sampler.note("noisy")
    assert sampler.note("quiet") == Sample(full=True)


def test_a_quiet_window_starts_over_and_reports_what_went_unlogged() -> None:
    """After window_s without a refusal, the key is logged in full again, with the earlier count."""
    clock = Clock()
    sampler = RefusalSampler(2, 10.0, clock)
    for _ in range(2 + 15):  # 15 unlogged: reported at 1 and 10, so 5 never were
        sampler.note("k")
    clock.now = 11.0
    assert sampler.note("k") == Sample(full=True, earlier=5)
    assert sampler.note("k") == Sample(full=True)
    assert sampler.note("k") == Sample(full=False, suppressed=1)


def test_forget_returns_what_was_never_reported() -> None:
    """A connection that closes hands back its unreported count, once."""
    sampler = RefusalSampler(1, 60.0, Clock())
    for _ in range(1 + 7):
        sampler.note(3)
    assert sampler.forget(3) == 6  # the first unlogged one was reported as a count
    assert sampler.forget(3) == 0


def test_the_table_of_keys_is_bounded() -> None:
    """Spoofed addresses cannot grow memory without bound."""
    sampler = RefusalSampler(1, 60.0, Clock(), max_keys=100)
    for i in range(10_000):
        sampler.note(f"10.0.{i // 256}.{i % 256}")
    assert len(sampler._episodes) == 100


@settings(max_examples=100, deadline=None)
@given(first=st.integers(0, 10), count=st.integers(0, 20_000))
def test_lines_grow_with_the_log_of_the_refusals(first: int, count: int) -> None:
    """n refusals cost at most first + log10(n) + 1 lines."""
    sampler = RefusalSampler(first, 60.0, Clock())
    lines = sum(sampler.note("k") is not None for _ in range(count))
    assert lines <= first + len(str(max(count, 1))) + 1
