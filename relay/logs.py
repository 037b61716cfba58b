"""structlog set-up and the lifecycle event names.

The event strings are part of the product: operators grep for them and the
frontend's debugging guide quotes them. They are fixed sentences with one
emoji; context goes in key-value pairs, never into the sentence.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger


class Ev:
    """Fixed log event strings (the first five are quoted in DESIGN.md)."""

    FRONTEND_SETUP = "🖥️ Setting up frontend connection for logs"
    JOB_CONFIG_RECEIVED = "📋 Received job configuration for session"
    JOB_CONFIG_LIVE_UPDATE = "🔄 Updating existing OpenAI session with new job configuration"
    CALL_ENDED_NOTIFY = "📤 Sending call ended notification to frontend"
    FRONTEND_CLEANUP = "🧹 Cleaning up frontend connection for session"

    SERVER_STARTED = "🚀 Relay server listening"
    MODEL_LOCAL = "🧪 Using the built-in local model (no OPENAI_API_KEY)"
    MODEL_OPENAI = "🤖 Using the OpenAI Realtime API"
    DEV_MODE = ("⚠️ DEVELOPMENT MODE: no RELAY_AUTH_SECRET, so anyone who can reach relay "
                "can open frontend connections and read transcripts")
    NO_TWILIO_SIGNATURES = "⚠️ Twilio signatures are not checked: anyone can open /call streams"
    PROTECTIONS = "🛡️ Protections"
    RATE_LIMITED = "🚦 Connection rate limit hit"
    HANDSHAKE_REFUSED = "🚫 Handshake refused"
    REFUSALS_SAMPLED = "🤐 Refusals keep coming from this client; counting them instead of logging each"
    NO_TWILIO_CREDENTIALS = "⚠️ No Twilio credentials: ended sessions cannot hang up their calls"
    DRAIN_TIMEOUT = "⏱️ Drain took too long; closing what is left"
    SERVER_STOPPING = "🛑 Relay server shutting down"
    SHUTDOWN_HURRIED = "⏩ Second signal: closing every connection now (hang-ups still happen)"
    SERVER_STOPPED = "🏁 Relay server stopped"

    SESSION_CREATED = "🆕 Session created"
    SESSION_STATE = "🔀 Session state changed"
    SESSION_PAIRED = "🔗 Call associated with session"
    SESSION_ENDING = "🏁 Ending session"
    SESSION_FORGOTTEN = "🗑️ Session forgotten"
    JOB_CONFIG_QUEUED = "📥 Job configuration queued until the model is ready"
    JOB_CONFIG_APPLIED = "✅ Job configuration applied"
    JOB_CONFIG_REJECTED = "⛔ Job configuration rejected"

    CALL_CONNECTED = "📞 Call stream connected"
    CALL_STARTED = "▶️ Call stream started"
    CALL_STOPPED = "⏹️ Caller hung up"
    CALL_CLOSED = "🔌 Call stream closed"
    CALL_REFUSED = "🚫 Call stream refused"

    UPSTREAM_CONNECTING = "🌐 Connecting to the model"
    UPSTREAM_RETRY = "🔁 Model connection failed, retrying"
    UPSTREAM_OPEN = "🟢 Model session open"
    UPSTREAM_FAILED = "🔴 Model connection failed for good"
    UPSTREAM_CLOSED = "🔌 Model session closed"
    UPSTREAM_ERROR = "⚠️ Model reported an error"

    MODEL_EVENT = "🧠 Model event"
    FRONTEND_MESSAGE = "💬 Frontend message"
    BARGE_IN = "✋ Caller interrupted the interviewer"
    TOOL_CALL = "🛠️ Model called a tool"
    TOOL_FAILED = "💥 Tool call failed"
    TOOL_TIMED_OUT = "⌛ The app did not answer a tool call in time"
    FAREWELL = "👋 Interview ending after the goodbye plays"

    FRONTEND_CLOSED = "🔌 Frontend connection closed"
    FRONTEND_RESUMED = "🔁 Frontend reattached; replaying missed events"
    AVATAR_ATTACHED = "🎭 Avatar session attached"
    STEP_TIMED_OUT = "⏱️ Teardown step took too long; moving on"
    SWEEP = "🧹 Sweep found sessions past their deadlines"
    SUPERSEDED = "⏭️ Ending the user's older session"
    HANGUP_UNKNOWN_CALL = "🚫 Not cancelling a call SID relay never learned from Twilio"
    FRONTEND_REHOMED = "🔁 Bare frontend kept; waiting for the next call"
    SESSION_MOVED_HERE = "🛬 Session moved to this node, to its call"
    SESSION_MOVED_AWAY = "🛫 Session moved to the node its call reached"
    DIAL_REQUESTED = "📲 Placing the interview call through Twilio"
    DIAL_PLACED = "📲 Twilio placed the interview call"
    DIAL_RETRY = "🔁 Placing the call failed, retrying"
    DIAL_FAILED = "🔴 Twilio did not place the call"
    DIAL_REFUSED = "🚫 Call request refused"
    CALL_PROGRESS = "📶 Call progress"
    FLEET_JOINED = "🛰️ Joined the fleet"
    FLEET_LEFT = "🛰️ Left the fleet"
    FLEET_STORE_LOST = "🔴 Fleet store (Redis) unreachable: new sessions are refused"
    FLEET_STORE_BACK = "🟢 Fleet store (Redis) reachable"
    FLEET_NODE_DEAD = "💀 A fleet node stopped; ending its sessions"
    FLEET_SESSION_LOST = "💀 Ended a session of a node that stopped"
    FLEET_REFUSED = "🚫 Refused: the fleet is unavailable"
    FLEET_BRIDGE_FAILED = "🌉 Could not bridge to the session's node"
    STOP_REQUESTED = "🛑 Session stop requested"
    FRONTEND_REFUSED = "🚫 Frontend connection refused"
    BAD_INPUT = "🚫 Refused bad input"
    SLOW_PEER = "🐢 Peer is not reading; closing it"
    INBOUND_BUDGET = "🚰 Peer sent more than its inbound budget; closing it"
    PEER_UNRESPONSIVE = "💀 Peer stopped answering pings; dropping it"
    HANDLER_CRASHED = "💥 Connection handler crashed"
    RESET_ALL = "♻️ Resetting all sessions"
    HTTP_REQUEST = "🌍 HTTP request"


#: Keys whose values never reach a log line: audio, credentials, tokens. Keys
#: are compared lower-cased without separators, so ``apiKey``, ``API_KEY`` and
#: ``api-key`` all match, and so does any key ending in a secret word
#: (``sessionToken``) — but not ``tokens_used``.
_REDACTED_KEYS = frozenset({"audio", "payload", "delta", "authorization", "jwt", "cookie"})
_SECRET_SUFFIXES = ("token", "secret", "password", "apikey", "authorization")


def _is_secret_key(key: str) -> bool:
    norm = key.lower().replace("_", "").replace("-", "")
    return norm in _REDACTED_KEYS or norm.endswith(_SECRET_SUFFIXES)


def redact_secrets(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Replace values of secret or audio-bearing keys with a placeholder.

    A structlog processor: relay's own code never passes such values, this is
    the net under it.
    """
    for key in [k for k in event_dict if _is_secret_key(k)]:
        event_dict[key] = "[redacted]"
    return event_dict


#: C0 and C1 controls, DEL, and the bidirectional overrides and isolates: what
#: can move a terminal's cursor, recolour it or reorder what a reader sees.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control_characters(_logger: WrappedLogger, _name: str,
                              event_dict: EventDict) -> EventDict:
    """Escape control characters in string values (``\\x1b`` for ESC, ``\\u202e``, ...).

    A structlog processor for the console renderer, which prints strings raw:
    a user ID or a path from a client must not be able to write terminal
    escapes or fake a second log line. JSON escapes them by itself.
    """
    for key, value in event_dict.items():
        if isinstance(value, str) and _CONTROL.search(value):
            event_dict[key] = _CONTROL.sub(_escaped, value)
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "") -> None:
    """Configure structlog, and route stdlib logging through it, once per process.

    Args:
        level: a level name such as ``DEBUG`` or ``INFO``.
        fmt: ``console``, ``json``, or empty to pick console on a TTY.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    use_console = fmt == "console" or (fmt == "" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if use_console
        # Emoji stay readable: the event strings are greppable product text.
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if not use_console else _identity,
                escape_control_characters if use_console else _identity,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # The websockets library logs handshake headers (the model's Authorization
    # header among them) and frame bytes at DEBUG, and every HTTP response at
    # INFO: keep it at WARNING whatever relay's own level is.
    logging.getLogger("websockets").setLevel(max(numeric, logging.WARNING))


def _identity(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    return event_dict


def get_logger(**context: Any) -> structlog.stdlib.BoundLogger:
    """Return relay's logger with ``context`` bound.

    Lazy: modules create their loggers at import, before :func:`configure_logging`
    runs; the configuration is looked up on first use, so their lines are
    rendered like every other (binding here would freeze structlog's defaults).
    """
    logger: structlog.stdlib.BoundLogger = structlog.get_logger("relay", **context)
    return logger
