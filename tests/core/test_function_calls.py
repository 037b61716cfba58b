"""Function calls over real sockets: whose they are, and one response.create per batch.

A tool a frontend declared (``session.update`` tools) is the frontend's: relay
forwards the call and waits for the frontend's ``function_call_output``, or
answers the model with an error after ``RELAY_FRONTEND_TOOL_TIMEOUT_S``. relay
answers its own tools and tools nobody declared. However many calls a response
holds, the model gets every output and then one ``response.create``: the fake
model refuses a second one while a response is in progress, as the real API does
(``conversation_already_has_active_response``), and the fixtures fail the test
if it ever had to.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from relay_sim.frontend import SimulatedFrontend
from relay_sim.realtime_server import RealtimeConnection
from relay_sim.twilio_call import SimulatedCall

from tests.conftest import Relay, RelayFactory
from tests.timing import WAIT, t

WEATHER = {"type": "function", "name": "lookup_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


async def live_call(relay: Relay, tools: list[dict[str, Any]] | None = None,
                    ) -> tuple[SimulatedFrontend, SimulatedCall, RealtimeConnection]:
    sid = str(uuid.uuid4())
    fe = await relay.frontend(f"/logs/{sid}")
    if tools is not None:
        await fe.send_json({"type": "session.update", "session": {"tools": tools}})
        await fe.wait_for("job_config.ack")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    return fe, call, upstream


def outputs(upstream: RealtimeConnection, call_id: str) -> list[dict[str, Any]]:
    return [e["item"] for e in upstream.received if e["type"] == "conversation.item.create"
            and e["item"].get("type") == "function_call_output" and e["item"]["call_id"] == call_id]


def creates(upstream: RealtimeConnection) -> int:
    return sum(1 for e in upstream.received if e["type"] == "response.create")


async def test_a_tool_the_frontend_declared_is_answered_by_the_frontend(relay: Relay) -> None:
    """The call goes to the frontend; the model gets the frontend's output, not relay's."""
    fe, call, upstream = await live_call(relay, [WEATHER])
    assert "lookup_weather" in [tool["name"] for tool in upstream.session["tools"]]
    call_id = await upstream.function_call("lookup_weather", {"city": "Paris"})
    seen = await fe.wait_for("response.output_item.done")
    assert seen["item"]["call_id"] == call_id and seen["item"]["name"] == "lookup_weather"
    await fe.wait_for("response.done")
    # The reference app's "Submit Response": the output, then response.create, back to back.
    await fe.send_json({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call_id, "output": orjson.dumps("sunny").decode()}})
    await fe.send_json({"type": "response.create"})
    first = await upstream.wait_for("conversation.item.create")
    assert first["item"] == {"type": "function_call_output", "call_id": call_id, "output": '"sunny"'}
    await upstream.wait_for("response.create")
    await upstream.response_created()
    await upstream.response_done()
    await fe.wait_for("response.done")
    assert outputs(upstream, call_id) == [first["item"]]
    assert creates(upstream) == 1
    await call.hang_up()
    await relay.wait_idle()


async def test_an_unanswered_frontend_tool_times_out_with_an_error(make_relay: RelayFactory) -> None:
    """With no output from the frontend in time, relay answers the model with an error and goes on."""
    relay = await make_relay(frontend_tool_timeout_s=t(0.3))
    fe, call, upstream = await live_call(relay, [WEATHER])
    call_id = await upstream.function_call("lookup_weather", {"city": "Paris"})
    output = await upstream.wait_for("conversation.item.create", timeout=WAIT)
    assert output["item"]["call_id"] == call_id
    assert "did not answer" in orjson.loads(output["item"]["output"])["error"]
    await upstream.wait_for("response.create")
    # An output the frontend sends after the timeout is forwarded, but owes no second turn.
    await fe.send_json({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call_id, "output": "late"}})
    await upstream.wait_for("conversation.item.create")
    await upstream.response_created()
    await upstream.response_done()
    await fe.wait_for("response.done")
    assert creates(upstream) == 1
    await call.hang_up()
    await relay.wait_idle()


async def test_relay_answers_its_own_tools_and_unknown_ones(relay: Relay) -> None:
    """get_interview_time and a tool nobody declared are answered by relay, each with one response.create."""
    fe, call, upstream = await live_call(relay, [WEATHER])
    own = await upstream.function_call("get_interview_time", {})
    item = (await upstream.wait_for("conversation.item.create"))["item"]
    assert item["call_id"] == own and "elapsed_seconds" in orjson.loads(item["output"])
    await upstream.wait_for("response.create")
    await upstream.response_created()
    await upstream.response_done()
    unknown = await upstream.function_call("transfer_call", {"to": "+15550100"})
    item = (await upstream.wait_for("conversation.item.create"))["item"]
    assert item["call_id"] == unknown
    assert orjson.loads(item["output"]) == {"error": "no such tool: transfer_call"}
    await upstream.wait_for("response.create")
    assert creates(upstream) == 2
    await call.hang_up()
    await relay.wait_idle()


async def test_two_calls_in_one_response_get_one_response_create(relay: Relay) -> None:
    """Two relay tools called in one response: both outputs, then a single response.create."""
    fe, call, upstream = await live_call(relay)
    response_id = await upstream.response_created()
    first = await upstream.function_call("get_interview_time", {}, response_id=response_id,
                                         done=False)
    second = await upstream.function_call("get_interview_time", {}, response_id=response_id,
                                          done=False, output_index=1)
    # Both outputs may go out while the response runs; the response.create waits for its end.
    got = {(await upstream.wait_for("conversation.item.create"))["item"]["call_id"]
           for _ in range(2)}
    assert got == {first, second}
    assert creates(upstream) == 0
    await upstream.response_done(response_id)
    await upstream.wait_for("response.create")
    await upstream.response_created()
    await upstream.response_done()
    await fe.wait_for("response.done", lambda m: m["response"]["id"] != response_id)
    assert creates(upstream) == 1
    assert not upstream.refused
    await call.hang_up()
    await relay.wait_idle()


async def test_a_mixed_batch_waits_for_the_frontends_answer(relay: Relay) -> None:
    """One of relay's tools and one the frontend declared: one response.create, after both outputs."""
    fe, call, upstream = await live_call(relay, [WEATHER])
    response_id = await upstream.response_created()
    own = await upstream.function_call("get_interview_time", {}, response_id=response_id, done=False)
    theirs = await upstream.function_call("lookup_weather", {"city": "Oslo"}, response_id=response_id,
                                          done=False, output_index=1)
    await upstream.response_done(response_id)
    assert (await upstream.wait_for("conversation.item.create"))["item"]["call_id"] == own
    await fe.wait_for("response.done")
    assert creates(upstream) == 0  # the frontend's call is still open
    await fe.send_json({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": theirs, "output": '"snow"'}})
    await fe.send_json({"type": "response.create"})
    assert (await upstream.wait_for("conversation.item.create"))["item"]["call_id"] == theirs
    await upstream.wait_for("response.create")
    await upstream.response_created()
    await upstream.response_done()
    await fe.wait_for("response.done", lambda m: m["response"]["id"] != response_id)
    assert creates(upstream) == 1
    await call.hang_up()
    await relay.wait_idle()


async def test_a_response_create_racing_the_models_own_response_is_refused_harmlessly(
        relay: Relay) -> None:
    """The model refuses a create that raced a response it started itself; relay carries on."""
    fe, call, upstream = await live_call(relay)
    relay.model.refusals_expected = True  # type: ignore[attr-defined]
    upstream.response_requested = True  # turn detection is starting a response right now
    await fe.send_json({"type": "response.create"})
    error = await fe.wait_for("error", lambda m: m.get("source") == "model")
    assert error["error"]["code"] == "conversation_already_has_active_response"
    assert [e["type"] for e in upstream.refused] == ["response.create"]
    await upstream.response_created()
    await upstream.response_done()
    await fe.wait_for("response.done")
    await fe.send_json({"type": "response.create", "response": {"instructions": "Go on."}})
    later = await upstream.wait_for("response.create", lambda e: "response" in e)
    assert later["response"] == {"instructions": "Go on."}
    assert len(upstream.refused) == 1
    await call.hang_up()
    await relay.wait_idle()
