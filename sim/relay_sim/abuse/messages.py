"""Abuse checks: what a peer sends on an open socket (malformed, binary, oversized, out of order).

Each check takes the :class:`~relay_sim.abuse.harness.Relay` under test and
returns a one-line detail, or raises :class:`~relay_sim.checks.CheckFailed`
(or :class:`~relay_sim.checks.Skipped` when it does not apply to the relay's mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from relay_sim.abuse.harness import (
    JOB,
    Relay,
    end_frontend,
    expect_close,
    refused_stream,
)
from relay_sim.checks import expect
from relay_sim.twilio_call import SimulatedCall

LOGS_GARBAGE = [
    ("bad JSON", "{not json"),
    ("array", "[1, 2, 3]"),
    ("string", '"hello"'),
    ("unknown type", '{"type": "rm -rf"}'),
    ("no type", '{"no_type": true}'),
    ("model-only event", '{"type": "input_audio_buffer.append", "audio": "AAAA"}'),
    ("session.update of a string", '{"type": "session.update", "session": "x"}'),
    ("job_config of a string", '{"type": "job_config", "config": "x"}'),
    ("deep nesting", "[" * 5000 + "]" * 5000),
    ("NUL", "\u0000"),
]


async def check_logs_malformed(relay: Relay) -> str:
    session_id = str(uuid.uuid4())
    fe = await relay.frontend(session_id)
    try:
        codes = []
        for name, raw in LOGS_GARBAGE:
            await fe.send_raw(raw)
            error = await fe.wait_for("error", timeout=relay.wait)
            expect(bool(error.get("code")) and bool(error.get("message")),
                   f"{name}: error without code or message: {error}")
            codes.append(str(error["code"]))
        await fe.send_json({"type": "job_config", "config": JOB})
        ack = await fe.wait_for("job_config.ack", timeout=relay.wait)
        expect(ack.get("status") == "queued", f"after the garbage, job_config got {ack}")
        await end_frontend(fe, relay.wait)
    finally:
        await fe.close()
    raw = await relay.raw_frontend(str(uuid.uuid4()))
    try:
        await raw.send(b"\xff\xfe{", text=True)
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(relay.wait):
                async for _ in raw:
                    pass
        expect(raw.close_code == 1007, f"invalid UTF-8 text closed with {raw.close_code}, "
               "expected 1007")
    finally:
        await raw.close()
    return (f"{len(LOGS_GARBAGE)} bad messages each got an error ({', '.join(sorted(set(codes)))})"
            "; still usable; invalid UTF-8 closed with 1007")


async def check_logs_binary(relay: Relay) -> str:
    fe = await relay.frontend(str(uuid.uuid4()))
    try:
        await fe.send_raw(b"\x00\x01\x02binary")
        error = await fe.wait_for("error", timeout=relay.wait)
        await fe.send_json({"type": "activity"})
        await fe.send_json({"type": "job_config", "config": JOB})
        await fe.wait_for("job_config.ack", timeout=relay.wait)
        await end_frontend(fe, relay.wait)
    finally:
        await fe.close()
    return f"error {error.get('code')!r}; the connection stayed usable"


async def check_logs_oversized(relay: Relay) -> str:
    fe = await relay.frontend(str(uuid.uuid4()))
    try:
        await fe.send_raw('{"type":"activity","pad":"' + "x" * 100_000 + '"}')
        await expect_close(fe, {1009}, "a 100 KB frame", relay.wait)
    finally:
        await fe.close()
    raw = await relay.raw_frontend(str(uuid.uuid4()))
    try:
        with contextlib.suppress(ConnectionClosed):
            # One message in 8 fragments of 10 KB: the limit holds across fragments.
            await raw.send(['{"type":"activity","pad":"'] + ["y" * 10_000] * 8 + ['"}'])
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(relay.wait):
                async for _ in raw:
                    pass
        expect(raw.close_code == 1009,
               f"a fragmented 80 KB message closed with {raw.close_code}, expected 1009")
    finally:
        await raw.close()
    return "a 100 KB frame and a fragmented 80 KB message (limit 64 KiB) both closed with 1009"


CALL_GARBAGE = [
    ("not JSON", "not json at all"),
    ("array", "[]"),
    ("unknown event", '{"event": "teleport"}'),
    ("start without a body", '{"event": "start"}'),
    ("start with a hostile streamSid",
     '{"event":"start","start":{"streamSid":"MZ 1; drop","callSid":"CA1"},"streamSid":"MZ 1"}'),
]


async def check_call_malformed(relay: Relay) -> str:
    for name, raw in CALL_GARBAGE:
        async def send(call: SimulatedCall, raw: str = raw) -> None:
            await call.send_connected()
            await call.send_raw(raw)

        await refused_stream(relay, send, {1008}, name)
    return f"{len(CALL_GARBAGE)} malformed first messages each closed with 1008; {relay.no_session}"


async def check_call_binary(relay: Relay) -> str:
    async def send(call: SimulatedCall) -> None:
        await call.send_raw(b"\x00\x01\x02")

    await refused_stream(relay, send, {1003}, "a binary frame")
    return f"closed with 1003; {relay.no_session}"


async def check_call_oversized(relay: Relay) -> str:
    async def send(call: SimulatedCall) -> None:
        await call.send_connected()
        await call.send_raw('{"event":"media","media":{"payload":"' + "A" * 20_000 + '"}}')

    await refused_stream(relay, send, {1009}, "a 20 KB frame")
    return f"a 20 KB frame (limit 16 KiB) closed with 1009; {relay.no_session}"


async def check_call_wrong_order(relay: Relay) -> str:
    firsts: dict[str, Callable[[SimulatedCall], Awaitable[None]]] = {
        "media": lambda call: call.send_media(b"\xff" * 160),
        "mark": lambda call: call.send_mark("m1"),
        "stop": lambda call: call.send_stop(),
        "dtmf": lambda call: call.send_dtmf("5"),
    }
    for name, first in firsts.items():
        async def send(call: SimulatedCall, first: Any = first) -> None:
            await call.send_connected()
            await first(call)

        await refused_stream(relay, send, {1008}, f"{name} before start")
    return f"media, mark, stop and dtmf before start each closed with 1008; {relay.no_session}"


async def check_logs_wrong_order(relay: Relay) -> str:
    fe = await relay.frontend(str(uuid.uuid4()))
    try:
        await fe.send_json({"type": "session.end"})
        ended = await fe.wait_for("call.status_changed", timeout=relay.wait)
        await expect_close(fe, {1000}, "session.end first", relay.wait)
        expect(ended.get("status") == "ended" and fe.closed_after("call.status_changed"),
               f"session.end first: got {ended} before the close")
    finally:
        await fe.close()
    fe = await relay.frontend(str(uuid.uuid4()))
    try:
        await fe.send_json({"type": "job_config", "config": JOB})
        await fe.send_json({"type": "job_config", "config": {"role": "Chef"}})
        for _ in range(2):
            ack = await fe.wait_for("job_config.ack", timeout=relay.wait)
            expect(ack.get("status") == "queued", f"job_config twice: got {ack}")
        codes = []
        for event in ({"type": "response.create"},
                      {"type": "conversation.item.create", "item": {
                          "type": "message", "role": "user",
                          "content": [{"type": "input_text", "text": "hi"}]}}):
            await fe.send_json(event)
            codes.append(str((await fe.wait_for("error", timeout=relay.wait)).get("code")))
        await end_frontend(fe, relay.wait)
    finally:
        await fe.close()
    return (f"session.end first: ended then 1000; job_config twice: queued twice; "
            f"model events before a call: errors {codes}")


