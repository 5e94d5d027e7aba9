"""The slow tier: the real SmolLM2 served through the gateway to the official openai client:
stop strings, seeds, logprobs, the account's watermark in the answer. (The bounded
schemathesis run over /v1 and /admin is in tests/gateway/test_fuzz.py, also slow.)"""

from __future__ import annotations

import secrets

import pytest

from distillery import store
from distillery import watermark as wm

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"
ASK = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


@pytest.fixture(scope="module")
def ring():
    return wm.KeyRing.from_env_value(secrets.token_hex(32))


@pytest.fixture(scope="module")
def served(tmp_path_factory, ring):
    """The real teacher behind a real gateway (kgw watermark, SQLite usage store)."""
    from distillery.engine import TorchEngine
    from distillery.gateway import ServeConfig, start_in_thread

    tmp = tmp_path_factory.mktemp("real")
    url = f"sqlite:///{tmp}/usage.db"
    store.migrate(url)
    db = store.make_engine(url)
    store.create_account(db, "alice")
    key = store.create_key(db, "alice").secret
    store.create_account(db, "bob")
    db.dispose()
    engine = TorchEngine.from_name(MODEL)
    ring.save(tmp / "watermark.key")
    cfg = ServeConfig(model=MODEL, database=url, port=0, watermark="kgw", log_level="warning",
                      watermark_key=str(tmp / "watermark.key"))
    server = start_in_thread(cfg, engine=engine, timeout=300)
    yield server, key, engine, url
    server.stop()


def client(served):
    import openai

    server, key, _, _ = served
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=0)


def test_stop_strings_end_the_answer(served):
    """Greedy under one key is deterministic: a stop string taken from the middle of the
    unstopped answer (where it first occurs) ends the answer exactly before it. The key is
    random, and greedy KGW text under some keys is periodic ("1.1.1.1..." for a counting
    prompt), so the prompt asks for a story and the stop is a 4-character piece that occurs
    first past a third of the answer."""
    c = client(served)
    full = c.chat.completions.create(model=MODEL, messages=ASK, temperature=0,
                                     max_tokens=60).choices[0].message.content
    cut = next(i for i in range(len(full) // 3, len(full) - 4)
               if full.index(full[i:i + 4]) == i)
    r = c.chat.completions.create(model=MODEL, messages=ASK, stop=[full[cut:cut + 4]],
                                  temperature=0, max_tokens=60).choices[0]
    assert r.finish_reason == "stop"
    assert r.message.content == full[:cut]


def test_a_seed_reproduces_the_answer(served):
    c = client(served)

    def ask(seed: int) -> str:
        return c.chat.completions.create(model=MODEL, messages=ASK, seed=seed, temperature=1.0,
                                         max_tokens=40).choices[0].message.content

    first = ask(11)
    assert ask(11) == first
    assert ask(12) != first


def test_logprobs_describe_the_answer(served):
    r = client(served).chat.completions.create(model=MODEL, messages=ASK, logprobs=True,
                                               top_logprobs=3, max_tokens=20, seed=1)
    lp = r.choices[0].logprobs.content
    assert len(lp) == r.usage.completion_tokens
    assert "".join(t.token for t in lp) == r.choices[0].message.content
    for t in lp:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        assert t.top_logprobs[0].logprob >= t.top_logprobs[-1].logprob


def test_the_answer_carries_its_accounts_watermark(served, ring):
    _, _, engine, url = served
    r = client(served).chat.completions.create(model=MODEL, messages=ASK, temperature=1.0,
                                               max_tokens=200, seed=3)
    text = r.choices[0].message.content
    schemes = wm.make_schemes("kgw", ring, store.list_account_names(url))
    res = wm.scan(text, engine.tokenizer, schemes)
    assert res.best_account == "alice", res
    assert res.adjusted_p < 1e-4, res
