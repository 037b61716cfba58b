"""A session's configuration: what the browser asked for, what the model was sent, what it confirmed.

Two kinds of input configure a session: a ``job_config`` (the interview to
run) and ``session.update`` overrides (the reference demo's way, already
translated to GA). Both are kept; every ``session.update`` relay sends is
built from both, carries an ``event_id``, and remembers which frontends to
acknowledge when the model answers ``session.updated`` — or refuses it with an
``error`` naming that ``event_id``.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any

import orjson

from relay.core.instructions import build_session_update
from relay.core.merge import merge_session
from relay.messages.jobconfig import JobConfig


class Configuration:
    """The configuration state of one session."""

    __slots__ = ("_awaiting", "_queued_acks", "_seq", "_session_id", "job_config", "overrides",
                 "voice_locked")

    def __init__(self, session_id: str) -> None:
        self._session_id = session_id
        self.job_config: JobConfig | None = None
        #: session.update overrides from frontends, merged, GA-shaped.
        self.overrides: dict[str, Any] = {}
        #: The model has spoken: the API refuses a voice change from now on.
        self.voice_locked = False
        # Frontends told "queued" before the model was ready, to acknowledge
        # once the first update is confirmed.
        self._queued_acks: list[int] = []
        # One entry per session.update sent, oldest first: its event_id and
        # the frontends to acknowledge when the model confirms it.
        self._awaiting: deque[tuple[str, list[int]]] = deque()
        self._seq = 0

    @property
    def given(self) -> bool:
        """Whether any frontend configured this session (there is something to resume)."""
        return self.job_config is not None or bool(self.overrides)

    @property
    def frontend_tool_names(self) -> frozenset[str]:
        """Names of the function tools frontends declared (they answer those calls)."""
        tools = self.overrides.get("tools")
        if not isinstance(tools, list):
            return frozenset()
        return frozenset(t["name"] for t in tools
                         if isinstance(t, dict) and isinstance(t.get("name"), str))

    def carry_over(self, previous: Configuration) -> None:
        """Start from what a previous session of the same page was configured with."""
        self.job_config = previous.job_config
        self.overrides = previous.overrides

    def portable(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """The configuration as JSON-ready values (a session moving to another node)."""
        job = None if self.job_config is None else dataclasses.asdict(self.job_config)
        return job, self.overrides

    def restore(self, job: dict[str, Any] | None, overrides: dict[str, Any]) -> None:
        """Take over a configuration made by :meth:`portable` on another node."""
        self.job_config = None if job is None else JobConfig(**{
            key: tuple(tuple(v) if isinstance(v, list) else v for v in value)
            if isinstance(value, list) else value
            for key, value in job.items()})
        self.overrides = dict(overrides)

    def set_job(self, config: JobConfig) -> None:
        """A new job configuration replaces the last one."""
        self.job_config = config

    def merge_overrides(self, session: dict[str, Any]) -> None:
        """Lay a frontend's GA partial session over the overrides so far."""
        self.overrides = merge_session(self.overrides, session)

    def queue_ack(self, fid: int) -> None:
        """Acknowledge ``fid`` once the first update reaches the model."""
        self._queued_acks.append(fid)

    def take_queued_acks(self) -> list[int]:
        """The frontends waiting for the first update, each once."""
        acks, self._queued_acks = list(dict.fromkeys(self._queued_acks)), []
        return acks

    def update_event(self, own_tools: tuple[dict[str, Any], ...], *, default_voice: str,
                     transcription_model: str, farewell: bool,
                     acks: list[int]) -> bytes:
        """The next ``session.update`` for the model, recorded as awaiting confirmation."""
        extra = dict(self.overrides)
        tools = list(own_tools)
        if isinstance(extra.get("tools"), list):
            # A frontend's tools join relay's own; they never replace
            # end_interview and the other server-side tools.
            own = {tool["name"] for tool in tools}
            tools += [t for t in extra.pop("tools") if isinstance(t, dict)
                      and isinstance(t.get("name"), str) and t["name"] not in own]
        update = build_session_update(
            self.job_config,
            tools=tools,
            default_voice=default_voice,
            transcription_model=transcription_model,
            include_voice=not self.voice_locked,
            extra=extra or None,
        )
        if farewell:
            # The goodbye is playing: no new turns, whatever the configuration says.
            update["session"].setdefault("audio", {}).setdefault("input", {})["turn_detection"] = None
        return self.record(update, acks)

    def record(self, update: dict[str, Any], acks: list[int]) -> bytes:
        """Give ``update`` an ``event_id``, remember whom to acknowledge, serialise it."""
        self._seq += 1
        event_id = f"relay_update_{self._seq}"
        update["event_id"] = event_id
        self._awaiting.append((event_id, acks))
        return orjson.dumps(update)

    def on_updated(self) -> list[int]:
        """The model confirmed the oldest update; the frontends to tell ``applied``."""
        if not self._awaiting:
            return []
        _, acks = self._awaiting.popleft()
        return acks

    def on_refused(self, event_id: str | None) -> list[int] | None:
        """The model refused the update ``event_id``: the frontends to tell, or None if not ours."""
        for entry in self._awaiting:
            if entry[0] == event_id:
                self._awaiting.remove(entry)
                return entry[1]
        return None
