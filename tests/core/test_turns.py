"""Unit tests for relay.core.turns: one response at a time, one response.create per batch."""

from __future__ import annotations

import orjson

from relay.core.turns import Response, Turns

CREATE = b'{"type":"response.create"}'
GOODBYE = orjson.dumps({"type": "response.create", "response": {"instructions": "Say goodbye."}})


def test_a_request_while_one_is_on_its_way_waits_for_the_model() -> None:
    """Before response.created, a plain request is the same turn; another kind waits for the end."""
    turns = Turns()
    assert turns.request() == [CREATE]
    assert turns.request() == []
    assert turns.request(GOODBYE) == []
    turns.on_created()
    assert turns.on_done() == [GOODBYE]
    assert turns.state is Response.REQUESTED


def test_held_requests_are_not_doubled() -> None:
    """The same request made twice while the model answers goes out once."""
    turns = Turns()
    turns.request()
    turns.on_created()
    assert turns.request(GOODBYE) == turns.request(GOODBYE) == []
    assert turns.on_done() == [GOODBYE]
    turns.on_created()
    assert turns.on_done() == []


def test_outputs_of_a_batch_owe_one_response_create() -> None:
    """Two calls in one response: no response.create until both are answered and the response ended."""
    turns = Turns()
    turns.request()
    turns.on_created()
    turns.call_opened("c1", "a")
    turns.call_opened("c2", "b")
    assert turns.call_answered("c1") == []
    assert turns.on_done() == []
    assert turns.call_answered("c2") == [CREATE]
    assert turns.request_from_frontend(CREATE) == []  # the app's own response.create after its output


def test_a_refused_create_does_not_leave_a_request_hanging() -> None:
    """conversation_already_has_active_response: the refused request is forgotten and held ones go."""
    turns = Turns()
    assert turns.request() == [CREATE]
    assert turns.request(GOODBYE) == []
    assert turns.on_refused() == [GOODBYE]
    turns.on_created()
    assert turns.on_done() == []
    assert turns.state is Response.IDLE
