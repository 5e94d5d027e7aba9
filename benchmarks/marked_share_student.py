"""A student trained on a harvest of which only a share is marked: the rest of the answers are
replaced by the same teacher's *unmarked* answers to the same prompts (what a thief mixing
our outputs with another source of the same quality would train on). Issue 10's sweep of the
marked share (100%, 10%, 1%), on a run of `distill_real_run.py`:

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/marked_share_student.py \
        --run-dir runs/self-1600 --share 0.1 --full --lr 5e-5 --epochs 2

Writes <run>/share-<pct>/dataset.jsonl (the mixed harvest) and <run>/share-<pct>/student-run/
(the student, the run's recipe; share-<pct>-<student> for a student other than the
teacher's own model); the unmarked answers are generated once (the torch engine: faster
than llama.cpp at this batch size) and kept in <run>/unmarked-answers.jsonl, so the sweep's
students share them. Read them with `forensics_power.py --students share-<pct>/student-run/student`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from pathlib import Path

import torch

log = logging.getLogger("marked_share_student")


def unmarked_answers(run: Path, rows: list[dict], teacher: str, max_tokens: int) -> list[str]:
    """The teacher's unmarked answer to every row's prompt, cached in run/unmarked-answers.jsonl
    (appended a chunk at a time: a killed run resumes)."""
    from distillery.forensics.api import generate_locally
    from distillery.forensics.reading import TextRow

    path = run / "unmarked-answers.jsonl"
    have = [json.loads(x)["response"] for x in path.read_text().splitlines()] \
        if path.exists() else []
    t0 = time.perf_counter()
    with path.open("a") as f:
        for lo in range(len(have), len(rows), 64):
            chunk = [TextRow(tuple(r["messages"]), "") for r in rows[lo: lo + 64]]
            # torch: 50 answers in ~30 s at batch 50 on 2 cores, llama.cpp ~50 s (session 20)
            for r in generate_locally(chunk, teacher, max_tokens, seed=10_000 + lo,
                                      engine="torch"):
                f.write(json.dumps({"response": r.response}) + "\n")
                have.append(r.response)
            f.flush()
            log.info("%d / %d unmarked answers (%.0f s)", len(have), len(rows),
                     time.perf_counter() - t0)
    return have[: len(rows)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--share", type=float, required=True, help="marked share, in (0, 1]")
    ap.add_argument("--teacher", default="smollm2-135m-instruct")
    ap.add_argument("--student", default="smollm2-135m-instruct")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--max-tokens", type=int, default=128, help="as the harvest's")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--heldout-fraction", type=float, default=0.15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not 0 < args.share <= 1:
        raise SystemExit(f"--share must be in (0, 1], got {args.share}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    from distillery.distill import TrainConfig, train
    from distillery.distill.data import split_rows
    from distillery.harvest import read_rows

    run = Path(args.run_dir)
    rows = read_rows(run / "dataset.jsonl")
    n_marked = round(args.share * len(rows))
    marked = set(random.Random(args.seed).sample(range(len(rows)), n_marked))
    clean = unmarked_answers(run, rows, args.teacher, args.max_tokens) if n_marked < len(rows) \
        else []
    out = run / (f"share-{args.share * 100:g}" if args.student == args.teacher
                 else f"share-{args.share * 100:g}-{Path(args.student).name}")
    out.mkdir(exist_ok=True)
    mixed = [r if i in marked else {**r, "response": clean[i], "endpoint": "local (unmarked)",
                                    "key_index": None}
             for i, r in enumerate(rows)]
    data = out / "dataset.jsonl"
    data.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in mixed))
    n_train = len(split_rows(mixed, args.heldout_fraction)[0])
    steps = max(1, math.ceil(args.epochs * n_train / args.batch_size))
    log.info("%d of %d answers marked; %d steps", n_marked, len(rows), steps)
    res = train(TrainConfig(
        dataset=str(data), output_dir=str(out / "student-run"), student=args.student,
        lora=not args.full, batch_size=args.batch_size, max_steps=steps, max_len=args.max_len,
        learning_rate=args.lr or (2e-5 if args.full else 2e-4),
        warmup_steps=min(10, steps // 5), heldout_fraction=args.heldout_fraction, eval_every=0,
        save_every=5, eval_max_examples=40, num_threads=args.threads, seed=args.seed),
        progress=False)
    log.info("train: %s", res)
    (out / "share.json").write_text(json.dumps({"share": args.share, "marked": n_marked,
                                                "rows": len(rows), "steps": steps}))


if __name__ == "__main__":
    main()
