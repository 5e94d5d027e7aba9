"""Detection power of the open-weights test on real students: the top-1 (argmax), green-mass
and shift statistics side by side, on the same fresh texts, against the number read.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/forensics_power.py --run-dir runs/demo \
        --fresh 400 --budgets 100 200 400

The run dir is a closed-loop run (`distillery experiment`) or any directory holding the
gateway's usage store (gateway.db), its key ring (watermark.key) and Gemma-3-270M + LoRA
students trained on the gateway's KGW-marked answers. The texts read are fresh *unmarked*
teacher answers (the exact test: check.py, "Which text to read") to the distinct prompts of
the usage store, topped up with the shipped seed and taxonomy prompts; they are generated
once and kept in <run>/fresh-power.jsonl. Each student is read once, with its adapter on and
off (its clean base, the reference), keeping the top-k at every position; every statistic is
then a planned test on the first `budget` texts of one fixed, seeded order (never a p-value
read off a running trajectory). The attribution family is the store's accounts plus decoy
account keys that never served anyone, to --keys in all; the campaign (the accounts the
audit blocked, else every non-benign account named in --campaign) is pooled as a cluster.
Writes <run>/forensics-power.json and prints one line per (student, statistic, budget).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import time
from pathlib import Path

import torch

log = logging.getLogger("forensics_power")


def fresh_texts(run: Path, db: str, n: int, max_tokens: int, seed: int):
    """n unmarked teacher answers to distinct prompts, cached in run/fresh-power.jsonl."""
    from distillery.forensics.api import generate_locally
    from distillery.forensics.reading import TextRow
    from distillery.forensics.sources import usage_rows
    from distillery.harvest.prompts import seed_prompts, taxonomy_prompts

    path = run / "fresh-power.jsonl"
    have = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    if len(have) >= n:
        return [TextRow(tuple(r["messages"]), r["response"]) for r in have[:n]]
    seen, prompts = set(), []
    extra = [TextRow(p.messages, "") for p in [*seed_prompts(), *taxonomy_prompts()]]
    random.Random(seed).shuffle(extra)
    for r in [*usage_rows(db), *extra]:
        key = json.dumps(r.messages, sort_keys=True)
        if r.messages and key not in seen:
            seen.add(key)
            prompts.append(TextRow(r.messages, ""))
    random.Random(seed).shuffle(prompts)
    if len(prompts) < n:
        raise SystemExit(f"only {len(prompts)} distinct prompts for --fresh {n}")
    todo = prompts[len(have): n]
    t0 = time.perf_counter()
    with path.open("a") as f:
        for lo in range(0, len(todo), 64):  # appended as they come: a killed run resumes
            for r in generate_locally(todo[lo: lo + 64], "smollm2-135m-instruct", max_tokens,
                                      seed=seed + len(have) + lo, engine="torch"):
                f.write(json.dumps({"messages": list(r.messages), "response": r.response})
                        + "\n")
            f.flush()
            log.info("%d / %d fresh answers (%.0f s)", len(have) + lo + 64, n,
                     time.perf_counter() - t0)
    return fresh_texts(run, db, n, max_tokens, seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/demo")
    ap.add_argument("--students", nargs="+",
                    default=["student-before-block/student", "student-counterfactual/student"],
                    help="student directories, relative to the run dir")
    ap.add_argument("--campaign", nargs="*", default=None,
                    help="the campaign's accounts [default: those the audit blocked]")
    ap.add_argument("--keys", type=int, default=1000, help="attribution family size")
    ap.add_argument("--fresh", type=int, default=400,
                    help="fresh unmarked teacher answers read (the exact test)")
    ap.add_argument("--stored", action="store_true",
                    help="read --fresh N of the usage store's own (marked) answers instead: "
                         "valid but conservative (check.py, 'Which text to read')")
    ap.add_argument("--fresh-max-tokens", type=int, default=96)
    ap.add_argument("--budgets", type=int, nargs="*", default=[100, 200, 400],
                    help="texts read per planned test (the last: all of --fresh)")
    ap.add_argument("--scheme", default="kgw", choices=["kgw", "gumbel"],
                    help="the gateway's watermark scheme (Gumbel: argmax and disagree only)")
    ap.add_argument("--top-k", type=int, default=32)
    ap.add_argument("--context-width", type=int, default=None,
                    help="the gateway scheme's context width [default: the scheme's, 2]")
    ap.add_argument("--scrub-penalty", type=float, default=None,
                    help="also read each student through Pan et al.'s neutralisation "
                         "(forensics/scrub.py) built from the run's harvest, this penalty")
    ap.add_argument("--harvest", default="dataset.jsonl",
                    help="the thief's harvest in the run dir (for --scrub-penalty)")
    ap.add_argument("--keep-text-tuples", action="store_true",
                    help="also test argmax and disagree without excluding the tuples of the "
                         "text read, as `forensics check --fresh N` / --unmarked-text does "
                         "(exact only for unmarked texts: nothing in them depends on a key; "
                         "reported as 'argmax/all', 'disagree/all')")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="forensics-power.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    from distillery.forensics.config import ForensicsConfig
    from distillery.forensics.run import load_suspect, reference_model
    from distillery.models import load_tokenizer

    run = Path(args.run_dir)
    db, scheme, params, campaign, accounts, clusters = key_family(
        run, args.context_width, args.keys, args.campaign, args.scheme)
    if args.stored:
        from distillery.forensics.sources import shuffled, usage_rows

        rows = shuffled(usage_rows(db), args.seed)[: args.fresh]
    else:
        rows = fresh_texts(run, db, args.fresh, args.fresh_max_tokens, args.seed)
    ttok = load_tokenizer("smollm2-135m-instruct")
    out = {"run": str(run), "n_keys": len(accounts), "campaign": campaign, "fresh": len(rows),
           "texts": "stored (marked) answers" if args.stored else "fresh unmarked answers",
           "top_k": args.top_k, "threads": args.threads, "scheme_params": params,
           "students": {}}
    for student in args.students:
        model, tok, base, is_lora = load_suspect(str(run / student))
        # the clean reference: a LoRA student's adapter off, else its base loaded beside it
        cfg = ForensicsConfig(suspect=str(run / student), database=db)
        _, ref_model, _, ref_off = reference_model(cfg, model, tok, base, is_lora)
        hook, suspects = None, [student]
        if args.scrub_penalty is not None:
            from distillery.forensics.scrub import neutraliser

            t0 = time.perf_counter()
            harvest = [json.loads(x)["response"] for x in (run / args.harvest).open()]
            # the base: a LoRA student's adapter off, else the base model loaded beside it
            hook = neutraliser(model, ref_off if ref_model is model else ref_model, tok, harvest,
                               penalty=args.scrub_penalty)
            log.info("neutraliser: %d prefixes in %.0f s", hook.n_prefixes,
                     time.perf_counter() - t0)
            suspects.append(f"{student} (neutralised, penalty {args.scrub_penalty:g})")
            out.setdefault("scrub_cost", {})[student] = scrub_cost(
                run, student, run / args.harvest, hook, args)
        ref_parts = None  # the base's read, made once and kept for the neutralised pass
        for suspect in suspects:
            res, stats, ref_parts = read_and_test(
                suspect, model, tok, ttok, scheme, rows, accounts, clusters, campaign, base,
                args, hook if suspect != student else None, ref_parts, ref_model, ref_off)
            out["students"][suspect] = {**stats, "results": res}
            (run / args.out).write_text(json.dumps(out, indent=2, default=str))


def attribution_summary(a, campaign) -> dict:
    """The campaign's pooled cluster, its strongest account and the strongest decoy (by z)."""
    def brief(x):
        return None if x is None else {"name": x.name, "z": x.result.z, "p": x.result.p_value,
                                       "adjusted_p": x.adjusted_p}

    singles = [x for x in a.accounts if not x.name.startswith("cluster:")]
    return {"campaign_cluster": brief(next((x for x in a.accounts
                                            if x.name == "cluster:campaign"), None)),
            "best_account": brief(max((x for x in singles if x.name in campaign),
                                      key=lambda x: x.result.z, default=None)),
            "best_decoy": brief(max((x for x in singles if x.name not in campaign),
                                    key=lambda x: x.result.z, default=None))}


def scrub_cost(run: Path, student: str, harvest: Path, hook, args) -> dict:
    """What the neutralisation costs the thief: its student's gap closed in bits per byte, as
    trained and as served through the hook, on 40 of the harvest's held-out (marked) answers
    (distill_real_run's split) and on the first 40 fresh unmarked teacher answers (the
    teacher's behaviour without our mark: what the thief is after)."""
    from distillery.distill import EvalConfig, evaluate
    from distillery.harvest.prompts import prompt_hash

    t0 = time.perf_counter()
    fresh = run / "fresh-eval.jsonl"
    with fresh.open("w") as f:
        for x in (run / "fresh-power.jsonl").read_text().splitlines()[:40]:
            r = json.loads(x)
            f.write(json.dumps({**r, "prompt_hash": prompt_hash(r["messages"])}) + "\n")
    cost = {}
    for name, data, held in (("marked held-out", harvest, 0.15), ("unmarked fresh", fresh, 1.0)):
        cfg = EvalConfig(dataset=str(data), student=str(run / student),
                         teacher="smollm2-135m-instruct", heldout_fraction=held,
                         max_examples=40, rouge=False, num_threads=args.threads, seed=args.seed)
        plain = evaluate(cfg)
        served = evaluate(cfg, reference=plain, logits_hook=hook)
        cost[name] = {"n_prompts": plain.n_prompts, "as_trained": dataclasses.asdict(plain.bpb),
                      "neutralised": dataclasses.asdict(served.bpb)}
    cost["seconds"] = time.perf_counter() - t0
    log.info("neutralisation cost (bits per byte): %s", cost)
    return cost


def read_and_test(student, model, tok, ttok, scheme, rows, accounts, clusters, campaign, base,
                  args, hook, ref_parts=None, ref_model=None, ref_off=None):
    """Read the texts with the student (through `hook` if any) and, unless its read is given
    (ref_parts), its base (ref_model under ref_off(): the student with its adapter off, or
    the base itself); every statistic at every budget -> (results, speed, ref_parts)."""
    from distillery.forensics.check import STATISTICS, verdict_for
    from distillery.forensics.config import KGW_ONLY
    from distillery.forensics.evidence import PAIRED, Candidates
    from distillery.forensics.reading import Reader

    reader = Reader(model, tok, ttok, scheme, batch_size=args.batch_size, top_k=args.top_k,
                    logits_hook=hook)
    base_reader = Reader(ref_model, tok, ttok, scheme, batch_size=args.batch_size,
                         top_k=args.top_k)
    parts, read_base = [], ref_parts is None
    ref_parts = [] if read_base else ref_parts
    t0 = time.perf_counter()
    for lo in range(0, len(rows), 32):
        parts.append(reader.candidates(rows[lo: lo + 32]))
        if read_base:
            with ref_off():
                ref_parts.append(base_reader.candidates(rows[lo: lo + 32]))
        log.info("%s: %d / %d texts read", student, lo + 32, len(rows))
    read_s = time.perf_counter() - t0
    tokens = (1 + read_base) * sum(p.n_tokens for p in parts)
    res = []
    for budget in sorted({*(b for b in args.budgets if b < len(rows)), len(rows)}):
        k = -(-budget // 32)
        read = (Candidates.concat(parts[:k], scheme.window),
                Candidates.concat(ref_parts[:k], scheme.window))
        variants = [(s, s, read) for s in STATISTICS if scheme.name == "kgw" or s not in KGW_ONLY]
        if args.keep_text_tuples and not args.stored:  # the fresh texts' own tuples scored too
            whole = tuple(with_text_tuples(x) for x in read)
            variants += [(f"{s}/all", s, whole) for s in ("argmax", "disagree")]
        for label, statistic, (c, rc) in variants:
            kw = ({"candidates": PAIRED[statistic](c, rc)} if statistic in PAIRED else
                  {"candidates": c, "reference_candidates": rc})
            v = verdict_for(kw.pop("candidates"), scheme, accounts, mode="open",
                            suspect=student, clusters=clusters, n_controls=100,
                            reference=f"{base} (untouched base)", statistic=statistic, **kw)
            a, g = v.suspect_analysis, v.suspect_analysis.global_result
            r = {"student": student, "statistic": label, "texts": c.n_rows,
                 "scored": g.n_scored, "z": g.z, "p": g.p_value, "p_lower": g.p_lower,
                 "rate": g.rate, "verdict": v.verdict, "named": a.named,
                 **attribution_summary(a, campaign),
                 "reference_p": (v.reference_analysis.global_result.p_value
                                 if v.reference_analysis else None),
                 "controls_ks": [s.ks_p for s in a.controls],
                 "controls_min_p": [s.min_p for s in a.controls],
                 "plan_needed": v.plan.tokens_needed,
                 "plan_shift_ci": v.plan.shift_ci}
            log.info("%s %-12s texts %4d scored %6d z %6.2f p %.2g cluster z %s verdict %s",
                     student, label, c.n_rows, g.n_scored, g.z, g.p_value,
                     "-" if r["campaign_cluster"] is None else f"{r['campaign_cluster']['z']:.2f}",
                     v.verdict)
            res.append(r)
    return res, {"read_s": read_s, "tokens_read": tokens, "tokens_per_s": tokens / read_s,
                 "base_read": read_base}, ref_parts


def with_text_tuples(c):
    """The candidates with no tuple of the text read excluded."""
    return dataclasses.replace(c, text_tuples=c.text_tuples[:0])


def key_family(run: Path, context_width: int | None, n_keys: int,
               campaign: list[str] | None = None, scheme_name: str = "kgw"):
    """A run's usage store and watermark scheme, and the attribution family: the store's accounts
    plus decoy keys that never served anyone, to n_keys in all; the campaign (given, else the
    accounts the audit blocked, else every stored one) pooled as a cluster ->
    (db, scheme, scheme params, campaign, accounts {name: key}, clusters)."""
    from distillery.forensics.run import LAYER_PROBE
    from distillery.forensics.sources import account_names
    from distillery.watermark import KeyRing, make_scheme

    db = f"sqlite:///{run / 'gateway.db'}"
    ring = KeyRing.load(run / "watermark.key")
    params = {} if context_width is None else {"context_width": context_width}
    scheme = make_scheme(scheme_name, ring, account=LAYER_PROBE, **params)
    stored = account_names(db)
    campaign = campaign if campaign is not None else (blocked_accounts(db) or stored)
    names = stored + [f"decoy-{i:04d}" for i in range(max(n_keys - len(stored), 0))]
    accounts = {n: ring.account_key(n) for n in names}
    clusters = {"campaign": tuple(campaign)} if campaign else {}
    return db, scheme, params, campaign, accounts, clusters


def blocked_accounts(db: str) -> list[str]:
    """Accounts the audit policy blocked (the store's audit decisions), sorted."""
    from sqlalchemy import select

    from distillery.store import make_engine
    from distillery.store.models import Account

    engine = make_engine(db)
    with engine.connect() as c:
        names = sorted(c.execute(select(Account.name).where(Account.status == "blocked"))
                       .scalars())
    engine.dispose()
    return names


if __name__ == "__main__":
    main()
