"""Where the model is and how to sign in: OpenAI, a compatible server, or Azure OpenAI.

Pure functions of the settings; :func:`realtime_endpoint` is what the server
connects to. Azure's URL and header are built exactly as the ``openai``
package's ``AzureOpenAI`` client builds them for a realtime connection
(``openai/lib/azure.py``, ``_configure_realtime``): the resource endpoint, then
``/openai/realtime?api-version=…&deployment=…``, with the key in an ``api-key``
header instead of ``Authorization: Bearer``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit

from relay.config import Settings


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A Realtime WebSocket URL and the headers that authenticate on it."""

    url: str
    headers: dict[str, str] = field(repr=False)
    #: ``openai`` or ``azure``, for the start-up log.
    provider: str


def azure_realtime_url(endpoint: str, deployment: str, api_version: str) -> str:
    """The realtime URL of an Azure OpenAI deployment.

    ``https://{resource}.openai.azure.com`` gives
    ``wss://{resource}.openai.azure.com/openai/realtime?api-version=…&deployment=…``,
    as ``AzureOpenAI(azure_endpoint=…, api_version=…)`` connects; an ``http://``
    endpoint (a local test server) gives ``ws://``.
    """
    parts = urlsplit(endpoint)
    scheme = "ws" if parts.scheme == "http" else "wss"
    path = parts.path.rstrip("/") + "/openai/realtime"
    query = urlencode({"api-version": api_version, "deployment": deployment})
    return urlunsplit((scheme, parts.netloc, path, query, ""))


def realtime_endpoint(settings: Settings) -> Endpoint:
    """Where sessions of this process open their model connection."""
    if settings.azure_openai_endpoint:
        return Endpoint(
            azure_realtime_url(settings.azure_openai_endpoint, settings.azure_openai_deployment,
                               settings.azure_openai_api_version),
            {"api-key": settings.azure_openai_api_key},
            "azure",
        )
    key = settings.openai_api_key
    return Endpoint(settings.openai_realtime_url,
                    {"Authorization": f"Bearer {key}"} if key else {}, "openai")
