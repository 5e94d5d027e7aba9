"""Watermark cost in generation, and detection throughput.

Generation: SmolLM2 answers the same prompts with no watermark, KGW (hash construction), the
Gumbel-max sampler and transformers' KGW (lefthash), at batch 1 and 16, 64 new tokens. The
configurations run interleaved, round after round, so machine noise hits them alike; each
reports the median tokens/s over rounds, by wall clock and by this process's CPU time (on a
shared, oversubscribed machine the CPU-time ratio is the one to trust). Also the processor
alone (CPU ms per step).
In-loop share: the same generation with the watermark's call timed inside the engine loop
(wall clock, same process, same moment as the step it belongs to), so slowdown = watermark
time / (generation time - watermark time) holds even when the machine's load swings. For
Gumbel this is an upper bound: its sampler replaces the engine's own multinomial draw.
Detection: tokens scored per second on a 10,000-token text, for 1 key and for 1,000 keys.

    .venv/bin/python benchmarks/watermark_speed.py   (one thread: the machine is shared)
    PARTS=in_loop ROUNDS=5 (environment) runs only the in-loop share, over 5 rounds
"""

from __future__ import annotations

import json
import os
import statistics
import time

import numpy as np
import torch

from distillery.engine import SamplingParams, TorchEngine, chat_request
from distillery.watermark import KeyRing, TransformersKGW, make_scheme, score_keys

ROUNDS = int(os.environ.get("ROUNDS", 3))
NEW_TOKENS = 64
PROMPT = "Write a long, detailed story about a lighthouse keeper and a storm."


def _timed(f, reps: int) -> float:
    """Median CPU seconds of this process per call (wall time is at the mercy of the load)."""
    f()
    ts = []
    for _ in range(reps):
        t = time.process_time()
        f()
        ts.append(time.process_time() - t)
    return statistics.median(ts)


def generation(engine: TorchEngine, schemes: dict) -> dict:
    out: dict = {}
    for batch in (1, 16):
        rates: dict[str, list[float]] = {name: [] for name in schemes}
        cpu_rates: dict[str, list[float]] = {name: [] for name in schemes}
        for _ in range(ROUNDS):
            for name, scheme in schemes.items():
                reqs = []
                for i in range(batch):
                    p = SamplingParams(max_tokens=NEW_TOKENS, temperature=0.7, top_p=0.95,
                                       repetition_penalty=1.1, seed=i)
                    reqs.append(chat_request(engine.tokenizer,
                                             [{"role": "user", "content": PROMPT}],
                                             scheme.apply(p) if scheme else p))
                t, c = time.perf_counter(), time.process_time()
                n = sum(r.completion_tokens for r in engine.generate(reqs))
                rates[name].append(n / (time.perf_counter() - t))
                cpu_rates[name].append(n / (time.process_time() - c))
        base = statistics.median(rates["none"])
        cpu_base = statistics.median(cpu_rates["none"])
        out[batch] = {name: {"tok_s": statistics.median(r),
                             "slowdown_pct": 100 * (1 - statistics.median(r) / base),
                             "tok_per_cpu_s": statistics.median(cpu_rates[name]),
                             "cpu_slowdown_pct":
                                 100 * (1 - statistics.median(cpu_rates[name]) / cpu_base)}
                      for name, r in rates.items()}
        print(f"batch {batch}: {json.dumps(out[batch])}", flush=True)
    return out


class Timed:
    """Wraps a logits processor or sampler and sums the wall time spent in it."""

    def __init__(self, inner) -> None:
        self.inner, self.seconds = inner, 0.0

    def __call__(self, *args):
        t = time.perf_counter()
        out = self.inner(*args)
        self.seconds += time.perf_counter() - t
        return out


def in_loop_share(engine: TorchEngine, schemes: dict) -> dict:
    out: dict = {}
    for batch in (1, 16):
        out[batch] = {}
        for name, scheme in schemes.items():
            if scheme is None:
                continue
            timed, total, wm = Timed(scheme), 0.0, 0.0
            for _ in range(ROUNDS):
                reqs = []
                for i in range(batch):
                    p = scheme.apply(SamplingParams(max_tokens=NEW_TOKENS, temperature=0.7,
                                                    top_p=0.95, repetition_penalty=1.1, seed=i))
                    if p.sampler is scheme:
                        p.sampler = timed
                    p.logits_processors = [timed if x is scheme else x
                                           for x in p.logits_processors]
                    reqs.append(chat_request(engine.tokenizer,
                                             [{"role": "user", "content": PROMPT}], p))
                timed.seconds, t = 0.0, time.perf_counter()
                engine.generate(reqs)
                total += time.perf_counter() - t
                wm += timed.seconds
            out[batch][name] = {"watermark_ms_per_step": 1e3 * wm / (ROUNDS * NEW_TOKENS),
                                "slowdown_pct": 100 * wm / (total - wm)}
        print(f"in-loop share, batch {batch}: {json.dumps(out[batch])}", flush=True)
    return out


def processor_cost(schemes: dict, vocab: int) -> dict:
    out = {}
    for batch in (1, 16):
        ids = torch.randint(0, vocab, (batch, 200))
        logits = torch.randn(batch, vocab)
        out[batch] = {name: 1e3 * _timed(lambda s=s, i=ids, x=logits: s(i, x), 20)
                      for name, s in schemes.items() if s is not None}
    print(f"processor ms/step: {json.dumps(out)}", flush=True)
    return out


def detection(ring: KeyRing) -> dict:
    ids = np.random.default_rng(0).integers(0, 49152, 10_000)
    out = {}
    for name in ("kgw", "gumbel"):
        scheme = make_scheme(name, ring, account="a0")
        for k in (1, 1000):
            keys = [ring.account_key(f"a{i}") for i in range(k)]
            dt = _timed(lambda s=scheme, ks=keys: score_keys(ids, s, "account", ks), 3)
            out[f"{name}-{k}"] = {"s": dt, "tokens_per_s": len(ids) / dt,
                                  "token_keys_per_s": len(ids) * k / dt}
    tk = TransformersKGW(vocab_size=49152, key=ring.account_key("a0"))
    t = time.process_time()
    score_keys(ids[:2000], tk, "global", [tk.global_key])
    cold = time.process_time() - t
    out["kgw-transformers-1-cold"] = {"s": cold, "tokens_per_s": 2000 / cold}
    print(f"detection: {json.dumps(out)}", flush=True)
    return out


def main() -> None:
    torch.set_num_threads(1)
    ring = KeyRing.generate()
    engine = TorchEngine.from_name("smollm2-135m-instruct")
    vocab = engine.model.config.vocab_size
    schemes = {"none": None, "kgw": make_scheme("kgw", ring, account="alice"),
               "gumbel": make_scheme("gumbel", ring, account="alice"),
               "kgw-transformers": TransformersKGW(vocab_size=vocab, key=ring.account_key("a"))}
    parts = os.environ.get("PARTS", "processor,in_loop,detection,generation").split(",")
    run = {"processor": lambda: processor_cost(schemes, vocab),
           "in_loop": lambda: in_loop_share(engine, schemes),
           "detection": lambda: detection(ring),
           "generation": lambda: generation(engine, schemes)}
    results = {name: run[name]() for name in parts}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
