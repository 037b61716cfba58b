"""Unit tests for relay.config: one frozen Settings read from the environment."""

from __future__ import annotations

import dataclasses

import pytest

from relay.config import DEFAULT_OPENAI_REALTIME_URL, LOCAL_ORIGINS, Settings
from relay.errors import SettingsError

KEY = "sk-test-0123456789abcdef"

#: Every variable relay reads, with a valid non-default value and the field it sets.
FULL_ENV = {
    "HOST": "0.0.0.0",
    "PORT": "9000",
    "PUBLIC_URL": "https://relay.example.com",
    "RELAY_ADMIN_TOKEN": "admin-secret",
    "RELAY_MAX_HTTP_BODY": "4096",
    "LOG_LEVEL": "debug",
    "LOG_FORMAT": "JSON",
    "OPENAI_API_KEY": KEY,
    "OPENAI_REALTIME_URL": "ws://127.0.0.1:9999/v1/realtime?model=gpt-realtime",
    "RELAY_MODEL": "openai",
    "RELAY_VOICE": "cedar",
    "RELAY_TRANSCRIPTION_MODEL": "whisper-1",
    "RELAY_GREET_FIRST": "false",
    "RELAY_UPSTREAM_CONNECT_ATTEMPTS": "7",
    "RELAY_UPSTREAM_BACKOFF_INITIAL_S": "0.25",
    "RELAY_UPSTREAM_BACKOFF_MAX_S": "8",
    "RELAY_UPSTREAM_OPEN_TIMEOUT_S": "3.5",
    "RELAY_PRE_OPEN_AUDIO_FRAMES": "50",
    "RELAY_MARK_INTERVAL_MS": "40",
    "RELAY_FRONTEND_DIALECT": "beta",
    "RELAY_RESUME_GRACE_S": "0.3",
    "RELAY_FAREWELL_TIMEOUT_S": "1.5",
    "RELAY_CALL_START_TIMEOUT_S": "0.75",
    "RELAY_CLOSE_TIMEOUT_S": "0.125",
    "RELAY_INACTIVITY_WARNING_S": "4.5",
    "RELAY_INACTIVITY_TIMEOUT_S": "6",
    "RELAY_MAX_SESSION_S": "20",
    "RELAY_DURATION_WARNING_S": "2",
    "RELAY_SWEEP_INTERVAL_S": "0.5",
    "RELAY_PING_INTERVAL_S": "0.2",
    "RELAY_PING_TIMEOUT_S": "0.4",
    "RELAY_RESUME_BUFFER_EVENTS": "50",
    "RELAY_DRAIN_S": "3",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "twilio-token",
    "TWILIO_API_BASE_URL": "http://127.0.0.1:9998",
    "RELAY_HANGUP_TIMEOUT_S": "1.5",
    "HEYGEN_API_KEY": "heygen-key",
    "HEYGEN_API_BASE_URL": "http://127.0.0.1:9997",
    "RELAY_ALLOWED_ORIGINS": "https://app.example.com",
    "RELAY_AUTH_SECRET": "auth-secret-0123456789-abcdefghijkl",
    "RELAY_AUTH_AUDIENCE": "relay-test",
    "RELAY_TWILIO_SIGNATURES": "on",
    "RELAY_STREAM_TOKEN_TTL_S": "5",
    "RELAY_CONN_RATE_PER_S": "3",
    "RELAY_CONN_BURST": "7",
    "RELAY_MAX_SESSIONS": "9",
    "RELAY_MAX_SESSIONS_PER_USER": "3",
    "RELAY_MAX_FRONTENDS_PER_SESSION": "2",
    "RELAY_MAX_CALL_MESSAGE": "8192",
    "RELAY_MAX_FRONTEND_MESSAGE": "32768",
    "RELAY_HANDSHAKE_TIMEOUT_S": "2",
    "RELAY_MAX_SEND_BUFFER": "65536",
    "RELAY_TRUST_PROXY": "1",
    "RELAY_BARE_PAIRING": "on",
    "TWILIO_FROM_NUMBER": "+15557654321",
    "RELAY_RING_TIMEOUT_S": "20",
    "RELAY_DIAL_ALLOWED_PREFIXES": "+1, +44",
    "RELAY_DIAL_RATE_PER_HOUR": "4",
    "RELAY_DIAL_BURST": "2",
    "RELAY_MACHINE_DETECTION": "on",
    "RELAY_VOICEMAIL": "message",
    "RELAY_REDIS_URL": "redis://127.0.0.1:6390/0",
    "RELAY_NODE_ID": "node-a",
    "RELAY_FLEET_HEARTBEAT_S": "0.5",
    "RELAY_FLEET_DEAD_AFTER_S": "3",
    "RELAY_EVENT_LOOP": "asyncio",
    "RELAY_FRONTEND_TOOL_TIMEOUT_S": "4.5",
    "RELAY_DTMF_TO_MODEL": "off",
    "RELAY_VAD_IDLE_TIMEOUT_MS": "8000",
    "RELAY_NOISE_REDUCTION": "near_field",
    "RELAY_TRANSCRIPTION_LANGUAGE": "en",
    "AZURE_OPENAI_ENDPOINT": "https://myres.openai.azure.com/",
    "AZURE_OPENAI_API_KEY": "azure-key",
    "AZURE_OPENAI_DEPLOYMENT": "gpt-realtime-prod",
    "AZURE_OPENAI_API_VERSION": "2025-04-01-preview",
    # -- hardening --
    "RELAY_ALLOW_INSECURE": "1",
    "RELAY_CALL_MESSAGES_PER_S": "60",
    "RELAY_CALL_MESSAGE_BURST": "120",
    "RELAY_CALL_BYTES_PER_S": "20000",
    "RELAY_FRONTEND_MESSAGES_PER_S": "5",
    "RELAY_FRONTEND_MESSAGE_BURST": "10",
    "RELAY_FRONTEND_BYTES_PER_S": "50000",
    "RELAY_MAX_FRAGMENTS": "4",
    "RELAY_REFUSAL_LOG_FIRST": "2",
    "RELAY_REFUSAL_LOG_WINDOW_S": "30",
    "RELAY_AUTH_MAX_TTL_S": "3600",
    "RELAY_TRUSTED_HOPS": "2",
    "RELAY_UPSTREAM_CONNECT_BUDGET_S": "4",
    "RELAY_APOLOGY_S": "3",
}

INT_VARS = [
    "PORT",
    "RELAY_MAX_HTTP_BODY",
    "RELAY_UPSTREAM_CONNECT_ATTEMPTS",
    "RELAY_PRE_OPEN_AUDIO_FRAMES",
    "RELAY_MARK_INTERVAL_MS",
]
#: Duration variables and the field each sets.
FLOAT_FIELDS = {
    "RELAY_UPSTREAM_BACKOFF_INITIAL_S": "upstream_backoff_initial_s",
    "RELAY_UPSTREAM_BACKOFF_MAX_S": "upstream_backoff_max_s",
    "RELAY_UPSTREAM_OPEN_TIMEOUT_S": "upstream_open_timeout_s",
    "RELAY_RESUME_GRACE_S": "resume_grace_s",
    "RELAY_FAREWELL_TIMEOUT_S": "farewell_timeout_s",
    "RELAY_CALL_START_TIMEOUT_S": "call_start_timeout_s",
    "RELAY_CLOSE_TIMEOUT_S": "close_timeout_s",
}
FLOAT_VARS = list(FLOAT_FIELDS)


def test_defaults_with_empty_environment() -> None:
    """An empty environment gives the documented defaults and the local model."""
    settings = Settings.from_env({})
    assert settings == Settings(model="local")
    assert settings.uses_local_model
    assert settings.host == "127.0.0.1" and settings.port == 8081
    assert settings.openai_realtime_url == DEFAULT_OPENAI_REALTIME_URL
    assert settings.greet_first is True
    assert settings.frontend_dialect == "ga"
    assert settings.log_format == "" and settings.log_level == "INFO"


def test_every_variable_is_read() -> None:
    """Each environment variable sets its field, with case normalised where documented."""
    settings = Settings.from_env(FULL_ENV)
    assert settings == Settings(
        host="0.0.0.0",
        port=9000,
        public_url="https://relay.example.com",
        admin_token="admin-secret",
        max_http_body=4096,
        event_loop="asyncio",
        log_level="DEBUG",
        log_format="json",
        openai_api_key=KEY,
        openai_realtime_url="ws://127.0.0.1:9999/v1/realtime?model=gpt-realtime",
        model="openai",
        voice="cedar",
        transcription_model="whisper-1",
        greet_first=False,
        upstream_connect_attempts=7,
        upstream_backoff_initial_s=0.25,
        upstream_backoff_max_s=8.0,
        upstream_open_timeout_s=3.5,
        pre_open_audio_frames=50,
        mark_interval_ms=40,
        frontend_dialect="beta",
        resume_grace_s=0.3,
        farewell_timeout_s=1.5,
        call_start_timeout_s=0.75,
        close_timeout_s=0.125,
        inactivity_warning_s=4.5,
        inactivity_timeout_s=6.0,
        max_session_s=20.0,
        duration_warning_s=2.0,
        sweep_interval_s=0.5,
        ping_interval_s=0.2,
        ping_timeout_s=0.4,
        resume_buffer_events=50,
        drain_s=3.0,
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="twilio-token",
        twilio_api_base_url="http://127.0.0.1:9998",
        hangup_timeout_s=1.5,
        heygen_api_key="heygen-key",
        heygen_api_base_url="http://127.0.0.1:9997",
        allowed_origins=("https://app.example.com",),
        auth_secret="auth-secret-0123456789-abcdefghijkl",
        auth_audience="relay-test",
        twilio_signatures="on",
        stream_token_ttl_s=5.0,
        conn_rate_per_s=3.0,
        conn_burst=7,
        max_sessions=9,
        max_sessions_per_user=3,
        max_frontends_per_session=2,
        max_call_message=8192,
        max_frontend_message=32768,
        handshake_timeout_s=2.0,
        max_send_buffer=65536,
        trust_proxy=True,
        bare_pairing="on",
        twilio_from_number="+15557654321",
        ring_timeout_s=20.0,
        dial_allowed_prefixes=("+1", "+44"),
        dial_rate_per_hour=4.0,
        dial_burst=2,
        machine_detection=True,
        voicemail="message",
        redis_url="redis://127.0.0.1:6390/0",
        node_id="node-a",
        fleet_heartbeat_s=0.5,
        fleet_dead_after_s=3.0,
        frontend_tool_timeout_s=4.5,
        dtmf_to_model=False,
        vad_idle_timeout_ms=8000,
        noise_reduction="near_field",
        transcription_language="en",
        azure_openai_endpoint="https://myres.openai.azure.com",
        azure_openai_api_key="azure-key",
        azure_openai_deployment="gpt-realtime-prod",
        azure_openai_api_version="2025-04-01-preview",
        # -- hardening --
        allow_insecure=True,
        call_messages_per_s=60.0,
        call_message_burst=120,
        call_bytes_per_s=20000,
        frontend_messages_per_s=5.0,
        frontend_message_burst=10,
        frontend_bytes_per_s=50000,
        max_fragments=4,
        refusal_log_first=2,
        refusal_log_window_s=30.0,
        auth_max_ttl_s=3600.0,
        trusted_hops=2,
        upstream_connect_budget_s=4.0,
        apology_s=3.0,
    )
    assert not settings.uses_local_model


def test_every_field_has_a_variable() -> None:
    """FULL_ENV changes every field from its default, so no knob is left unreadable."""
    settings = Settings.from_env(FULL_ENV)
    defaults = Settings()
    unchanged = [f.name for f in dataclasses.fields(Settings)
                 if getattr(settings, f.name) == getattr(defaults, f.name)]
    assert unchanged == []


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """from_env() without an argument reads os.environ."""
    monkeypatch.setenv("PORT", "1234")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("RELAY_MODEL", raising=False)
    assert Settings.from_env().port == 1234


@pytest.mark.parametrize("name", FLOAT_VARS)
@pytest.mark.parametrize(("raw", "value"), [("0.05", 0.05), ("2", 2.0), (" 1.5 ", 1.5), ("0", 0.0)])
def test_durations_accept_fractions(name: str, raw: str, value: float) -> None:
    """Every duration accepts fractions of a second, whole numbers, zero and surrounding spaces."""
    assert getattr(Settings.from_env({name: raw}), FLOAT_FIELDS[name]) == value


@pytest.mark.parametrize("name", INT_VARS)
@pytest.mark.parametrize("raw", ["abc", "1.5", "ten", "0x10", "-1"])
def test_bad_integer_names_the_variable(name: str, raw: str) -> None:
    """A non-integer or negative integer variable raises SettingsError naming the variable."""
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: raw})


@pytest.mark.parametrize("name", FLOAT_VARS)
@pytest.mark.parametrize("raw", ["soon", "1s", "-0.5", "nan", "1,5"])
def test_bad_duration_names_the_variable(name: str, raw: str) -> None:
    """A non-numeric, negative or NaN duration raises SettingsError naming the variable."""
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: raw})


@pytest.mark.parametrize(("name", "raw"), [
    ("LOG_FORMAT", "xml"),
    ("RELAY_MODEL", "anthropic"),
    ("RELAY_FRONTEND_DIALECT", "v2"),
])
def test_bad_choice_names_the_variable(name: str, raw: str) -> None:
    """A value outside a variable's choices raises SettingsError naming it and the options."""
    with pytest.raises(SettingsError, match=name) as err:
        Settings.from_env({name: raw, "OPENAI_API_KEY": KEY})
    assert repr(raw) in str(err.value)


def test_bad_boolean_names_the_variable() -> None:
    """RELAY_GREET_FIRST must be a recognised boolean spelling."""
    with pytest.raises(SettingsError, match="RELAY_GREET_FIRST"):
        Settings.from_env({"RELAY_GREET_FIRST": "maybe"})


@pytest.mark.parametrize(("raw", "value"), [
    ("1", True), ("true", True), ("YES", True), ("on", True),
    ("0", False), ("False", False), ("no", False), ("off", False), ("", True),
])
def test_boolean_spellings(raw: str, value: bool) -> None:
    """Booleans accept 1/true/yes/on and 0/false/no/off in any case; empty keeps the default."""
    assert Settings.from_env({"RELAY_GREET_FIRST": raw}).greet_first is value


def test_settings_error_is_a_value_error() -> None:
    """SettingsError subclasses ValueError so callers may catch either."""
    assert issubclass(SettingsError, ValueError)


# -- the model choice --------------------------------------------------------------------------


def test_model_defaults_to_local_without_key() -> None:
    """No OPENAI_API_KEY and no RELAY_MODEL: the built-in local model."""
    assert Settings.from_env({"OPENAI_API_KEY": ""}).model == "local"


def test_model_defaults_to_openai_with_key() -> None:
    """An OPENAI_API_KEY without RELAY_MODEL selects the OpenAI Realtime API."""
    settings = Settings.from_env({"OPENAI_API_KEY": KEY})
    assert settings.model == "openai" and settings.openai_api_key == KEY


def test_local_model_can_be_forced_with_key() -> None:
    """RELAY_MODEL=local wins over a configured key."""
    settings = Settings.from_env({"OPENAI_API_KEY": KEY, "RELAY_MODEL": "LOCAL"})
    assert settings.model == "local" and settings.uses_local_model


def test_openai_model_without_key_is_refused() -> None:
    """RELAY_MODEL=openai with no key raises SettingsError naming both variables."""
    with pytest.raises(SettingsError, match="RELAY_MODEL.*OPENAI_API_KEY"):
        Settings.from_env({"RELAY_MODEL": "openai"})


def test_blank_values_keep_defaults() -> None:
    """Variables set to the empty string fall back to their defaults."""
    env = {name: "" for name in FULL_ENV}
    assert Settings.from_env(env) == Settings(model="local")


def test_string_values_are_stripped() -> None:
    """Surrounding whitespace is removed from string and numeric values."""
    settings = Settings.from_env({"HOST": " ::1 ", "PORT": " 80 ", "OPENAI_API_KEY": f" {KEY}\n"})
    assert settings.host == "::1" and settings.port == 80 and settings.openai_api_key == KEY


# -- the object -------------------------------------------------------------------------------


def test_settings_are_frozen() -> None:
    """Settings cannot be changed in place."""
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


def test_replace_returns_changed_copy() -> None:
    """replace() returns a new Settings with the changes and leaves the original alone."""
    settings = Settings()
    changed = settings.replace(port=0, resume_grace_s=0.1)
    assert changed.port == 0 and changed.resume_grace_s == 0.1
    assert settings.port == 8081
    with pytest.raises(TypeError):
        settings.replace(no_such_knob=1)


def test_repr_hides_api_key() -> None:
    """The OpenAI key never appears in the repr of Settings."""
    assert KEY not in repr(Settings.from_env({"OPENAI_API_KEY": KEY}))


def test_repr_hides_admin_token() -> None:
    """The operator token never appears in the repr of Settings."""
    assert "admin-secret" not in repr(Settings.from_env({"RELAY_ADMIN_TOKEN": "admin-secret"}))


def test_port_out_of_range_is_refused() -> None:
    """A PORT above 65535 raises SettingsError naming PORT instead of failing at bind time."""
    with pytest.raises(SettingsError, match="PORT"):
        Settings.from_env({"PORT": "70000"})


def test_unknown_log_level_is_refused() -> None:
    """An unknown LOG_LEVEL raises SettingsError naming LOG_LEVEL."""
    with pytest.raises(SettingsError, match="LOG_LEVEL"):
        Settings.from_env({"LOG_LEVEL": "verbose"})


def test_non_websocket_realtime_url_is_refused() -> None:
    """An OPENAI_REALTIME_URL that is not ws:// or wss:// raises SettingsError naming it."""
    with pytest.raises(SettingsError, match="OPENAI_REALTIME_URL"):
        Settings.from_env({"OPENAI_REALTIME_URL": "https://api.openai.com/v1/realtime",
                           "OPENAI_API_KEY": KEY})


def test_noise_reduction_off_and_language_checks() -> None:
    """RELAY_NOISE_REDUCTION=off means none; a language that is not ISO-639-1 is refused by name."""
    assert Settings.from_env({"RELAY_NOISE_REDUCTION": "off"}).noise_reduction == ""
    assert Settings.from_env({"RELAY_NOISE_REDUCTION": "FAR_FIELD"}).noise_reduction == "far_field"
    with pytest.raises(SettingsError, match="RELAY_NOISE_REDUCTION"):
        Settings.from_env({"RELAY_NOISE_REDUCTION": "loud"})
    with pytest.raises(SettingsError, match="RELAY_TRANSCRIPTION_LANGUAGE"):
        Settings.from_env({"RELAY_TRANSCRIPTION_LANGUAGE": "English"})
# -- exposure: development mode stays on this machine -------------------------------------------

SECRET = "auth-secret-0123456789-abcdefghijkl"


def test_development_mode_listens_on_loopback_and_allows_local_origins() -> None:
    """No RELAY_AUTH_SECRET: HOST defaults to 127.0.0.1 and origins to localhost pages only."""
    settings = Settings.from_env({})
    assert settings.host == "127.0.0.1" and settings.loopback_only
    assert settings.allowed_origins == LOCAL_ORIGINS


def test_auth_on_listens_everywhere_by_default() -> None:
    """With RELAY_AUTH_SECRET, HOST defaults to 0.0.0.0 and any origin may present a token."""
    settings = Settings.from_env({"RELAY_AUTH_SECRET": SECRET})
    assert settings.host == "0.0.0.0" and settings.allowed_origins == ("*",)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "relay.example.com", ""])
def test_development_mode_refuses_a_public_host(host: str) -> None:
    """A non-loopback HOST without a secret is refused, naming what a public deployment sets."""
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"HOST": host} if host else {"HOST": " "})
    message = str(err.value)
    for name in ("RELAY_AUTH_SECRET", "RELAY_ADMIN_TOKEN", "TWILIO_AUTH_TOKEN", "PUBLIC_URL",
                 "RELAY_ALLOWED_ORIGINS", "RELAY_ALLOW_INSECURE=1"):
        assert name in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts_need_nothing(host: str) -> None:
    """Every spelling of loopback is accepted in development mode."""
    assert Settings.from_env({"HOST": host}).loopback_only


def test_allow_insecure_lets_development_mode_listen_anywhere() -> None:
    """RELAY_ALLOW_INSECURE=1 is the explicit way to run development mode on a network."""
    assert Settings.from_env({"HOST": "0.0.0.0", "RELAY_ALLOW_INSECURE": "1"}).host == "0.0.0.0"


def test_trusted_hops_must_be_positive() -> None:
    """RELAY_TRUSTED_HOPS=0 is refused: the client is at least one entry from the right."""
    with pytest.raises(SettingsError, match="RELAY_TRUSTED_HOPS"):
        Settings.from_env({"RELAY_TRUSTED_HOPS": "0"})
