"""A simulated browser: the interview app's WebSocket to the relay's ``/logs`` endpoint.

:class:`SimulatedFrontend` sends JSON client messages (``job_config``, ``session.end``, …) and
records what the relay sends (``session.associated``, ``job_config.ack``, forwarded model
events, ``call.status_changed``, …), with race-free waits by message ``type``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Self

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import HeadersLike
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin, Subprotocol

from relay_sim.inbox import Inbox, Waiting, WaitTimeout
from relay_sim.twilio_call import ws_url


class SimulatedFrontend(Waiting):
    """One simulated browser connection to the relay.

    Create it with :meth:`connect`. A background reader records every message from the relay
    until the connection ends. Use it as an async context manager to close it on exit.

    Attributes:
        path: The path it connected to, e.g. ``/logs/{sessionId}``.
        unparsed: Frames that were not JSON objects (binary frames are kept raw here).
    """

    def __init__(self, ws: ClientConnection, path: str) -> None:
        self._ws = ws
        self.path = path
        self.inbox = Inbox("type", f"frontend {path}")
        self.unparsed: list[str | bytes] = []
        self._reader = asyncio.create_task(self._read(), name=f"sim-frontend-{path}")

    @classmethod
    async def connect(
        cls,
        base_url: str,
        path: str = "/logs",
        *,
        subprotocols: Sequence[str] | None = None,
        origin: str | None = None,
        extra_headers: HeadersLike | None = None,
        open_timeout: float = 5.0,
    ) -> Self:
        """Open the WebSocket, as the app's ``new WebSocket(url)`` does.

        Args:
            base_url: The relay, e.g. ``ws://127.0.0.1:8081`` (http:// is accepted too).
            path: ``/logs``, ``/logs/{sessionId}``, ``/logs?sessionId=…``, ``/logs?callSid=…``.
            subprotocols: Offered in ``Sec-WebSocket-Protocol``.
            origin: Sent as ``Origin``, as a browser does.

        Raises:
            websockets.exceptions.InvalidStatus: The relay refused the handshake.
            OSError, TimeoutError: The relay is unreachable.
        """
        ws = await connect(
            ws_url(base_url, path),
            subprotocols=[Subprotocol(name) for name in subprotocols] if subprotocols else None,
            origin=Origin(origin) if origin is not None else None,
            additional_headers=extra_headers,
            proxy=None,  # a simulated browser on loopback talks straight to the relay
            open_timeout=open_timeout,
            max_size=None,
        )
        return cls(ws, path)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the relay selected, if any."""
        return self._ws.subprotocol

    # --- Sending ------------------------------------------------------------------------------

    async def send_json(self, message: Any) -> None:
        """Send a JSON text frame."""
        await self._ws.send(orjson.dumps(message), text=True)

    async def send_raw(self, data: str | bytes) -> None:
        """Send a frame as is (str as text, bytes as binary), for bad-input tests."""
        await self._ws.send(data)

    # --- Receiving ----------------------------------------------------------------------------


    def types(self) -> list[Any]:
        """The ``type`` of every message received so far, in order (handy in assertions)."""
        return [message.get("type") for message in self.inbox.messages]



    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                self._on_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            self.inbox.end(self._ws.close_code, self._ws.close_reason)

    def _on_frame(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            self.unparsed.append(frame)
            return
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            message = None
        if isinstance(message, dict):
            self.inbox.add(message)
        else:
            self.unparsed.append(frame)

    # --- Closing ------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """Whether the connection has ended (from either side)."""
        return self._reader.done()

    def closed_after(self, type: str) -> bool:
        """Whether the connection has closed and a message of ``type`` arrived before it.

        A message sent after the close never arrives, so this proves the order, e.g. that
        ``call.status_changed`` reached the browser before the relay closed the socket.
        """
        return self.is_closed and any(m.get("type") == type for m in self.inbox.messages)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket, as a browser tab does, and wait for the reader. Idempotent."""
        await self._ws.close(code, reason)
        await self._reader

    async def wait_closed(self, timeout: float = 5.0) -> tuple[int | None, str | None]:
        """Wait for the relay to end the connection; return its close code and reason.

        Raises:
            WaitTimeout: The connection is still open after ``timeout`` seconds.
        """
        await asyncio.wait({self._reader}, timeout=timeout)
        if not self._reader.done():
            raise WaitTimeout(f"{self.inbox.peer}: still open after {timeout:g}s")
        await self._reader
        return self._ws.close_code, self._ws.close_reason
