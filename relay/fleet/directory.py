"""The directory of a fleet, in Redis (see :mod:`relay.lifecycle.directory`).

Keys (all under ``relay:``)::

    s:{sid}              hash: owner node, user, ownerless, state (waiting|live), call, created
    s:{sid}:calls        set: call SIDs bound to the session
    s:{sid}:avatars      hash: avatar ID -> provider
    node:{id}:sessions   set: the sessions a node owns
    user:{uid}           set: a user's live sessions
    call:{callSid}       the session a call SID is bound to (4 h)
    known:{callSid}      relay learned this call from Twilio or placed it (4 h)
    ended:{sid}          why an interview ended (1 h)
    waiting, unwatched   lists: the bare-/logs queues, oldest first
    token:{t}, token-of:{callSid}   one-time stream tokens (their TTL)

Every operation that decides between racing nodes is one Lua script or one
atomic command (``LPOP``), so exactly one claimant wins.
"""

from __future__ import annotations

import secrets
from typing import Any

from relay.fleet.store import PREFIX, Store
from relay.lifecycle.directory import Owner

CALL_TTL_S = 4 * 3600
ENDED_TTL_S = 3600

_CLAIM = """
if redis.call('exists', KEYS[1]) == 1 then
  return redis.call('hmget', KEYS[1], 'owner', 'user', 'ownerless')
end
redis.call('hset', KEYS[1], 'owner', ARGV[1], 'user', ARGV[2], 'ownerless', ARGV[3],
           'state', 'waiting', 'created', ARGV[5])
redis.call('sadd', KEYS[2], ARGV[4])
if ARGV[2] ~= '' then redis.call('sadd', KEYS[3], ARGV[4]) end
return false
"""

_RELEASE = """
local owner = redis.call('hget', KEYS[1], 'owner')
if owner and owner ~= ARGV[1] then return 0 end
for _, call in ipairs(redis.call('smembers', KEYS[2])) do
  local key = ARGV[5] .. 'call:' .. call
  if redis.call('get', key) == ARGV[2] then redis.call('del', key) end
end
redis.call('del', KEYS[1], KEYS[2], KEYS[3])
redis.call('srem', KEYS[4], ARGV[2])
if ARGV[3] ~= '' then redis.call('srem', KEYS[5], ARGV[2]) end
redis.call('lrem', KEYS[6], 0, ARGV[2])
redis.call('lrem', KEYS[7], 0, ARGV[2])
if ARGV[4] ~= '' then redis.call('set', KEYS[8], ARGV[4], 'EX', ARGV[6]) end
return 1
"""

_TRANSFER = """
if redis.call('hget', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if redis.call('hget', KEYS[1], 'state') ~= 'waiting' then return 0 end
redis.call('hset', KEYS[1], 'owner', ARGV[2])
redis.call('smove', KEYS[2], KEYS[3], ARGV[3])
return 1
"""

_BIND_CALL = """
local current = redis.call('get', KEYS[1])
if current and current ~= ARGV[1] and redis.call('exists', ARGV[3] .. 's:' .. current) == 1 then
  return 0
end
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('sadd', KEYS[2], ARGV[4])
return 1
"""

_SET_USER = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
redis.call('hset', KEYS[1], 'user', ARGV[1])
redis.call('sadd', KEYS[2], ARGV[2])
return 1
"""

_MINT = """
local old = redis.call('get', KEYS[2])
if old then redis.call('del', ARGV[4] .. 'token:' .. old) end
redis.call('hset', KEYS[1], 'call', ARGV[1], 'session', ARGV[2])
redis.call('pexpire', KEYS[1], ARGV[3])
redis.call('set', KEYS[2], ARGV[5], 'PX', ARGV[3])
return 1
"""

_SPEND = """
local bound = redis.call('hmget', KEYS[1], 'call', 'session')
if not bound[1] then return 0 end
if bound[1] ~= ARGV[1] or bound[2] ~= ARGV[2] then return 0 end
redis.call('del', KEYS[1])
if redis.call('get', KEYS[2]) == ARGV[3] then redis.call('del', KEYS[2]) end
return 1
"""


_BIND_TOKEN = """
if redis.call('hget', KEYS[1], 'call') ~= '' then return 0 end
redis.call('hset', KEYS[1], 'call', ARGV[1])
local old = redis.call('get', KEYS[2])
if old and old ~= ARGV[2] then redis.call('del', ARGV[3] .. 'token:' .. old) end
redis.call('set', KEYS[2], ARGV[2], 'PX', math.max(1, redis.call('pttl', KEYS[1])))
return 1
"""


def _k(*parts: str) -> str:
    return PREFIX + ":".join(parts)


class RedisDirectory:
    """:class:`~relay.lifecycle.directory.Directory` over one Redis, shared by every node."""

    def __init__(self, store: Store, node: str, *, stream_token_ttl_s: float = 30.0) -> None:
        self.node = node
        self._store = store
        r = store.redis
        self._token_ttl_ms = max(1, int(stream_token_ttl_s * 1000))
        self._claim = r.register_script(_CLAIM)
        self._release = r.register_script(_RELEASE)
        self._transfer = r.register_script(_TRANSFER)
        self._bind = r.register_script(_BIND_CALL)
        self._set_user = r.register_script(_SET_USER)
        self._mint = r.register_script(_MINT)
        self._spend = r.register_script(_SPEND)
        self._bind_token = r.register_script(_BIND_TOKEN)

    @property
    def _r(self) -> Any:
        return self._store.redis

    # -- ownership -----------------------------------------------------------------

    async def claim(self, session_id: str, user_id: str | None, *,
                    ownerless_call: bool = False) -> Owner | None:
        now = await self._now_ms()
        existing = await self._store.run(self._claim(
            keys=[_k("s", session_id), _k("node", self.node, "sessions"),
                  _k("user", user_id or "")],
            args=[self.node, user_id or "", "1" if ownerless_call else "", session_id, now]))
        if not existing:
            return None
        node, user, ownerless = existing
        return Owner(node or "", user or None, bool(ownerless))

    async def owner(self, session_id: str) -> Owner | None:
        node, user, ownerless = await self._store.run(
            self._r.hmget(_k("s", session_id), "owner", "user", "ownerless"))
        if not node:
            return None
        return Owner(node, user or None, bool(ownerless))

    async def record(self, session_id: str) -> dict[str, str]:
        """Everything the directory holds of a session (the reaper reads it)."""
        return dict(await self._store.run(self._r.hgetall(_k("s", session_id))))

    async def set_user(self, session_id: str, user_id: str) -> None:
        await self._store.run(self._set_user(
            keys=[_k("s", session_id), _k("user", user_id)], args=[user_id, session_id]))

    async def transfer(self, session_id: str, from_node: str) -> bool:
        """Move a waiting session from ``from_node`` to this node (its call is here); atomic."""
        moved = await self._store.run(self._transfer(
            keys=[_k("s", session_id), _k("node", from_node, "sessions"),
                  _k("node", self.node, "sessions")],
            args=[from_node, self.node, session_id]))
        return bool(moved)

    async def release(self, session_id: str, user_id: str | None, *,
                      ended_reason: str | None, owner: str | None = None) -> None:
        node = owner or self.node
        await self._store.run(self._release(
            keys=[_k("s", session_id), _k("s", session_id, "calls"),
                  _k("s", session_id, "avatars"), _k("node", node, "sessions"),
                  _k("user", user_id or ""), _k("waiting"), _k("unwatched"),
                  _k("ended", session_id)],
            args=[node, session_id, user_id or "", ended_reason or "", PREFIX, ENDED_TTL_S]))

    async def ended_reason(self, session_id: str) -> str | None:
        reason = await self._store.run(self._r.get(_k("ended", session_id)))
        return reason or None

    async def mark_ended(self, session_id: str, reason: str) -> None:
        """Remember why a session ended without releasing anything (the reaper)."""
        await self._store.run(self._r.set(_k("ended", session_id), reason, ex=ENDED_TTL_S))

    async def user_sessions(self, user_id: str) -> list[str]:
        return sorted(await self._store.run(self._r.smembers(_k("user", user_id))))

    async def node_sessions(self, node: str) -> list[str]:
        """The sessions a node owns."""
        return sorted(await self._store.run(self._r.smembers(_k("node", node, "sessions"))))

    async def avatars(self, session_id: str) -> dict[str, str]:
        """The avatars a session attached: ID -> provider."""
        return dict(await self._store.run(self._r.hgetall(_k("s", session_id, "avatars"))))

    async def calls(self, session_id: str) -> list[str]:
        """The call SIDs bound to a session."""
        return sorted(await self._store.run(self._r.smembers(_k("s", session_id, "calls"))))

    # -- call SIDs -------------------------------------------------------------------

    async def bind_call(self, call_sid: str, session_id: str) -> bool:
        bound = await self._store.run(self._bind(
            keys=[_k("call", call_sid), _k("s", session_id, "calls")],
            args=[session_id, CALL_TTL_S, PREFIX, call_sid]))
        return bool(bound)

    async def session_of_call(self, call_sid: str) -> str | None:
        return await self._store.run(self._r.get(_k("call", call_sid))) or None

    async def call_started(self, session_id: str, call_sid: str) -> None:
        await self._store.run(self._r.hset(_k("s", session_id), mapping={
            "state": "live", "call": call_sid}))

    async def avatar_attached(self, session_id: str, avatar_id: str) -> None:
        await self._store.run(self._r.hset(_k("s", session_id, "avatars"), avatar_id, "heygen"))

    async def learn_call(self, call_sid: str) -> None:
        await self._store.run(self._r.set(_k("known", call_sid), "1", ex=CALL_TTL_S))

    async def knows_call(self, call_sid: str) -> bool:
        return bool(await self._store.run(self._r.exists(_k("known", call_sid))))

    # -- the bare-/logs queues ------------------------------------------------------------

    async def add_waiting(self, session_id: str) -> None:
        await self._store.run(self._r.rpush(_k("waiting"), session_id))

    async def take_waiting(self) -> str | None:
        return await self._store.run(self._r.lpop(_k("waiting"))) or None

    async def add_unwatched(self, session_id: str) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.lrem(_k("unwatched"), 0, session_id)
        pipe.rpush(_k("unwatched"), session_id)
        await self._store.run(pipe.execute())

    async def take_unwatched(self) -> str | None:
        return await self._store.run(self._r.lpop(_k("unwatched"))) or None

    async def drop_queues(self, session_id: str) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.lrem(_k("waiting"), 0, session_id)
        pipe.lrem(_k("unwatched"), 0, session_id)
        await self._store.run(pipe.execute())

    async def clear_queues(self) -> None:
        await self._store.run(self._r.delete(_k("waiting"), _k("unwatched")))

    # -- stream tokens --------------------------------------------------------------------

    async def mint_stream_token(self, call_sid: str, session_id: str | None) -> str:
        token = secrets.token_urlsafe(24)
        await self._store.run(self._mint(
            keys=[_k("token", token), _k("token-of", call_sid)],
            args=[call_sid, session_id or "", self._token_ttl_ms, PREFIX, token]))
        return token

    async def mint_dial_token(self, session_id: str, ttl_s: float) -> str:
        token = secrets.token_urlsafe(24)
        await self._store.run(self._r.hset(_k("token", token), mapping={
            "call": "", "session": session_id}))
        await self._store.run(self._r.pexpire(_k("token", token), max(1, int(ttl_s * 1000))))
        return token

    async def bind_dial_token(self, token: str, call_sid: str) -> None:
        await self._store.run(self._bind_token(
            keys=[_k("token", token), _k("token-of", call_sid)], args=[call_sid, token, PREFIX]))

    async def spend_stream_token(self, token: str | None, call_sid: str,
                                 session_id: str | None) -> bool:
        if not token or len(token) > 64:
            return False
        spent = await self._store.run(self._spend(
            keys=[_k("token", token), _k("token-of", call_sid)],
            args=[call_sid, session_id or "", token]))
        return bool(spent)

    # -- time -----------------------------------------------------------------------------

    async def _now_ms(self) -> int:
        seconds, micros = await self._store.run(self._r.time())
        return int(seconds) * 1000 + int(micros) // 1000

    async def now_ms(self) -> int:
        """Redis's clock, in milliseconds: one clock for every node's heartbeat."""
        return await self._now_ms()

    async def close(self) -> None:
        return None
