"""The built-in local model behind the same interface as a model WebSocket.

:class:`LocalPeer` wraps :class:`~relay.providers.local.LocalModel` (a protocol
object with no I/O) in the :class:`~relay.lifecycle.ports.Peer` interface, so a
session never knows whether it talks to OpenAI or to the model in process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from relay.logs import Ev, get_logger
from relay.messages.closecodes import CloseCode
from relay.providers.local import LocalModel


class LocalPeer:
    """The built-in local model behind the same interface as a WebSocket.

    Events the model emits are delivered on the next loop iteration, never
    from inside :meth:`send_now`, just as a socket would deliver them.
    """

    def __init__(self, model: LocalModel | None = None) -> None:
        self._model = model or LocalModel()
        self._loop = asyncio.get_running_loop()
        self._sink: Callable[[str], None] | None = None
        self._closed = asyncio.Event()
        self._pending: list[str] = []
        self._scheduled = False
        self.closing = False
        self.close_task: asyncio.Task[None] | None = None
        self._deliver(self._model.open())

    @property
    def is_open(self) -> bool:
        return not self.closing and not self._closed.is_set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def abort(self) -> None:
        self.close_soon(CloseCode.INTERNAL_ERROR, "aborted")

    def set_sinks(self, on_text: Callable[[str], None], on_binary: Callable[[bytes], None] | None = None) -> None:
        self._sink = on_text
        if self._pending:
            self._deliver([])

    def send_now(self, data: bytes | str) -> bool:
        if not self.is_open:
            return False
        text = data.decode() if isinstance(data, bytes) else data
        self._deliver(self._model.receive(text))
        return True

    def _deliver(self, events: list[str]) -> None:
        self._pending.extend(events)
        if self._pending and self._sink is not None and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._sink is None or not self.is_open:
            return
        events, self._pending = self._pending, []
        for text in events:
            if not self.is_open:
                return
            try:
                self._sink(text)
            except Exception:
                get_logger(component="local-model").error(Ev.HANDLER_CRASHED, exc_info=True)
                self.close_soon(1011, "internal error")
                return

    def close_soon(self, code: int, reason: str = "") -> asyncio.Task[None] | None:
        if self.closing:
            return None
        self.closing = True
        self._closed.set()
        self.close_task = self._loop.create_task(self._closed.wait())
        return self.close_task

    async def wait_closed(self) -> None:
        await self._closed.wait()
