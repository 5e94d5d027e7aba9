"""Radioactivity of a real student: the open-weights test on a run of distill_real_run.py.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/forensics_real.py --run-dir runs/fx-400 \
        --decoys 996 --budgets 3000 10000 30000

The run dir holds the gateway's usage store (gateway.db), its key ring (watermark.key) and the
Gemma-3-270M + LoRA student (student-run/student) trained on the SmolLM2 gateway's KGW-marked
answers. Reading mode reads the stored answers (marked: a conservative test, check.py) through
the student and, as the clean reference, through the same weights with the adapter off.
The attribution family is the run's campaign accounts plus `--decoys` account keys that never
served anyone (the ring derives them like real accounts), so the campaign is named among
N = accounts + decoys keys. Each budget is a separate planned test on the first rows of one
fixed, seeded order (the p-value at a budget is not read off a running trajectory).
Writes runs/<run>/forensics.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

log = logging.getLogger("forensics_real")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/fx-400")
    ap.add_argument("--decoys", type=int, default=996)
    ap.add_argument("--budgets", type=int, nargs="*", default=[3000, 10000, 30000])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-rows", type=int, default=None)
    ap.add_argument("--fresh", type=int, default=0,
                    help="read N fresh *unmarked* teacher answers to the harvest's prompts "
                         "instead of the stored (marked) ones: the exact test")
    ap.add_argument("--out", default="forensics.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    from distillery.forensics.check import verdict_for
    from distillery.forensics.evidence import Candidates, scored_count
    from distillery.forensics.reading import Reader
    from distillery.forensics.run import LAYER_PROBE, load_suspect
    from distillery.forensics.sources import account_names, shuffled, usage_rows
    from distillery.models import load_tokenizer
    from distillery.watermark import KeyRing, make_scheme

    run = Path(args.run_dir)
    db = f"sqlite:///{run / 'gateway.db'}"
    ring = KeyRing.load(run / "watermark.key")
    scheme = make_scheme("kgw", ring, account=LAYER_PROBE)
    campaign = account_names(db)
    names = campaign + [f"decoy-{i:04d}" for i in range(args.decoys)]
    accounts = {n: ring.account_key(n) for n in names}
    rows = shuffled(usage_rows(db), 0)[: args.max_rows]
    if args.fresh:
        from distillery.forensics.api import generate_locally

        t0 = time.perf_counter()
        rows = generate_locally(rows[: args.fresh], "smollm2-135m-instruct", max_tokens=128)
        log.info("%d unmarked teacher answers in %.0f s", len(rows), time.perf_counter() - t0)
    ttok = load_tokenizer("smollm2-135m-instruct")
    model, tok, base, _ = load_suspect(str(run / "student-run" / "student"))

    t0 = time.perf_counter()
    reader = Reader(model, tok, ttok, scheme, batch_size=args.batch_size)
    parts, ref_parts = [], []
    for lo in range(0, len(rows), 32):  # read in chunks, so every budget is a row prefix
        chunk = rows[lo: lo + 32]
        parts.append(reader.candidates(chunk))
        with model.disable_adapter():
            ref_parts.append(reader.candidates(chunk))
        n = scored_count(Candidates.concat(parts, scheme.window), scheme, "global",
                         scheme.global_key)
        log.info("%d rows read, %d scored (global)", lo + len(chunk), n)
    read_s = time.perf_counter() - t0
    results = []
    for budget in [*args.budgets, None]:
        k = len(parts)
        if budget is not None:  # the fewest chunks that reach the budget
            k = next((i + 1 for i in range(len(parts)) if scored_count(
                Candidates.concat(parts[: i + 1], scheme.window), scheme, "global",
                scheme.global_key) >= budget), None)
            if k is None:
                continue
        c = Candidates.concat(parts[:k], scheme.window)  # sums rows and tokens
        rc = Candidates.concat(ref_parts[:k], scheme.window)
        clusters = {"campaign": tuple(campaign)}
        v = verdict_for(c, scheme, accounts, mode="open", suspect=str(run), clusters=clusters,
                        n_controls=100, reference=f"{base} (adapter off)",
                        reference_candidates=rc)
        a, r = v.suspect_analysis, v.reference_analysis
        res = {"budget": budget, "rows": c.n_rows, "suspect_tokens": c.n_tokens,
               "verdict": v.verdict, "global": a.global_result.__dict__,
               "global_adjusted_p": a.global_adjusted_p,
               "named": a.named, "top_accounts": [
                   {"name": x.name, "adjusted_p": x.adjusted_p, "p": x.result.p_value,
                    "n": x.result.n_scored, "rate": x.result.rate} for x in a.accounts[:6]],
               "reference_global": r.global_result.__dict__, "reference_named": r.named,
               "p_below_reference": v.usage.get("p_below_reference"),
               "controls": [{"layer": s.layer, "min_p": s.min_p, "median_p": s.median_p,
                             "ks_p": s.ks_p} for s in a.controls],
               "plan": v.plan.to_dict()}
        log.info("budget %s: %s", budget, json.dumps(res)[:600])
        results.append(res)
    total_tokens = sum(p.n_tokens for p in parts) * 2  # suspect and reference passes
    out = {"run": str(run), "n_keys": len(accounts), "rows": len(rows),
           "read_s": read_s, "tokens_read": total_tokens,
           "tokens_per_s": total_tokens / read_s, "threads": args.threads,
           "info": Candidates.concat(parts, scheme.window).info, "results": results}
    out["source"] = "fresh unmarked teacher answers" if args.fresh else "stored (marked) answers"
    (run / args.out).write_text(json.dumps(out, indent=2, default=str))
    log.info("read %d tokens in %.0f s (%.1f tokens/s)", total_tokens, read_s,
             total_tokens / read_s)


if __name__ == "__main__":
    main()
