"""A test driver for a Session: keeps every effect its inputs hand back, in order.

Each event bound for the model is checked against the ``openai`` package's GA types.
"""

from __future__ import annotations

from typing import Any

import orjson

from relay.core.effects import Effects
from relay.core.session import Session
from tests.ga_types import check_client_event

#: The Session methods that are inputs (each hands back Effects).
INPUTS = frozenset({
    "end", "on_timer", "add_frontend", "remove_frontend", "on_frontend_message",
    "on_call_started", "on_call_message", "on_call_media", "on_call_closed",
    "on_upstream_open", "on_upstream_failed", "on_upstream_closed", "on_upstream_text",
    "on_tool_result",
})


class Recorder:
    """Wraps a :class:`Session`; its ``effects`` accumulate what every input handed back.

    Anything else reads and writes through to the session.
    """

    def __init__(self, session: Session) -> None:
        object.__setattr__(self, "session", session)
        object.__setattr__(self, "effects", Effects())

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.session, name)
        if name not in INPUTS:
            return attr

        def recorded(*args: Any, **kwargs: Any) -> Effects:
            fx = attr(*args, **kwargs)
            assert isinstance(fx, Effects), f"{name} must hand back Effects"
            for data in fx.call:
                self.effects.call.append(data)
            for data in fx.upstream:
                # Every event a session decides to send the model is a GA client event.
                check_client_event(orjson.loads(data))
                self.effects.upstream.append(data)
            for item in fx.frontend:
                self.effects.frontend.append(item)
            for cmd in fx.commands:
                self.effects.commands.append(cmd)
            return fx

        return recorded

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "effects":
            object.__setattr__(self, name, value)
        else:
            setattr(self.session, name, value)
