"""The official openai client against a real gateway: sync, async, streaming, n, logprobs."""

from __future__ import annotations

import asyncio

MSG = [{"role": "user", "content": "say something"}]


def test_chat_sync_records_one_usage_row(live):
    r = live.client().chat.completions.create(model="fake", messages=MSG, max_tokens=5,
                                              temperature=0.5, seed=7, user="u1")
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "the quick brown fox jumps "
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + 5
    rows = live.rows()
    assert len(rows) == 1
    row = rows[0]
    assert row["route"] == "/v1/chat/completions" and row["status_code"] == 200
    assert row["key_id"] == live.key_id and row["account_id"] is not None
    assert row["request_id"] in r.id
    assert row["completion_tokens"] == 5 and row["prompt_tokens"] == r.usage.prompt_tokens
    assert row["max_tokens"] == 5 and row["temperature"] == 0.5 and row["seed"] == 7
    assert row["client_addr"] == "127.0.0.1" and "OpenAI" in row["user_agent"]
    assert row["latency_ms"] > 0 and row["logprobs"] in (0, False)
    assert row["responses"] == ["the quick brown fox jumps "]
    assert "say something" in str(row["prompt"]) and len(row["prompt_sha256"]) == 64


def test_chat_n_and_logprobs(live):
    r = live.client().chat.completions.create(model="fake", messages=MSG, n=3, logprobs=True,
                                              top_logprobs=4, max_tokens=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) == 3
    lp = r.choices[0].logprobs.content
    assert len(lp) == 3 and len(lp[0].top_logprobs) == 4
    assert lp[0].token == "the " and lp[0].logprob < 0
    assert live.rows()[0]["top_logprobs"] == 4


def test_chat_stream_has_chunks_and_a_final_usage_chunk(live):
    chunks = list(live.client().chat.completions.create(
        model="fake", messages=MSG, stream=True, max_tokens=4, n=2,
        stream_options={"include_usage": True}))
    text = {0: "", 1: ""}
    finish = {}
    for c in chunks[:-1]:
        for ch in c.choices:
            text[ch.index] += ch.delta.content or ""
            if ch.finish_reason:
                finish[ch.index] = ch.finish_reason
    assert text == {0: "the quick brown fox ", 1: "quick brown fox jumps "}
    assert finish == {0: "length", 1: "length"}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    row = live.rows()[0]
    assert row["stream"] and row["completion_tokens"] == 8
    assert row["responses"] == ["the quick brown fox ", "quick brown fox jumps "]


def test_completions_sync_stream_and_logprobs(live):
    c = live.client()
    r = c.completions.create(model="fake", prompt="once upon a time", max_tokens=2, logprobs=3)
    assert r.choices[0].text == "the quick "
    assert r.choices[0].logprobs.tokens == ["the ", "quick "]
    assert len(r.choices[0].logprobs.top_logprobs[0]) == 3
    many = c.completions.create(model="fake", prompt=["a b", "c d e"], n=2, max_tokens=1)
    assert [ch.index for ch in many.choices] == [0, 1, 2, 3]
    assert many.usage.prompt_tokens == 5
    ids = c.completions.create(model="fake", prompt=[1, 2, 3], max_tokens=1)
    assert ids.usage.prompt_tokens == 3
    text = "".join(ch.choices[0].text for ch in c.completions.create(
        model="fake", prompt="hello", max_tokens=3, stream=True) if ch.choices)
    assert text == "the quick brown "
    assert len(live.rows("route = '/v1/completions'")) == 4


def test_models(live):
    c = live.client()
    assert [m.id for m in c.models.list()] == ["fake"]
    assert c.models.retrieve("fake").id == "fake"


def test_async_client_concurrent_requests_are_batched(live):
    async def main():
        client = live.async_client()
        rs = await asyncio.gather(*[client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": f"q{i}"}], max_tokens=2)
            for i in range(40)])
        await client.close()
        return rs

    rs = asyncio.run(main())
    assert all(r.choices[0].message.content == "the quick " for r in rs)
    assert len(live.rows()) == 40
    engine = live.gateway.engine
    assert engine.requests_seen == 40


def test_hashes_only_keeps_no_text(make_live):
    lv = make_live(store_text=False)
    lv.client().chat.completions.create(model="fake", messages=MSG, max_tokens=2)
    row = lv.rows()[0]
    assert row["prompt"] is None and row["responses"] is None
    assert len(row["prompt_sha256"]) == 64 and len(row["responses_sha256"]) == 64


def test_health_is_open_and_metrics_need_the_operator_token(live):
    import httpx

    live.client().chat.completions.create(model="fake", messages=MSG, max_tokens=2)
    assert httpx.get(live.server.base_url + "/health").json()["status"] == "ok"
    url = live.server.base_url + "/metrics"
    for auth in (None, f"Bearer {live.key}", "Bearer " + "x" * 32):
        r = httpx.get(url, headers={"Authorization": auth} if auth else {})
        assert r.status_code == 401 and "alice" not in r.text, auth
        assert r.json()["error"]["type"] == "authentication_error"
    token = live.gateway.config.admin_token
    m = httpx.get(url, headers={"Authorization": f"bearer {token}"}).text
    assert 'distillery_requests_total{route="/v1/chat/completions",status="200"} 1.0' in m
    assert 'distillery_account_requests_total{account="alice",status="200"} 1.0' in m
    assert "distillery_request_seconds_bucket" in m and "distillery_queue_depth" in m
    import gc

    assert gc.get_freeze_count() > 0  # startup objects frozen: no ~200 ms full collections
    assert 'distillery_tokens_total{kind="completion"} 2.0' in m
