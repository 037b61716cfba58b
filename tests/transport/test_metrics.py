"""GET /metrics: Prometheus text with sessions, connections, frames, ends, upstream, loop lag."""

from __future__ import annotations

import uuid

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Relay, RelayFactory

ADMIN = "admin-secret"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


async def scrape(relay: Relay, headers: dict[str, str] | None = AS_ADMIN
                 ) -> dict[tuple[str, tuple], float]:
    async with aiohttp.ClientSession() as http:
        async with http.get(relay.http + "/metrics", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    samples = {}
    node = relay.server.registry.node
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("node") == node, sample  # every sample names its node
            samples[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return samples


async def test_metrics_follow_a_session(make_relay: RelayFactory) -> None:
    """Metrics count the live session, its connections, relayed frames and its end."""
    relay = await make_relay(admin_token=ADMIN)
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    for _ in range(3):
        await call.send_media(b"\x01" * 160)
    for _ in range(3):
        await upstream.wait_for("input_audio_buffer.append")
    await upstream.audio_delta("item_1", b"\xff" * 160)
    await call.wait_for("media")
    live = await scrape(relay)
    assert live[("relay_sessions", (("state", "live"),))] == 1
    assert live[("relay_connections", (("kind", "call"),))] == 1
    assert live[("relay_connections", (("kind", "upstream"),))] == 1
    assert live[("relay_frames_total", (("direction", "caller_to_model"),))] == 3
    assert live[("relay_frames_total", (("direction", "model_to_caller"),))] == 1
    assert live[("relay_upstream_connect_seconds_count", ())] == 1
    assert ("relay_event_loop_lag_seconds", ()) in live
    await call.hang_up()
    await fe.wait_closed()
    await relay.wait_idle()
    done = await scrape(relay)
    assert done[("relay_sessions_ended_total", (("reason", "caller_hung_up"),))] == 1
    assert done[("relay_frames_total", (("direction", "caller_to_model"),))] == 3


async def test_metrics_count_upstream_failures_and_need_the_admin_token(
        make_relay: RelayFactory) -> None:
    """A model that never opens is counted; with an admin token set, /metrics needs it."""
    relay = await make_relay(admin_token=ADMIN)
    relay.model.never_open = True
    call = await relay.call("/call")
    await call.start()
    await call.wait_closed()
    await relay.wait_idle()
    async with aiohttp.ClientSession() as http, http.get(relay.http + "/metrics") as resp:
        assert resp.status == 401
    samples = await scrape(relay)
    assert samples[("relay_upstream_connect_failures_total", ())] == 1
