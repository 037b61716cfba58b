"""The reference demo's web app keeps working against relay in the beta dialect.

The app (openai/openai-realtime-twilio-demo, ``webapp/``) was written for the
OpenAI Realtime *beta* API: it opens a bare ``/logs`` WebSocket (no token, no
query string), sends a beta-shaped ``session.update`` and renders what arrives
with its ``handleRealtimeEvent`` reducer (``webapp/lib/handle-realtime-event.ts``)
and ``Transcript`` component (``webapp/components/transcript.tsx``). Both are
ported below, line for line, so the test sees what the app's user would see.

The recorded session (``tests/data/reference_demo_session.json``) holds what the
app sends and what the model (GA) sends during one short interview.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from relay_sim.realtime_server import session_update_error

from tests.conftest import RelayFactory
from tests.timing import WAIT

RECORDING: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "reference_demo_session.json").read_text(encoding="utf-8")
)

#: GA server events that have no beta counterpart under the same name: a beta
#: client must never see them (it would ignore renamed events and render
#: conversation.item.done as a second copy of each item).
GA_ONLY_EVENTS = frozenset({
    "response.output_audio.delta",
    "response.output_audio.done",
    "response.output_audio_transcript.delta",
    "response.output_audio_transcript.done",
    "response.output_text.delta",
    "response.output_text.done",
    "conversation.item.added",
    "conversation.item.done",
})

#: The beta events the app's reducer acts on, besides ``session.created`` (which
#: only clears the items; see test_model_session_created_reaches_the_app).
RENDERED_BETA_EVENTS = frozenset({
    "input_audio_buffer.speech_started",
    "conversation.item.created",
    "conversation.item.input_audio_transcription.completed",
    "response.content_part.added",
    "response.audio_transcript.delta",
    "response.output_item.done",
})

Item = dict[str, Any]


# -- a port of the app's handleRealtimeEvent(ev, setItems) ----------------------------


def _new_item(base: Item) -> Item:
    # createNewItem: the app also stamps a locale time string, left out here.
    return {"object": "realtime.item", **base}


def handle_realtime_event(ev: dict[str, Any], prev: list[Item]) -> list[Item]:
    """The app's reducer: one event in, the next ``items`` state out (``setItems``)."""
    kind = ev.get("type")
    if kind == "session.created":
        return []
    if kind == "input_audio_buffer.speech_started":
        return [*prev, _new_item({"id": ev["item_id"], "type": "message", "role": "user",
                                  "content": [{"type": "text", "text": "..."}],
                                  "status": "running"})]
    if kind == "conversation.item.created":
        item = ev["item"]
        if item["type"] == "message":
            content = item["content"] if item.get("content") else []
            for idx, existing in enumerate(prev):
                if existing.get("id") == item["id"]:
                    updated = list(prev)
                    updated[idx] = {**existing, **item, "content": content, "status": "completed"}
                    return updated
            return [*prev, _new_item({**item, "content": content, "status": "completed"})]
        if item["type"] == "function_call_output":
            new = [*prev, _new_item({**item, "role": "tool", "status": "completed", "content": [
                {"type": "text", "text": f"Function call response: {item['output']}"}]})]
            return [{**m, "status": "completed"}
                    if m.get("call_id") == item["call_id"] and m.get("type") == "function_call" else m
                    for m in new]
        return prev
    if kind == "conversation.item.input_audio_transcription.completed":
        return [{**m, "content": [{"type": "text", "text": ev["transcript"]}], "status": "completed"}
                if m.get("id") == ev["item_id"] and m.get("type") == "message"
                and m.get("role") == "user" else m
                for m in prev]
    if kind == "response.content_part.added":
        part = ev["part"]
        if part["type"] == "text" and ev.get("output_index") == 0:
            return _append_text(prev, ev["item_id"], {"type": part["type"], "text": part.get("text")})
        return prev
    if kind == "response.audio_transcript.delta":
        if ev.get("output_index") == 0 and ev.get("delta"):
            return _append_text(prev, ev["item_id"], {"type": "text", "text": ev["delta"]})
        return prev
    if kind == "response.output_item.done":
        item = ev["item"]
        if item["type"] == "function_call":
            # JSON.stringify(JSON.parse(item.arguments)): compact, key order kept.
            args = json.dumps(json.loads(item["arguments"]), separators=(",", ":"), ensure_ascii=False)
            return [*prev, _new_item({**item, "role": "assistant", "status": "running",
                                      "content": [{"type": "text", "text": f"{item['name']}({args})"}]})]
        return prev
    return prev


def _append_text(prev: list[Item], item_id: str, part: dict[str, Any]) -> list[Item]:
    for idx, existing in enumerate(prev):
        if existing.get("id") == item_id:
            updated = list(prev)
            updated[idx] = {**existing, "content": [*(existing.get("content") or []), part]}
            return updated
    return [*prev, _new_item({"id": item_id, "type": "message", "role": "assistant",
                              "content": [part], "status": "running"})]


def rendered_transcript(items: list[Item]) -> list[dict[str, str]]:
    """What the app's Transcript component shows: role and joined text of each entry."""
    shown = [it for it in items if it.get("type") in ("message", "function_call", "function_call_output")]
    # msg.content.map((c) => c.text).join(""): undefined and null join as "".
    return [{"role": it.get("role", ""),
             "text": "".join(part.get("text") or "" for part in it.get("content") or [])}
            for it in shown]


# -- the tests ----------------------------------------------------------------------------


def test_recording_is_ga_on_the_model_side_and_beta_on_the_app_side() -> None:
    """The recorded session holds only GA model events and the app's beta session.update."""
    [update] = RECORDING["frontend"]["sends"]
    assert update["type"] == "session.update"
    assert {"voice", "input_audio_transcription", "turn_detection"} <= set(update["session"])
    assert session_update_error(update["session"]) is not None  # the GA API would refuse it as is
    kinds = {event["type"] for event in RECORDING["model"]["events"]}
    assert not kinds & {"response.audio_transcript.delta", "response.audio.delta",
                        "conversation.item.created"}
    assert {"response.output_audio_transcript.delta", "conversation.item.added",
            "conversation.item.done"} <= kinds


def test_reducer_port_renders_beta_events() -> None:
    """The ported reducer builds the app's items from beta events, as the TypeScript does."""
    events = [
        {"type": "session.created", "session": {}},
        {"type": "input_audio_buffer.speech_started", "item_id": "u1"},
        {"type": "conversation.item.created",
         "item": {"id": "u1", "type": "message", "role": "user",
                  "content": [{"type": "input_audio", "transcript": None}]}},
        {"type": "conversation.item.input_audio_transcription.completed", "item_id": "u1",
         "transcript": "hello"},
        {"type": "response.audio_transcript.delta", "item_id": "a1", "output_index": 0, "delta": "Hi "},
        {"type": "response.audio_transcript.delta", "item_id": "a1", "output_index": 0, "delta": "there"},
        {"type": "response.output_item.done",
         "item": {"id": "f1", "type": "function_call", "name": "f", "call_id": "c1",
                  "arguments": '{"a": 1}'}},
        {"type": "conversation.item.created",
         "item": {"id": "o1", "type": "function_call_output", "call_id": "c1", "output": "{}"}},
    ]
    items: list[Item] = [{"id": "stale", "type": "message", "role": "user", "content": []}]
    for event in events:
        items = handle_realtime_event(event, items)
    assert rendered_transcript(items) == [
        {"role": "user", "text": "hello"},
        {"role": "assistant", "text": "Hi there"},
        {"role": "assistant", "text": 'f({"a":1})'},
        {"role": "tool", "text": "Function call response: {}"},
    ]
    assert [it["status"] for it in items] == ["completed", "running", "completed", "completed"]


async def test_reference_demo_app_shows_the_transcript(make_relay: RelayFactory) -> None:
    """The unchanged reference app on a bare /logs shows caller and interviewer lines, beta-named."""
    relay = await make_relay(frontend_dialect="beta", greet_first=True)
    app_side = RECORDING["frontend"]
    # new WebSocket(`${NEXT_PUBLIC_API_URL}/logs`): no subprotocol, no token, no query.
    app = await relay.frontend(app_side["path"], origin=app_side["origin"])
    assert app.subprotocol is None
    for message in app_side["sends"]:
        await app.send_json(message)
    await app.wait_for("job_config.ack", lambda m: m["status"] == "queued", timeout=WAIT)
    await relay.wait_until_waiting(1)

    # The demo's TwiML carries no sessionId: the call pairs with the waiting app (rule 4).
    call = await relay.call(RECORDING["call"]["path"])
    await call.start(RECORDING["call"]["customParameters"])
    associated = await app.wait_for("session.associated", timeout=WAIT)
    assert associated["callSid"] == call.call_sid

    model = await relay.model.next_connection(timeout=WAIT)
    update = await model.wait_for("session.update", timeout=WAIT)
    session = update["session"]
    beta = app_side["sends"][0]["session"]
    assert session_update_error(session) is None, session  # valid GA
    assert session["type"] == "realtime"
    assert session["instructions"] == beta["instructions"]
    assert session["audio"]["output"]["voice"] == beta["voice"]
    assert session["audio"]["input"]["transcription"] == beta["input_audio_transcription"]
    assert beta["turn_detection"].items() <= session["audio"]["input"]["turn_detection"].items()
    assert session["audio"]["input"]["format"] == session["audio"]["output"]["format"] == {
        "type": "audio/pcmu"}
    # The app's tools join relay's own (end_interview, …); none is lost or doubled.
    names = [tool["name"] for tool in session["tools"]]
    assert len(names) == len(set(names))
    assert {t["name"] for t in beta["tools"]} | {"end_interview"} <= set(names)
    await model.wait_for("response.create", timeout=WAIT)  # the interviewer speaks first
    await app.wait_for("job_config.ack", lambda m: m["status"] == "applied", timeout=WAIT)

    for event in RECORDING["model"]["events"]:
        await model.send_event(event)

    # end_interview: relay answers the function call, the goodbye plays, the call ends.
    output = await model.wait_for(
        "conversation.item.create", lambda e: e["item"]["type"] == "function_call_output",
        timeout=WAIT,
    )
    assert orjson.loads(output["item"]["output"])["ok"] is True
    ended = await app.wait_for("call.status_changed", lambda m: m["status"] == "ended", timeout=WAIT)
    assert ended["reason"] == RECORDING["expected"]["endReason"]
    # The app's bare /logs stays open for its next call (it never re-sends its configuration).
    await relay.wait_until_waiting(1)
    assert not app.is_closed
    await app.close()
    await relay.wait_idle()
    assert relay.twilio.hangups(call.call_sid) == 1
    assert call.audio_received()  # the model's audio reached the phone, not the browser

    items: list[Item] = []
    for message in app.received:
        items = handle_realtime_event(message, items)
    assert rendered_transcript(items) == RECORDING["expected"]["transcript"]

    kinds = set(app.types())
    assert not kinds & GA_ONLY_EVENTS, sorted(kinds & GA_ONLY_EVENTS)
    assert RENDERED_BETA_EVENTS <= kinds, sorted(RENDERED_BETA_EVENTS - kinds)
    assert "response.audio.delta" not in kinds  # audio only with ?audio=1
    part_types = {m["part"]["type"] for m in app.received if m.get("type") == "response.content_part.added"}
    assert part_types == {"audio"}  # GA output_audio, renamed


async def test_model_session_created_reaches_the_app(make_relay: RelayFactory) -> None:
    """The model's opening session.created reaches the app, which clears its items on it."""
    relay = await make_relay(frontend_dialect="beta")
    app = await relay.frontend(RECORDING["frontend"]["path"], origin=RECORDING["frontend"]["origin"])
    await app.send_json(RECORDING["frontend"]["sends"][0])
    await relay.wait_until_waiting(1)
    call = await relay.call(RECORDING["call"]["path"])
    await call.start()
    await relay.model.next_connection(timeout=WAIT)
    # The fake model sends session.created on connect, before it answers the update.
    await app.wait_for("session.updated", timeout=WAIT)
    try:
        assert "session.created" in app.types()
    finally:
        await call.hang_up()
        await app.close()
        await relay.wait_idle()


#: A tool as a user of the reference app declares it in the session panel (its own example,
#: websocket-server/src/functionHandlers.ts), which the app then answers by hand.
APP_TOOL = {
    "type": "function",
    "name": "get_weather_from_coords",
    "description": "Get the current weather",
    "parameters": {
        "type": "object",
        "properties": {"latitude": {"type": "number"}, "longitude": {"type": "number"}},
        "required": ["latitude", "longitude"],
    },
}
#: What the app's Save button sends (SessionConfigurationPanel.handleSave): these three, nothing else.
APP_SAVE = {"type": "session.update", "session": {
    "instructions": "You are a helpful assistant in a phone call.", "voice": "ash", "tools": [APP_TOOL]}}


async def test_reference_app_saves_calls_and_answers_its_own_tool(make_relay: RelayFactory) -> None:
    """Save, call, transcript, and a tool the app declared answered from its Function Calls panel."""
    relay = await make_relay(frontend_dialect="beta", greet_first=True)
    app = await relay.frontend("/logs", origin=RECORDING["frontend"]["origin"])
    await app.send_json(APP_SAVE)
    await app.wait_for("job_config.ack", lambda m: m["status"] == "queued", timeout=WAIT)
    call = await relay.call("/call")
    await call.start()
    await app.wait_for("session.associated", timeout=WAIT)
    model = await relay.model.next_connection(timeout=WAIT)
    session = (await model.wait_for("session.update", timeout=WAIT))["session"]
    assert session["instructions"] == APP_SAVE["session"]["instructions"]
    assert session["audio"]["output"]["voice"] == "ash"
    assert APP_TOOL in session["tools"] and "end_interview" in [t["name"] for t in session["tools"]]
    await model.wait_for("response.create", timeout=WAIT)  # the greeting
    await model.respond_with_audio(b"\xff" * 800, "Hi! How can I help?")

    user = await model.speech_started("item_user_1")
    await model.send_event({"type": "conversation.item.added", "previous_item_id": None, "item": {
        "id": user, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
        "content": [{"type": "input_audio", "transcript": None}]}})
    await model.input_transcript(user, "What's the weather in Paris?")
    call_id = await model.function_call("get_weather_from_coords", {"latitude": 48.85, "longitude": 2.35})

    # The app's panel shows the pending call; the user types "sunny" and clicks Submit Response.
    await app.wait_for("response.output_item.done", lambda m: m["item"]["type"] == "function_call",
                       timeout=WAIT)
    await app.wait_for("response.done", timeout=WAIT)
    await app.send_json({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call_id, "output": json.dumps("sunny")}})
    await app.send_json({"type": "response.create"})
    created = await model.wait_for("conversation.item.create", timeout=WAIT)
    assert created["item"] == {"type": "function_call_output", "call_id": call_id, "output": '"sunny"'}
    await model.wait_for("response.create", timeout=WAIT)
    output_item = {"id": "item_out_1", "object": "realtime.item", **created["item"]}
    for kind in ("conversation.item.added", "conversation.item.done"):
        await model.send_event({"type": kind, "previous_item_id": None, "item": output_item})
    await model.respond_with_audio(b"\xff" * 800, "It's sunny in Paris.")
    await app.wait_for("response.audio_transcript.done",
                       lambda m: m["transcript"] == "It's sunny in Paris.", timeout=WAIT)

    # relay left the app's tool to the app: one output (the app's), one response.create for it.
    outputs = [e for e in model.received if e["type"] == "conversation.item.create"]
    assert [e["item"]["call_id"] for e in outputs] == [call_id]
    assert [e["type"] for e in model.received].count("response.create") == 2  # greeting, answer

    items: list[Item] = []
    for message in app.received:
        items = handle_realtime_event(message, items)
    assert rendered_transcript(items) == [
        {"role": "assistant", "text": "Hi! How can I help?"},
        {"role": "user", "text": "What's the weather in Paris?"},
        {"role": "assistant", "text": 'get_weather_from_coords({"latitude":48.85,"longitude":2.35})'},
        {"role": "tool", "text": 'Function call response: "sunny"'},
        {"role": "assistant", "text": "It's sunny in Paris."},
    ]
    calls = [it for it in items if it.get("type") == "function_call"]
    assert [c["status"] for c in calls] == ["completed"]  # the panel shows it answered
    await call.hang_up()
    await app.close()
    await relay.wait_idle()
