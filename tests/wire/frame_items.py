"""What the frame-reader tests of both legs share: the frames a peer may send, and a bounded wait."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hypothesis import strategies as st

from tests.timing import WAIT


async def until(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.002)


TEXT = st.text(max_size=40)
#: One thing a peer sends: a text message, a fragmented one (maybe with a ping
#: between its fragments), a ping, or a message long enough for the longer headers.
ITEM = st.one_of(
    st.tuples(st.just("text"), TEXT),
    st.tuples(st.just("fragments"), st.lists(TEXT, min_size=2, max_size=4), st.booleans()),
    st.tuples(st.just("ping"), st.binary(max_size=8)),
    st.tuples(st.just("big"), st.integers(126, 70_000)),
)
