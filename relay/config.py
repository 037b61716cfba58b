"""One frozen :class:`Settings` object, read from the environment in one place.

Every knob is documented next to its default. Durations are seconds and accept
fractions (tests run the whole lifecycle in fractions of a second).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from relay.errors import SettingsError

DEFAULT_OPENAI_REALTIME_URL = "wss://api.openai.com/v1/realtime?model=gpt-realtime"
_LANGUAGE = re.compile(r"[a-z]{2,3}")

#: The browser origins development mode allows: pages served from this machine only
#: (``:*`` matches any port, or none).
LOCAL_ORIGINS = tuple(f"{scheme}://{host}:*" for host in ("localhost", "127.0.0.1", "[::1]")
                      for scheme in ("http", "https"))

#: What a relay reachable from other machines sets (named when development mode refuses to).
PUBLIC_DEPLOYMENT_VARIABLES = ("RELAY_AUTH_SECRET", "RELAY_ADMIN_TOKEN", "RELAY_ALLOWED_ORIGINS",
                               "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "PUBLIC_URL")


@dataclass(frozen=True, slots=True)
class Settings:
    """All of relay's configuration. Build it with :meth:`from_env`."""

    # -- server --------------------------------------------------------------
    #: Interface to listen on. From the environment the default is 0.0.0.0 when
    #: RELAY_AUTH_SECRET is set and loopback in development mode.
    host: str = "127.0.0.1"
    #: Port for WebSockets and HTTP alike (Twilio, browsers, operators).
    port: int = 8081
    #: Public base URL of this relay as Twilio reaches it (https://…); the
    #: TwiML stream URL is derived from it. Empty: derived from the request.
    public_url: str = ""
    #: Bearer token guarding operator endpoints (reset, sessions, metrics, HeyGen
    #: stop-all). Empty: those endpoints answer 403.
    admin_token: str = field(default="", repr=False)
    #: Largest HTTP request body accepted (Twilio's webhook form, beacons).
    max_http_body: int = 16 * 1024
    #: ``auto`` runs on uvloop when it is installed (lower tail latency), else asyncio.
    event_loop: str = "auto"
    #: ``structlog`` level name.
    log_level: str = "INFO"
    #: ``console`` or ``json``; empty picks console on a TTY, JSON otherwise.
    log_format: str = ""

    # -- model ----------------------------------------------------------------
    #: Key for the OpenAI Realtime API; without it the built-in local model runs.
    openai_api_key: str = field(default="", repr=False)
    #: Upstream Realtime URL (any GA-compatible server).
    openai_realtime_url: str = DEFAULT_OPENAI_REALTIME_URL
    #: ``openai`` or ``local``; empty picks ``openai`` when a key is set.
    model: str = ""
    #: Voice used when the job configuration names none.
    voice: str = "marin"
    #: Model that transcribes the caller for the live transcript.
    transcription_model: str = "gpt-4o-mini-transcribe"
    #: Ask the interviewer to speak first as soon as the model is configured.
    greet_first: bool = True
    #: Upstream connect: attempts, first back-off delay, its cap, and the
    #: time one attempt may take.
    upstream_connect_attempts: int = 4
    upstream_backoff_initial_s: float = 0.5
    upstream_backoff_max_s: float = 4.0
    upstream_open_timeout_s: float = 10.0

    # -- audio ----------------------------------------------------------------
    #: Caller audio held while the model connects (20 ms frames); older is dropped.
    pre_open_audio_frames: int = 250
    #: Send a Twilio ``mark`` once this much model audio is unmarked, so relay
    #: knows what the caller has heard without a mark per audio chunk.
    mark_interval_ms: int = 100

    # -- frontends ------------------------------------------------------------
    #: ``ga`` or ``beta``: the event names every frontend receives by default.
    frontend_dialect: str = "ga"

    # -- lifecycle ------------------------------------------------------------
    #: Warn every frontend after this long without activity (frontend
    #: messages, caller speech, DTMF)...
    inactivity_warning_s: float = 480.0
    #: ...and end the session (``inactivity``) after this long.
    inactivity_timeout_s: float = 600.0
    #: Hard cap on a session's life (``max_duration``), warned ahead of time.
    max_session_s: float = 1800.0
    duration_warning_s: float = 120.0
    #: How often every session's deadlines are checked, whatever timers did.
    sweep_interval_s: float = 30.0
    #: WebSocket keepalive: a peer that does not answer a ping within the
    #: timeout is treated as gone.
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    #: How long a session with no call and no frontend waits for one to return.
    resume_grace_s: float = 30.0
    #: Frontend events kept for a frontend that reconnects (page refresh).
    resume_buffer_events: int = 500
    #: On SIGTERM/SIGINT, the longest the drain of live sessions may take.
    drain_s: float = 10.0

    # -- providers ------------------------------------------------------------
    #: Twilio credentials, to hang calls up (closing the stream does not).
    twilio_account_sid: str = ""
    twilio_auth_token: str = field(default="", repr=False)
    twilio_api_base_url: str = "https://api.twilio.com"
    #: How long a teardown may spend ending the phone call and avatars.
    hangup_timeout_s: float = 6.0
    #: HeyGen key, to stop streaming avatar sessions attached to interviews.
    heygen_api_key: str = field(default="", repr=False)
    heygen_api_base_url: str = "https://api.heygen.com"
    #: Browser origins allowed on /logs and the HTTP API ("*": any; ``:*`` any port).
    #: From the environment the default is "*" with RELAY_AUTH_SECRET, else localhost only.
    allowed_origins: tuple[str, ...] = LOCAL_ORIGINS

    # -- security -------------------------------------------------------------
    #: HS256 secret shared with the app that mints frontend tokens; empty runs
    #: the explicit, loudly logged development mode (no frontend auth).
    auth_secret: str = field(default="", repr=False)
    #: The ``aud`` claim every frontend token must carry.
    auth_audience: str = "relay"
    #: ``auto`` checks X-Twilio-Signature whenever TWILIO_AUTH_TOKEN is set.
    twilio_signatures: str = "auto"
    #: How long a /twiml stream token waits for its stream's ``start``.
    stream_token_ttl_s: float = 30.0
    #: Per-IP connection rate limit (0 disables) and burst.
    conn_rate_per_s: float = 20.0
    conn_burst: int = 60
    #: Caps: live sessions overall and per user, frontends per session.
    max_sessions: int = 1000
    max_sessions_per_user: int = 2
    max_frontends_per_session: int = 4
    #: Largest message per endpoint, in bytes.
    max_call_message: int = 16 * 1024
    max_frontend_message: int = 64 * 1024
    #: How long the opening handshake (and a plain HTTP request) may take.
    handshake_timeout_s: float = 5.0
    #: Unsent bytes a peer may leave in its send buffer before it is closed (1013).
    max_send_buffer: int = 1 << 20
    #: Trust X-Forwarded-For for the client address (behind your own proxy only).
    trust_proxy: bool = False
    # -- outbound calls ---------------------------------------------------------
    #: The caller ID of calls relay places (a Twilio number or verified caller
    #: ID); empty: POST /api/calls is off.
    twilio_from_number: str = ""
    #: How long a placed call rings before Twilio gives up (no-answer).
    ring_timeout_s: float = 30.0
    #: Destinations relay may call (E.164 prefixes such as "+1", "+44"); empty: any.
    dial_allowed_prefixes: tuple[str, ...] = ()
    #: Calls one user may place per hour, and at once.
    dial_rate_per_hour: float = 10.0
    dial_burst: int = 3
    #: Answering-machine detection on placed calls (asynchronous AMD).
    machine_detection: bool = False
    #: A voicemail: ``hangup`` ends the session; ``message`` lets the interviewer leave one.
    voicemail: str = "hangup"
    #: Fleet mode: the Redis every node shares (empty: one process, no other service).
    redis_url: str = field(default="", repr=False)
    #: This node's name in the fleet; empty: host name and port.
    node_id: str = ""
    #: How often a node writes its heartbeat, and how long a silent node
    #: lives before a survivor ends its sessions (``relay_lost``).
    fleet_heartbeat_s: float = 2.0
    fleet_dead_after_s: float = 10.0
    #: The bare-/logs pairing rules (oldest waiting frontend, unwatched call)
    #: are for a single-tenant app: ``auto`` turns them off when frontend auth is on.
    bare_pairing: str = "auto"

    # -- hardening: exposure, inbound budgets, refusal logs, token lifetime ----
    #: Development mode (no RELAY_AUTH_SECRET) refuses a HOST beyond loopback unless this is set.
    allow_insecure: bool = False
    #: Inbound budget of one /call stream: messages a second with a burst (every
    #: frame counts: fragments, pings and empty frames too) and bytes a second.
    #: Twilio sends 50 media frames a second; ten times that is closed (4029).
    call_messages_per_s: float = 100.0
    call_message_burst: int = 250
    call_bytes_per_s: int = 48 * 1024
    #: The same for a /logs frontend, which sends a few messages a minute.
    frontend_messages_per_s: float = 20.0
    frontend_message_burst: int = 100
    frontend_bytes_per_s: int = 128 * 1024
    #: Frames one message may be fragmented into.
    max_fragments: int = 32
    #: Refusals logged in full per client address (handshakes) or per connection
    #: (messages); later ones are only counted, in lines at 10, 100, 1000, ...
    refusal_log_first: int = 5
    #: A client with no refusal for this long is logged in full again.
    refusal_log_window_s: float = 60.0
    #: Longest frontend token lifetime accepted, from ``iat`` to ``exp`` (tokens
    #: must then carry ``iat``); 0 accepts any lifetime.
    auth_max_ttl_s: float = 86400.0
    #: With RELAY_TRUST_PROXY: proxies that append to X-Forwarded-For; the client
    #: is the entry this many places from the right.
    trusted_hops: int = 1
    #: Total time for reaching the model: every attempt, its open timeout and back-off.
    upstream_connect_budget_s: float = 10.0
    #: When the model cannot be reached the stream closes first, so Twilio plays
    #: the TwiML's apology; the REST hang-up follows this much later. 0: no apology.
    apology_s: float = 6.0

    @property
    def verifies_twilio(self) -> bool:
        """Whether /twiml and /call require a valid Twilio signature."""
        if self.twilio_signatures == "auto":
            return bool(self.twilio_auth_token)
        return self.twilio_signatures == "on"
    #: How long an ``end_interview`` waits for its goodbye to finish playing.
    farewell_timeout_s: float = 15.0
    #: How long a ``/call`` stream may take to send ``start``.
    call_start_timeout_s: float = 10.0
    #: Deadline for closing connections during a teardown.
    close_timeout_s: float = 2.0

    # -- the model session: tools, DTMF, GA phone settings ----------------------
    #: How long a call to a tool a frontend declared waits for the frontend's
    #: ``function_call_output`` before relay answers the model with an error.
    frontend_tool_timeout_s: float = 30.0
    #: Tell the model about the caller's key presses, as "The caller pressed 5".
    dtmf_to_model: bool = True
    #: server_vad's ``idle_timeout_ms``: after this much silence following the
    #: interviewer's turn, the model prompts the caller to go on (0: off).
    vad_idle_timeout_ms: int = 0
    #: Input noise reduction: ``near_field`` (a phone held to the ear),
    #: ``far_field`` (a speakerphone) or empty (off).
    noise_reduction: str = ""
    #: The caller's language for transcription, ISO-639-1 (``en``); empty: detected.
    transcription_language: str = ""
    #: Azure OpenAI instead of OpenAI: the resource endpoint
    #: (``https://{resource}.openai.azure.com``), its key (sent as ``api-key``),
    #: the realtime deployment's name and the API version.
    azure_openai_endpoint: str = ""
    azure_openai_api_key: str = field(default="", repr=False)
    azure_openai_deployment: str = ""
    azure_openai_api_version: str = "2025-08-28"

    @property
    def bare_pairing_on(self) -> bool:
        """Whether a bare /logs pairs with calls that named no session."""
        if self.bare_pairing == "auto":
            return not self.auth_secret
        return self.bare_pairing == "on"

    @property
    def loopback_only(self) -> bool:
        """Whether HOST is reachable from this machine only."""
        return is_loopback(self.host)

    def exposure_problem(self) -> str | None:
        """Why these settings must not start (development mode beyond loopback), or None."""
        if self.auth_secret or self.allow_insecure or self.loopback_only:
            return None
        return (f"HOST={self.host} would expose development mode (no RELAY_AUTH_SECRET) to other "
                f"machines. A public deployment sets {', '.join(PUBLIC_DEPLOYMENT_VARIABLES)}; "
                "to listen there without them anyway, set RELAY_ALLOW_INSECURE=1")

    @property
    def uses_local_model(self) -> bool:
        """Whether sessions talk to the built-in local model."""
        return self.model == "local"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``).

        Raises:
            SettingsError: A variable is set to a value of the wrong kind.
        """
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        key = reader.str("OPENAI_API_KEY", "")
        azure = reader.http_url("AZURE_OPENAI_ENDPOINT", "")
        if azure and not (reader.str("AZURE_OPENAI_API_KEY", "")
                          and reader.str("AZURE_OPENAI_DEPLOYMENT", "")):
            raise SettingsError(
                "AZURE_OPENAI_ENDPOINT needs AZURE_OPENAI_API_KEY and AZURE_OPENAI_DEPLOYMENT")
        model = reader.choice("RELAY_MODEL", "", ("", "openai", "local"))
        if not model:
            model = "openai" if key or azure else "local"
        if model == "openai" and not (key or azure):
            raise SettingsError("RELAY_MODEL=openai needs OPENAI_API_KEY (or AZURE_OPENAI_ENDPOINT)")
        secret = reader.str("RELAY_AUTH_SECRET", "")
        if secret and len(secret.encode()) < 32:
            # RFC 7518 §3.2: an HS256 key must be at least 32 bytes.
            raise SettingsError("RELAY_AUTH_SECRET must be at least 32 bytes")
        signatures = reader.str("RELAY_TWILIO_SIGNATURES", "auto").lower()
        if (signatures == "on" or (signatures == "auto" and reader.str("TWILIO_AUTH_TOKEN", ""))) \
                and not reader.str("PUBLIC_URL", ""):
            raise SettingsError(
                "Twilio signatures are checked over the public URL Twilio calls: set PUBLIC_URL "
                "(or RELAY_TWILIO_SIGNATURES=off)"
            )
        d = cls()
        settings = cls(
            host=reader.str("HOST", "0.0.0.0" if secret else d.host),
            port=reader.port("PORT", d.port),
            public_url=reader.str("PUBLIC_URL", d.public_url),
            admin_token=reader.str("RELAY_ADMIN_TOKEN", ""),
            max_http_body=reader.int("RELAY_MAX_HTTP_BODY", d.max_http_body),
            event_loop=reader.choice("RELAY_EVENT_LOOP", d.event_loop, ("auto", "uvloop", "asyncio")),
            log_level=reader.choice(
                "LOG_LEVEL", d.log_level, ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
                upper=True,
            ),
            log_format=reader.choice("LOG_FORMAT", "", ("", "console", "json")),
            openai_api_key=key,
            openai_realtime_url=reader.ws_url("OPENAI_REALTIME_URL", DEFAULT_OPENAI_REALTIME_URL),
            model=model,
            voice=reader.str("RELAY_VOICE", d.voice),
            transcription_model=reader.str("RELAY_TRANSCRIPTION_MODEL", d.transcription_model),
            greet_first=reader.bool("RELAY_GREET_FIRST", d.greet_first),
            upstream_connect_attempts=reader.int(
                "RELAY_UPSTREAM_CONNECT_ATTEMPTS", d.upstream_connect_attempts
            ),
            upstream_backoff_initial_s=reader.float(
                "RELAY_UPSTREAM_BACKOFF_INITIAL_S", d.upstream_backoff_initial_s
            ),
            upstream_backoff_max_s=reader.float(
                "RELAY_UPSTREAM_BACKOFF_MAX_S", d.upstream_backoff_max_s
            ),
            upstream_open_timeout_s=reader.float(
                "RELAY_UPSTREAM_OPEN_TIMEOUT_S", d.upstream_open_timeout_s
            ),
            pre_open_audio_frames=reader.int("RELAY_PRE_OPEN_AUDIO_FRAMES", d.pre_open_audio_frames),
            mark_interval_ms=reader.int("RELAY_MARK_INTERVAL_MS", d.mark_interval_ms),
            frontend_dialect=reader.choice("RELAY_FRONTEND_DIALECT", "ga", ("ga", "beta")),
            inactivity_warning_s=reader.float("RELAY_INACTIVITY_WARNING_S", d.inactivity_warning_s),
            inactivity_timeout_s=reader.float("RELAY_INACTIVITY_TIMEOUT_S", d.inactivity_timeout_s),
            max_session_s=reader.float("RELAY_MAX_SESSION_S", d.max_session_s),
            duration_warning_s=reader.float("RELAY_DURATION_WARNING_S", d.duration_warning_s),
            sweep_interval_s=reader.positive("RELAY_SWEEP_INTERVAL_S", d.sweep_interval_s),
            ping_interval_s=reader.positive("RELAY_PING_INTERVAL_S", d.ping_interval_s),
            ping_timeout_s=reader.positive("RELAY_PING_TIMEOUT_S", d.ping_timeout_s),
            resume_grace_s=reader.float("RELAY_RESUME_GRACE_S", d.resume_grace_s),
            resume_buffer_events=reader.int("RELAY_RESUME_BUFFER_EVENTS", d.resume_buffer_events),
            drain_s=reader.float("RELAY_DRAIN_S", d.drain_s),
            twilio_account_sid=reader.str("TWILIO_ACCOUNT_SID", ""),
            twilio_auth_token=reader.str("TWILIO_AUTH_TOKEN", ""),
            twilio_api_base_url=reader.str("TWILIO_API_BASE_URL", d.twilio_api_base_url),
            hangup_timeout_s=reader.float("RELAY_HANGUP_TIMEOUT_S", d.hangup_timeout_s),
            heygen_api_key=reader.str("HEYGEN_API_KEY", ""),
            heygen_api_base_url=reader.str("HEYGEN_API_BASE_URL", d.heygen_api_base_url),
            allowed_origins=reader.list("RELAY_ALLOWED_ORIGINS",
                                        ("*",) if secret else d.allowed_origins),
            auth_secret=reader.str("RELAY_AUTH_SECRET", ""),
            auth_audience=reader.str("RELAY_AUTH_AUDIENCE", d.auth_audience),
            twilio_signatures=reader.choice("RELAY_TWILIO_SIGNATURES", "auto", ("auto", "on", "off")),
            stream_token_ttl_s=reader.positive("RELAY_STREAM_TOKEN_TTL_S", d.stream_token_ttl_s),
            conn_rate_per_s=reader.float("RELAY_CONN_RATE_PER_S", d.conn_rate_per_s),
            conn_burst=reader.int("RELAY_CONN_BURST", d.conn_burst),
            max_sessions=reader.int("RELAY_MAX_SESSIONS", d.max_sessions),
            max_sessions_per_user=reader.int("RELAY_MAX_SESSIONS_PER_USER", d.max_sessions_per_user),
            max_frontends_per_session=reader.int(
                "RELAY_MAX_FRONTENDS_PER_SESSION", d.max_frontends_per_session
            ),
            max_call_message=reader.int("RELAY_MAX_CALL_MESSAGE", d.max_call_message),
            max_frontend_message=reader.int("RELAY_MAX_FRONTEND_MESSAGE", d.max_frontend_message),
            handshake_timeout_s=reader.positive("RELAY_HANDSHAKE_TIMEOUT_S", d.handshake_timeout_s),
            max_send_buffer=reader.int("RELAY_MAX_SEND_BUFFER", d.max_send_buffer),
            trust_proxy=reader.bool("RELAY_TRUST_PROXY", d.trust_proxy),
            bare_pairing=reader.choice("RELAY_BARE_PAIRING", "auto", ("auto", "on", "off")),
            twilio_from_number=reader.phone("TWILIO_FROM_NUMBER", ""),
            ring_timeout_s=reader.positive("RELAY_RING_TIMEOUT_S", d.ring_timeout_s),
            dial_allowed_prefixes=reader.prefixes("RELAY_DIAL_ALLOWED_PREFIXES"),
            dial_rate_per_hour=reader.float("RELAY_DIAL_RATE_PER_HOUR", d.dial_rate_per_hour),
            dial_burst=reader.int("RELAY_DIAL_BURST", d.dial_burst),
            machine_detection=reader.bool("RELAY_MACHINE_DETECTION", d.machine_detection),
            voicemail=reader.choice("RELAY_VOICEMAIL", d.voicemail, ("hangup", "message")),
            redis_url=reader.str("RELAY_REDIS_URL", ""),
            node_id=reader.str("RELAY_NODE_ID", ""),
            fleet_heartbeat_s=reader.positive("RELAY_FLEET_HEARTBEAT_S", d.fleet_heartbeat_s),
            fleet_dead_after_s=reader.positive("RELAY_FLEET_DEAD_AFTER_S", d.fleet_dead_after_s),
            farewell_timeout_s=reader.float("RELAY_FAREWELL_TIMEOUT_S", d.farewell_timeout_s),
            call_start_timeout_s=reader.float("RELAY_CALL_START_TIMEOUT_S", d.call_start_timeout_s),
            close_timeout_s=reader.float("RELAY_CLOSE_TIMEOUT_S", d.close_timeout_s),
            frontend_tool_timeout_s=reader.positive(
                "RELAY_FRONTEND_TOOL_TIMEOUT_S", d.frontend_tool_timeout_s),
            dtmf_to_model=reader.bool("RELAY_DTMF_TO_MODEL", d.dtmf_to_model),
            vad_idle_timeout_ms=reader.int("RELAY_VAD_IDLE_TIMEOUT_MS", d.vad_idle_timeout_ms),
            noise_reduction=reader.choice(
                "RELAY_NOISE_REDUCTION", "off", ("off", "near_field", "far_field")
            ).replace("off", ""),
            transcription_language=reader.language(
                "RELAY_TRANSCRIPTION_LANGUAGE", d.transcription_language),
            azure_openai_endpoint=azure,
            azure_openai_api_key=reader.str("AZURE_OPENAI_API_KEY", ""),
            azure_openai_deployment=reader.str("AZURE_OPENAI_DEPLOYMENT", ""),
            azure_openai_api_version=reader.str(
                "AZURE_OPENAI_API_VERSION", d.azure_openai_api_version),
            # -- hardening --
            allow_insecure=reader.bool("RELAY_ALLOW_INSECURE", d.allow_insecure),
            call_messages_per_s=reader.float("RELAY_CALL_MESSAGES_PER_S", d.call_messages_per_s),
            call_message_burst=reader.int("RELAY_CALL_MESSAGE_BURST", d.call_message_burst),
            call_bytes_per_s=reader.int("RELAY_CALL_BYTES_PER_S", d.call_bytes_per_s),
            frontend_messages_per_s=reader.float(
                "RELAY_FRONTEND_MESSAGES_PER_S", d.frontend_messages_per_s),
            frontend_message_burst=reader.int(
                "RELAY_FRONTEND_MESSAGE_BURST", d.frontend_message_burst),
            frontend_bytes_per_s=reader.int("RELAY_FRONTEND_BYTES_PER_S", d.frontend_bytes_per_s),
            max_fragments=reader.int("RELAY_MAX_FRAGMENTS", d.max_fragments),
            refusal_log_first=reader.int("RELAY_REFUSAL_LOG_FIRST", d.refusal_log_first),
            refusal_log_window_s=reader.positive(
                "RELAY_REFUSAL_LOG_WINDOW_S", d.refusal_log_window_s),
            auth_max_ttl_s=reader.float("RELAY_AUTH_MAX_TTL_S", d.auth_max_ttl_s),
            trusted_hops=reader.int("RELAY_TRUSTED_HOPS", d.trusted_hops),
            upstream_connect_budget_s=reader.positive(
                "RELAY_UPSTREAM_CONNECT_BUDGET_S", d.upstream_connect_budget_s),
            apology_s=reader.float("RELAY_APOLOGY_S", d.apology_s),
        )
        problem = settings.exposure_problem()
        if problem is not None:
            raise SettingsError(problem)
        if settings.trusted_hops < 1:
            raise SettingsError("RELAY_TRUSTED_HOPS must be at least 1")
        return settings

    def replace(self, **changes: object) -> Settings:
        """Return a copy with ``changes`` applied (tests and embedding)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) names this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class _Reader:
    """Typed access to environment variables with errors that name the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def str(self, name: str, default: str) -> str:
        value = self._env.get(name)
        return default if value is None or value == "" else value.strip()

    def int(self, name: str, default: int) -> int:
        raw = self.str(name, "")
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
        if value < 0:
            raise SettingsError(f"{name} must not be negative, got {value}")
        return value

    def float(self, name: str, default: float) -> float:
        raw = self.str(name, "")
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
        if not value >= 0:
            raise SettingsError(f"{name} must not be negative, got {raw!r}")
        return value

    def bool(self, name: str, default: bool) -> bool:
        raw = self.str(name, "").lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")

    def positive(self, name: str, default: float) -> float:
        value = self.float(name, default)
        if value <= 0:
            raise SettingsError(f"{name} must be more than 0 seconds")
        return value

    def list(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        raw = self.str(name, "")
        if not raw:
            return default
        return tuple(item.strip().rstrip("/") for item in raw.split(",") if item.strip())

    def phone(self, name: str, default: str) -> str:
        value = self.str(name, default)
        if value and not re.fullmatch(r"\+[1-9][0-9]{7,14}", value):
            raise SettingsError(f"{name} must be a phone number in E.164 form, e.g. +15551234567")
        return value

    def prefixes(self, name: str) -> tuple[str, ...]:
        values = self.list(name, ())
        for value in values:
            if not re.fullmatch(r"\+[0-9]{1,6}", value):
                raise SettingsError(f"{name} takes E.164 prefixes such as +1,+44; got {value!r}")
        return values

    def port(self, name: str, default: int) -> int:
        value = self.int(name, default)
        if value > 65535:
            raise SettingsError(f"{name} must be a port number (0-65535), got {value}")
        return value

    def http_url(self, name: str, default: str) -> str:
        value = self.str(name, default).rstrip("/")
        if value and not value.startswith(("https://", "http://")):
            raise SettingsError(f"{name} must be an https:// URL")
        return value

    def ws_url(self, name: str, default: str) -> str:
        value = self.str(name, default)
        if not value.startswith(("ws://", "wss://")):
            raise SettingsError(f"{name} must be a ws:// or wss:// URL")
        return value

    def language(self, name: str, default: str) -> str:
        value = self.str(name, default)
        if value and not _LANGUAGE.fullmatch(value):
            raise SettingsError(f"{name} must be an ISO-639-1 language code such as en, got {value!r}")
        return value

    def choice(self, name: str, default: str, allowed: tuple[str, ...], *, upper: bool = False) -> str:
        raw = self.str(name, default)
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            options = ", ".join(a for a in allowed if a)
            raise SettingsError(f"{name} must be one of {options}, got {value!r}")
        return value
