"""The llama.cpp engine on the real teacher, against the torch engine (make test-slow, with the
[llama] extra installed)."""

import pytest

from distillery import watermark as wm
from distillery.engine import SamplingParams, chat_request

pytestmark = pytest.mark.slow
llama_cpp = pytest.importorskip("llama_cpp", reason="the [llama] extra is not installed")

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


def test_greedy_agreement_with_the_dequantised_torch_engine():
    """Q4_1 weights both sides (torch runs their fp32 dequantisation); llama.cpp also rounds
    activations to 8 bits for its dot products and keeps its KV cache in f16. Measured
    (2026-12-02): 8 answers of up to 64 tokens, common prefix 45% of the tokens; see
    BENCHMARKS.md (Engine serving) for the per-answer figures."""
    from distillery.engine import LlamaCppEngine, TorchEngine

    a = greedy(TorchEngine.from_name("smollm2-135m-instruct"))
    b = greedy(LlamaCppEngine("smollm2-135m-instruct"))
    same = [prefix(x, y) for x, y in zip(a, b, strict=True)]
    print("common prefix per answer:", same, "lengths:", [len(x) for x in a])
    assert sum(same) / sum(len(x) for x in a) >= 0.3
    assert all(s >= 3 for s in same)


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
