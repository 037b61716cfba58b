"""A session's configuration: what the browser asked for, what the model was sent, what it confirmed.

Two kinds of input configure a session: a ``job_config`` (the interview to
run) and ``session.update`` overrides (the reference demo's way, translated to
GA and vetted). Both are kept; every ``session.update`` relay sends is built
from both, carries an ``event_id``, and remembers which frontends to
acknowledge (and what to tell each) when the model answers
``session.updated`` — or refuses it with an ``error`` naming that
``event_id``.

A refusal must not break the call: until the model has confirmed one update,
the session runs on the API's default audio formats, which are not the
phone's. So a refused update that nothing confirmed before is followed at
once by relay's own configuration without the browser's overrides (μ-law both
ways) and, should that be refused too, by the bare minimum (the formats, the
instructions and relay's tools). A refused later update only puts the
overrides back as they were when the model last confirmed one.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import orjson

from relay.core.instructions import (
    PhoneSettings,
    build_instructions,
    build_session_update,
)
from relay.core.merge import merge_session
from relay.messages.frontend import JobConfigMessage
from relay.messages.jobconfig import JobConfig

#: The largest the merged overrides of one session may grow (serialised):
#: every field is capped, and so is their sum, so no frontend can make relay
#: hold (or send the model) more than this.
MAX_OVERRIDES_BYTES = 64 * 1024

_PCMU = {"type": "audio/pcmu"}
VOICE_LOCKED = "the voice cannot change once the interviewer has spoken (the Realtime API refuses it)"

#: What relay tells a frontend was not applied: ``{"field", "reason"}``.
Note = dict[str, str]
#: What a frontend's ``job_config.ack`` says beyond its status: ``used`` and
#: ``ignored`` (the job configuration's fields), ``notApplied`` (a list of :data:`Note`).
Details = dict[str, list[Any]]


def merge_details(old: Details, new: Details) -> Details:
    """Details of two messages of one frontend: the later field lists win, notes add up."""
    merged = {**old, **{key: value for key, value in new.items() if key != "notApplied"}}
    notes = old.get("notApplied", []) + new.get("notApplied", [])
    if notes:
        merged["notApplied"] = notes
    return merged


class Fallback(IntEnum):
    """How much of the configuration an update carries."""

    FULL = 0  # the job configuration and the browser's overrides
    OWN = 1  # relay's own configuration: no browser overrides
    MINIMAL = 2  # the phone's audio formats, the instructions, relay's tools


@dataclass(slots=True)
class _Sent:
    """A session.update on its way: whom to acknowledge, and what it was built from."""

    event_id: str
    acks: dict[int, Details]
    overrides: dict[str, Any]
    level: Fallback


@dataclass(frozen=True, slots=True)
class Refusal:
    """The model refused an update relay sent.

    Attributes:
        acks: The frontends that were waiting for it.
        fallback: The update to send at once instead, if the session would
            otherwise stay on the API's default formats (its acknowledgements
            carry ``not_applied``).
        not_applied: What the frontends' overrides lost (``{"field", "reason"}``).
    """

    acks: list[int]
    fallback: bytes | None
    not_applied: list[Note] = field(default_factory=list)
    #: What to tell the frontends (all of them when there is a fallback, else
    #: ``acks``); empty when the acknowledgements say it all.
    message: str = ""


class Configuration:
    """The configuration state of one session."""

    __slots__ = ("_awaiting", "_confirmed", "_confirmed_overrides", "_phone", "_queued", "_seq",
                 "_tools", "job_config", "overrides", "sent_voice", "voice_locked")

    def __init__(self, tools: tuple[dict[str, Any], ...] = (),
                 phone: PhoneSettings = PhoneSettings()) -> None:
        self._tools = tools
        self._phone = phone
        self.job_config: JobConfig | None = None
        #: session.update overrides from frontends, merged, GA-shaped.
        self.overrides: dict[str, Any] = {}
        #: The model has spoken: the API refuses a voice change from now on.
        self.voice_locked = False
        #: The voice of the last update that carried one.
        self.sent_voice: Any = None
        # Frontends told "queued" before the model was ready, with what to tell
        # each once the first update is confirmed.
        self._queued: dict[int, Details] = {}
        # One entry per session.update sent, oldest first.
        self._awaiting: deque[_Sent] = deque()
        # The model confirmed an update (the phone's formats are in force).
        self._confirmed = False
        self._confirmed_overrides: dict[str, Any] = {}
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

    def take_job(self, message: JobConfigMessage) -> Details:
        """A frontend's job configuration replaces the last one; what its acks will say."""
        self.job_config = message.config
        details: Details = ({"used": list(message.used), "ignored": list(message.ignored)}
                            if message.used else {})
        return merge_details(details, self.voice_details(message.config.voice))

    def take_overrides(self, session: dict[str, Any]) -> Details | None:
        """A frontend's overrides laid over the others; what its acks will say (None: too large)."""
        if not self.merge_overrides(session):
            return None
        audio = session.get("audio")
        output = audio.get("output") if isinstance(audio, dict) else None
        return self.voice_details(output.get("voice") if isinstance(output, dict) else None)

    def merge_overrides(self, session: dict[str, Any]) -> bool:
        """Lay a frontend's vetted GA partial session over the overrides so far.

        Returns False, changing nothing, if the result would pass
        :data:`MAX_OVERRIDES_BYTES`.
        """
        merged = merge_session(self.overrides, session)
        if len(orjson.dumps(merged)) > MAX_OVERRIDES_BYTES:
            return False
        self.overrides = merged
        return True

    def voice_details(self, asked: Any) -> Details:
        """What to tell a frontend that asked for voice ``asked`` (None: it did not ask)."""
        if asked is None or not self.voice_locked or asked == self.sent_voice:
            return {}
        return {"notApplied": [{"field": "voice", "reason": VOICE_LOCKED}]}

    def queue_ack(self, fid: int, details: Details) -> None:
        """Acknowledge ``fid`` once the first update reaches the model."""
        self._queued[fid] = merge_details(self._queued.get(fid, {}), details)

    def take_queued(self) -> dict[int, Details]:
        """The frontends waiting for the first update, each once, with their notes."""
        queued, self._queued = self._queued, {}
        return queued

    def update_event(self, *, farewell: bool, acks: dict[int, Details]) -> bytes:
        """The next ``session.update`` for the model, recorded as awaiting confirmation."""
        return self._build(Fallback.FULL, farewell=farewell, acks=acks)

    def _build(self, level: Fallback, *, farewell: bool, acks: dict[int, Details]) -> bytes:
        tools = list(self._tools)
        if level is Fallback.MINIMAL:
            update: dict[str, Any] = {"type": "session.update", "session": {
                "type": "realtime",
                "instructions": build_instructions(self.job_config),
                "audio": {"input": {"format": dict(_PCMU)}, "output": {"format": dict(_PCMU)}},
                "tools": tools,
            }}
        else:
            extra = dict(self.overrides) if level is Fallback.FULL else {}
            if isinstance(extra.get("tools"), list):
                # A frontend's tools join relay's own; they never replace
                # end_interview and the other server-side tools.
                own = {tool["name"] for tool in tools}
                tools += [t for t in extra.pop("tools") if t["name"] not in own]
            update = build_session_update(self.job_config, tools=tools, phone=self._phone,
                                          include_voice=not self.voice_locked, extra=extra or None)
        output = update["session"]["audio"]["output"]
        if "voice" in output:
            self.sent_voice = output["voice"]
        if farewell:
            # The goodbye is playing: no new turns, whatever the configuration says.
            update["session"]["audio"]["input"]["turn_detection"] = None
        return self.record(update, acks, level)

    def no_new_turns(self) -> bytes:
        """The update that switches turn detection off (the interview is ending)."""
        return self.record({"type": "session.update", "session": {
            "type": "realtime", "audio": {"input": {"turn_detection": None}}}}, {})

    def record(self, update: dict[str, Any], acks: dict[int, Details],
               level: Fallback = Fallback.FULL) -> bytes:
        """Give ``update`` an ``event_id``, remember whom to acknowledge, serialise it."""
        self._seq += 1
        event_id = f"relay_update_{self._seq}"
        update["event_id"] = event_id
        self._awaiting.append(_Sent(event_id, dict(acks), dict(self.overrides), level))
        return orjson.dumps(update)

    def on_updated(self) -> dict[int, Details]:
        """The model confirmed the oldest update: each frontend to tell ``applied``, with its details."""
        if not self._awaiting:
            return {}
        sent = self._awaiting.popleft()
        self._confirmed = True
        self._confirmed_overrides = sent.overrides
        return sent.acks

    def on_refused(self, code: str | None, event_id: str | None, message: str, param: str | None,
                   *, farewell: bool) -> Refusal | None:
        """The model refused the update ``event_id`` (naming ``param``); None if it was not relay's.

        ``cannot_update_voice`` means the model spoke before relay knew (its
        audio was still on the way): the same update goes again without the
        voice, and its acks say the voice was not applied. Anything else:
        see the module docstring.
        """
        sent = next((entry for entry in self._awaiting if entry.event_id == event_id), None)
        if sent is None:
            return None
        if code == "cannot_update_voice" and not self.voice_locked:
            self._awaiting.remove(sent)
            self.voice_locked = True
            note = {"notApplied": [{"field": "voice", "reason": VOICE_LOCKED}]}
            acks = {fid: merge_details(details, note) for fid, details in sent.acks.items()}
            return Refusal(list(sent.acks), self._build(sent.level, farewell=farewell, acks=acks))
        refusal = self._refused(sent, f"refused by the model: {message}", farewell)
        what = f"the model refused {param or 'the configuration'}: {message}"
        if refusal.fallback is not None:
            what += "; relay's own configuration is in force, without the frontends' overrides"
        return Refusal(refusal.acks, refusal.fallback, refusal.not_applied, what)

    def _refused(self, sent: _Sent, reason: str, farewell: bool) -> Refusal:
        self._awaiting.remove(sent)
        lost = [{"field": name, "reason": reason} for name in _fields(sent.overrides)]
        if self._confirmed or any(entry.level > sent.level for entry in self._awaiting):
            # The phone's formats are in force (or a fallback is on its way):
            # keep what the model last accepted.
            self.overrides = dict(self._confirmed_overrides)
            return Refusal(list(sent.acks), None, lost if sent.level is Fallback.FULL else [])
        if sent.level is Fallback.MINIMAL:
            return Refusal(list(sent.acks), None)
        level = Fallback.MINIMAL if sent.level is Fallback.OWN or not sent.overrides else Fallback.OWN
        self.overrides = {}
        acks = {fid: merge_details(details, {"notApplied": lost})
                for fid, details in sent.acks.items()}
        return Refusal(list(sent.acks), self._build(level, farewell=farewell, acks=acks), lost)


def _fields(overrides: dict[str, Any]) -> list[str]:
    """The settings a set of overrides holds, by GA path (``audio.input.turn_detection``)."""
    names = []
    for key, value in overrides.items():
        if key == "audio" and isinstance(value, dict):
            names += [f"audio.{direction}.{name}" for direction, part in value.items()
                      if isinstance(part, dict) for name in part]
        else:
            names.append(key)
    return names
