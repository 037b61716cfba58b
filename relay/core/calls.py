"""The model's function calls, from the session's side: who answers each, and by when.

A call to one of relay's own tools is run by relay (the runner's
:class:`~relay.core.effects.RunTool`), and so is a call to a tool nobody
declared, which relay answers with an error. A call to a tool a frontend
declared in ``session.update`` ``tools`` is the frontends' to answer, as the
reference demo's Function Calls panel does: relay waits for their
``function_call_output`` until ``frontend_tool_timeout_s`` has passed, then
answers the model itself. Every answer goes through :class:`~relay.core.turns.Turns`,
which owes the model one ``response.create`` per batch.

The session's inputs hand their :class:`~relay.core.effects.Effects` to these
methods, which append to them: only the session's public inputs hand effects
back. Pure: times are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from relay.core.deadlines import Deadlines
from relay.core.effects import Effects, RunTool
from relay.core.turns import Turns
from relay.messages.realtime import function_output_event

#: What the model is told when the frontends let a call of theirs time out.
TIMED_OUT = {"error": "the app did not answer this call in time"}


class ToolCalls:
    """The function calls of one session: run by relay, or waited for from the frontends."""

    __slots__ = ("_deadlines", "_own", "_timeout_s", "_turns", "_waiting")

    def __init__(self, own: Iterable[str], timeout_s: float, turns: Turns,
                 deadlines: Deadlines) -> None:
        self._own = frozenset(own)
        self._timeout_s = timeout_s
        self._turns = turns
        self._deadlines = deadlines
        # call_id -> when relay stops waiting for the frontends.
        self._waiting: dict[str, float] = {}

    def _reschedule(self) -> None:
        self._deadlines.tool_at = min(self._waiting.values(), default=None)

    def on_call(self, fx: Effects, call_id: str, name: str, arguments: str,
                frontend_tools: frozenset[str], now: float) -> None:
        """The model called ``name``: relay runs it, or the frontends answer it in time."""
        self._turns.call_opened(call_id, name)
        if name in self._own or name not in frontend_tools:
            fx.commands.append(RunTool(call_id, name, arguments))
        else:
            self._waiting[call_id] = now + self._timeout_s
            self._reschedule()

    def answer(self, fx: Effects, call_id: str, output: Any, *, continue_turn: bool) -> None:
        """Send relay's output for ``call_id``; ``continue_turn=False`` owes the model no turn."""
        fx.upstream.append(function_output_event(call_id, output))
        fx.upstream += self._turns.call_answered(call_id, continue_turn=continue_turn)

    def forward(self, fx: Effects, event: dict[str, Any]) -> bool:
        """A frontend's client event for the live model; True if it answered a call relay waited for.

        ``response.create`` goes through :class:`~relay.core.turns.Turns` (merged
        with one already on its way); anything else is sent as it is.
        """
        data = orjson.dumps(event)
        if event["type"] == "response.create":
            fx.upstream += self._turns.request_from_frontend(data)
            return False
        fx.upstream.append(data)
        item = event.get("item")
        return (event["type"] == "conversation.item.create" and isinstance(item, dict)
                and item.get("type") == "function_call_output"
                and self.on_frontend_output(fx, item["call_id"]))

    def on_frontend_output(self, fx: Effects, call_id: str) -> bool:
        """A frontend's output for ``call_id`` went to the model: True if relay waited for it."""
        if self._waiting.pop(call_id, None) is None:
            return False
        self._reschedule()
        fx.upstream += self._turns.call_answered(call_id)
        return True

    def expire(self, fx: Effects, now: float) -> list[str]:
        """Answer, with an error, every call the frontends let time out; returns their IDs."""
        late = [call_id for call_id, at in self._waiting.items() if at <= now]
        for call_id in late:
            del self._waiting[call_id]
            self.answer(fx, call_id, TIMED_OUT, continue_turn=True)
        self._reschedule()
        return late

    def forget(self) -> None:
        """The interview is ending: nothing more is owed or waited for."""
        self._turns.forget_calls()
        self._waiting.clear()
        self._reschedule()
