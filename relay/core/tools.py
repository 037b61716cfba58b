"""Function calls the model may make, registered in one place.

Each :class:`Tool` carries its JSON schema (sent to the model in
``session.update`` and listed by ``GET /tools``) and an async handler. A
handler returns a :class:`ToolOutcome`: the output the model receives, and an
optional :class:`Effect` on the session — ``end_interview`` lets the
interviewer say goodbye and then ends the call once the goodbye has played.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson


class Effect(Enum):
    """What a tool call does to its session beyond answering the model."""

    END_INTERVIEW = "end_interview"


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a handler may know about the session that called it."""

    session_id: str
    started_at: float  # time.monotonic() when the call started
    max_duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """A handler's answer: ``output`` goes back to the model as JSON."""

    output: Mapping[str, Any]
    effect: Effect | None = None


Handler = Callable[[dict[str, Any], ToolContext], Awaitable[ToolOutcome]]


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    handler: Handler = field(repr=False)

    @property
    def schema(self) -> dict[str, Any]:
        """The GA ``tools`` entry for this function."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }


class ToolBox:
    """The registered tools, by name."""

    def __init__(self, tools: list[Tool]) -> None:
        self._tools = {tool.name: tool for tool in tools}

    @property
    def schemas(self) -> list[dict[str, Any]]:
        """Every tool's schema, in registration order."""
        return [tool.schema for tool in self._tools.values()]

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or None."""
        return self._tools.get(name)

    async def run(self, name: str, arguments: str, ctx: ToolContext) -> ToolOutcome:
        """Run a tool call as the model sent it (``arguments`` is a JSON string).

        Never raises for bad calls: an unknown tool or malformed arguments
        become an error output the model can read and recover from.
        """
        tool = self._tools.get(name)
        if tool is None:
            return ToolOutcome({"error": f"no such tool: {name[:60]}"})
        try:
            args = orjson.loads(arguments or "{}")
        except orjson.JSONDecodeError:
            return ToolOutcome({"error": "arguments are not valid JSON"})
        if not isinstance(args, dict):
            return ToolOutcome({"error": "arguments must be a JSON object"})
        return await tool.handler(args, ctx)


async def _end_interview(args: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
    reason = args.get("reason")
    if reason is not None and not isinstance(reason, str):
        return ToolOutcome({"error": "reason must be a string"})
    return ToolOutcome(
        {"ok": True, "note": "The call ends once your goodbye has played. Ask nothing else."},
        effect=Effect.END_INTERVIEW,
    )


async def _interview_time(args: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
    elapsed = time.monotonic() - ctx.started_at
    output: dict[str, Any] = {"elapsed_seconds": round(elapsed)}
    if ctx.max_duration_s is not None:
        output["remaining_seconds"] = max(0, round(ctx.max_duration_s - elapsed))
    return ToolOutcome(output)


END_INTERVIEW = Tool(
    name="end_interview",
    description=(
        "End the phone interview. Call this after you have said goodbye to the "
        "candidate, when the interview is complete or the candidate asks to stop. "
        "The call hangs up once your last sentence has played."
    ),
    parameters={
        "type": "object",
        "properties": {
            "reason": {"type": "string", "description": "Why the interview ends, briefly."}
        },
        "required": [],
    },
    handler=_end_interview,
)

INTERVIEW_TIME = Tool(
    name="get_interview_time",
    description="How long the interview has run, and how long remains, in seconds.",
    parameters={"type": "object", "properties": {}, "required": []},
    handler=_interview_time,
)


def default_toolbox() -> ToolBox:
    """The tools every interview session offers the model."""
    return ToolBox([END_INTERVIEW, INTERVIEW_TIME])
