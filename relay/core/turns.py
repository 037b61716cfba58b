"""The model's responses and the tool calls inside them.

The Realtime API runs at most one response at a time and refuses a
``response.create`` while one is in progress
(``conversation_already_has_active_response``), so relay tracks where the
current response is (:class:`Response`) and holds a request until it is done.

Function calls come in batches: one response may call several tools. The
model needs every ``function_call_output`` and then exactly one
``response.create``; relay sends each output as soon as it has it and owes one
``response.create`` for the batch, sent once the response that called the
tools is done and no call of it is still unanswered.

States::

    IDLE ──response.create sent──▶ REQUESTED ──response.created──▶ ACTIVE
     ▲                                                               │
     └────────────────────────── response.done ──────────────────────┘
"""

from __future__ import annotations

from enum import Enum

_CREATE = b'{"type":"response.create"}'


class Response(Enum):
    """Where the model's current response is."""

    IDLE = "idle"
    REQUESTED = "requested"
    ACTIVE = "active"


class Turns:
    """Response state, held requests and the open tool calls of one session."""

    __slots__ = ("_held", "_owed", "_requested", "had_audio", "open_calls", "state")

    def __init__(self) -> None:
        self.state = Response.IDLE
        # response.create sent and not yet answered by response.created.
        self._requested = 0
        # Requests that wait for the active response to finish.
        self._held: list[bytes] = []
        #: Tool calls of the current batch that have no output yet: call_id -> tool name.
        self.open_calls: dict[str, str] = {}
        # Some output of the batch was sent: one response.create is owed.
        self._owed = False
        #: The current (or last) response carried audio.
        self.had_audio = False

    @property
    def busy(self) -> bool:
        """Whether a response is requested, running or held, or a tool call is unanswered."""
        return (self.state is not Response.IDLE or self._requested > 0 or bool(self._held)
                or bool(self.open_calls))

    def request(self, data: bytes = _CREATE) -> list[bytes]:
        """Ask for a response; returns what to send the model now (nothing while one runs).

        A plain request while one is already on its way is answered by that
        one; anything else waits until the model is idle: a second
        ``response.create`` before the first one's ``response.created`` would
        be refused just the same.
        """
        if self.state is Response.REQUESTED and data == _CREATE and not self.open_calls:
            return []
        if self.state is not Response.IDLE or self.open_calls:
            if data not in self._held:
                self._held.append(data)
            return []
        if self._owed and data == _CREATE:
            # The batch's own response.create answers this request too.
            return self._settle()
        self._requested += 1
        self.state = Response.REQUESTED
        return [data]

    def request_from_frontend(self, data: bytes) -> list[bytes]:
        """A frontend asked for a response: merged into one already on its way."""
        if self.state is Response.REQUESTED and data == _CREATE:
            return []  # e.g. the reference app's response.create right after its tool output
        if self.open_calls and data == _CREATE:
            self._owed = True  # the batch's single response.create will answer it
            return []
        return self.request(data)

    def on_created(self) -> None:
        """``response.created``."""
        self.state = Response.ACTIVE
        self.had_audio = False
        self._requested = max(0, self._requested - 1)

    def on_refused(self) -> list[bytes]:
        """The model refused a ``response.create`` (``conversation_already_has_active_response``).

        It was already answering (a turn detection response raced ours): that
        response stands for the refused one, whose ``response.created`` will
        never come.
        """
        self._requested = max(0, self._requested - 1)
        if self.state is Response.REQUESTED and self._requested == 0:
            self.state = Response.IDLE
            return self._settle()
        return []

    def on_done(self) -> list[bytes]:
        """``response.done``; returns held requests and an owed ``response.create``."""
        self.state = Response.IDLE if self._requested == 0 else Response.REQUESTED
        return self._settle()

    def call_opened(self, call_id: str, name: str) -> None:
        """The model called a tool."""
        self.open_calls[call_id] = name

    def call_answered(self, call_id: str, *, continue_turn: bool = True) -> list[bytes]:
        """An output for ``call_id`` was sent; returns a ``response.create`` if the batch is complete.

        ``continue_turn=False`` (the interview is ending) answers the call
        without owing the model another turn.
        """
        if self.open_calls.pop(call_id, None) is None:
            return []
        if continue_turn:
            self._owed = True
        return self._settle()

    def forget_calls(self) -> None:
        """Nothing more is owed for the current batch (the interview is ending)."""
        self.open_calls.clear()
        self._owed = False

    def _settle(self) -> list[bytes]:
        if self.state is not Response.IDLE or self.open_calls:
            return []
        out: list[bytes] = []
        if self._owed:
            self._owed = False
            if not self._held or _CREATE not in self._held:
                out.append(_CREATE)
        held, self._held = self._held, []
        out += held
        if not out:
            return []
        # One request at a time: the first goes now, the rest wait for its response.
        first, rest = out[0], out[1:]
        self._held = rest
        self._requested += 1
        self.state = Response.REQUESTED
        return [first]
