"""Sessions that already live in Redis: a session id (cookie or token) is looked up at a key
prefix holding JSON {"userId": ..., "role": ...}. The session's TTL becomes the principal's
expiry, so a WebSocket ends with 4401 when the session does."""

from __future__ import annotations

import time
from typing import Any

import orjson

from .auth import Principal, make_principal
from .errors import BrokerUnavailable, Unauthorized

CACHE_SECONDS = 5.0  # a revoked session stops working within this long
CACHE_SIZE = 4096


def principal_from_session(raw: str | bytes | None, ttl_ms: int, now: float) -> Principal:
    """Pure: the stored JSON and its remaining TTL → a principal, or Unauthorized."""
    if raw is None:
        raise Unauthorized("unknown or expired session")
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Unauthorized("unreadable session") from None
    if not isinstance(data, dict):
        raise Unauthorized("unreadable session")
    expires = now + ttl_ms / 1000 if ttl_ms > 0 else None
    return make_principal(data.get("userId"), data.get("role", "user"), expires, "session")


class RedisSessions:
    def __init__(self, url: str, prefix: str):
        from .broker.redis import connect

        self.redis = connect(url)
        self.prefix = prefix
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def lookup(self, session_id: str) -> Principal:
        if len(session_id) > 512:
            raise Unauthorized("invalid session id")
        now = time.time()
        cached = self._cache.get(session_id)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            principal = cached[1]
            if principal.expires_at is None or now < principal.expires_at:
                return principal
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(self.prefix + session_id)
                pipe.pttl(self.prefix + session_id)
                raw, ttl = await pipe.execute()
        except (OSError, ConnectionError) as exc:
            raise BrokerUnavailable("session store unreachable") from exc
        except Exception as exc:  # redis errors
            raise BrokerUnavailable("session store unreachable") from exc
        principal = principal_from_session(raw, ttl, now)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))
        self._cache[session_id] = (now, principal)
        return principal

    async def close(self) -> None:
        await self.redis.aclose()
