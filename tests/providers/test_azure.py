"""Azure OpenAI Realtime: the URL and header the openai package's Azure client uses.

relay talks to an Azure deployment when ``AZURE_OPENAI_ENDPOINT`` is set:
``{endpoint}/openai/realtime?api-version=…&deployment=…`` with the key in an
``api-key`` header. The URL is checked against the ``openai`` package's own
``AzureOpenAI`` client, and a fake model that accepts only Azure's header
checks what relay sends over a real socket.
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from openai import AzureOpenAI
from relay_sim.realtime_server import RealtimeServer

from relay.config import Settings
from relay.errors import SettingsError
from relay.providers.endpoints import azure_realtime_url, realtime_endpoint
from tests.conftest import RelayFactory
from tests.timing import WAIT

AZURE_KEY = "azure-key-0123456789abcdef"


@pytest.mark.parametrize("endpoint", ["https://myres.openai.azure.com",
                                      "https://myres.openai.azure.com/"])
@pytest.mark.parametrize("version", ["2025-08-28", "2025-04-01-preview"])
def test_the_url_is_the_openai_packages_azure_url(endpoint: str, version: str) -> None:
    """relay's Azure URL and header are what AzureOpenAI(...).realtime would connect with."""
    client = AzureOpenAI(azure_endpoint=endpoint, api_key=AZURE_KEY, api_version=version)
    url, headers = client._configure_realtime("my-realtime deployment", {})
    settings = Settings.from_env({"AZURE_OPENAI_ENDPOINT": endpoint, "AZURE_OPENAI_API_KEY": AZURE_KEY,
                                  "AZURE_OPENAI_DEPLOYMENT": "my-realtime deployment",
                                  "AZURE_OPENAI_API_VERSION": version})
    ours = realtime_endpoint(settings)
    assert ours.url == str(url)
    assert ours.headers == headers == {"api-key": AZURE_KEY}
    assert ours.provider == "azure" and settings.model == "openai"


def test_azure_needs_its_key_and_deployment() -> None:
    """AZURE_OPENAI_ENDPOINT without a key or a deployment is refused, naming what is missing."""
    for env in ({"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com"},
                {"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com", "AZURE_OPENAI_API_KEY": "k"}):
        with pytest.raises(SettingsError, match="AZURE_OPENAI_DEPLOYMENT"):
            Settings.from_env(env)
    with pytest.raises(SettingsError, match="AZURE_OPENAI_ENDPOINT"):
        Settings.from_env({"AZURE_OPENAI_ENDPOINT": "x.openai.azure.com",
                           "AZURE_OPENAI_API_KEY": "k", "AZURE_OPENAI_DEPLOYMENT": "d"})


def test_plain_openai_keeps_bearer_auth() -> None:
    """Without Azure settings the model is OPENAI_REALTIME_URL with Authorization: Bearer."""
    endpoint = realtime_endpoint(Settings.from_env({"OPENAI_API_KEY": "sk-1"}))
    assert endpoint.provider == "openai"
    assert endpoint.headers == {"Authorization": "Bearer sk-1"}
    assert azure_realtime_url("http://127.0.0.1:9", "d", "v").startswith("ws://127.0.0.1:9/openai/")


async def test_a_call_reaches_an_azure_deployment(make_relay: RelayFactory) -> None:
    """Over a real socket: Azure's path and query, the api-key header, no Bearer token."""
    async with RealtimeServer(api_key=AZURE_KEY, key_header="api-key") as azure:
        port = urlsplit(await azure.start()).port
        relay = await make_relay(openai_api_key="", azure_openai_endpoint=f"http://127.0.0.1:{port}",
                                 azure_openai_api_key=AZURE_KEY, azure_openai_deployment="rt-prod",
                                 azure_openai_api_version="2025-08-28")
        sid = str(uuid.uuid4())
        call = await relay.call(f"/call/{sid}")
        await call.start()
        upstream = await azure.next_connection(timeout=WAIT)
        update = await upstream.wait_for("session.update")
        assert update["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
        path = urlsplit(upstream.path)
        assert path.path == "/openai/realtime"
        assert parse_qs(path.query) == {"api-version": ["2025-08-28"], "deployment": ["rt-prod"]}
        assert upstream.request_headers["api-key"] == AZURE_KEY
        assert "Authorization" not in upstream.request_headers
        await call.hang_up()
        await relay.wait_idle()


def test_the_azure_key_is_never_in_a_repr() -> None:
    """The Azure key appears neither in Settings' repr nor in the endpoint's."""
    settings = Settings.from_env({"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
                                  "AZURE_OPENAI_API_KEY": AZURE_KEY, "AZURE_OPENAI_DEPLOYMENT": "d"})
    assert AZURE_KEY not in repr(settings) and AZURE_KEY not in repr(realtime_endpoint(settings))
