"""A model that never answers: one total budget for reaching it, then an apology, not silence."""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import aiohttp
import pytest

from relay.errors import UpstreamConnectError
from relay.messages.closecodes import CloseCode
from relay.messages.twiml import APOLOGY
from relay.providers.openai import open_realtime
from tests.conftest import RelayFactory
from tests.timing import WAIT, t


@pytest.fixture
async def silent_model() -> AsyncIterator[str]:
    """A TCP server that accepts the model connection and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/realtime"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_every_attempt_fits_in_one_budget(silent_model: str) -> None:
    """Ten attempts of 5 s each would be 50 s; the budget ends it in half a second."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(UpstreamConnectError, match="within"):
        await open_realtime(silent_model, {"Authorization": "Bearer sk-test"}, attempts=10, backoff_initial=t(0.05),
                            backoff_max=t(0.1), open_timeout=t(5.0), budget=t(0.5))
    took = loop.time() - started
    assert t(0.4) < took < t(0.5) + t(0.3), took


async def test_the_caller_hears_an_apology_then_is_hung_up(make_relay: RelayFactory,
                                                           silent_model: str) -> None:
    """Past the budget: upstream_failed, the stream closes first (Twilio plays the apology),
    and the REST hang-up follows RELAY_APOLOGY_S later."""
    budget, apology = t(0.5), t(0.4)
    relay = await make_relay(openai_realtime_url=silent_model, upstream_connect_attempts=10,
                             upstream_open_timeout_s=t(5.0), upstream_connect_budget_s=budget,
                             apology_s=apology)
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await call.start()
    ended = await fe.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    assert ended["reason"] == "upstream_failed"
    code, _ = await call.wait_closed(WAIT)
    stream_closed = loop.time() - started
    assert code == CloseCode.NORMAL
    assert stream_closed < budget + t(0.5), stream_closed
    assert relay.twilio.hangups(call.call_sid) == 0  # the apology is playing
    await relay.twilio.wait_for_request(lambda r: r.call_sid == call.call_sid, WAIT)
    hung_up = loop.time() - started
    assert hung_up - stream_closed >= apology * 0.9, (stream_closed, hung_up)
    await relay.wait_idle()
    assert relay.twilio.hangups(call.call_sid) == 1


async def test_other_ends_hang_up_before_the_stream_closes(make_relay: RelayFactory) -> None:
    """A normal end hangs up first, so the apology in the TwiML is never heard then."""
    relay = await make_relay(apology_s=t(5.0))
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    await fe.send_json({"type": "session.end"})
    await relay.twilio.wait_for_request(lambda r: r.call_sid == call.call_sid, WAIT)
    assert not call.is_closed  # hung up while the stream was still open
    await call.wait_closed(t(2.0))  # well before the 5 s an apology would take
    await relay.wait_idle()


@pytest.mark.parametrize("apology_s", [0.0, 6.0])
async def test_twiml_says_the_apology_after_connect(make_relay: RelayFactory,
                                                    apology_s: float) -> None:
    """/twiml ends with <Say> after </Connect> (Twilio's next verb when the stream closes)."""
    relay = await make_relay(public_url="https://relay.example.com", apology_s=apology_s)
    async with aiohttp.ClientSession() as http, http.get(relay.http + "/twiml?sessionId=s1") as r:
        root = ET.fromstring(await r.text())
    verbs = [child.tag for child in root]
    if apology_s:
        assert verbs == ["Connect", "Say"] and root.find("Say").text == APOLOGY  # type: ignore[union-attr]
    else:
        assert verbs == ["Connect"]
