"""Requests that arrive while the engine decodes join its running batch (tiny-random teacher)."""

import asyncio
import time

from distillery.engine import GenerationRequest, SamplingParams, chat_request


class CountingEngine:
    """The tiny engine, counting generate() calls. With `hold`, its first streamed token
    waits until hold() is true: later requests then arrive while the batch runs, however
    fast the engine (the llama.cpp engine could finish a request before the next came)."""

    def __init__(self, engine, hold=None):
        self.engine, self.calls, self.hold = engine, 0, hold

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def generate(self, requests, on_delta=None, **kw):
        self.calls += 1
        held = self.hold is None

        def delta(d):
            nonlocal held
            deadline = time.monotonic() + 30
            while not held and not self.hold():
                assert time.monotonic() < deadline, "the later requests never reached the queue"
                time.sleep(0.005)
            held = True
            if on_delta is not None:
                on_delta(d)

        return self.engine.generate(requests, delta, **kw)


def test_concurrent_requests_share_the_running_batch(make_live, tiny_engine):
    counting = CountingEngine(tiny_engine, hold=lambda: lv.gateway.batcher.depth == 5)
    lv = make_live(engine=counting, model="tiny-random")
    prompts = [f"story number {i}" for i in range(6)]
    lengths = [400, 5, 12, 3, 25, 8]

    async def ask(client, i):
        await asyncio.sleep(0.05 * i)  # arrive while earlier requests are decoding
        r = await client.chat.completions.create(
            model="tiny-random", messages=[{"role": "user", "content": prompts[i]}],
            max_tokens=lengths[i], temperature=0)
        return r.choices[0].message.content

    async def main():
        client = lv.async_client()
        return await asyncio.gather(*(ask(client, i) for i in range(6)))

    served = asyncio.run(main())
    alone = [tiny_engine.generate([chat_request(
        tiny_engine.tokenizer, [{"role": "user", "content": p}],
        SamplingParams(max_tokens=n, temperature=0))])[0].choices[0].text
        for p, n in zip(prompts, lengths, strict=True)]
    assert served == alone
    assert lv.gateway.batcher.batched_requests == 6
    assert counting.calls == 1  # all joined the first request's running batch


def test_a_request_that_cannot_run_fails_alone_in_a_shared_batch(tiny_engine):
    import threading

    from distillery.gateway.batcher import Batcher

    batcher = Batcher(tiny_engine, max_batch=8)

    async def main():
        ok = batcher.submit([GenerationRequest("hi", SamplingParams(max_tokens=20))])
        bad = batcher.submit([GenerationRequest([7] * 5000, SamplingParams(max_tokens=5))])
        res = await asyncio.gather(ok.future, bad.future, return_exceptions=True)
        return res

    try:
        ok, bad = asyncio.run(main())
    finally:
        batcher.close()
    assert isinstance(bad, ValueError) and "context" in str(bad)
    assert len(ok[0].choices[0].token_ids) == 20
    assert not any(t.name == "engine-batcher" and t.is_alive() for t in threading.enumerate()
                   if t is batcher._thread)
