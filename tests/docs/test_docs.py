"""The docs' commands and contracts stay true to the code.

README.md, docs/protocol.md, docs/deploy.md and docs/troubleshooting.md name
variables, endpoints, message shapes, close codes and log lines that clients,
deployments and operators depend on. Each test below reads a doc and checks one
kind of claim against the code that makes it true.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from relay.core.deadlines import Limits
from relay.core.instructions import build_session_update
from relay.core.outbound import CallStatus
from relay.core.session import EndReason, FrontendInfo, Session, SessionOptions
from relay.core.tools import default_toolbox
from relay.errors import BadInput
from relay.logs import Ev
from relay.messages import dialect, twilio
from relay.messages import frontend as fmsg
from relay.messages.closecodes import CloseCode
from relay.messages.jobconfig import parse_job_config
from relay.messages.twiml import APOLOGY, connect_stream_twiml, stream_url
from relay.providers import heygen as avatars
from relay.providers import twilio_rest as calls
from relay.transport import http as httpapi
from tests.conftest import Relay
from tests.recording import Recorder

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PROTOCOL = ROOT / "docs" / "protocol.md"
DEPLOY = ROOT / "docs" / "deploy.md"
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
DOCS = (README, PROTOCOL, DEPLOY, TROUBLESHOOTING)


# -- reading markdown ----------------------------------------------------------------------


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _lines_outside_code(md: str) -> Iterator[tuple[int, str, bool]]:
    """Each line with its index and whether it is inside a fenced code block."""
    fenced = False
    for number, line in enumerate(md.splitlines()):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            yield number, line, True
        else:
            yield number, line, fenced


def section(md: str, title: str) -> str:
    """The text under the first heading that starts with ``title`` (backticks ignored),
    up to the next heading of the same or a higher level."""
    lines = md.splitlines()
    start = level = None
    for number, line, fenced in _lines_outside_code(md):
        match = None if fenced else re.match(r"(#{1,6})\s+(.*)", line)
        if not match:
            continue
        depth, heading = len(match.group(1)), match.group(2).replace("`", "").strip()
        if start is None:
            if heading.startswith(title):
                start, level = number + 1, depth
        elif depth <= level:  # type: ignore[operator]
            return "\n".join(lines[start:number])
    if start is None:
        raise AssertionError(f"no heading starting with {title!r}")
    return "\n".join(lines[start:])


def code_blocks(md: str, lang: str | None = None) -> list[str]:
    """Fenced code blocks (optionally only those tagged ``lang``)."""
    blocks, current, current_lang = [], None, ""
    for line in md.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            if current is None:
                current, current_lang = [], stripped[3:].strip()
            else:
                if lang is None or current_lang == lang:
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line.strip())
    return blocks


def json_examples(md: str) -> list[dict[str, Any]]:
    """Every ```json block, parsed."""
    return [json.loads(block) for block in code_blocks(md, "json")]


def table_first_cells(md: str) -> list[str]:
    """The first cell of every table row (header and separator rows excluded)."""
    cells = []
    for _, line, fenced in _lines_outside_code(md):
        if fenced or not line.startswith("|") or re.match(r"\|\s*-", line):
            continue
        cells.append(line.split("|")[1].strip())
    return cells[1:] if cells else cells  # the first row of a section's table is its header


def backticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def documented_paths(md: str) -> set[str]:
    """Paths named in the first column of a section's tables (query strings dropped)."""
    paths = set()
    for cell in table_first_cells(md):
        paths.update(re.findall(r"(?<![\w}])/[\w{}./-]*", cell))
    return paths


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys and nesting, not the values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return "leaf"


# -- README ---------------------------------------------------------------------------------


def test_readme_opens_with_the_two_commands() -> None:
    """The README's first two lines of code are ./scripts/serve and ./scripts/test."""
    first = code_blocks(text(README))[0].splitlines()
    assert first[0].split()[0] == "./scripts/serve", first[0]
    assert first[1].split()[0] == "./scripts/test", first[1]
    for script in ("serve", "test"):
        path = ROOT / "scripts" / script
        assert path.is_file() and path.stat().st_mode & 0o111, f"{path} is not executable"


def config_variables() -> set[str]:
    source = (ROOT / "relay" / "config.py").read_text(encoding="utf-8")
    return set(re.findall(r'reader\.\w+\(\s*"([A-Z][A-Z0-9_]*)"', source))


def test_every_config_variable_is_in_the_readme_tables() -> None:
    """Every variable relay/config.py reads is named in README's configuration or security table."""
    readme = text(README)
    named: set[str] = set()
    for title in ("Configuration", "Security variables"):
        for cell in table_first_cells(section(readme, title)):
            named.update(backticked(cell))
    assert len(config_variables()) > 40
    missing = sorted(config_variables() - named)
    assert not missing, f"README.md's variable tables do not name: {missing}"


def http_endpoint_paths() -> set[str]:
    # /api/sessions/{sessionId}/stop is matched by a pattern, not a key.
    return set(httpapi.ENDPOINTS) | {"/api/sessions/{sessionId}/stop"}


@pytest.mark.parametrize("doc", [README, PROTOCOL], ids=["README", "protocol"])
def test_every_http_endpoint_is_documented(doc: Path) -> None:
    """Every path relay/transport/http.py serves is in the doc's endpoints table, and nothing else is."""
    documented = documented_paths(section(text(doc), "Endpoints" if doc is README else "HTTP endpoints"))
    missing = sorted(http_endpoint_paths() - documented)
    assert not missing, f"{doc.name}'s endpoints table does not list: {missing}"
    for path in documented:
        if path.startswith(("/call", "/logs")):
            continue  # WebSocket paths, in the same table in README
        assert httpapi.resolve(path.replace("{sessionId}", "x")) is not None, path


# -- close codes ------------------------------------------------------------------------------


def close_codes_in_use() -> set[int]:
    """CloseCode, plus every literal close code relay passes to close_soon or PairingRefused."""
    codes = {int(code) for code in CloseCode}
    for source in (ROOT / "relay").rglob("*.py"):
        body = source.read_text(encoding="utf-8")
        codes.update(int(c) for c in re.findall(r"close_soon\(\s*(\d{4})", body))
        codes.update(int(c) for c in re.findall(r"PairingRefused\([^()]*,\s*(\d{4})\)", body))
    return codes


def test_every_close_code_is_in_protocol_and_readme() -> None:
    """Every close code relay uses is in protocol.md's refusals table and README's close codes."""
    table = " ".join(table_first_cells(section(text(PROTOCOL), "Close codes and refusals")))
    in_protocol = {int(code) for code in re.findall(r"close (\d{4})", table)}
    in_readme = {int(cell) for cell in table_first_cells(section(text(README), "Close codes"))
                 if cell.isdigit()}
    assert 1007 in close_codes_in_use()
    assert not close_codes_in_use() - in_protocol, sorted(close_codes_in_use() - in_protocol)
    assert not {int(c) for c in CloseCode} - in_readme, sorted({int(c) for c in CloseCode} - in_readme)
    assert in_protocol <= close_codes_in_use() | {1006}, sorted(in_protocol - close_codes_in_use())


# -- frontend messages --------------------------------------------------------------------------


def frontend_types() -> list[str]:
    return [kind.value for kind in fmsg.FrontendType]


def test_every_frontend_type_has_an_example_relay_accepts() -> None:
    """Every FrontendType appears in protocol.md with an example relay/messages/frontend.py parses."""
    examples = json_examples(section(text(PROTOCOL), "Frontend → relay"))
    for example in examples:
        fmsg.parse_message(json.dumps(example))  # raises on a stale example
    shown = {example["type"] for example in examples}
    missing = sorted(set(frontend_types()) - shown)
    assert not missing, f"protocol.md has no accepted example of {missing}"
    for kind in frontend_types():
        assert f"`{kind}`" in text(PROTOCOL), kind


def relay_messages() -> dict[str, list[dict[str, Any]]]:
    """Every message relay itself sends a frontend, produced by driving a real Session."""
    now = [100.0]
    limits = Limits(inactivity_warning_s=1, inactivity_timeout_s=500, max_session_s=100,
                    duration_warning_s=5, resume_grace_s=50)
    session = Recorder(Session("sid-1", SessionOptions(limits=limits), lambda: now[0]))
    start = twilio.Start(stream_sid="MZ1", call_sid="CA1", account_sid="AC1")
    session.add_frontend(1, FrontendInfo())
    session.on_frontend_message(1, fmsg.parse_message('{"type": "session.update", "session": {}}'))
    session.on_frontend_message(1, fmsg.parse_message('{"type": "job_config", "config": {"role": "x"}}'))
    session.on_frontend_message(1, fmsg.parse_message('{"type": "response.cancel"}'))  # wrong_order
    session.on_call_started(start)
    session.on_upstream_open()
    session.on_upstream_text('{"type": "session.updated", "session": {}}')
    session.on_upstream_text('{"type": "response.output_audio.delta", "item_id": "i1", "delta": "/w=="}')
    session.on_frontend_message(1, fmsg.parse_message(  # a voice change after the model spoke
        '{"type": "session.update", "session": {"voice": "ash"}}'))
    session.on_upstream_text('{"type": "session.updated", "session": {}}')
    now[0] += 2
    session.on_timer()  # inactivity warning
    session.on_frontend_message(1, fmsg.Activity())  # ... cleared
    now[0] += 97
    session.on_timer()  # duration warning
    session.remove_frontend(1)
    session.on_upstream_text('{"type": "response.created", "response": {}}')
    session.add_frontend(2, FrontendInfo())  # session.resumed
    session.end(EndReason.CALLER_HUNG_UP)
    produced: dict[str, list[dict[str, Any]]] = {}
    for _, message in session.effects.frontend:
        if isinstance(message, dict):
            produced.setdefault(message["type"], []).append(message)
    return produced


def test_relay_messages_in_protocol_have_the_code_shapes() -> None:
    """protocol.md shows every message relay sends a frontend, each with the exact keys."""
    produced = relay_messages()
    assert {"session.associated", "job_config.ack", "call.status_changed", "error",
            "session.inactivity_warning", "session.inactivity_warning_cleared",
            "session.duration_warning", "session.resumed"} <= set(produced)
    examples = json_examples(section(text(PROTOCOL), "Relay → frontend"))
    by_type: dict[str, list[dict[str, Any]]] = {}
    for example in examples:
        if example.get("source") == "model":
            continue  # a forwarded model error, not one of relay's own
        by_type.setdefault(example["type"], []).append(example)
    for kind, messages in produced.items():
        assert kind in by_type, f"protocol.md has no example of {kind}"
        shapes = {tuple(message) for message in messages}
        for example in by_type[kind]:
            # Optional keys (an ack's notApplied, used, ignored) give a message more shapes.
            assert tuple(example) in shapes or list(example) == list(messages[0]), (
                kind, list(example), sorted(shapes))
    for example in by_type["job_config.ack"]:
        assert example["status"] in ("queued", "applied")
    progress = {status.value for status in CallStatus} - {"completed", "busy", "no-answer",
                                                           "failed", "canceled"}
    for example in by_type["call.status_changed"]:
        assert example["status"] in {"connected", "ended"} | progress
        assert example["reason"] is None or example["reason"] in {r.value for r in EndReason}


def test_every_end_reason_is_explained_in_protocol() -> None:
    """protocol.md's reasons table names every EndReason."""
    cells = table_first_cells(section(text(PROTOCOL), "call.status_changed"))
    named = {name for cell in cells for name in backticked(cell)}
    missing = sorted({reason.value for reason in EndReason} - named)
    assert not missing, missing


def frontend_error_codes() -> set[str]:
    """Every ``code`` relay can put in an ``error`` message to a frontend."""
    codes = {cls.code for cls in (BadInput, *BadInput.__subclasses__())} - {"bad_input"}
    for source in (ROOT / "relay").rglob("*.py"):
        body = source.read_text(encoding="utf-8")
        codes.update(re.findall(r'fmsg\.error\(\s*"([a-z_]+)"', body))
        codes.update(re.findall(r'_refuse_frontend\(\s*fid,\s*"([a-z_]+)"', body))
        if source.parent.name == "messages":  # parse errors: MalformedMessage(…, code="…")
            codes.update(re.findall(r'code="([a-z_]+)"', body))
    return codes


def test_every_frontend_error_code_is_in_protocol() -> None:
    """protocol.md's error table lists every code relay sends in an ``error`` message."""
    cells = table_first_cells(section(text(PROTOCOL), "error"))
    named = {name for cell in cells for name in backticked(cell)}
    assert {"invalid_job_config", "binary_not_accepted", "config_rejected",
            "field_not_allowed"} <= frontend_error_codes()
    missing = sorted(frontend_error_codes() - named)
    assert not missing, missing


def test_beta_renames_in_protocol_match_the_dialect() -> None:
    """The beta dialect table and example in protocol.md are what relay/messages/dialect.py does."""
    body = section(text(PROTOCOL), "The beta dialect")
    rows = [line.split("|")[1:3] for line in body.splitlines()
            if line.startswith("| `") and "|" in line[1:]]
    renames = {}
    for ga_cell, beta_cell in rows:
        ga = backticked(ga_cell)[0]
        beta = backticked(beta_cell)
        if beta:
            assert dialect.event_name_to_beta(ga) == beta[0], ga
            renames[ga] = beta[0]
        else:
            assert dialect.event_to_beta({"type": ga}) is None, f"{ga} is said not to be sent"
    assert renames == dialect._EVENT_NAMES_TO_BETA
    ga_example, beta_example = json_examples(body)
    assert dialect.event_to_beta(ga_example) == beta_example


# -- Twilio and the model -----------------------------------------------------------------------


def test_twilio_examples_are_what_relay_parses_and_sends() -> None:
    """protocol.md's Media Streams examples parse as relay parses them and match what it sends."""
    inbound = json_examples(section(text(PROTOCOL), "Twilio → relay"))
    for example in inbound:
        twilio.parse_message(json.dumps(example))
    assert {example["event"] for example in inbound} == {event.value for event in twilio.TwilioEvent}
    media, mark, clear = json_examples(section(text(PROTOCOL), "Relay → Twilio"))
    sid = media["streamSid"]
    assert media == orjson.loads(twilio.media_message(sid, media["media"]["payload"]))
    assert mark == orjson.loads(twilio.mark_message(sid, mark["mark"]["name"]))
    assert clear == orjson.loads(twilio.clear_message(sid))


def test_model_session_update_example_has_the_built_shape() -> None:
    """protocol.md's session.update to the model has the structure relay builds."""
    [example] = [e for e in json_examples(section(text(PROTOCOL), "Relay → model"))
                 if e["type"] == "session.update"]
    config = parse_job_config({"role": "Backend Engineer", "company": "Acme", "voice": "cedar"})
    built = build_session_update(config, tools=default_toolbox().schemas)
    built["event_id"] = "relay_update_1"
    assert shape(example) == shape(built)
    assert example["event_id"] == built["event_id"]


def test_twiml_examples_are_what_relay_answers() -> None:
    """The TwiML quoted in the docs is what /twiml builds for that URL and session."""
    sid = "3f0c2a9e-5d7b-4a51-9d1e-2b8f6c4a7e10"
    for doc, public in ((PROTOCOL, "https://relay.example.com"),
                        (TROUBLESHOOTING, "http://localhost:8081")):
        expected = connect_stream_twiml(stream_url(public, f"/call/{sid}"), {"sessionId": sid},
                                        apology=APOLOGY)
        quoted = [line.lstrip("# ").strip() for line in text(doc).splitlines()
                  if "<Response><Connect>" in line]
        assert quoted and all(q == expected for q in quoted), (doc.name, quoted, expected)


# -- HTTP: /health and the commands --------------------------------------------------------------


async def test_health_examples_have_the_served_shape(relay: Relay) -> None:
    """Every /health example in the docs has the keys a running relay serves."""
    async with aiohttp.ClientSession() as http, http.get(relay.http + "/health") as response:
        assert response.status == 200
        served = await response.json()
    served_shape = {key: (sorted(value) if key in ("connections", "security") else None)
                    for key, value in served.items()}
    examples = [e for doc in (PROTOCOL, DEPLOY, TROUBLESHOOTING) for e in json_examples(text(doc))
                if "waitingFrontends" in e]
    assert len(examples) >= 3
    for example in examples:
        example_shape = {key: (sorted(value) if key in ("connections", "security") else None)
                         for key, value in example.items()}
        assert example_shape == served_shape


def test_curl_commands_name_real_endpoints() -> None:
    """Every URL a doc tells you to curl names an endpoint relay serves."""
    urls = []
    for doc in DOCS[1:]:
        for line in text(doc).splitlines():
            if "curl " in line or (urls and line.strip().startswith("http")):
                urls += re.findall(r"https?://[^\s'\"`]+", line)
    paths = {re.sub(r"^https?://[^/]+", "", url).split("?")[0] for url in urls}
    paths = {p for p in paths if p and not p.startswith("/2010-04-01")}  # Twilio's own API
    assert {"/health", "/twiml", "/api/sessions/stop_all"} <= paths
    for path in paths:
        if path.startswith(("/logs", "/call")):
            continue
        assert httpapi.resolve(path) is not None, path


# -- log lines --------------------------------------------------------------------------------------


def known_log_events() -> set[str]:
    """Ev's strings, and the event strings of the provider clients (hang-up, avatars)."""
    events = {value for name, value in vars(Ev).items() if name.isupper()}
    for module in (calls, avatars):
        events |= {value for name, value in vars(module).items()
                   if name.isupper() and isinstance(value, str) and _starts_with_emoji(value)}
    return events


def _starts_with_emoji(value: str) -> bool:
    if not value:
        return False
    first = value[0]
    return (ord(first) > 0x2000 and unicodedata.category(first).startswith("S")
            and not 0x2500 <= ord(first) <= 0x259F)  # box drawing is diagrams, not log lines


def quoted_log_lines(md: str) -> set[str]:
    """Log sentences a doc quotes: `…` spans, lines of code blocks, and JSON "event" values."""
    prose = "\n".join(line for _, line, fenced in _lines_outside_code(md) if not fenced)
    spans = (" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose))
    found = {span for span in spans if _starts_with_emoji(span)}
    for block in code_blocks(md):
        for line in block.splitlines():
            stripped = line.strip()
            if _starts_with_emoji(stripped):
                found.add(re.split(r"\s{2,}", stripped)[0])
    # JSON log lines; Twilio's "event" values (media, mark, …) are not log lines.
    found.update(e for e in re.findall(r'"event":\s*"([^"]+)"', md) if _starts_with_emoji(e))
    return found


@pytest.mark.parametrize("doc", [TROUBLESHOOTING, DEPLOY, PROTOCOL, README],
                         ids=["troubleshooting", "deploy", "protocol", "README"])
def test_quoted_log_lines_exist(doc: Path) -> None:
    """Every log line a doc quotes is one relay really logs, character for character."""
    quoted = quoted_log_lines(text(doc))
    unknown = sorted(quoted - known_log_events())
    assert not unknown, f"{doc.name} quotes log lines relay never logs: {unknown}"


def test_troubleshooting_quotes_the_lifecycle_lines() -> None:
    """troubleshooting.md quotes the five DESIGN.md lines and the hang-up and refusal lines."""
    quoted = quoted_log_lines(text(TROUBLESHOOTING))
    expected = {Ev.FRONTEND_SETUP, Ev.JOB_CONFIG_RECEIVED, Ev.JOB_CONFIG_LIVE_UPDATE,
                Ev.CALL_ENDED_NOTIFY, Ev.FRONTEND_CLEANUP, Ev.JOB_CONFIG_QUEUED,
                Ev.JOB_CONFIG_APPLIED, Ev.NO_TWILIO_CREDENTIALS, calls.HANGUP_NOT_CONFIGURED,
                calls.HANGUP_REQUESTED, calls.HANGUP_FAILED, Ev.SUPERSEDED, Ev.HANDSHAKE_REFUSED,
                Ev.RATE_LIMITED}
    assert not expected - quoted, sorted(expected - quoted)
