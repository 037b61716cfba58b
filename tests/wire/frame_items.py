"""What the frame-reader tests of both legs share: the frames a peer may send."""

from __future__ import annotations

from hypothesis import strategies as st

TEXT = st.text(max_size=40)
#: One thing a peer sends: a text message, a fragmented one (maybe with a ping
#: between its fragments), a ping, or a message long enough for the longer headers.
ITEM = st.one_of(
    st.tuples(st.just("text"), TEXT),
    st.tuples(st.just("fragments"), st.lists(TEXT, min_size=2, max_size=4), st.booleans()),
    st.tuples(st.just("ping"), st.binary(max_size=8)),
    st.tuples(st.just("big"), st.integers(126, 70_000)),
)
