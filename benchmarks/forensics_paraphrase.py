"""Scrubbing (a): the thief paraphrases its harvest with a model of its own before training.

Prepares a run directory beside a finished `distill_real_run.py` run: the same prompts, each
answer rewritten by an unwatermarked model (forensics.scrub.paraphrase_rows), and the source
run's usage store, key ring and campaign keys, so the forensics benchmarks read the new
student against the same keys. Then train on it with the source run's own command, pointed
at the new directory (its harvest finds every prompt done and skips it):

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/forensics_paraphrase.py \
        --source runs/gemma-kgw16 --run-dir runs/gemma-kgw16-para --engine torch
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/distill_real_run.py $COMMON \
        --run-dir runs/gemma-kgw16-para
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/forensics_power.py \
        --run-dir runs/gemma-kgw16-para ...

Writes <run-dir>/paraphrase.json: the time taken, the answers' lengths before and after, and
how many paraphrases came back empty or as a copy of the original.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import time
from pathlib import Path

import torch

log = logging.getLogger("forensics_paraphrase")
CARRIED = ("gateway.db", "watermark.key", "api_keys.txt", "fresh-power.jsonl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="a finished distill_real_run.py run dir")
    ap.add_argument("--run-dir", required=True, help="the new run dir (must not hold a dataset)")
    ap.add_argument("--model", default="smollm2-135m-instruct",
                    help="the thief's paraphraser (unwatermarked, run locally)")
    ap.add_argument("--engine", default="auto", choices=["auto", "torch", "llama"])
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    from distillery.forensics.scrub import paraphrase_rows
    from distillery.harvest import read_rows, to_parquet

    src, run = Path(args.source), Path(args.run_dir)
    if (run / "dataset.jsonl").exists():
        ap.error(f"{run}/dataset.jsonl exists: choose a new --run-dir")
    rows = read_rows(src / "dataset.jsonl")
    t0 = time.perf_counter()
    para = paraphrase_rows(rows, args.model, max_tokens=args.max_tokens, engine=args.engine,
                           seed=args.seed)
    took = time.perf_counter() - t0
    run.mkdir(parents=True, exist_ok=True)
    for name in CARRIED:
        if (src / name).exists():
            shutil.copy2(src / name, run / name)
    with open(run / "dataset.jsonl", "w", encoding="utf-8") as f:
        for r in para:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    to_parquet(run / "dataset.jsonl", run / "dataset.parquet")
    words = [len(r["original_response"].split()) for r in para]
    new_words = [len(r["response"].split()) for r in para]
    summary = {"source": str(src), "model": args.model, "rows": len(para), "seconds": took,
               "median_words_before": statistics.median(words),
               "median_words_after": statistics.median(new_words),
               "empty": sum(not r["response"] for r in para),
               "copied": sum(r["response"] == r["original_response"].strip() for r in para)}
    (run / "paraphrase.json").write_text(json.dumps(summary, indent=2))
    log.info("paraphrased: %s", summary)
    for r in para[:3]:
        log.info("before: %r\nafter: %r", r["original_response"][:300], r["response"][:300])


if __name__ == "__main__":
    main()
