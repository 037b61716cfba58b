"""A fake OpenAI Realtime API (GA) server on loopback, for tests and benchmarks.

:class:`RealtimeServer` is a real ``websockets`` server on ``127.0.0.1`` port 0. Each accepted
connection becomes a :class:`RealtimeConnection` that greets the client with
``session.created`` and, by default, answers ``session.update`` with ``session.updated``; with
``echo_audio`` it answers every ``input_audio_buffer.append`` with a
``response.output_audio.delta`` carrying the same audio. Everything else is scripted by the
test through the connection's helpers (``speech_started``, ``respond_with_audio``,
``function_call``, …), which send GA-shaped events.

Handshakes can be refused (``refuse_first``, ``never_open``) or require an API key (an
``Authorization: Bearer`` one, or Azure's ``api-key`` header), to test the relay's reconnect and
error paths. Like the real API (GA):

- a ``session.update`` without ``session.type`` or with beta-only fields is answered with an
  ``error`` event naming its ``event_id``, not applied; so is one that changes the voice once
  the model has sent audio (``cannot_update_voice``);
- a ``response.create`` while a response is in progress (one requested and not done, or one
  scripted with :meth:`RealtimeConnection.response_created`) is refused with
  ``conversation_already_has_active_response``;
- nothing stops the test from sending audio deltas after ``speech_started``: the real API keeps
  sending for a moment after the caller barges in.

Reference: https://platform.openai.com/docs/api-reference/realtime-server-events
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import secrets
import time
from typing import Any, Self

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from relay_sim.inbox import Inbox, Message, Waiting, WaitTimeout

#: Beta session fields the GA API rejects, and where GA moved them.
BETA_ONLY_SESSION_FIELDS = {
    "modalities": "output_modalities",
    "input_audio_format": "audio.input.format",
    "output_audio_format": "audio.output.format",
    "input_audio_transcription": "audio.input.transcription",
    "turn_detection": "audio.input.turn_detection",
    "voice": "audio.output.voice",
}


def new_id(prefix: str) -> str:
    """Return an OpenAI-style identifier such as ``item_…`` or ``resp_…``."""
    return f"{prefix}_{secrets.token_hex(10)}"


def initial_session(model: str) -> Message:
    """Return the GA session object a new connection starts with (the API's defaults)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "prompt": None,
        "expires_at": int(time.time()) + 3600,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "alloy",
                "speed": 1,
            },
        },
        "include": None,
    }


def session_update_error(session: object) -> tuple[str, str, str] | None:
    """Return ``(code, message, param)`` if the GA API would reject this session, else None."""
    if not isinstance(session, dict):
        return "invalid_type", "Invalid type for 'session': expected an object.", "session"
    if "type" not in session:
        return (
            "missing_required_parameter",
            "Missing required parameter: 'session.type'.",
            "session.type",
        )
    if session["type"] not in ("realtime", "transcription"):
        return "invalid_value", "Invalid value for 'session.type'.", "session.type"
    for field in BETA_ONLY_SESSION_FIELDS:
        if field in session:
            return "unknown_parameter", f"Unknown parameter: 'session.{field}'.", f"session.{field}"
    return None


def _sets_voice(session: dict[str, Any]) -> bool:
    audio = session.get("audio")
    output = audio.get("output") if isinstance(audio, dict) else None
    return isinstance(output, dict) and "voice" in output


#: Session objects that are tagged unions (``{"type": …}``): an update replaces them whole.
REPLACED_SESSION_OBJECTS = frozenset({"format", "turn_detection"})


def merge_session(base: dict[str, Any], update: dict[str, Any]) -> None:
    """Apply a ``session.update`` to a session in place: objects merge, other values replace."""
    for key, value in update.items():
        if key in REPLACED_SESSION_OBJECTS:
            base[key] = value
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_session(base[key], value)
        else:
            base[key] = value


class RealtimeConnection(Waiting):
    """One client connection to the fake server, seen from the server side.

    Attributes:
        request_headers: The handshake's HTTP headers (e.g. ``Authorization``).
        path: The request path with its query, e.g. ``/v1/realtime?model=gpt-realtime``.
        session: The session as configured so far (what ``session.updated`` reports).
        unparsed: Frames that were not JSON objects.
        appended: How many ``input_audio_buffer.append`` events arrived.
        echoed: How many of them were echoed back (``echo_audio``).
        closed: Set when the connection ends, from either side.
        close_code: The close code received, once closed (1006 if none).
    """

    def __init__(
        self,
        ws: ServerConnection,
        *,
        echo_audio: bool,
        record_appends: bool,
        auto_session_updated: bool,
        model: str,
    ) -> None:
        assert ws.request is not None  # the handler only runs after the handshake
        self._ws = ws
        self.request_headers: Headers = ws.request.headers
        self.path: str = ws.request.path
        self.inbox = Inbox("type", f"realtime {self.path}")
        self.session = initial_session(model)
        self.unparsed: list[str | bytes] = []
        self.appended = 0
        self.echoed = 0
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._echo_audio = echo_audio
        self._record_appends = record_appends
        self._auto_session_updated = auto_session_updated
        self._event_prefix = f"event_{secrets.token_hex(4)}_"
        self._event_numbers = itertools.count(1)
        self._echo_response_id = new_id("resp")
        self._echo_item_id = new_id("item")
        self._response_id: str | None = None
        #: A response.create was accepted and its response has not finished.
        self.response_requested = False
        #: The model has sent audio: the voice can no longer change.
        self.spoke = False
        #: Client events this fake refused with an ``error``, in order.
        self.refused: list[Message] = []

    # --- The connection's life ----------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self.send_event({"type": "session.created", "session": self.session})
            async for frame in self._ws:
                await self._on_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            self.close_reason = self._ws.close_reason
            self.inbox.end(self.close_code, self.close_reason)
            self.closed.set()

    async def _on_frame(self, frame: str | bytes) -> None:
        try:
            event = orjson.loads(frame) if isinstance(frame, str) else None
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            self.unparsed.append(frame)
            await self.send_error("invalid_json", "The client event is not a JSON object.")
            return
        kind = event.get("type")
        if kind == "input_audio_buffer.append":
            # The benchmark's hot path: one dumps, no validation, no decoding of the audio.
            self.appended += 1
            if self._record_appends:
                self.inbox.add(event)
            if self._echo_audio:
                reply = {
                    "type": "response.output_audio.delta",
                    "event_id": self._next_event_id(),
                    "response_id": self._echo_response_id,
                    "item_id": self._echo_item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": event.get("audio"),
                }
                await self._ws.send(orjson.dumps(reply), text=True)
                self.echoed += 1
            return
        self.inbox.add(event)
        if kind == "session.update" and self._auto_session_updated:
            await self._update_session(event)
        elif kind == "response.create":
            if self.response_requested or self._response_id is not None:
                active = self._response_id or "resp_pending"
                self.refused.append(event)
                await self.send_error(
                    "conversation_already_has_active_response",
                    f"Conversation already has an active response in progress: {active}. "
                    "Wait until the response is finished before creating a new one.",
                    event_id=event.get("event_id"))
            else:
                self.response_requested = True

    async def _update_session(self, event: Message) -> None:
        session = event.get("session")
        error = session_update_error(session)
        if error is None and self.spoke and _sets_voice(session):
            error = ("cannot_update_voice",
                     "Cannot update a conversation's voice if assistant audio is present.", None)
        if error is not None:
            code, message, param = error
            self.refused.append(event)
            await self.send_error(code, message, param=param, event_id=event.get("event_id"))
            return
        assert isinstance(session, dict)
        merge_session(self.session, session)
        await self.send_event({"type": "session.updated", "session": self.session})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection from the server side and wait until it has ended."""
        await self._ws.close(code, reason)
        await self.closed.wait()

    # --- Sending and scripting ----------------------------------------------------------------

    def _next_event_id(self) -> str:
        return f"{self._event_prefix}{next(self._event_numbers)}"

    async def send_event(self, event: Message) -> None:
        """Send a server event, adding an ``event_id`` if it has none."""
        if "event_id" not in event:
            event = {"type": event["type"], "event_id": self._next_event_id(), **event}
        await self._ws.send(orjson.dumps(event), text=True)

    async def send_error(
        self, code: str, message: str, *, param: str | None = None, event_id: object = None
    ) -> None:
        """Send an ``error`` event shaped like the API's ``invalid_request_error``."""
        error: Message = {"type": "invalid_request_error", "code": code, "message": message}
        error |= {"param": param, "event_id": event_id}
        await self.send_event({"type": "error", "error": error})

    def _response(self, response_id: str | None) -> str:
        if response_id is not None:
            return response_id
        if self._response_id is None:
            self._response_id = new_id("resp")
        return self._response_id

    async def speech_started(self, item_id: str | None = None, audio_start_ms: int = 0) -> str:
        """Send ``input_audio_buffer.speech_started`` (the caller began talking); return item id."""
        item_id = item_id or new_id("item")
        kind = "input_audio_buffer.speech_started"
        await self.send_event({"type": kind, "audio_start_ms": audio_start_ms, "item_id": item_id})
        return item_id

    async def speech_stopped(self, item_id: str, audio_end_ms: int = 0) -> None:
        """Send ``input_audio_buffer.speech_stopped``."""
        kind = "input_audio_buffer.speech_stopped"
        await self.send_event({"type": kind, "audio_end_ms": audio_end_ms, "item_id": item_id})

    async def input_transcript(self, item_id: str, transcript: str) -> None:
        """Send ``conversation.item.input_audio_transcription.completed`` (the caller's words)."""
        kind = "conversation.item.input_audio_transcription.completed"
        fields = {"item_id": item_id, "content_index": 0, "transcript": transcript}
        await self.send_event({"type": kind, **fields})

    async def response_created(self, response_id: str | None = None) -> str:
        """Send ``response.created`` and make it the current response; return its id.

        It answers the accepted ``response.create``, if one is pending.
        """
        self._response_id = response_id or new_id("resp")
        self.response_requested = False
        await self.send_event(
            {
                "type": "response.created",
                "response": {
                    "object": "realtime.response",
                    "id": self._response_id,
                    "status": "in_progress",
                    "status_details": None,
                    "output": [],
                },
            }
        )
        return self._response_id

    async def audio_delta(self, item_id: str, audio: bytes, response_id: str | None = None) -> None:
        """Send ``response.output_audio.delta`` with ``audio`` (μ-law bytes) base64-encoded."""
        self.spoke = True
        fields = {"delta": base64.b64encode(audio).decode("ascii")}
        await self._item_event("response.output_audio.delta", item_id, response_id, fields)

    async def audio_done(self, item_id: str, response_id: str | None = None) -> None:
        """Send ``response.output_audio.done``."""
        await self._item_event("response.output_audio.done", item_id, response_id, {})

    async def transcript_delta(
        self, item_id: str, delta: str, response_id: str | None = None
    ) -> None:
        """Send ``response.output_audio_transcript.delta``."""
        kind = "response.output_audio_transcript.delta"
        await self._item_event(kind, item_id, response_id, {"delta": delta})

    async def transcript_done(
        self, item_id: str, transcript: str, response_id: str | None = None
    ) -> None:
        """Send ``response.output_audio_transcript.done`` (the interviewer's full line)."""
        kind = "response.output_audio_transcript.done"
        await self._item_event(kind, item_id, response_id, {"transcript": transcript})

    async def _item_event(
        self, kind: str, item_id: str, response_id: str | None, fields: Message
    ) -> None:
        await self.send_event(
            {
                "type": kind,
                "response_id": self._response(response_id),
                "item_id": item_id,
                "output_index": 0,
                "content_index": 0,
                **fields,
            }
        )

    async def response_done(
        self,
        response_id: str | None = None,
        *,
        status: str = "completed",
        output: list[Message] | None = None,
    ) -> None:
        """Send ``response.done`` for the given (default: current) response and end it."""
        response_id = self._response(response_id)
        if response_id == self._response_id:
            self._response_id = None
        self.response_requested = False
        await self.send_event(
            {
                "type": "response.done",
                "response": {
                    "object": "realtime.response",
                    "id": response_id,
                    "status": status,
                    "status_details": None,
                    "output": output or [],
                    "output_modalities": ["audio"],
                    "usage": None,
                },
            }
        )

    async def _output_item(
        self, kind: str, response_id: str, item: Message, output_index: int = 0
    ) -> None:
        await self.send_event(
            {"type": kind, "response_id": response_id, "output_index": output_index, "item": item}
        )

    async def respond_with_audio(
        self, audio: bytes, transcript: str, *, chunk_bytes: int = 800
    ) -> tuple[str, str]:
        """Script a whole spoken model turn, as the API sends it; return (response_id, item_id).

        Sends ``response.created``, the message item and audio content part, the audio in
        ``chunk_bytes`` deltas, the transcript, then the ``.done`` events and ``response.done``.
        """
        response_id = await self.response_created()
        item_id = new_id("item")
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant"}
        added = item | {"status": "in_progress", "content": []}
        await self._output_item("response.output_item.added", response_id, added)
        part = {"type": "audio", "transcript": ""}
        await self._item_event("response.content_part.added", item_id, response_id, {"part": part})
        for start in range(0, len(audio), chunk_bytes):
            await self.audio_delta(item_id, audio[start : start + chunk_bytes], response_id)
        await self.transcript_delta(item_id, transcript, response_id)
        await self.audio_done(item_id, response_id)
        await self.transcript_done(item_id, transcript, response_id)
        part = {"type": "audio", "transcript": transcript}
        await self._item_event("response.content_part.done", item_id, response_id, {"part": part})
        content = [{"type": "output_audio", "transcript": transcript}]
        done_item = item | {"status": "completed", "content": content}
        await self._output_item("response.output_item.done", response_id, done_item)
        await self.response_done(response_id, output=[done_item])
        return response_id, item_id

    async def function_call(
        self,
        name: str,
        arguments: dict[str, Any],
        call_id: str | None = None,
        *,
        response_id: str | None = None,
        item_id: str | None = None,
        done: bool = True,
        output_index: int = 0,
    ) -> str:
        """Script the model calling a tool; return the ``call_id``.

        Sends ``response.output_item.added``, ``response.function_call_arguments.done``,
        ``response.output_item.done`` (a completed ``function_call`` item) and ``response.done``.

        Args:
            response_id: A response already announced with :meth:`response_created`; if None,
                a new response is started with ``response.created`` first.
            done: End the response (``response.done``) after the call; False leaves it open
                for more output items (several calls in one response).
            output_index: The item's place in the response's output.
        """
        call_id = call_id or new_id("call")
        item_id = item_id or new_id("item")
        if response_id is None:
            response_id = await self.response_created()
        encoded = orjson.dumps(arguments).decode()
        item = {"id": item_id, "object": "realtime.item", "type": "function_call", "name": name}
        item |= {"call_id": call_id}
        added = item | {"arguments": "", "status": "in_progress"}
        await self._output_item("response.output_item.added", response_id, added, output_index)
        await self.send_event(
            {
                "type": "response.function_call_arguments.done",
                "response_id": response_id,
                "item_id": item_id,
                "output_index": output_index,
                "call_id": call_id,
                "name": name,
                "arguments": encoded,
            }
        )
        completed = item | {"arguments": encoded, "status": "completed"}
        await self._output_item("response.output_item.done", response_id, completed, output_index)
        if done:
            await self.response_done(response_id, output=[completed])
        return call_id


class RealtimeServer:
    """A fake Realtime API server. Start it, point the relay at :attr:`url`, script the model.

    Args:
        echo_audio: Answer each ``input_audio_buffer.append`` with an audio delta of the same
            audio (the benchmark's model).
        record_appends: Keep ``input_audio_buffer.append`` events in ``received``; None (the
            default) keeps them unless ``echo_audio``, so a long benchmark holds no audio.
        auto_session_updated: Answer each valid ``session.update`` with ``session.updated``.
        refuse_first: Refuse this many handshakes with HTTP ``refuse_status`` before accepting.
        refuse_status: The HTTP status of refused handshakes.
        never_open: Refuse every handshake.
        api_key: If set, require ``Authorization: Bearer <api_key>``, else answer 401.
        key_header: ``api-key`` requires the key in Azure OpenAI's ``api-key`` header instead.
        model: The model named in sessions and in :attr:`url`.

    Attributes:
        connections: Every accepted connection, in order.
        attempts: Handshakes attempted so far, refused ones included.
    """

    def __init__(
        self,
        *,
        echo_audio: bool = False,
        record_appends: bool | None = None,
        auto_session_updated: bool = True,
        refuse_first: int = 0,
        refuse_status: int = 503,
        never_open: bool = False,
        api_key: str | None = None,
        key_header: str = "authorization",
        model: str = "gpt-realtime",
    ) -> None:
        self.echo_audio = echo_audio
        self.record_appends = not echo_audio if record_appends is None else record_appends
        self.auto_session_updated = auto_session_updated
        self.refuse_first = refuse_first
        self.refuse_status = refuse_status
        self.never_open = never_open
        self.api_key = api_key
        self.key_header = key_header
        self.model = model
        self.connections: list[RealtimeConnection] = []
        self.attempts = 0
        self.url: str | None = None
        self._server: Server | None = None
        self._accepted: asyncio.Queue[RealtimeConnection] = asyncio.Queue()
        self._attempt_waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def start(self) -> str:
        """Listen on 127.0.0.1, port 0; return ``ws://127.0.0.1:PORT/v1/realtime?model=…``."""
        if self._server is None:
            self._server = await serve(
                self._handle,
                "127.0.0.1",
                0,
                process_request=self._process_request,
                compression=None,  # lean echo path; the relay must not depend on it
                max_size=None,
            )
            port = self._server.sockets[0].getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/v1/realtime?model={self.model}"
        assert self.url is not None
        return self.url

    async def stop(self) -> None:
        """Close every connection (code 1001) and stop listening. Idempotent."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def next_connection(self, timeout: float = 5.0) -> RealtimeConnection:
        """Return the next accepted connection not returned before, waiting if needed.

        Raises:
            WaitTimeout: No new connection within ``timeout`` seconds.
        """
        try:
            return await asyncio.wait_for(self._accepted.get(), timeout)
        except TimeoutError:
            raise WaitTimeout(f"realtime server: no new connection within {timeout:g}s") from None

    async def wait_attempts(self, count: int, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` handshakes were attempted (refused ones included).

        Raises:
            WaitTimeout: Fewer attempts after ``timeout`` seconds.
        """
        if self.attempts >= count:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._attempt_waiters.append((count, waiter))
        await asyncio.wait({waiter}, timeout=timeout)
        if not waiter.done():
            waiter.cancel()
            attempts = f"{self.attempts} of {count} attempts"
            raise WaitTimeout(f"realtime server: {attempts} within {timeout:g}s")

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.attempts += 1
        for count, waiter in self._attempt_waiters:
            if count <= self.attempts and not waiter.done():
                waiter.set_result(None)
        self._attempt_waiters = [(c, w) for c, w in self._attempt_waiters if not w.done()]
        if self.never_open or self.attempts <= self.refuse_first:
            return connection.respond(self.refuse_status, "Service unavailable (simulated)\n")
        if self.api_key is not None:
            if self.key_header == "api-key":
                # Azure OpenAI: the key itself, in its own header; a Bearer header is not it.
                ok = request.headers.get("api-key") == self.api_key
            else:
                ok = request.headers.get("Authorization") == f"Bearer {self.api_key}"
            if not ok:
                return connection.respond(401, "Incorrect API key provided\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        connection = RealtimeConnection(
            ws,
            echo_audio=self.echo_audio,
            record_appends=self.record_appends,
            auto_session_updated=self.auto_session_updated,
            model=self.model,
        )
        self.connections.append(connection)
        self._accepted.put_nowait(connection)
        await connection._run()
