"""Many concurrent sessions are fully isolated: no audio or event crosses between them."""

from __future__ import annotations

import asyncio
import base64
import uuid

from relay_sim.realtime_server import RealtimeConnection

from tests.conftest import Relay
from tests.timing import WAIT

SESSIONS = 50


async def test_fifty_sessions_without_cross_talk(relay: Relay) -> None:
    """50 calls and frontends at once: each hears only its own model and sees only its events."""
    sids = [str(uuid.uuid4()) for _ in range(SESSIONS)]
    frontends = await asyncio.gather(*(relay.frontend(f"/logs/{sid}") for sid in sids))
    calls = await asyncio.gather(*(relay.call(f"/call/{sid}") for sid in sids))
    await asyncio.gather(*(call.start() for call in calls))
    upstreams: dict[str, RealtimeConnection] = {}
    for _ in range(SESSIONS):
        conn = await relay.model.next_connection()
        update = await conn.wait_for("session.update")
        del update
        # Which call is this? Ask it to echo a tagged frame.
        upstreams[str(len(upstreams))] = conn
    # Each call sends a frame carrying its index; find its upstream by that frame.
    for i, call in enumerate(calls):
        await call.send_media(bytes([i]) * 160)
    by_index: dict[int, RealtimeConnection] = {}
    for conn in upstreams.values():
        append = await conn.wait_for("input_audio_buffer.append")
        frame = base64.b64decode(append["audio"])
        assert len(set(frame)) == 1  # one call's frame, whole
        assert frame[0] not in by_index
        by_index[frame[0]] = conn
    assert sorted(by_index) == list(range(SESSIONS))
    # Each model answers with audio tagged by its call; each caller must get only its own.
    await asyncio.gather(*(
        conn.respond_with_audio(bytes([200 - i]) * 800, f"question for {i}")
        for i, conn in by_index.items()
    ))
    for i, (call, fe) in enumerate(zip(calls, frontends)):
        await call.wait_for("media")
        transcript = await fe.wait_for("response.output_audio_transcript.done")
        assert transcript["transcript"] == f"question for {i}"
    for i, call in enumerate(calls):
        audio = call.audio_received()
        assert audio and set(audio) == {200 - i}
    for i, fe in enumerate(frontends):
        associated = [m for m in fe.received if m.get("type") == "session.associated"]
        assert [m["sessionId"] for m in associated] == [sids[i]]
    await asyncio.gather(*(call.hang_up() for call in calls))
    await asyncio.wait_for(asyncio.gather(*(fe.wait_closed() for fe in frontends)), WAIT)
    await relay.wait_idle()
    assert relay.server.health()["endedByReason"] == {"caller_hung_up": SESSIONS}
