"""Detection power of the closed-model test (API mode) on a real student: the argmax and the
disagree statistics side by side, on the same answers, against the number of queries.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/forensics_api_power.py \
        --run-dir runs/self-1600 --student student-run/student --queries 500 \
        --budgets 100 250 500 --context-width 1

The suspect is queried the way `distillery forensics check --mode api` queries an endpoint:
the usage store's distinct prompts (the harvest's, as the provider logged them) in one
seeded order, temperature 0.7, top-p 0.95, --max-tokens. Its answers are generated in process
by the engine a server would run it on (generate_locally; tests/forensics runs the same
scoring over real HTTP) and kept in <run>/api-answers-<name>.jsonl, so a killed run resumes.
The clean control is the teacher itself, unwatermarked, answering the same prompts (a model
that never learned from the key; the student's own base when the student is same-family).
disagree keeps a generated token only where the teacher's own top-1 on that answer differs
(api.disagreeing); both statistics are planned tests on the first `budget` answers. The
attribution family is the store's accounts plus decoy keys to --keys in all, the campaign
pooled as a cluster. Writes <run>/forensics-api-power-<name>.json (name: the student's path
with / as _, -unseen with --unseen), one line per (model, statistic, budget).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

log = logging.getLogger("forensics_api_power")
TEACHER = "smollm2-135m-instruct"


def answers_of(model: str, prompts, path: Path, max_tokens: int, seed: int, chunk: int = 50):
    """The model's answers to the prompts, generated chunk by chunk and appended to path."""
    from distillery.forensics.api import generate_locally
    from distillery.forensics.reading import TextRow

    have = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    t0 = time.perf_counter()
    with path.open("a") as f:
        for lo in range(len(have), len(prompts), chunk):
            rows = generate_locally(prompts[lo: lo + chunk], model, max_tokens, seed=seed + lo)
            for r in rows:
                f.write(json.dumps({"messages": list(r.messages), "response": r.response}) + "\n")
            f.flush()
            log.info("%s: %d / %d answers (%.0f s)", path.name, lo + len(rows), len(prompts),
                     time.perf_counter() - t0)
    rows = [json.loads(x) for x in path.read_text().splitlines()][: len(prompts)]
    return [TextRow(tuple(r["messages"]), r["response"]) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--student", default="student-run/student",
                    help="relative to the run dir, or a model name")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--budgets", type=int, nargs="*", default=[100, 250, 500])
    ap.add_argument("--control-queries", type=int, default=None,
                    help="teacher answers for the clean control [default: --queries]")
    ap.add_argument("--unseen", action="store_true",
                    help="query the built-in prompts the harvest did not use instead of the "
                         "stored ones (the student was not trained on their answers)")
    ap.add_argument("--then-unseen", action="store_true",
                    help="the stored prompts first, then the unseen built-in ones: a budget "
                         "beyond what the store holds (what a provider would query next)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--context-width", type=int, default=None)
    ap.add_argument("--scheme", default="kgw", choices=["kgw", "gumbel"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    from forensics_power import attribution_summary, key_family

    from distillery.forensics.api import answer_candidates, disagreeing
    from distillery.forensics.check import verdict_for
    from distillery.forensics.reading import Reader, TextRow
    from distillery.forensics.sources import shuffled, usage_rows
    from distillery.models import load

    run = Path(args.run_dir)
    db, scheme, params, campaign, accounts, clusters = key_family(
        run, args.context_width, args.keys, scheme_name=args.scheme)
    seen, prompts = set(), []
    for r in shuffled(usage_rows(db), args.seed):
        k = json.dumps(r.messages, sort_keys=True)
        if r.messages and k not in seen:
            seen.add(k)
            prompts.append(TextRow(r.messages, ""))
    if args.unseen or args.then_unseen:  # built-in prompts the harvest did not use
        from distillery.harvest import cot_prompts, seed_prompts, taxonomy_prompts

        seeds = seed_prompts()
        pool = [TextRow(tuple(p.messages), "") for p in
                [*seeds, *taxonomy_prompts(), *cot_prompts(seeds, one_each=True, seed=0)]]
        unseen = shuffled([p for p in pool if json.dumps(p.messages, sort_keys=True)
                           not in seen], args.seed)
        prompts = unseen if args.unseen else prompts + unseen
    if len(prompts) < args.queries:
        raise SystemExit(f"only {len(prompts)} distinct prompts for --queries {args.queries}"
                         + ("" if args.unseen or args.then_unseen else " (--then-unseen adds "
                            "the built-in ones the harvest did not use)"))
    prompts = prompts[: args.queries]
    name = args.student.strip("/").replace("/", "_") + ("-unseen" if args.unseen else "")
    t0 = time.perf_counter()
    model = str(run / args.student) if (run / args.student).exists() else args.student
    suspect = answers_of(model, prompts, run / f"api-answers-{name}.jsonl",
                         args.max_tokens, args.seed)
    gen_s = time.perf_counter() - t0
    control = answers_of(TEACHER, prompts[: args.control_queries or args.queries],
                         run / f"api-answers-teacher{'-unseen' * args.unseen}.jsonl",
                         args.max_tokens, args.seed)
    judge_model = load(TEACHER)
    ttok = judge_model.tokenizer
    judge = Reader(judge_model.model, ttok, ttok, scheme, exclude_text=False)
    out = {"run": str(run), "student": args.student, "n_keys": len(accounts),
           "prompts": "unseen built-in" if args.unseen else (
               "stored (the harvest's)" + (f", then unseen built-in after {len(seen)}"
                                           if args.then_unseen else "")),
           "campaign": campaign, "max_tokens": args.max_tokens, "scheme_params": params,
           "suspect_generation_s": gen_s, "results": []}
    for label, answers in ((args.student, suspect), (f"{TEACHER} (clean control)", control)):
        t0 = time.perf_counter()
        top1 = judge.top1(answers)
        log.info("%s: the teacher read %d answers in %.0f s", label, len(answers),
                 time.perf_counter() - t0)
        for budget in sorted({*(b for b in args.budgets if b < len(answers)), len(answers)}):
            part = answers[:budget]
            c = answer_candidates(part, ttok, scheme)
            tokens = sum(len(ttok.encode(r.response, add_special_tokens=False)) for r in part)
            for statistic, cand in (("argmax", c), ("disagree", disagreeing(c, top1[:budget]))):
                v = verdict_for(cand, scheme, accounts, mode="api", suspect=label,
                                clusters=clusters, n_controls=100, statistic=statistic)
                a, g = v.suspect_analysis, v.suspect_analysis.global_result
                r = {"model": label, "statistic": statistic, "queries": budget,
                     "tokens_generated": tokens, "scored": g.n_scored, "z": g.z,
                     "p": g.p_value, "rate": g.rate, "verdict": v.verdict, "named": a.named,
                     "disagreements": cand.info.get("disagreements"),
                     **attribution_summary(a, campaign),
                     "controls_ks": [s.ks_p for s in a.controls]}
                out["results"].append(r)
                log.info("%s %-8s queries %4d tokens %6d scored %6d z %6.2f p %.2g cluster z "
                         "%s verdict %s", label, statistic, budget, tokens, g.n_scored, g.z,
                         g.p_value, "-" if r["campaign_cluster"] is None else
                         f"{r['campaign_cluster']['z']:.2f}", v.verdict)
    (run / f"forensics-api-power-{name}.json").write_text(
        json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
