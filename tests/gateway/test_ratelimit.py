"""Rate limiters: in memory, and in Redis (shared by two limiters = two gateway processes)."""

from __future__ import annotations

import asyncio

import pytest

from distillery.gateway.ratelimit import Limits, MemoryRateLimiter, RedisRateLimiter

REDIS = "redis://127.0.0.1:6379/0"


def test_memory_requests_and_tokens():
    async def main():
        rl = MemoryRateLimiter()
        lim = Limits(rpm=3, tpm=100)
        assert [await rl.check("k", lim) for _ in range(3)] == [None] * 3
        wait = await rl.check("k", lim)
        assert wait is not None and 0 < wait <= 20.5  # one request back in 60/3 s
        assert await rl.check("other", lim) is None
        await rl.add_tokens("other", 150, lim)
        wait = await rl.check("other", lim)
        assert wait is not None and wait > 30  # 51 tokens owed at 100/min

    asyncio.run(main())


def test_redis_limits_are_shared_between_processes(redis_prefix):
    async def main():
        a = RedisRateLimiter(REDIS, redis_prefix)
        b = RedisRateLimiter(REDIS, redis_prefix)  # a second gateway process
        lim = Limits(rpm=4, tpm=1000)
        got = [await (a if i % 2 else b).check("key-1", lim) for i in range(6)]
        assert got[:4] == [None] * 4 and all(w is not None and w >= 1 for w in got[4:])
        assert await a.check("key-2", lim) is None
        await b.add_tokens("key-2", 1500, lim)
        assert await b.check("key-2", lim) is not None  # its own charge: at once
        assert await a.check("key-2", lim) is not None  # (it went with b's check)
        # a charge with no request after it reaches the other process by the flush
        assert await a.check("key-3", lim) is None
        await b.add_tokens("key-3", 1500, lim)
        await asyncio.sleep(b.flush_s * 4)
        assert await a.check("key-3", lim) is not None
        # and one still pending at shutdown is sent by close
        await b.add_tokens("key-4", 1500, lim)
        await b.close()
        assert await a.check("key-4", lim) is not None
        await a.close()

    asyncio.run(main())


def test_gateway_with_redis_answers_429(make_live, redis_prefix):
    import openai

    lv = make_live(redis_url=REDIS, redis_prefix=redis_prefix)
    key = lv.new_key("bob", rpm_limit=2)
    c = lv.client(key=key)
    for _ in range(2):
        c.chat.completions.create(model="fake", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="fake", messages=[{"role": "user", "content": "x"}])
    assert int(e.value.response.headers["Retry-After"]) == 30  # GCRA: exact (60 s / rpm)


def test_redis_charges_survive_a_failed_flush():
    async def main():
        rl = RedisRateLimiter("redis://127.0.0.1:1/0", flush_s=60)  # nothing listens there
        await rl.add_tokens("k", 5, Limits(rpm=10, tpm=100))
        await rl.flush()
        assert rl._pending == {"k": (5, 100)}  # kept for the next flush
        await rl.close()  # tries once more, and leaves no flush running behind it
        assert rl._flusher.done()

    asyncio.run(main())


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def limiters(clock: Clock, prefix: str) -> dict:
    return {"memory": MemoryRateLimiter(clock),
            "redis": RedisRateLimiter(REDIS, prefix, clock=clock)}


def test_retry_after_is_exact_and_memory_and_redis_agree(redis_prefix):
    """GCRA: rpm=3 is a burst of 3, then one every 20 s; a refused request is told the exact
    wait, and a request at that time passes (fixed windows said "the window's TTL")."""

    async def main():
        clock = Clock()
        lim = Limits(rpm=3, tpm=10**6)
        for rl in limiters(clock, redis_prefix).values():
            key = f"k-{type(rl).__name__}"
            clock.t = 1_800_000_000.0
            assert [await rl.check(key, lim) for _ in range(3)] == [None] * 3
            assert await rl.check(key, lim) == pytest.approx(20, abs=0.01)
            clock.t += 12.5
            assert await rl.check(key, lim) == pytest.approx(7.5, abs=0.01)
            clock.t += 7.5
            assert await rl.check(key, lim) is None  # exactly when it was told
            assert await rl.check(key, lim) == pytest.approx(20, abs=0.01)
            # tokens: 150 tokens at tpm=100 overdraw by 50: refused for 30 s
            tkey = key + "-t"
            tl = Limits(rpm=100, tpm=100)
            assert await rl.check(tkey, tl) is None
            await rl.add_tokens(tkey, 150, tl)
            assert await rl.check(tkey, tl) == pytest.approx(30, abs=0.01)
            clock.t += 30.01
            assert await rl.check(tkey, tl) is None
            await rl.close()

    asyncio.run(main())


def test_no_double_burst_across_a_minute_boundary(redis_prefix):
    """A fixed window lets rpm requests through at 0:59.9 and rpm more at 1:00.1."""

    async def main():
        clock = Clock(1_800_000_059.9)  # 0.1 s before a minute boundary
        lim = Limits(rpm=10, tpm=10**6)
        for name, rl in limiters(clock, redis_prefix).items():
            clock.t = 1_800_000_059.9
            passed = sum([await rl.check(name, lim) is None for _ in range(10)])
            clock.t += 0.2
            passed += sum([await rl.check(name, lim) is None for _ in range(10)])
            assert passed == 10, name
            await rl.close()

    asyncio.run(main())
