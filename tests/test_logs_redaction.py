"""Unit tests for relay.logs: the redaction processor, and what configure_logging prints.

redact_secrets is a plain structlog processor, called directly. The end-to-end
tests configure logging for real, write to a captured stderr, and restore the
process's logging set-up before the test ends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from relay.logs import Ev, configure_logging, get_logger, redact_secrets

SECRET = "sk-live-0123456789abcdef"
AUDIO = "no+JhoaJjpzSHxAKBgYJ"
REDACTED_KEYS = ["audio", "payload", "delta", "authorization", "api_key", "token",
                 "auth_token", "password", "secret", "jwt"]


def redact(**event_dict: Any) -> dict[str, Any]:
    return dict(redact_secrets(None, "info", dict(event_dict)))


@contextmanager
def configured(level: str, fmt: str) -> Iterator[None]:
    """configure_logging for the duration of a block, then put everything back.

    Used inside the test body so pytest's own per-phase log handlers are what is restored.
    """
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    ws = logging.getLogger("websockets")
    ws_level = ws.level
    configure_logging(level, fmt)
    try:
        yield
    finally:
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(root_level)
        ws.setLevel(ws_level)


def json_lines(err: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in err.splitlines() if line.strip()]


# -- redact_secrets --------------------------------------------------------------------------


@pytest.mark.parametrize("key", REDACTED_KEYS)
def test_secret_and_audio_keys_are_redacted(key: str) -> None:
    """The value of each audio- or secret-bearing key becomes the placeholder."""
    assert redact(event="x", **{key: SECRET}) == {"event": "x", key: "[redacted]"}


def test_other_keys_are_left_alone() -> None:
    """Keys that carry no secret keep their values, including the event."""
    context = {"event": Ev.TOOL_CALL, "sessionId": "s1", "callSid": "CA1", "name": "end_interview",
               "attempt": 2, "tokens_used": 12}
    assert redact(**context) == context


def test_every_redacted_key_at_once() -> None:
    """All such keys in one event are redacted together; the rest survive."""
    out = redact(event="x", sessionId="s1", **{k: SECRET for k in REDACTED_KEYS})
    assert out == {"event": "x", "sessionId": "s1", **{k: "[redacted]" for k in REDACTED_KEYS}}


def test_non_string_secret_values_are_redacted() -> None:
    """A secret value of any type (bytes, dict, None) is replaced, not just strings."""
    out = redact(event="x", audio=b"\xff\x7f", token={"value": SECRET}, delta=None)
    assert out == {"event": "x", "audio": "[redacted]", "token": "[redacted]", "delta": "[redacted]"}


SECRET_WORDS = ("audio", "payload", "delta", "authorization", "jwt", "cookie", "token",
                "secret", "password", "apikey")


def _plain(key: str) -> bool:
    norm = key.lower().replace("_", "").replace("-", "")
    return not any(word in norm for word in SECRET_WORDS)


@given(st.dictionaries(st.text(max_size=12).filter(_plain), st.text(max_size=12), max_size=8),
       st.sampled_from(REDACTED_KEYS))
def test_redaction_touches_only_secret_keys(context: dict[str, str], secret: str) -> None:
    """Whatever the context, a secret key is redacted and every plain key is unchanged."""
    out = redact(**context, **{secret: SECRET})
    assert out[secret] == "[redacted]"
    for key, value in context.items():
        assert out[key] == value


@pytest.mark.parametrize("key", ["Authorization", "apiKey", "authToken", "API_KEY"])
def test_secret_keys_are_redacted_in_any_spelling(key: str) -> None:
    """A secret key spelled in camelCase or another case is still redacted."""
    assert redact(event="x", **{key: SECRET})[key] == "[redacted]"


# -- configure_logging -----------------------------------------------------------------------


def test_debug_json_never_prints_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    """At DEBUG in JSON, a log call with secret and audio keys prints the placeholder, not the values."""
    with configured("DEBUG", "json"):
        get_logger(sessionId="s1").debug(
            Ev.UPSTREAM_CONNECTING,
            authorization=f"Bearer {SECRET}",
            api_key=SECRET,
            token=SECRET,
            payload=AUDIO,
            audio=AUDIO,
            delta=AUDIO,
            attempt=1,
        )
    err = capsys.readouterr().err
    assert SECRET not in err and AUDIO not in err
    [line] = json_lines(err)
    assert line["event"] == Ev.UPSTREAM_CONNECTING
    assert line["level"] == "debug"
    assert line["sessionId"] == "s1" and line["attempt"] == 1
    for key in ("authorization", "api_key", "token", "payload", "audio", "delta"):
        assert line[key] == "[redacted]"


def test_debug_console_never_prints_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    """The console renderer prints the placeholder too."""
    with configured("DEBUG", "console"):
        get_logger().debug(Ev.TOOL_CALL, token=SECRET, payload=AUDIO, name="end_interview")
    err = capsys.readouterr().err
    assert SECRET not in err and AUDIO not in err
    assert "[redacted]" in err and "end_interview" in err


def test_context_bound_secrets_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    """A secret bound as context (not passed to the call) is redacted as well."""
    with configured("DEBUG", "json"):
        get_logger(api_key=SECRET).info(Ev.UPSTREAM_OPEN)
    err = capsys.readouterr().err
    assert SECRET not in err
    assert json_lines(err)[0]["api_key"] == "[redacted]"


def test_json_prints_emoji_unescaped(capsys: pytest.CaptureFixture[str]) -> None:
    """In JSON mode the event's emoji are printed as themselves, not as \\u escapes."""
    with configured("DEBUG", "json"):
        get_logger().info(Ev.FRONTEND_SETUP)
        get_logger().debug(Ev.TOOL_CALL)
    err = capsys.readouterr().err
    assert Ev.FRONTEND_SETUP in err and Ev.TOOL_CALL in err
    assert "\\u" not in err
    assert [line["event"] for line in json_lines(err)] == [Ev.FRONTEND_SETUP, Ev.TOOL_CALL]


def test_info_level_drops_debug(capsys: pytest.CaptureFixture[str]) -> None:
    """At INFO, debug lines are not printed at all."""
    with configured("INFO", "json"):
        get_logger().debug(Ev.TOOL_CALL, token=SECRET)
        get_logger().info(Ev.UPSTREAM_OPEN)
    assert [line["event"] for line in json_lines(capsys.readouterr().err)] == [Ev.UPSTREAM_OPEN]


def test_websockets_library_stays_out_of_debug(capsys: pytest.CaptureFixture[str]) -> None:
    """Even at DEBUG, the websockets logger (which logs handshake headers) prints nothing below WARNING."""
    with configured("DEBUG", "json"):
        assert logging.getLogger("websockets").getEffectiveLevel() == logging.WARNING
        logging.getLogger("websockets.client").debug("> Authorization: Bearer %s", SECRET)
    assert SECRET not in capsys.readouterr().err


# -- what a client can put in a log line ---------------------------------------------------------

HOSTILE = "alice\x1b[2J\x1b[31m\rFAKE 🚀 Relay server listening\n\u202etxt.exe\x07"


def test_console_escapes_control_characters_from_user_fields(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A user field with terminal escapes, newlines or bidi overrides prints them escaped."""
    with configured("INFO", "console"):
        get_logger().warning(Ev.HANDSHAKE_REFUSED, userId=HOSTILE, reason="bad\ttoken")
    err = capsys.readouterr().err
    # (The renderer colours its own output; the user's escapes must not get through.)
    for raw in ("\x1b[2J", "\x1b[31m\r", "\r", "\u202e", "\x07", "\t"):
        assert raw not in err
    assert err.count("\n") == 1  # one line, not a forged second one
    assert "x1b[2J" in err and "u202e" in err and "x0a" in err and "x09" in err


def test_json_keeps_user_fields_exact(capsys: pytest.CaptureFixture[str]) -> None:
    """JSON escapes control characters itself: the value parses back unchanged."""
    with configured("INFO", "json"):
        get_logger().warning(Ev.HANDSHAKE_REFUSED, userId=HOSTILE)
    assert json_lines(capsys.readouterr().err)[0]["userId"] == HOSTILE


def test_loggers_made_at_import_use_the_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    """A module's logger created before configure_logging still renders as configured."""
    from relay.transport import admission

    with configured("INFO", "json"):
        admission._log.warning(Ev.RATE_LIMITED, client="198.51.100.1")
    captured = capsys.readouterr()
    assert json_lines(captured.err)[0]["event"] == Ev.RATE_LIMITED
    assert Ev.RATE_LIMITED not in captured.out
