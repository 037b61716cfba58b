"""The directory of one relay process, in memory (see :mod:`relay.lifecycle.directory`)."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from relay.lifecycle.directory import Owner

#: How many ended session IDs are remembered, and for how long (seconds).
ENDED_MEMORY = 5000
ENDED_TTL_S = 3600.0
#: How many call SIDs learned from Twilio are remembered (for four hours: Twilio's longest call).
KNOWN_CALLS = 20_000


class MemoryDirectory:
    """Dicts, one per index; nothing suspends, so every operation is atomic."""

    def __init__(self, node: str, *, stream_token_ttl_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 token_capacity: int = 10_000) -> None:
        self.node = node
        self._clock = clock
        self._owners: dict[str, Owner] = {}
        self._by_user: dict[str, set[str]] = {}
        self._calls: dict[str, str] = {}
        self._waiting: dict[str, None] = {}
        self._unwatched: dict[str, None] = {}
        self._ended: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._known_calls: OrderedDict[str, float] = OrderedDict()
        self._token_ttl = stream_token_ttl_s
        self._token_capacity = token_capacity
        # token -> (call SID, session ID, expiry); and the one live token per call.
        self._tokens: dict[str, tuple[str, str | None, float]] = {}
        self._token_of_call: dict[str, str] = {}

    # -- ownership -----------------------------------------------------------------

    async def claim(self, session_id: str, user_id: str | None, *,
                    ownerless_call: bool = False) -> Owner | None:
        existing = self._owners.get(session_id)
        if existing is not None:
            return existing
        self._owners[session_id] = Owner(self.node, user_id, ownerless_call)
        if user_id is not None:
            self._by_user.setdefault(user_id, set()).add(session_id)
        return None

    async def owner(self, session_id: str) -> Owner | None:
        return self._owners.get(session_id)

    async def set_user(self, session_id: str, user_id: str) -> None:
        owner = self._owners.get(session_id)
        if owner is None:
            return
        self._owners[session_id] = Owner(owner.node, user_id)
        self._by_user.setdefault(user_id, set()).add(session_id)

    async def release(self, session_id: str, user_id: str | None, *,
                      ended_reason: str | None) -> None:
        self._owners.pop(session_id, None)
        if user_id is not None and user_id in self._by_user:
            self._by_user[user_id].discard(session_id)
            if not self._by_user[user_id]:
                del self._by_user[user_id]
        self._waiting.pop(session_id, None)
        self._unwatched.pop(session_id, None)
        for call_sid in [c for c, s in self._calls.items() if s == session_id]:
            del self._calls[call_sid]
        if ended_reason is not None:
            self._ended[session_id] = (ended_reason, self._clock())
            self._ended.move_to_end(session_id)
            while len(self._ended) > ENDED_MEMORY:
                self._ended.popitem(last=False)

    async def ended_reason(self, session_id: str) -> str | None:
        entry = self._ended.get(session_id)
        if entry is None or self._clock() - entry[1] >= ENDED_TTL_S:
            return None
        return entry[0]

    async def user_sessions(self, user_id: str) -> list[str]:
        return list(self._by_user.get(user_id, ()))

    # -- call SIDs -------------------------------------------------------------------

    async def bind_call(self, call_sid: str, session_id: str) -> bool:
        bound = self._calls.get(call_sid)
        if bound is not None and bound != session_id and bound in self._owners:
            return False
        self._calls[call_sid] = session_id
        return True

    async def session_of_call(self, call_sid: str) -> str | None:
        return self._calls.get(call_sid)

    async def call_started(self, session_id: str, call_sid: str) -> None:
        return None  # one process has no survivor to hang up for it

    async def avatar_attached(self, session_id: str, avatar_id: str) -> None:
        return None

    async def learn_call(self, call_sid: str) -> None:
        self._known_calls[call_sid] = self._clock()
        self._known_calls.move_to_end(call_sid)
        while len(self._known_calls) > KNOWN_CALLS:
            self._known_calls.popitem(last=False)

    async def knows_call(self, call_sid: str) -> bool:
        seen = self._known_calls.get(call_sid)
        return seen is not None and self._clock() - seen < ENDED_TTL_S * 4

    # -- the bare-/logs queues ------------------------------------------------------------

    async def add_waiting(self, session_id: str) -> None:
        self._waiting[session_id] = None

    async def take_waiting(self) -> str | None:
        return _pop_oldest(self._waiting)

    async def add_unwatched(self, session_id: str) -> None:
        self._unwatched[session_id] = None

    async def take_unwatched(self) -> str | None:
        return _pop_oldest(self._unwatched)

    async def drop_queues(self, session_id: str) -> None:
        self._waiting.pop(session_id, None)
        self._unwatched.pop(session_id, None)

    async def clear_queues(self) -> None:
        self._waiting.clear()
        self._unwatched.clear()

    # -- stream tokens --------------------------------------------------------------------

    async def mint_stream_token(self, call_sid: str, session_id: str | None) -> str:
        self._purge_tokens()
        old = self._token_of_call.pop(call_sid, None)
        if old is not None:
            # One live token per call: a replayed webhook revokes the last one.
            self._tokens.pop(old, None)
        if len(self._tokens) >= self._token_capacity:
            oldest = next(iter(self._tokens))
            self._token_of_call.pop(self._tokens.pop(oldest)[0], None)
        token = secrets.token_urlsafe(24)
        self._tokens[token] = (call_sid, session_id, self._clock() + self._token_ttl)
        self._token_of_call[call_sid] = token
        return token

    async def mint_dial_token(self, session_id: str, ttl_s: float) -> str:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = ("", session_id, self._clock() + ttl_s)
        return token

    async def bind_dial_token(self, token: str, call_sid: str) -> None:
        entry = self._tokens.get(token)
        if entry is None or entry[0]:
            return  # spent, expired, or bound already: binding never moves a token
        self._tokens[token] = (call_sid, entry[1], entry[2])
        old = self._token_of_call.pop(call_sid, None)
        if old is not None and old != token:
            self._tokens.pop(old, None)
        self._token_of_call[call_sid] = token

    async def spend_stream_token(self, token: str | None, call_sid: str,
                                 session_id: str | None) -> bool:
        if not token:
            return False
        entry = self._tokens.get(token)
        if entry is None:
            return False
        bound_call, bound_session, expires = entry
        if self._clock() > expires:
            self._tokens.pop(token, None)
            self._token_of_call.pop(bound_call, None)
            return False
        if bound_call != call_sid or bound_session != session_id:
            return False  # a mismatch must not use up the real stream's token
        del self._tokens[token]
        self._token_of_call.pop(bound_call, None)
        return True

    def _purge_tokens(self) -> None:
        now = self._clock()
        for token, (call_sid, _, expires) in list(self._tokens.items()):
            if expires < now:
                del self._tokens[token]
                self._token_of_call.pop(call_sid, None)

    def live_tokens(self) -> int:
        """Unspent, unexpired stream tokens (for tests and /health)."""
        self._purge_tokens()
        return len(self._tokens)

    async def close(self) -> None:
        return None


def _pop_oldest(queue: dict[str, None]) -> str | None:
    if not queue:
        return None
    session_id = next(iter(queue))
    del queue[session_id]
    return session_id
