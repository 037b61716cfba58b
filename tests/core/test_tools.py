"""Unit tests for relay.core.tools: the model's functions, their GA schemas, and bad calls.

Handlers are awaited directly; nothing here opens a socket or sleeps. Times
are set by starting the context in the (monotonic) past.
"""

from __future__ import annotations

import time

import orjson
import pytest

from relay.core.instructions import END_INTERVIEW_TOOL
from relay.core.tools import (
    END_INTERVIEW,
    INTERVIEW_TIME,
    Effect,
    Tool,
    ToolBox,
    ToolContext,
    ToolOutcome,
    default_toolbox,
)

SID = "3f2c9a7e-1b2d-4c5e-8f90-a1b2c3d4e5f6"


def ctx(elapsed: float = 0.0, max_duration_s: float | None = None) -> ToolContext:
    """A context for a call that started ``elapsed`` seconds ago."""
    return ToolContext(SID, time.monotonic() - elapsed, max_duration_s)


# -- schemas ---------------------------------------------------------------------------------


def test_default_toolbox_offers_end_interview_and_interview_time() -> None:
    """The default toolbox lists end_interview then get_interview_time."""
    assert [s["name"] for s in default_toolbox().schemas] == ["end_interview", "get_interview_time"]


def test_default_schemas_have_the_ga_function_shape() -> None:
    """Each schema is a flat GA function tool: type, name, description and an object schema."""
    for schema in default_toolbox().schemas:
        assert set(schema) == {"type", "name", "description", "parameters"}
        assert schema["type"] == "function"
        assert isinstance(schema["description"], str) and schema["description"]
        params = schema["parameters"]
        assert params["type"] == "object"
        assert isinstance(params["properties"], dict)
        assert set(params["required"]) <= set(params["properties"])
        orjson.dumps(schema)  # sent to the model as JSON


def test_end_interview_schema() -> None:
    """end_interview takes an optional string reason."""
    assert END_INTERVIEW.schema == {
        "type": "function",
        "name": "end_interview",
        "description": END_INTERVIEW.description,
        "parameters": {
            "type": "object",
            "properties": {
                "reason": {"type": "string", "description": "Why the interview ends, briefly."}
            },
            "required": [],
        },
    }


def test_interview_time_schema_takes_no_arguments() -> None:
    """get_interview_time takes no arguments."""
    assert INTERVIEW_TIME.schema["parameters"] == {"type": "object", "properties": {}, "required": []}


def test_end_interview_name_matches_the_prompt() -> None:
    """The tool the instructions tell the model to call is the one registered."""
    assert default_toolbox().get(END_INTERVIEW_TOOL) is END_INTERVIEW


def test_get_unknown_tool_is_none() -> None:
    """Looking up a name that is not registered gives None."""
    assert default_toolbox().get("transfer_call") is None


def test_schema_is_a_fresh_dict() -> None:
    """Changing a returned schema does not change the tool."""
    schema = END_INTERVIEW.schema
    schema["name"] = "changed"
    schema["parameters"]["type"] = "array"
    assert END_INTERVIEW.schema["name"] == "end_interview"
    assert END_INTERVIEW.schema["parameters"]["type"] == "object"


async def test_custom_toolbox_runs_its_handler_with_parsed_args() -> None:
    """A registered tool's handler receives the arguments as a dict and the context."""
    seen = []

    async def echo(args: dict[str, object], context: ToolContext) -> ToolOutcome:
        seen.append((args, context.session_id))
        return ToolOutcome({"echo": args})

    box = ToolBox([Tool("echo", "Echo.", {"type": "object", "properties": {}}, echo)])
    outcome = await box.run("echo", '{"a": [1, 2]}', ctx())
    assert outcome == ToolOutcome({"echo": {"a": [1, 2]}})
    assert seen == [({"a": [1, 2]}, SID)]


# -- bad calls -------------------------------------------------------------------------------


async def test_unknown_tool_gives_an_error_output() -> None:
    """Calling an unregistered tool answers the model with an error, and no effect."""
    outcome = await default_toolbox().run("transfer_call", "{}", ctx())
    assert outcome == ToolOutcome({"error": "no such tool: transfer_call"})


async def test_unknown_tool_name_is_cut_short() -> None:
    """A huge unknown name is cut to 60 characters in the error."""
    outcome = await default_toolbox().run("x" * 1000, "{}", ctx())
    assert outcome.output == {"error": "no such tool: " + "x" * 60}


@pytest.mark.parametrize("arguments", ["{", "reason: done", "{'reason': 'done'}", "\x00"])
async def test_invalid_json_arguments_give_an_error_output(arguments: str) -> None:
    """Arguments that are not JSON answer the model with an error, and end nothing."""
    outcome = await default_toolbox().run("end_interview", arguments, ctx())
    assert outcome == ToolOutcome({"error": "arguments are not valid JSON"})


@pytest.mark.parametrize("arguments", ["[]", '["done"]', '"done"', "1", "null", "true"])
async def test_non_object_arguments_give_an_error_output(arguments: str) -> None:
    """Arguments that are JSON but not an object answer the model with an error, and end nothing."""
    outcome = await default_toolbox().run("end_interview", arguments, ctx())
    assert outcome == ToolOutcome({"error": "arguments must be a JSON object"})


# -- end_interview ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments", ["", "{}", '{"reason": "candidate asked to stop"}', '{"reason": null}']
)
async def test_end_interview_returns_the_end_effect(arguments: str) -> None:
    """end_interview (no arguments, a reason, or a null reason) ends the interview after the goodbye."""
    outcome = await default_toolbox().run("end_interview", arguments, ctx())
    assert outcome.effect is Effect.END_INTERVIEW
    assert outcome.output["ok"] is True
    assert "goodbye" in outcome.output["note"]


@pytest.mark.parametrize("reason", ["5", "true", "[]", '{"why": "done"}'])
async def test_end_interview_rejects_a_non_string_reason(reason: str) -> None:
    """A reason that is not a string is an error output, and the interview does not end."""
    outcome = await default_toolbox().run("end_interview", '{"reason": %s}' % reason, ctx())
    assert outcome == ToolOutcome({"error": "reason must be a string"})
    assert outcome.effect is None


# -- get_interview_time ----------------------------------------------------------------------


async def test_interview_time_reports_elapsed() -> None:
    """Without a cap, get_interview_time reports whole elapsed seconds only."""
    outcome = await default_toolbox().run("get_interview_time", "{}", ctx(elapsed=125.2))
    assert outcome == ToolOutcome({"elapsed_seconds": 125})


async def test_interview_time_reports_remaining_with_a_cap() -> None:
    """With max_duration_s, get_interview_time also reports the seconds remaining."""
    outcome = await default_toolbox().run(
        "get_interview_time", "", ctx(elapsed=125.2, max_duration_s=600)
    )
    assert outcome == ToolOutcome({"elapsed_seconds": 125, "remaining_seconds": 475})
    assert outcome.effect is None


async def test_interview_time_remaining_is_never_negative() -> None:
    """Past the cap, remaining_seconds is 0."""
    outcome = await default_toolbox().run(
        "get_interview_time", "{}", ctx(elapsed=700.2, max_duration_s=600)
    )
    assert outcome.output == {"elapsed_seconds": 700, "remaining_seconds": 0}


async def test_interview_time_ignores_extra_arguments() -> None:
    """Arguments the schema does not declare are ignored."""
    outcome = await default_toolbox().run("get_interview_time", '{"unit": "minutes"}', ctx(3.2))
    assert outcome.output == {"elapsed_seconds": 3}
