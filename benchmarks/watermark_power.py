"""Detection power on the real teacher, and the watermark's quality cost.

For each configuration (none, KGW delta in {1, 2, 4} with gamma = 0.25, Gumbel-max), SmolLM2
answers the same prompts (temperature 0.7, top-p 0.95, repetition penalty 1.1: the CLI's
defaults). Power: the share of marked answers whose exact p-value, on the first T
de-duplicated scored tokens, is <= 1e-6 (the FPR 1e-6 operating point; the exact tests'
calibration is checked at 1e-2 and 1e-3 in tests/watermark/test_null_calibration.py).
Quality: perplexity of each answer under an oracle (Gemma-3-270M base, plain-text prompt).

Power uses single-layer schemes (every position scored with one key), so T is the number of
scored tokens of the tested key; with the deployed two layers each layer gets about half of a
response's tokens. Generations are cached in runs/watermark_power/ so a killed run resumes.

    nohup .venv/bin/python benchmarks/watermark_power.py > /tmp/wm_power.log 2>&1 &
    N_QUALITY=200 N_POWER=100 MAX_TOKENS=256 (environment) scale it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from distillery.engine import SamplingParams, TorchEngine, chat_request
from distillery.watermark import KeyRing, make_scheme
from distillery.watermark.detect import encode, scored_tokens

log = logging.getLogger("watermark_power")
N_QUALITY = int(os.environ.get("N_QUALITY", 200))
N_POWER = int(os.environ.get("N_POWER", 100))
MAX_TOKENS = int(os.environ.get("MAX_TOKENS", 256))
BATCH = int(os.environ.get("BATCH", 32))
TS = (25, 50, 100, 200)
OUT = Path(os.environ.get("OUT", "runs/watermark_power"))

TOPICS = [
    "photosynthesis", "the French Revolution", "black holes", "the immune system",
    "machine learning", "climate change", "the printing press", "plate tectonics",
    "the stock market", "vaccines", "the water cycle", "ancient Rome", "electricity",
    "the internet", "volcanoes", "DNA", "the Renaissance", "inflation", "honeybees",
    "the Moon landing", "renewable energy", "sleep", "the Silk Road", "antibiotics",
    "coral reefs", "democracy", "earthquakes", "the human heart", "coffee", "chess",
    "the Industrial Revolution", "rainforests", "bridges", "memory", "the Olympic Games",
    "glaciers", "cryptography", "jazz", "the periodic table", "migration of birds",
    "recycling", "the Great Wall of China", "gravity", "bread baking", "submarines",
    "the solar system", "language learning", "pyramids", "hurricanes", "friendship",
]
FORMS = [
    "Write a detailed explanation of {t} for a curious teenager.",
    "Write a short essay about {t}.",
    "Explain the history and importance of {t} in several paragraphs.",
    "Describe {t} in detail, with examples.",
]
PROMPTS = [f.format(t=t) for f in FORMS for t in TOPICS]


def configs(ring: KeyRing) -> dict[str, tuple[object | None, int]]:
    """name -> (scheme or None, number of prompts). Single-layer: the global key alone."""
    return {
        "none": (None, N_QUALITY),
        "kgw-d2": (make_scheme("kgw", ring, delta=2.0), N_QUALITY),
        "gumbel": (make_scheme("gumbel", ring), N_QUALITY),
        "kgw-d1": (make_scheme("kgw", ring, delta=1.0), N_POWER),
        "kgw-d4": (make_scheme("kgw", ring, delta=4.0), N_POWER),
    }


def generate(engine: TorchEngine, name: str, scheme, n: int) -> list[dict]:
    path = OUT / f"gen-{name}.jsonl"
    done = [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []
    t0, toks = time.perf_counter(), 0
    for start in range(len(done), n, BATCH):
        idx = range(start, min(start + BATCH, n))
        reqs = []
        for i in idx:
            p = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.7, top_p=0.95,
                               repetition_penalty=1.1, seed=i)
            reqs.append(chat_request(engine.tokenizer, [{"role": "user", "content": PROMPTS[i]}],
                                     scheme.apply(p) if scheme else p))
        with path.open("a") as f:
            for i, r in zip(idx, engine.generate(reqs), strict=True):
                c = r.choices[0]
                row = {"i": i, "prompt": PROMPTS[i], "text": c.text, "n": len(c.token_ids)}
                f.write(json.dumps(row) + "\n")
                done.append(row)
                toks += row["n"]
        dt = time.perf_counter() - t0
        log.info("%s: %d/%d answers, %.1f tok/s", name, len(done), n, toks / dt)
    return done[:n]


def power(rows: list[dict], scheme, tokenizer) -> dict:
    """TPR at p <= 1e-6 on the first T scored tokens, and how many answers reach T."""
    out = {}
    per_text = []
    for row in rows:
        ids = encode(row["text"], tokenizer)
        per_text.append(np.cumsum(scored_tokens(ids, scheme)[1]))
    for T in TS:
        reach = [c for c in per_text if len(c) >= T]
        ps = [scheme.test(np.array([c[T - 1]]), T)[0].p_value for c in reach]
        out[T] = {"n": len(reach), "tpr": float(np.mean(np.array(ps) <= 1e-6)) if ps else None,
                  "median_log10_p": float(np.median(np.log10(ps))) if ps else None}
    full = [scheme.test(np.array([c[-1] if len(c) else 0.0]), len(c))[0].p_value
            for c in per_text]
    out["full"] = {"n": len(full), "tpr": float(np.mean(np.array(full) <= 1e-6)),
                   "median_scored": float(np.median([len(c) for c in per_text]))}
    return out


@torch.inference_mode()
def perplexity(rows: list[dict], oracle) -> dict:
    """Oracle perplexity of each answer given its prompt (plain-text chat format)."""
    tok, model = oracle.tokenizer, oracle.model
    nll, count, per = 0.0, 0, []
    for row in rows:
        if not row["text"].strip():
            continue
        ctx = tok.apply_chat_template([{"role": "user", "content": row["prompt"]}],
                                      tokenize=False, add_generation_prompt=True)
        c_ids = tok.encode(ctx)
        a_ids = tok.encode(" " + row["text"].strip(), add_special_tokens=False)
        ids = torch.tensor([c_ids + a_ids])
        logits = model(ids).logits[0, len(c_ids) - 1: -1].float()
        lp = logits.log_softmax(-1).gather(1, torch.tensor(a_ids)[:, None])[:, 0]
        nll -= float(lp.sum())
        count += len(a_ids)
        per.append(math.exp(-float(lp.mean())))
    return {"ppl_corpus": math.exp(nll / count), "ppl_median": float(np.median(per)),
            "n": len(per), "tokens": count}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)  # the machine is shared
    OUT.mkdir(parents=True, exist_ok=True)
    ring_path = OUT / "bench.key"
    ring = KeyRing.load(ring_path) if ring_path.exists() else KeyRing.generate()
    if not ring_path.exists():
        ring.save(ring_path)
    engine = TorchEngine.from_name("smollm2-135m-instruct")
    results: dict = {"settings": {"n_quality": N_QUALITY, "n_power": N_POWER,
                                  "max_tokens": MAX_TOKENS, "batch": BATCH}}
    gens = {}
    t0 = time.perf_counter()
    for name, (scheme, n) in configs(ring).items():
        gens[name] = generate(engine, name, scheme, n)
        if scheme is not None:
            results[name] = {"power": power(gens[name], scheme, engine.tokenizer)}
            log.info("%s power: %s", name, results[name]["power"])
        # the false-positive check: unmarked answers under every key
    for name, (scheme, _) in configs(ring).items():
        if scheme is not None:
            results[name]["null_on_unmarked"] = power(gens["none"], scheme, engine.tokenizer)
    results["generation_s"] = time.perf_counter() - t0
    (OUT / "power.json").write_text(json.dumps(results, indent=1))
    from distillery.models import load

    oracle = load("gemma-3-270m")
    for name in gens:
        results.setdefault(name, {})["quality"] = perplexity(gens[name], oracle)
        log.info("%s quality: %s", name, results[name]["quality"])
    results["total_s"] = time.perf_counter() - t0
    (OUT / "power.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
