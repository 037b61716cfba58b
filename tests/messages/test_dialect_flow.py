"""GA and beta frontends on one session each get every model event, in their own dialect.

The fake model sends one event of every GA server event type the ``openai``
package knows; frontends of both dialects are attached in every order, and each
must receive every event (audio included, as they asked for it) — a beta
frontend translated, and without ``conversation.item.done``, which beta never had.
"""

from __future__ import annotations

import typing
import uuid
from typing import Any

import orjson
import pytest
from openai.types.realtime import RealtimeServerEvent

from relay.messages.dialect import event_to_beta
from tests.conftest import Relay

RELAY_OWN = {"session.associated", "call.status_changed", "job_config.ack", "session.resumed"}
LAST = "rate_limits.updated"


def ga_server_event_types() -> list[str]:
    """Every ``type`` of the openai package's RealtimeServerEvent union."""
    union = typing.get_args(RealtimeServerEvent)[0]
    kinds = [kind for member in typing.get_args(union)
             for kind in typing.get_args(member.model_fields["type"].annotation)]
    assert len(kinds) > 40 and "conversation.item.done" in kinds
    return [kind for kind in kinds if kind != LAST] + [LAST]


def sample(kind: str, n: int) -> dict[str, Any]:
    """One event of ``kind`` with the fields relay or a beta translation looks at."""
    event: dict[str, Any] = {"type": kind, "event_id": f"fidelity_{n}"}
    if kind.startswith(("response.output_audio", "response.output_text", "response.content_part",
                        "response.output_audio_transcript")):
        event |= {"response_id": "resp_1", "item_id": f"item_{n}", "output_index": 0,
                  "content_index": 0}
    if kind == "response.output_audio.delta":
        event["delta"] = "/w=="
    if kind.startswith("response.content_part"):
        event["part"] = {"type": "output_audio", "transcript": ""}
    if kind.startswith(("conversation.item.added", "conversation.item.done", "conversation.item.created",
                        "response.output_item")):
        # A message item: a function_call item would make relay answer a tool.
        event["item"] = {"id": f"item_{n}", "type": "message", "role": "assistant",
                         "content": [{"type": "output_text", "text": "hi"}]}
    if kind == "error":
        event["error"] = {"type": "server_error", "code": None, "message": "Oops.", "param": None,
                          "event_id": None}
    return event


@pytest.mark.parametrize("dialects", [("ga", "beta"), ("beta", "ga"), ("beta", "ga", "beta"),
                                      ("ga", "beta", "ga")], ids="-".join)
async def test_every_event_reaches_every_frontend_in_its_dialect(
        relay: Relay, dialects: tuple[str, ...]) -> None:
    """Each event reaches GA frontends byte for byte and beta frontends translated, in any order."""
    sid = str(uuid.uuid4())
    frontends = [await relay.frontend(f"/logs/{sid}?dialect={dialect}&audio=1") for dialect in dialects]
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    sent = [sample(kind, n) for n, kind in enumerate(ga_server_event_types())]
    for event in sent:
        await upstream.send_event(event)
    for fe in frontends:
        await fe.wait_for(LAST)
    marked = [{**e, "source": "model"} if e["type"] == "error" else e for e in sent]
    for fe, dialect in zip(frontends, dialects, strict=True):
        got = [m for m in fe.received
               if m["type"] not in RELAY_OWN and m.get("event_id", "").startswith("fidelity_")]
        if dialect == "ga":
            assert got == marked
        else:
            expected = [t for t in (event_to_beta(e) for e in marked) if t is not None]
            assert got == expected
            assert len(got) == len(sent) - 1  # conversation.item.done only
    await call.hang_up()
    await relay.wait_idle()


async def test_ga_frontends_get_the_models_text_unchanged(relay: Relay) -> None:
    """A GA frontend after a beta one gets the model's event text exactly as sent."""
    sid = str(uuid.uuid4())
    beta = await relay.frontend(f"/logs/{sid}?dialect=beta")
    ga = await relay.frontend(f"/logs/{sid}")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    done = {"type": "conversation.item.done", "event_id": "event_x", "previous_item_id": None,
            "item": {"id": "item_1", "type": "message", "role": "user", "content": []}}
    await upstream.send_event(done)
    got = await ga.wait_for("conversation.item.done")
    assert orjson.dumps(got) == orjson.dumps(done)
    await upstream.send_event({"type": LAST, "event_id": "event_y", "rate_limits": []})
    await beta.wait_for(LAST)
    assert "conversation.item.done" not in beta.types()
    await call.hang_up()
    await relay.wait_idle()
