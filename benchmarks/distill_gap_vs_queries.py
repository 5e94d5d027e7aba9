"""Gap closed against the number of harvested queries.

Nested subsets (the first n training rows in prompt-hash order) of one harvested dataset
train one student each with the same recipe (epochs over the subset, batch, LoRA); every
student is evaluated on the same held-out prompts (the dataset's held-out split), so the
points differ only in how many queries the attacker paid for.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distill_gap_vs_queries.py \
        --dataset runs/real-100/dataset.jsonl --student gemma-3-270m \
        --teacher smollm2-135m-instruct --sizes 250 500 1000 2000 --run-dir runs/gap
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--student", default="gemma-3-270m")
    ap.add_argument("--teacher", default="smollm2-135m-instruct")
    ap.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000])
    ap.add_argument("--epochs", type=float, default=1.5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--heldout-fraction", type=float, default=0.15)
    ap.add_argument("--eval-max", type=int, default=60)
    ap.add_argument("--rouge", action="store_true", help="also ROUGE-L (slow: generation)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--run-dir", default="runs/gap")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from distillery.distill import EvalConfig, TrainConfig, evaluate, train
    from distillery.distill.data import split_rows
    from distillery.harvest import read_rows
    from distillery.harvest.dataset import DatasetWriter

    run = Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    rows = read_rows(args.dataset)
    train_rows, held = split_rows(rows, args.heldout_fraction)
    train_rows.sort(key=lambda r: r["prompt_hash"])
    points = []
    for n in args.sizes:
        if n > len(train_rows):
            print(f"skip {n}: only {len(train_rows)} training rows")
            continue
        d = run / f"n{n}"
        d.mkdir(exist_ok=True)
        data = d / "dataset.jsonl"
        if not data.exists():
            with DatasetWriter(data) as w:  # the n rows + the shared held-out rows
                for r in [*train_rows[:n], *held]:
                    w.append(r)
        steps = max(1, math.ceil(args.epochs * n / args.batch_size))
        tres = train(TrainConfig(dataset=str(data), output_dir=str(d / "out"),
                                 student=args.student, max_steps=steps,
                                 batch_size=args.batch_size, max_len=args.max_len,
                                 learning_rate=args.lr, warmup_steps=min(10, steps // 5),
                                 heldout_fraction=args.heldout_fraction, eval_every=0,
                                 save_every=10, eval_max_examples=args.eval_max,
                                 num_threads=args.threads), progress=False)
        eres = evaluate(EvalConfig(dataset=str(data), student=tres.student_dir,
                                   teacher=args.teacher, heldout_fraction=args.heldout_fraction,
                                   max_examples=args.eval_max, rouge=args.rouge,
                                   max_len=args.max_len + 128, num_threads=args.threads))
        p = {"queries": n, "steps": steps, "train_s": round(tres.wall_s),
             "bpb": eres.bpb.__dict__,
             "rouge_l": eres.rouge_l.__dict__ if eres.rouge_l else None}
        points.append(p)
        print(json.dumps(p), flush=True)
    (run / "gap_vs_queries.json").write_text(json.dumps(points, indent=2))


if __name__ == "__main__":
    main()
