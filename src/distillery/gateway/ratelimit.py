"""Per-key rate limits: requests per minute and tokens per minute.

`check` runs before a request (counts it, and refuses when either budget is spent);
`add_tokens` runs after it with the tokens actually used, so a key may overdraw its token
budget by one request, then waits until the window gives it back (the usual tpm design:
the true cost of a request is known only once it is generated).

In memory: token buckets refilled continuously (capacity = the per-minute limit).
Redis: fixed one-minute windows (INCR + PEXPIRE in one Lua script), shared by every gateway
process that uses the same Redis and prefix.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Limits:
    rpm: int
    tpm: int


class RateLimiter(Protocol):
    async def check(self, key_id: str, limits: Limits) -> float | None:
        """None if allowed (and counted); otherwise seconds until a retry may succeed."""
        ...

    async def add_tokens(self, key_id: str, tokens: int, limits: Limits) -> None: ...

    async def close(self) -> None: ...


class _Bucket:
    __slots__ = ("level", "stamp")

    def __init__(self, capacity: float, now: float):
        self.level, self.stamp = capacity, now

    def refill(self, capacity: float, now: float) -> None:
        self.level = min(capacity, self.level + (now - self.stamp) * capacity / 60.0)
        self.stamp = now


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._req: dict[str, _Bucket] = {}
        self._tok: dict[str, _Bucket] = {}

    def _bucket(self, table: dict[str, _Bucket], key: str, cap: float, now: float) -> _Bucket:
        b = table.get(key)
        if b is None:
            b = table[key] = _Bucket(cap, now)
        else:
            b.refill(cap, now)
        return b

    async def check(self, key_id: str, limits: Limits) -> float | None:
        now = time.monotonic()
        tok = self._bucket(self._tok, key_id, limits.tpm, now)
        if tok.level <= 0:
            return (1 - tok.level) * 60.0 / limits.tpm
        req = self._bucket(self._req, key_id, limits.rpm, now)
        if req.level < 1:
            return (1 - req.level) * 60.0 / limits.rpm
        req.level -= 1
        return None

    async def add_tokens(self, key_id: str, tokens: int, limits: Limits) -> None:
        now = time.monotonic()
        self._bucket(self._tok, key_id, limits.tpm, now).level -= tokens

    async def close(self) -> None:
        pass


# KEYS: requests window, tokens window. ARGV: rpm, tpm, window ms.
# Returns {allowed (1/0), ms until the blocking window ends}.
_CHECK = """
local toks = tonumber(redis.call('GET', KEYS[2]) or '0')
if toks >= tonumber(ARGV[2]) then
  return {0, redis.call('PTTL', KEYS[2])}
end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if n > tonumber(ARGV[1]) then
  return {0, redis.call('PTTL', KEYS[1])}
end
return {1, 0}
"""
_ADD = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n
"""
WINDOW_S = 60


class RedisRateLimiter:
    def __init__(self, url: str, prefix: str = "distillery"):
        import redis.asyncio as redis

        self.redis = redis.Redis.from_url(url)
        self.prefix = prefix
        self._check = self.redis.register_script(_CHECK)
        self._add = self.redis.register_script(_ADD)

    def _keys(self, key_id: str) -> tuple[str, str]:
        w = int(time.time()) // WINDOW_S
        base = f"{self.prefix}:rl:{key_id}:{w}"
        return f"{base}:r", f"{base}:t"

    async def check(self, key_id: str, limits: Limits) -> float | None:
        ok, ttl_ms = await self._check(keys=self._keys(key_id),
                                       args=[limits.rpm, limits.tpm, WINDOW_S * 1000 + 1000])
        if ok:
            return None
        return max(1.0, math.ceil(int(ttl_ms) / 1000)) if int(ttl_ms) > 0 else 1.0

    async def add_tokens(self, key_id: str, tokens: int, limits: Limits) -> None:
        if tokens > 0:
            await self._add(keys=[self._keys(key_id)[1]], args=[tokens, WINDOW_S * 1000 + 1000])

    async def close(self) -> None:
        await self.redis.aclose()


def make_rate_limiter(redis_url: str | None, prefix: str = "distillery") -> RateLimiter:
    return RedisRateLimiter(redis_url, prefix) if redis_url else MemoryRateLimiter()
