"""Per-key rate limits: requests per minute and tokens per minute, by GCRA.

GCRA (the generic cell rate algorithm, ITU-T I.371; a token bucket kept as one timestamp):
each key stores its "theoretical arrival time" `tat`. A request costs T = 60/rpm seconds, and
is admitted while the key's tat stays within one window W = 60 s of now; so a key gets a
burst of rpm requests, then one every T, and never 2x its limit across a minute boundary (as
fixed windows allowed). A refused request is told exactly when it would pass: the time until
tat - W reaches now (Retry-After). Tokens: `add_tokens` runs after a request with the tokens
actually used (its true cost is known only once it is generated), so a key may overdraw its
token budget by one request, then is refused until the budget is positive again.

In memory (`MemoryRateLimiter`): the same arithmetic (`gcra_check`) on a dict, per process.
Redis (`RedisRateLimiter`): one Lua script per request (atomic; one key per limit), shared by
every gateway process using the same Redis and prefix; token charges ride along with the key's
next check, or a flush within 50 ms. Clocks: each process sends its own wall clock, so gateway
hosts must agree on time (NTP) to well under a second.

Redis down (refused, hanging past `timeout_s`, dropped): requests are not failed; the process
falls back to its own in-memory limits (which see only its own traffic), says so in `degraded`
(exported as a metric and by /health), logs once, and tries Redis again every `retry_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

WINDOW_S = 60.0


@dataclass(frozen=True)
class Limits:
    rpm: int
    tpm: int


class RateLimiter(Protocol):
    degraded: bool  # True while limits are per process because the shared store is down

    async def check(self, key_id: str, limits: Limits) -> float | None:
        """None if allowed (and counted); otherwise seconds until a retry may succeed."""
        ...

    async def add_tokens(self, key_id: str, tokens: int, limits: Limits) -> None: ...

    async def close(self) -> None: ...


def gcra_check(tat_r: float, tat_t: float, now: float, limits: Limits
               ) -> tuple[float | None, float]:
    """One request at `now` against a key's request and token tats (seconds).

    Returns (None, new request tat) if admitted; else (seconds until it would be, tat_r).
    The same arithmetic as the Redis script below.
    """
    tt = max(tat_t, now)
    if tt - now >= WINDOW_S:  # token budget spent (overdrawn): wait until it is positive
        return tt - WINDOW_S - now + 1e-3, tat_r
    tr = max(tat_r, now) + WINDOW_S / limits.rpm
    if tr - now > WINDOW_S:
        return tr - WINDOW_S - now, tat_r
    return None, tr


def gcra_charge(tat_t: float, now: float, tokens: int, limits: Limits) -> float:
    return max(tat_t, now) + tokens * WINDOW_S / limits.tpm


class MemoryRateLimiter:
    degraded = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._tats: dict[str, list[float]] = {}  # key -> [request tat, token tat]

    async def check(self, key_id: str, limits: Limits) -> float | None:
        tats = self._tats.setdefault(key_id, [0.0, 0.0])
        wait, tats[0] = gcra_check(tats[0], tats[1], self.clock(), limits)
        return wait

    async def add_tokens(self, key_id: str, tokens: int, limits: Limits) -> None:
        tats = self._tats.setdefault(key_id, [0.0, 0.0])
        tats[1] = gcra_charge(tats[1], self.clock(), tokens, limits)

    async def close(self) -> None:
        pass


# KEYS: request tat, token tat (ms). ARGV: now ms, rpm, tpm, tokens to charge first (the
# key's charges not yet sent). Returns {1, 0} if admitted, else {0, ms until it would be}.
# Each tat expires when it falls behind now (an absent key is a full budget).
_CHECK = """
local now, W = tonumber(ARGV[1]), 60000
local tt = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), now)
local add = tonumber(ARGV[4])
if add > 0 then
  tt = tt + add * W / tonumber(ARGV[3])
  redis.call('SET', KEYS[2], tostring(tt), 'PX', math.ceil(tt - now) + 1)
end
if tt - now >= W then return {0, math.ceil(tt - W - now) + 1} end
local tr = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now) + W / tonumber(ARGV[2])
if tr - now > W then return {0, math.ceil(tr - W - now)} end
redis.call('SET', KEYS[1], tostring(tr), 'PX', math.ceil(tr - now) + 1)
return {1, 0}
"""
# KEYS: token tat. ARGV: now ms, tpm, tokens.
_ADD = """
local now = tonumber(ARGV[1])
local tt = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
tt = tt + tonumber(ARGV[3]) * 60000 / tonumber(ARGV[2])
redis.call('SET', KEYS[1], tostring(tt), 'PX', math.ceil(tt - now) + 1)
return 1
"""
FLUSH_S = 0.05  # token charges reach Redis within this (or with the key's next request)


class RedisRateLimiter:
    """One Redis round trip per request. `add_tokens` notes the charge in this process; the
    key's next `check` sends it in the same script call, and a background flush sends the
    rest every FLUSH_S. So this process sees its own charges at once and every other gateway
    process within FLUSH_S. A charge that fails to reach Redis is kept for the next flush."""

    def __init__(self, url: str, prefix: str = "distillery", flush_s: float = FLUSH_S,
                 timeout_s: float = 0.5, retry_s: float = 2.0,
                 clock: Callable[[], float] = time.time):
        import redis.asyncio as redis

        self.redis = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                          socket_connect_timeout=timeout_s)
        self.prefix, self.flush_s, self.clock = prefix, flush_s, clock
        self.timeout_s, self.retry_s = timeout_s, retry_s
        self._check = self.redis.register_script(_CHECK)
        self._add = self.redis.register_script(_ADD)
        self._pending: dict[str, tuple[int, int]] = {}  # key id -> (tokens not sent, tpm)
        self._flusher: asyncio.Task | None = None
        self._closed = False  # after close: no more background flushes
        self.local = MemoryRateLimiter(clock)  # the limits while Redis is down
        self.degraded = False
        self.fallbacks = 0  # requests limited in process because Redis was down
        self._next_try = 0.0  # monotonic: while degraded, when to try Redis again

    def _keys(self, key_id: str) -> list[str]:
        base = f"{self.prefix}:rl:{key_id}"
        return [f"{base}:r", f"{base}:t"]

    async def _call(self, coro):
        """A Redis call bounded by timeout_s (a hanging server must not hang requests)."""
        return await asyncio.wait_for(coro, self.timeout_s)

    def _down(self, e: BaseException) -> None:
        self._next_try = time.monotonic() + self.retry_s
        if not self.degraded:
            self.degraded = True
            log.warning("rate limiter: Redis unreachable (%s); limits are per process until "
                        "it is back (retrying every %g s)", type(e).__name__, self.retry_s)

    async def check(self, key_id: str, limits: Limits) -> float | None:
        if self.degraded and time.monotonic() < self._next_try:
            return await self._fallback(key_id, limits)
        self._next_try = time.monotonic() + self.retry_s  # one probe at a time while down
        add, tpm = self._pending.pop(key_id, (0, limits.tpm))
        try:
            ok, wait_ms = await self._call(self._check(
                keys=self._keys(key_id),
                args=[int(self.clock() * 1000), limits.rpm, tpm, add]))
        except Exception as e:  # Redis errors, OSError, TimeoutError: not the client's fault
            self._charge(key_id, add, tpm)  # not sent: keep it
            self._down(e)
            return await self._fallback(key_id, limits)
        if self.degraded:
            self.degraded = False
            log.warning("rate limiter: Redis is back; limits are shared again")
        return None if ok else int(wait_ms) / 1000

    async def _fallback(self, key_id: str, limits: Limits) -> float | None:
        self.fallbacks += 1
        return await self.local.check(key_id, limits)

    async def add_tokens(self, key_id: str, tokens: int, limits: Limits) -> None:
        if tokens > 0:
            await self.local.add_tokens(key_id, tokens, limits)
            self._charge(key_id, tokens, limits.tpm)

    def _charge(self, key_id: str, tokens: int, tpm: int) -> None:
        if tokens > 0:
            self._pending[key_id] = (self._pending.get(key_id, (0, tpm))[0] + tokens, tpm)
            if not self._closed and (self._flusher is None or self._flusher.done()):
                self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_s)
        if not self.degraded:  # while down, the charges wait for the next successful check
            await self.flush()

    async def flush(self) -> None:
        """Send every pending charge now (one pipelined round trip)."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        now_ms = int(self.clock() * 1000)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key_id, (tokens, tpm) in pending.items():
                    await self._add(keys=self._keys(key_id)[1:], args=[now_ms, tpm, tokens],
                                    client=pipe)
                await self._call(pipe.execute())
        except Exception as e:
            log.debug("rate limiter: %d charges not sent to Redis (%s)", len(pending),
                      type(e).__name__)
            self._down(e)
            for key_id, (tokens, tpm) in pending.items():
                self._charge(key_id, tokens, tpm)

    async def close(self) -> None:
        self._closed = True
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
        if self._pending:
            await self.flush()  # the last try: what fails now is dropped
            if self._pending:
                log.warning("rate limiter: %d charges not sent to Redis at close",
                            len(self._pending))
        await self.redis.aclose()


def make_rate_limiter(redis_url: str | None, prefix: str = "distillery",
                      timeout_s: float = 0.5, retry_s: float = 2.0) -> RateLimiter:
    if redis_url:
        return RedisRateLimiter(redis_url, prefix, timeout_s=timeout_s, retry_s=retry_s)
    return MemoryRateLimiter()
