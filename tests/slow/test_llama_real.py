"""The llama.cpp engine on the real teacher, against the torch engine (make test-slow)."""

import pytest

from distillery import watermark as wm
from distillery.engine import SamplingParams, chat_request

pytestmark = pytest.mark.slow


PROMPTS = ["Explain photosynthesis in two sentences.", "Write a haiku about the sea.",
           "What is the capital of France?", "Give three tips for a new programmer.",
           "Describe how a compiler works.", "Why is the sky blue?",
           "Summarise the history of the Roman Empire.", "Plan a three-day trip to Kyoto."]


def greedy(engine, n=64):
    reqs = [chat_request(engine.tokenizer, [{"role": "user", "content": p}],
                         SamplingParams(max_tokens=n, temperature=0)) for p in PROMPTS]
    return [r.choices[0].token_ids for r in engine.generate(reqs)]


def prefix(x, y) -> int:
    return next((i for i, (s, t) in enumerate(zip(x, y, strict=False)) if s != t),
                min(len(x), len(y)))


def first_logits(engine, prompt):
    got = []

    def spy(input_ids, scores):
        got.append(scores[0].clone())
        return scores

    engine.generate([chat_request(engine.tokenizer, [{"role": "user", "content": prompt}],
                                  SamplingParams(max_tokens=1, temperature=0,
                                                 logits_processors=[spy]))])
    return got[0]


def test_greedy_agreement_with_the_dequantised_torch_engine():
    """The same Q4_1 weights both sides (torch runs their fp32 dequantisation), but llama.cpp
    rounds activations to 8 bits for its dot products and keeps an f16 KV cache: next-token
    logits (~25) differ by up to ~0.6, enough to flip near-ties. Measured 2026-12-02: common
    greedy prefix per answer [19, 1, 0, 23, 24, 34, 7, 25] of [49, 39, 8, 64, 64, 64, 64, 64]
    tokens, 133 of 416 (32%); the answers that part at once start on a near-tie (torch:
    "The" 24.86 vs "In" 24.74; llama.cpp: "In" 24.83 vs "The" 24.76)."""
    from distillery.engine import LlamaCppEngine, TorchEngine

    torch_engine = TorchEngine.from_name("smollm2-135m-instruct")
    llama_engine = LlamaCppEngine("smollm2-135m-instruct")
    a, b = greedy(torch_engine), greedy(llama_engine)
    same = [prefix(x, y) for x, y in zip(a, b, strict=True)]
    print("common prefix per answer:", same, "lengths:", [len(x) for x in a])
    assert sum(same) / sum(len(x) for x in a) >= 0.2
    for p in PROMPTS:
        x, y = first_logits(torch_engine, p), first_logits(llama_engine, p)
        top = x.topk(20).indices
        assert (x[top] - y[top]).abs().max() < 1.0, p


def test_real_teacher_marks_are_detected():
    from distillery.engine import LlamaCppEngine

    engine = LlamaCppEngine("smollm2-135m-instruct")
    s = wm.make_scheme("kgw", wm.KeyRing.generate(), account="alice")
    reqs = [chat_request(engine.tokenizer, [{"role": "user", "content": p}],
                         SamplingParams(max_tokens=128, temperature=0.7, top_p=0.95, seed=i))
            for i, p in enumerate(PROMPTS)]
    for r in reqs:
        s.apply(r.params)
    ids = [t for r in engine.generate(reqs) for t in r.choices[0].token_ids]
    assert wm.detect_ids(ids, s).p_value < 1e-4
