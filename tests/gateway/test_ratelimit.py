"""Rate limiters: in memory, and in Redis (shared by two limiters = two gateway processes)."""

from __future__ import annotations

import asyncio
import secrets

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


@pytest.fixture
def redis_prefix():
    redis = pytest.importorskip("redis")
    r = redis.Redis.from_url(REDIS)
    try:
        r.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("Redis at 127.0.0.1:6379 unavailable")
    prefix = f"distillery-test-{secrets.token_hex(4)}"
    yield prefix
    for k in r.scan_iter(f"{prefix}:*"):
        r.delete(k)
    r.close()


def test_redis_limits_are_shared_between_processes(redis_prefix):
    async def main():
        a = RedisRateLimiter(REDIS, redis_prefix)
        b = RedisRateLimiter(REDIS, redis_prefix)  # a second gateway process
        lim = Limits(rpm=4, tpm=1000)
        got = [await (a if i % 2 else b).check("key-1", lim) for i in range(6)]
        assert got[:4] == [None] * 4 and all(w is not None and w >= 1 for w in got[4:])
        assert await a.check("key-2", lim) is None
        await b.add_tokens("key-2", 1000, lim)
        assert await b.check("key-2", lim) is not None  # its own charge: at once
        assert await a.check("key-2", lim) is not None  # (it went with b's check)
        # a charge with no request after it reaches the other process by the flush
        assert await a.check("key-3", lim) is None
        await b.add_tokens("key-3", 1000, lim)
        await asyncio.sleep(b.flush_s * 4)
        assert await a.check("key-3", lim) is not None
        # and one still pending at shutdown is sent by close
        await b.add_tokens("key-4", 1000, lim)
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
    assert 1 <= int(e.value.response.headers["Retry-After"]) <= 61


def test_redis_charges_survive_a_failed_flush():
    pytest.importorskip("redis")

    async def main():
        rl = RedisRateLimiter("redis://127.0.0.1:1/0", flush_s=60)  # nothing listens there
        await rl.add_tokens("k", 5, Limits(rpm=10, tpm=100))
        await rl.flush()
        assert sum(rl._pending.values()) == 5  # kept for the next flush
        await rl.close()  # tries once more, and leaves no flush running behind it
        assert rl._flusher.done()

    asyncio.run(main())
