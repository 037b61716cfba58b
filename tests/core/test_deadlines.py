"""Unit tests for relay.core.deadlines: a session's clocks, driven by explicit times.

Deadlines is pure: every method takes ``now``. Times here are whole seconds
from T0 so every comparison is exact.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.core.deadlines import Deadlines, Due, Limits

T0 = 1000.0
# Distinct, easy-to-read limits: warn at +40 idle, end at +60 idle; warn at +280, cap at +300.
LIMITS = Limits(
    inactivity_warning_s=40.0,
    inactivity_timeout_s=60.0,
    max_session_s=300.0,
    duration_warning_s=20.0,
    resume_grace_s=10.0,
    farewell_timeout_s=5.0,
)
ENDS = {Due.INACTIVITY, Due.MAX_DURATION, Due.GRACE, Due.FAREWELL}


def make(limits: Limits = LIMITS) -> Deadlines:
    return Deadlines(limits, T0)


# -- inactivity ------------------------------------------------------------------------------


def test_nothing_is_due_before_the_first_deadline() -> None:
    """Until the inactivity warning time, due() is empty."""
    d = make()
    assert d.due(T0) == []
    assert d.due(T0 + 39.9) == []


def test_inactivity_warning_is_given_once_per_idle_period() -> None:
    """The inactivity warning is due once, and not again while the user stays idle."""
    d = make()
    assert d.due(T0 + 40) == [Due.INACTIVITY_WARNING]
    assert d.due(T0 + 41) == []
    assert d.due(T0 + 59) == []


def test_inactivity_ends_after_the_timeout() -> None:
    """With no activity, inactivity is due at the timeout (after its warning was given)."""
    d = make()
    d.due(T0 + 40)
    assert d.due(T0 + 60) == [Due.INACTIVITY]


def test_touch_resets_the_idle_clock() -> None:
    """Activity moves both the inactivity warning and the timeout."""
    d = make()
    assert d.touch(T0 + 30) is False
    assert d.due(T0 + 69) == []
    assert d.due(T0 + 70) == [Due.INACTIVITY_WARNING]
    assert d.due(T0 + 89) == []
    assert d.due(T0 + 90) == [Due.INACTIVITY]


def test_touch_reports_a_cancelled_warning_once() -> None:
    """touch() returns True only for the first activity after a warning was given."""
    d = make()
    d.due(T0 + 40)
    assert d.touch(T0 + 45) is True
    assert d.touch(T0 + 46) is False


def test_a_new_idle_period_gets_a_new_warning() -> None:
    """After activity cancels a warning, the next idle period is warned again."""
    d = make()
    assert d.due(T0 + 40) == [Due.INACTIVITY_WARNING]
    d.touch(T0 + 50)
    assert d.due(T0 + 89) == []
    assert d.due(T0 + 90) == [Due.INACTIVITY_WARNING]
    assert d.due(T0 + 110) == [Due.INACTIVITY]


def test_left_ms_counts_down_to_each_end() -> None:
    """inactivity_left_ms and duration_left_ms give the time to each end, never below zero."""
    d = make()
    d.touch(T0 + 10)
    assert d.inactivity_left_ms(T0 + 50) == 20_000
    assert d.duration_left_ms(T0 + 280) == 20_000
    assert d.inactivity_left_ms(T0 + 1000) == 0
    assert d.duration_left_ms(T0 + 1000) == 0


# -- the hard cap ----------------------------------------------------------------------------


def test_duration_warning_then_max_duration() -> None:
    """The cap is warned duration_warning_s before it, once, and activity does not move it."""
    d = make()
    for at in range(20, 280, 20):
        d.touch(T0 + at)
    assert d.due(T0 + 279) == []
    assert d.due(T0 + 280) == [Due.DURATION_WARNING]
    d.touch(T0 + 285)
    assert d.due(T0 + 299) == []
    assert d.due(T0 + 300) == [Due.MAX_DURATION]


def test_duration_warning_is_given_once_for_good() -> None:
    """Activity after the cap warning does not re-arm it (unlike the inactivity warning)."""
    d = make()
    d.touch(T0 + 270)
    assert d.due(T0 + 280) == [Due.DURATION_WARNING]
    assert d.touch(T0 + 281) is False
    assert d.due(T0 + 290) == []


# -- order -----------------------------------------------------------------------------------


def test_due_lists_every_passed_deadline_in_time_order() -> None:
    """A late check reports each passed deadline, earliest first."""
    d = make(Limits(inactivity_warning_s=40, inactivity_timeout_s=60, max_session_s=300,
                    duration_warning_s=270))
    # warn idle +40, warn cap +30, end idle +60.
    assert d.due(T0 + 100) == [Due.DURATION_WARNING, Due.INACTIVITY_WARNING, Due.INACTIVITY]


def test_warnings_come_before_ends_when_all_have_passed() -> None:
    """When a check comes after warnings and ends alike, each warning comes before the end it announces."""
    d = make()
    result = d.due(T0 + 100)
    assert result == [Due.INACTIVITY_WARNING, Due.INACTIVITY]
    assert result.index(Due.INACTIVITY_WARNING) < result.index(Due.INACTIVITY)


def test_ends_come_last_even_when_a_warning_is_later() -> None:
    """A stalled check lists every warning before any end, as due() documents ('ends last')."""
    d = make()
    result = d.due(T0 + 1000)
    assert set(result) == {Due.INACTIVITY_WARNING, Due.INACTIVITY, Due.DURATION_WARNING,
                           Due.MAX_DURATION}
    last_warning = max(i for i, due in enumerate(result) if due not in ENDS)
    first_end = min(i for i, due in enumerate(result) if due in ENDS)
    assert last_warning < first_end


def test_two_deadlines_at_the_same_time() -> None:
    """An idle timeout equal to the cap, with no activity, makes both due at once without error."""
    d = make(Limits(inactivity_warning_s=0, inactivity_timeout_s=300, max_session_s=300,
                    duration_warning_s=0))
    assert set(d.due(T0 + 300)) == {Due.INACTIVITY, Due.MAX_DURATION}


# -- grace and farewell ----------------------------------------------------------------------


def test_grace_is_due_once_after_the_window() -> None:
    """start_grace() makes GRACE due resume_grace_s later, once."""
    d = make()
    d.start_grace(T0 + 5)
    assert d.next() == T0 + 15
    assert d.due(T0 + 14) == []
    assert d.due(T0 + 15) == [Due.GRACE]
    assert d.grace_at is None
    assert d.due(T0 + 16) == []


def test_grace_can_be_cancelled() -> None:
    """Clearing grace_at (someone came back) means GRACE is never due."""
    d = make()
    d.start_grace(T0 + 5)
    d.grace_at = None
    assert d.due(T0 + 20) == []


def test_farewell_is_due_once_after_the_timeout() -> None:
    """start_farewell() makes FAREWELL due farewell_timeout_s later, once."""
    d = make()
    d.start_farewell(T0 + 2)
    assert d.next() == T0 + 7
    assert d.due(T0 + 6) == []
    assert d.due(T0 + 7) == [Due.FAREWELL]
    assert d.farewell_at is None
    assert d.due(T0 + 8) == []


def test_restarting_grace_moves_it() -> None:
    """A second start_grace() replaces the first window."""
    d = make()
    d.start_grace(T0)
    d.start_grace(T0 + 8)
    assert d.due(T0 + 10) == []
    assert d.due(T0 + 18) == [Due.GRACE]


# -- disabled warnings -----------------------------------------------------------------------


def test_zero_disables_the_warnings() -> None:
    """With both warnings at 0, only the ends are ever due."""
    d = make(Limits(inactivity_warning_s=0, inactivity_timeout_s=60, max_session_s=300,
                    duration_warning_s=0))
    assert d.next() == T0 + 60
    assert d.due(T0 + 59) == []
    assert d.due(T0 + 60) == [Due.INACTIVITY]
    d.touch(T0 + 250)
    assert d.due(T0 + 299) == []
    assert d.due(T0 + 300) == [Due.MAX_DURATION]


def test_warning_not_before_its_end_is_disabled() -> None:
    """A warning at or after the end it announces is never given."""
    d = make(Limits(inactivity_warning_s=60, inactivity_timeout_s=60, max_session_s=300,
                    duration_warning_s=300))
    assert d.next() == T0 + 60
    assert d.due(T0 + 60) == [Due.INACTIVITY]


# -- next() ----------------------------------------------------------------------------------


def test_next_is_the_inactivity_warning_at_first() -> None:
    """A fresh session's earliest deadline is its inactivity warning."""
    assert make().next() == T0 + 40


def test_next_moves_past_a_given_warning() -> None:
    """Once the warning is given, next() is the timeout it announced."""
    d = make()
    d.due(T0 + 40)
    assert d.next() == T0 + 60


def test_next_follows_activity() -> None:
    """Activity pushes next() out, up to the cap warning."""
    d = make()
    d.touch(T0 + 100)
    assert d.next() == T0 + 140
    d.touch(T0 + 270)
    assert d.next() == T0 + 280


def test_next_is_the_farewell_when_sooner() -> None:
    """A farewell sooner than every other deadline is next."""
    d = make()
    d.start_farewell(T0 + 1)
    assert d.next() == T0 + 6


def build(touches: list[int], grace: int | None, farewell: int | None) -> Deadlines:
    """Deadlines after activity at ``touches`` and, if given, grace and farewell started.

    Activity, grace and farewell land on different fractions of a second from each other and
    from the whole-second cap, so no two deadlines coincide (ties are the known bug above).
    """
    d = make()
    for at in touches:
        d.touch(T0 + at + 0.5)
    if grace is not None:
        d.start_grace(T0 + grace + 0.25)
    if farewell is not None:
        d.start_farewell(T0 + farewell + 0.75)
    return d


@given(
    touches=st.lists(st.integers(min_value=0, max_value=400), max_size=6).map(sorted),
    grace=st.none() | st.integers(min_value=0, max_value=400),
    farewell=st.none() | st.integers(min_value=0, max_value=400),
)
def test_next_is_the_earliest_time_due_reports(
    touches: list[int], grace: int | None, farewell: int | None
) -> None:
    """Nothing is due just before next(), and something is due at next()."""
    at = build(touches, grace, farewell).next()
    assert build(touches, grace, farewell).due(at - 0.1) == []
    assert build(touches, grace, farewell).due(at) != []


def test_version_changes_exactly_when_a_deadline_may_move() -> None:
    """version moves on activity, grace, farewell and passed deadlines, never on a read."""
    d = make()
    seen = d.version
    d.next()
    assert d.due(T0) == [] and d.version == seen  # reads and an empty due() move nothing
    for change in (lambda: d.touch(T0 + 1), lambda: d.start_grace(T0 + 1),
                   lambda: setattr(d, "grace_at", None), lambda: d.start_farewell(T0 + 1)):
        change()
        assert d.version > seen
        seen = d.version
    assert d.due(T0 + 10_000) and d.version > seen
