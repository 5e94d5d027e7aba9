"""Per-key rate limits: requests per minute and tokens per minute.

`check` runs before a request (counts it, and refuses when either budget is spent);
`add_tokens` runs after it with the tokens actually used, so a key may overdraw its token
budget by one request, then waits until the window gives it back (the usual tpm design:
the true cost of a request is known only once it is generated).

In memory: token buckets refilled continuously (capacity = the per-minute limit).
Redis: fixed one-minute windows (INCR + PEXPIRE in one Lua script), shared by every gateway
process that uses the same Redis and prefix; one round trip per request (token charges ride
along with the key's next check, or a flush within 50 ms).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


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


# KEYS: requests window, tokens window. ARGV: rpm, tpm, window ms, tokens to add first (the
# key's charges not yet sent). Returns {allowed (1/0), ms until the blocking window ends}.
_CHECK = """
local add = tonumber(ARGV[4])
local toks
if add > 0 then
  toks = redis.call('INCRBY', KEYS[2], add)
  if toks == add then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
else
  toks = tonumber(redis.call('GET', KEYS[2]) or '0')
end
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
KEY_TTL_MS = WINDOW_S * 1000 + 1000  # a window's keys outlive it by a second
FLUSH_S = 0.05  # token charges reach Redis within this (or with the key's next request)


class RedisRateLimiter:
    """One Redis round trip per request. `add_tokens` only notes the charge in this process;
    the key's next `check` sends it in the same script call, and a background flush sends
    the rest every FLUSH_S. So this process sees its own charges at once and every other
    gateway process within FLUSH_S (the tpm window is 60 s). A charge that fails to reach
    Redis is kept for the next flush."""

    def __init__(self, url: str, prefix: str = "distillery", flush_s: float = FLUSH_S):
        import redis.asyncio as redis

        self.redis = redis.Redis.from_url(url)
        self.prefix, self.flush_s = prefix, flush_s
        self._check = self.redis.register_script(_CHECK)
        self._add = self.redis.register_script(_ADD)
        self._pending: dict[str, int] = {}  # tokens window key -> tokens not yet in Redis
        self._flusher: asyncio.Task | None = None
        self._closed = False  # after close: no more background flushes

    def _keys(self, key_id: str) -> tuple[str, str]:
        w = int(time.time()) // WINDOW_S
        base = f"{self.prefix}:rl:{key_id}:{w}"
        return f"{base}:r", f"{base}:t"

    async def check(self, key_id: str, limits: Limits) -> float | None:
        keys = self._keys(key_id)
        add = self._pending.pop(keys[1], 0)
        try:
            ok, ttl_ms = await self._check(keys=keys, args=[limits.rpm, limits.tpm,
                                                            KEY_TTL_MS, add])
        except BaseException:
            self._charge(keys[1], add)  # not sent: keep it
            raise
        if ok:
            return None
        return max(1.0, math.ceil(int(ttl_ms) / 1000)) if int(ttl_ms) > 0 else 1.0

    async def add_tokens(self, key_id: str, tokens: int, limits: Limits) -> None:
        if tokens > 0:
            self._charge(self._keys(key_id)[1], tokens)

    def _charge(self, tkey: str, tokens: int) -> None:
        if tokens > 0:
            self._pending[tkey] = self._pending.get(tkey, 0) + tokens
            if not self._closed and (self._flusher is None or self._flusher.done()):
                self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_s)
        await self.flush()

    async def flush(self) -> None:
        """Send every pending charge now (one pipelined round trip)."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for tkey, tokens in pending.items():
                    await self._add(keys=[tkey], args=[tokens, KEY_TTL_MS],
                                    client=pipe)
                await pipe.execute()
        except Exception as e:
            log.warning("rate limiter: %d charges not sent to Redis (%s); %s", len(pending),
                        type(e).__name__, "dropped at close" if self._closed
                        else "kept for the next flush")
            for tkey, tokens in pending.items():
                self._charge(tkey, tokens)

    async def close(self) -> None:
        self._closed = True
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
        await self.flush()  # the last try: what fails now is logged and dropped
        await self.redis.aclose()


def make_rate_limiter(redis_url: str | None, prefix: str = "distillery") -> RateLimiter:
    return RedisRateLimiter(redis_url, prefix) if redis_url else MemoryRateLimiter()
