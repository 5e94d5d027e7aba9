"""The llama.cpp engine against the torch engine, on the same tiny fp32 weights.

The behaviour both share (sampling, stops, n, logprobs, streaming, admission, cancellation) is
tested on both by test_torch_engine.py. This file needs the [llama] extra
(tests/engine/conftest.py leaves it out otherwise).
"""

import pytest

from distillery import watermark as wm
from distillery.engine import GenerationRequest, SamplingParams, chat_request

PROMPTS = ["Explain photosynthesis.", "Write a story about a lighthouse.", "What is 2 + 2?",
           "Describe a compiler.", "Plan a trip to Kyoto.", "Hi", "Why is the sky blue?",
           "List three colours."]


def chats(engine, n: int = 48, **kw) -> list[GenerationRequest]:
    return [chat_request(engine.tokenizer, [{"role": "user", "content": p}],
                         SamplingParams(max_tokens=n, **kw)) for p in PROMPTS]


def ids(engine, reqs) -> list[list[int]]:
    return [r.choices[0].token_ids for r in engine.generate(reqs)]


def agreement(a: list[list[int]], b: list[list[int]]) -> float:
    """Share of tokens before the first disagreement of each pair (a later token's context
    differs once one has, so only the common prefix is comparable)."""
    same = 0
    for x, y in zip(a, b, strict=True):
        pairs = zip(x, y, strict=False)
        same += next((i for i, (s, t) in enumerate(pairs) if s != t), min(len(x), len(y)))
    return same / sum(len(x) for x in a)


def test_greedy_tokens_match_the_torch_engine(tiny_torch_engine, tiny_llama_engine):
    """Same fp32 weights; llama.cpp keeps its KV cache in f16 (logits ~5e-3 apart) and sums
    in another order. Measured: 364 of 384 tokens (94.8%): 7 of 8 answers agree throughout,
    one parts at its 29th token."""
    torch_ids = ids(tiny_torch_engine, chats(tiny_torch_engine, temperature=0))
    llama_ids = ids(tiny_llama_engine, chats(tiny_llama_engine, temperature=0))
    assert agreement(torch_ids, llama_ids) >= 0.9


def test_the_same_key_marks_both_engines_alike(tiny_torch_engine, tiny_llama_engine):
    """The watermark runs on llama.cpp's logits through the very code of the torch engine
    (same context ids, same key): greedy KGW picks the same tokens as far as the numerics
    agree, and one detector finds the key in both. Measured: 640 of 640 tokens agree with this
    key, 574 of 640 (90%) with a random one (the +delta on green tokens makes near-ties)."""
    s = wm.make_scheme("kgw", wm.KeyRing({1: bytes(range(32))}), account="alice")
    out = {}
    for name, engine in (("torch", tiny_torch_engine), ("llama", tiny_llama_engine)):
        reqs = chats(engine, n=80, temperature=0)
        for r in reqs:
            s.apply(r.params)
        out[name] = ids(engine, reqs)
    assert agreement(out["torch"], out["llama"]) >= 0.75
    for docs in out.values():
        assert wm.detect_ids([t for d in docs for t in d], s).p_value < 1e-6


@pytest.mark.parametrize("scheme", ["kgw", "gumbel"])
def test_sampled_text_is_detected_by_the_same_detector(tiny_llama_engine, scheme):
    """Sampled (T = 1): the tokens part from the torch engine's early, since a draw from a
    near-flat distribution over 49k tokens moves with the last bits of the logits; the mark
    is there all the same, and another key does not find it."""
    ring = wm.KeyRing.generate()
    s = wm.make_scheme(scheme, ring, account="alice")
    other = wm.make_scheme(scheme, wm.KeyRing.generate(), account="alice")
    reqs = chats(tiny_llama_engine, n=80, temperature=1.0, seed=7)
    for r in reqs:
        s.apply(r.params)
    joined = [t for d in ids(tiny_llama_engine, reqs) for t in d]
    assert wm.detect_ids(joined, s).p_value < 1e-6
    assert wm.detect_ids(joined, other).p_value > 1e-3


def test_long_prompts_are_fed_in_chunks_and_rows_wait_for_kv_room(tiny_llama_engine):
    """Prompts longer than a step (n_batch = 512) are prefilled over several steps, next to
    rows already decoding; rows whose KV room (prompt + max_tokens) does not fit in the cache
    (2,048 cells here) wait for running rows to finish. Greedy tokens are those of each
    request alone with its prompt in one step."""
    from distillery.engine import LlamaCppEngine

    assert tiny_llama_engine.n_batch == 512 and tiny_llama_engine.max_context == 2048
    whole = LlamaCppEngine("tiny-random", n_batch=2048)
    tok = tiny_llama_engine.tokenizer
    long = tok.encode(" ".join(f"word{i}" for i in range(400)))[:1200]
    reqs = [GenerationRequest(long[: 1200 - 150 * i], SamplingParams(max_tokens=40 + 10 * i,
                                                                    temperature=0))
            for i in range(4)]
    reqs.insert(1, GenerationRequest("Hi", SamplingParams(max_tokens=30, temperature=0)))
    alone = [ids(whole, [r])[0] for r in reqs]
    assert ids(tiny_llama_engine, reqs) == alone
