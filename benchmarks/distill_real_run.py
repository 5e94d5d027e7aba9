"""The full distillation attack, end to end, on real models.

    teacher (SmolLM2-135M-Instruct) behind `distillery serve` (KGW-watermarked, N accounts)
      -> crafted prompts (seed tasks + taxonomy sweep + chain-of-thought variants)
      -> `harvest` over the accounts' keys -> dataset (JSONL + Parquet)
      -> `train`: Gemma-3-270M base + LoRA on the answers (sequence-level KD)
      -> `evaluate`: held-out bits per byte and ROUGE-L, gap closed, bootstrap CIs
      -> manifest.json beside the student, verified against the dataset

Every stage resumes (the harvest by prompt hash, training from its last checkpoint), so a
killed run is restarted with the same command. Without the gateway package, the teacher is
served by the in-process engine behind distillery.harvest.testserver.

Small scale on the shared 2-core CPU (what BENCHMARKS.md records):
    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/distill_real_run.py \
        --queries 100 --run-dir runs/real-100 > runs/real-100.log 2>&1 &
Full scale (issue 5's acceptance: >= 1,000 answers): --queries 1000 --epochs 2 (hours on CPU;
minutes on one GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import random
import time
from pathlib import Path

import torch

log = logging.getLogger("distill_real_run")


@contextlib.contextmanager
def teacher_endpoint(model: str, run_dir: Path, n_accounts: int, watermark: str,
                     watermark_params: dict | None = None, engine: str = "auto",
                     max_batch_size: int = 16):
    """Yields (base_url, api_keys, how): the real gateway if present, else the shim."""
    try:
        from distillery import store
        from distillery.gateway import ServeConfig, start_in_thread
    except ImportError:
        store = None
    if store is not None:
        db = f"sqlite:///{run_dir / 'gateway.db'}"
        key_path = run_dir / "watermark.key"
        if watermark != "none" and not key_path.exists():
            from distillery.watermark import KeyRing

            KeyRing.generate().save(key_path)
        cfg = ServeConfig(model=model, watermark=watermark,
                          watermark_key=str(key_path) if watermark != "none" else None,
                          watermark_params=watermark_params or {},
                          database=db, port=0, rpm_limit=100_000, tpm_limit=100_000_000,
                          engine=engine, max_batch_size=max_batch_size, log_level="warning")
        keys_file = run_dir / "api_keys.txt"  # the campaign's keys survive a restart
        if keys_file.exists():
            store.migrate(db)
            keys = keys_file.read_text().split()
        else:
            keys = list(store.provision(
                db, [f"campaign-{i:02d}" for i in range(n_accounts)]).values())
            keys_file.write_text("\n".join(keys) + "\n")
            keys_file.chmod(0o600)
        server = start_in_thread(cfg, timeout=600)
        try:
            yield server.base_url + "/v1", keys, f"distillery serve ({watermark} watermark)"
        finally:
            server.stop()
        return
    from distillery.engine import TorchEngine
    from distillery.harvest.testserver import ServerState, make_app, serve_in_thread

    with serve_in_thread(make_app(ServerState(), engine=TorchEngine.from_name(model),
                                  model_name=model)) as url:
        yield url, [f"shim-{i}" for i in range(n_accounts)], "engine shim (no gateway)"


def make_prompts(n: int, seed: int):
    from distillery.harvest import cot_prompts, seed_prompts, taxonomy_prompts

    seeds, tax = seed_prompts(), taxonomy_prompts()
    pool = [*seeds, *tax, *cot_prompts(seeds, one_each=True, seed=seed)]
    random.Random(seed).shuffle(pool)
    if n > len(pool):
        raise ValueError(f"only {len(pool)} built-in prompts: extend them with "
                         "`distillery prompts self-instruct` for more than that")
    return pool[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--run-dir", default="runs/real")
    ap.add_argument("--teacher", default="smollm2-135m-instruct")
    ap.add_argument("--student", default="gemma-3-270m")
    ap.add_argument("--accounts", type=int, default=4)
    ap.add_argument("--watermark", default="kgw", choices=["kgw", "gumbel", "none"])
    ap.add_argument("--context-width", type=int, default=None,
                    help="the gateway scheme's context width [default: the scheme's, 2]")
    ap.add_argument("--delta", type=float, default=None, help="KGW green bias (default 2)")
    ap.add_argument("--engine", default="auto", choices=["auto", "torch", "llama"],
                    help="the gateway's engine (torch is faster at batch 32-64 on CPU)")
    ap.add_argument("--max-batch", type=int, default=16,
                    help="the gateway's batch size, and the harvest's concurrency")
    ap.add_argument("--max-tokens", type=int, default=128)
    # 0 by default: the gateway (as of 70232cb) answers 500 when top-p masks one of the top-k
    # alternatives (-inf is not JSON); a cross-tokenizer student cannot use them anyway.
    ap.add_argument("--top-logprobs", type=int, default=0)
    ap.add_argument("--epochs", type=float, default=1.5)
    ap.add_argument("--full", action="store_true",
                    help="full fine-tuning instead of LoRA (e.g. a same-family student)")
    ap.add_argument("--lr", type=float, default=None,
                    help="learning rate [default: 2e-4 with LoRA, 2e-5 full]")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--heldout-fraction", type=float, default=0.15)
    ap.add_argument("--eval-max", type=int, default=60)
    ap.add_argument("--eval-batch", type=int, default=16)
    ap.add_argument("--rouge-max", type=int, default=None,
                    help="ROUGE-L on the first N held-out prompts (default: --eval-max)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snapshot-queries", type=int, nargs="*", default=[250, 500],
                    help="also evaluate (bits per byte) the student after its first n answers: "
                         "gap closed against queries from one run (with --epochs 1)")
    ap.add_argument("--harvest-only", action="store_true",
                    help="stop after the harvest (then rerun without it: the harvest resumes "
                         "as already done)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    run = Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    data = run / "dataset.jsonl"
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    from distillery.distill import EvalConfig, TrainConfig, evaluate, train, verify_manifest
    from distillery.distill.data import split_rows
    from distillery.distill.evaluation import write_eval
    from distillery.harvest import HarvestConfig, harvest, read_rows, to_parquet

    def eval_config(student: str) -> EvalConfig:
        return EvalConfig(dataset=str(data), student=student, teacher=args.teacher,
                          heldout_fraction=args.heldout_fraction, max_examples=args.eval_max,
                          max_new_tokens=args.max_tokens, max_len=args.max_len + 128,
                          batch_size=args.eval_batch, rouge_max_examples=args.rouge_max,
                          num_threads=args.threads, seed=args.seed)

    try:  # a bad evaluation option fails now, not after an hour of harvest and training
        eval_config(str(run / "student-run" / "student"))
    except ValueError as e:
        ap.error(str(e))
    t0 = time.perf_counter()
    prompts = make_prompts(args.queries, args.seed)
    wm_params = {} if args.context_width is None else {"context_width": args.context_width}
    if args.delta is not None:
        wm_params["delta"] = args.delta
    with teacher_endpoint(args.teacher, run, args.accounts, args.watermark, wm_params,
                          args.engine, args.max_batch) as (url, keys, how):
        timings["teacher_start_s"] = time.perf_counter() - t0
        log.info("teacher at %s via %s, %d keys", url, how, len(keys))
        hcfg = HarvestConfig(base_url=url, model=args.teacher, api_keys=keys,
                             concurrency=max(16, args.max_batch),
                             max_tokens=args.max_tokens, temperature=0.7, top_p=0.95,
                             top_logprobs=args.top_logprobs, timeout_s=600, progress=False)
        rep = harvest(prompts, data, hcfg)
    timings["harvest_s"] = time.perf_counter() - t0
    log.info("harvest: %s", rep)
    to_parquet(data, run / "dataset.parquet")
    if args.harvest_only:
        return
    rows = read_rows(data)
    n_train = len(split_rows(rows, args.heldout_fraction)[0])
    steps = max(1, math.ceil(args.epochs * n_train / args.batch_size))
    snap = {n: math.ceil(n / args.batch_size) for n in args.snapshot_queries
            if math.ceil(n / args.batch_size) < steps}

    t0 = time.perf_counter()
    tcfg = TrainConfig(dataset=str(data), output_dir=str(run / "student-run"),
                       student=args.student, lora=not args.full, batch_size=args.batch_size,
                       max_steps=steps, max_len=args.max_len,
                       learning_rate=args.lr or (2e-5 if args.full else 2e-4),
                       warmup_steps=min(10, steps // 5), heldout_fraction=args.heldout_fraction,
                       eval_every=0, save_every=5, eval_max_examples=args.eval_max,
                       num_threads=args.threads, seed=args.seed,
                       snapshot_steps=tuple(snap.values()))
    tres = train(tcfg, progress=False)
    timings["train_s"] = time.perf_counter() - t0
    log.info("train: %s", tres)

    t0 = time.perf_counter()
    ecfg = eval_config(tres.student_dir)
    eres = evaluate(ecfg)
    write_eval(run / "eval.json", eres, ecfg)
    curve = []
    # bits per byte only (ROUGE-L needs generation: slow); base and teacher from the final eval
    for n, step in snap.items():
        d = run / "student-run" / "snapshots" / f"step-{step:06d}"
        r = evaluate(dataclasses.replace(ecfg, student=str(d), rouge=False), reference=eres)
        curve.append({"queries": n, "steps": step, "bpb": r.bpb.__dict__})
    curve.append({"queries": n_train, "steps": steps, "bpb": eres.bpb.__dict__,
                  "rouge_l": eres.rouge_l.__dict__ if eres.rouge_l else None})
    (run / "gap_vs_queries.json").write_text(json.dumps(curve, indent=2))
    timings["evaluate_s"] = time.perf_counter() - t0
    problems = verify_manifest(run / "student-run" / "manifest.json", data)
    timings["total_s"] = time.perf_counter() - t_all
    summary = {"queries": args.queries, "teacher_endpoint": how, "rows": len(rows),
               "harvest": {"written": rep.written, "skipped": rep.skipped,
                           "failed": rep.failed, "completion_tokens": rep.completion_tokens,
                           "tokens_per_s": rep.tokens_per_s, "retries": rep.retries},
               "train": json.loads((run / "student-run" / "train_result.json").read_text()),
               "eval": eres.to_dict(), "gap_vs_queries": curve,
               "manifest_problems": problems, "timings": timings,
               "threads": args.threads, "args": vars(args)}
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("summary: %s", json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
