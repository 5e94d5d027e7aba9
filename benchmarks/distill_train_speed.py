"""Student training speed and peak memory per student type (LoRA and full fine-tuning).

Each (student, method) trains in its own process (so peak RSS is its own) for a few steps at
batch 8 x 256 tokens on synthetic answers long enough to fill the 256 tokens, and reports
non-padding tokens per second over the training steps (model load and held-out evaluation
excluded) and the process's peak resident memory.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distill_train_speed.py \
        --students tiny-random smollm2-135m-instruct gemma-3-270m --steps 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

TEXT = ("the model answers each question with care and shows every step of its reasoning "
        "so that a reader can follow it from the first line to the last one")
WORDS = TEXT.split(" ")


def make_dataset(path: Path, n: int = 64) -> None:
    from distillery.harvest import Prompt
    from distillery.harvest.dataset import DatasetWriter

    with DatasetWriter(path) as w:
        for i in range(n):
            p = Prompt.user(f"Question {i}: explain topic number {i} in detail.", "bench")
            text = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(260))
            w.append({"prompt_hash": p.hash, "prompt": p.text, "messages": list(p.messages),
                      "response": text, "finish_reason": "length", "logprobs": None,
                      "model": "bench", "endpoint": "local", "key_index": 0,
                      "usage": {"prompt_tokens": 10, "completion_tokens": 260},
                      "created_at": "2026-11-28T00:00:00+00:00", "strategy": "bench",
                      "category": ""})


def one(student: str, lora: bool, steps: int, threads: int, data: str, out: str) -> dict:
    from distillery.distill import TrainConfig, train

    cfg = TrainConfig(dataset=data, output_dir=out, student=student, lora=lora, batch_size=8,
                      max_len=256, max_steps=steps, warmup_steps=0, eval_every=0,
                      save_every=0, heldout_fraction=0.05, eval_max_examples=2,
                      num_threads=threads, learning_rate=2e-4 if lora else 2e-5)
    r = train(cfg, progress=False)
    return {"student": student, "method": "lora" if lora else "full", "steps": r.steps,
            "tokens_per_s": round(r.tokens_per_s, 1), "peak_rss_mb": round(r.peak_rss_mb),
            "peak_gpu_mb": round(r.peak_gpu_mb)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--students", nargs="+", default=["tiny-random", "smollm2-135m-instruct"])
    ap.add_argument("--methods", nargs="+", default=["lora"], choices=["lora", "full"])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dataset", help="a harvested JSONL (real answer lengths) instead of the "
                                      "synthetic answers that fill 256 tokens")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        student, method = args.child
        tmp = Path(tempfile.mkdtemp())
        data = args.dataset or str(tmp / "d.jsonl")
        if not args.dataset:
            make_dataset(tmp / "d.jsonl")
        res = one(student, method == "lora", args.steps, args.threads, data, str(tmp / "out"))
        print("RESULT " + json.dumps(res))
        return
    results = []
    for s in args.students:
        for m in args.methods:
            extra = ["--dataset", args.dataset] if args.dataset else []
            p = subprocess.run([sys.executable, __file__, "--child", s, m, "--steps",
                                str(args.steps), "--threads", str(args.threads), *extra],
                               capture_output=True, text=True)
            line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                print(p.stderr[-2000:], file=sys.stderr)
                continue
            results.append(json.loads(line[0][7:]))
            print(json.dumps(results[-1]), flush=True)


if __name__ == "__main__":
    main()
