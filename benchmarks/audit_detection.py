"""Extraction audit: detection per attack persona and scorer, queries until the policy flags /
blocks, and the benign false-positive rate on a large held-out benign set.

    python benchmarks/audit_detection.py --embedder minilm --attack-instances 5 --out det.json

Three simulations, three seeds, so no number is measured on traffic its thresholds saw:
- calibration (--cal-seed): benign only, simulate.CALIBRATION_MIX with its account counts x
  --cal-accounts;
- evaluation (--eval-seed): the default mix, --attack-instances accounts per attack persona
  (campaigns: 50 accounts x 20 requests); windows of the largest size each history fills
  (20/50/100/200) sliding by half a window; AUROC against this seed's benign windows;
- false positives (--fpr-seed): benign only, CALIBRATION_MIX x --fpr-accounts accounts; every
  account cut into non-overlapping windows of each size; the FPR at each nominal level with its
  one-sided 95% Clopper-Pearson upper bound (windows of one account are not independent, so
  the bound is optimistic by the design effect; the account count is printed beside it).
Queries until flagged / blocked: the policy (AuditConfig defaults) replayed on each history, a
pass every 10 queries, reading one scorer's p-value; a campaign's history is its members' rows
pooled in time order (the cluster assumed found; whether it is found is the "(cluster)" row).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from scipy.stats import beta

from distillery.audit import simulate as S
from distillery.audit.calibrate import SCORERS
from distillery.audit.evaluate import evaluate, passes, policy_replay
from distillery.audit.offline import calibrate_traffic, histories

FPRS = (0.003, 0.01)
UNTIL = ("mmd", "prada", "novelty", "combined")
BUDGET = 200  # the goal: flagged within this many queries


def scaled(mix: dict, k: float) -> dict:
    return {p: (max(1, round(a * k)), n) for p, (a, n) in mix.items()}


def held_out_fpr(cal, h) -> dict:
    """{size: {scorer: {fpr: (false alarms, windows, CP upper bound)}}}, non-overlapping windows."""
    out = {}
    for s in cal.sizes:
        ps = [cal.score(rows[i:i + s], emb[i:i + s]).p_values
              for rows, emb in h.values() for i in range(0, len(rows) - s + 1, s)]
        m = len(ps)
        out[s] = {"windows": m, "accounts": sum(len(r) >= s for r, _ in h.values())}
        for k in SCORERS:
            p = np.array([w[k] for w in ps])
            out[s][k] = {f: (int((p <= f).sum()), m,
                             float(beta.ppf(0.95, (p <= f).sum() + 1, m - (p <= f).sum())))
                         for f in FPRS}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="minilm", choices=["minilm", "hashing"])
    ap.add_argument("--cal-seed", type=int, default=1)
    ap.add_argument("--eval-seed", type=int, default=2)
    ap.add_argument("--fpr-seed", type=int, default=3)
    ap.add_argument("--attack-instances", type=int, default=5)
    ap.add_argument("--cal-accounts", type=float, default=1.0)
    ap.add_argument("--fpr-accounts", type=float, default=2.0, help="0: skip")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    t0 = time.time()
    cal_reqs, _ = S.simulate(S.SimConfig(seed=a.cal_seed, mix=scaled(S.CALIBRATION_MIX,
                                                                   a.cal_accounts)))
    cal = calibrate_traffic(cal_reqs, a.embedder)
    t_cal = time.time() - t0
    mix = {k: ((a.attack_instances, v[1]) if k in S.ATTACKS else v)
           for k, v in S.DEFAULT_MIX.items()}
    reqs, labels = S.simulate(S.SimConfig(seed=a.eval_seed, mix=mix))
    labels = {lab.account: lab for lab in labels}
    h = histories(reqs, a.embedder)
    results, fpr = evaluate(cal, h, labels, FPRS)
    until: dict[str, dict[str, list]] = {k: {} for k in UNTIL}
    campaigns: dict[str, list[str]] = {}
    for acc, (rows, emb) in h.items():
        lab = labels[acc]
        if lab.campaign:
            campaigns.setdefault(lab.persona, []).append(acc)
            continue
        scored = passes(cal, rows, emb)
        for k in UNTIL:
            until[k].setdefault(lab.persona if lab.role == "attack" else "benign", []).append(
                policy_replay(scored, scorer=k))
    for persona, members in campaigns.items():
        camp = sorted((r.t, acc, i) for acc in members for i, r in enumerate(h[acc][0]))
        rows = [h[acc][0][i] for _, acc, i in camp]
        emb = np.stack([h[acc][1][i] for _, acc, i in camp])
        scored = passes(cal, rows, emb)
        for k in UNTIL:
            until[k][f"{persona}(pooled)"] = [policy_replay(scored, scorer=k)]
    t_eval = time.time() - t0 - t_cal
    heldout, n_fpr = {}, 0
    if a.fpr_accounts > 0:
        fmix = scaled(S.CALIBRATION_MIX, a.fpr_accounts)
        freqs, _ = S.simulate(S.SimConfig(seed=a.fpr_seed, mix=fmix))
        n_fpr = len(freqs)
        heldout = held_out_fpr(cal, histories(freqs, a.embedder))
    elapsed = time.time() - t0
    print(f"embedder {a.embedder}; calibration {len(cal_reqs)} benign requests ({t_cal:.0f} s), "
          f"null windows per size {cal.n_null}; evaluation {len(reqs)} requests ({t_eval:.0f} s);"
          f" held-out benign {n_fpr} requests; {elapsed:.0f} s; load {os.getloadavg()[0]:.2f}")
    print("\nevaluation seed's benign windows (sliding, the AUROC's negatives):",
          {k: {f: round(v, 4) for f, v in d.items()} for k, d in fpr.items()})
    if heldout:
        print(f"\nheld-out benign FPR (seed {a.fpr_seed}, benign only, non-overlapping windows):"
              "\n\n| size | accounts | windows | scorer | alarms@0.3% (FPR, CP95 upper) | "
              "alarms@1% (FPR, CP95 upper) |\n|---|---|---|---|---|---|")
        for s, d in heldout.items():
            for k in SCORERS:
                cells = [f"{n} ({n / m:.2%}, {ub:.2%})" for n, m, ub in d[k].values()]
                print(f"| {s} | {d['accounts']} | {d['windows']} | {k} | {' | '.join(cells)} |")
    print("\nmmd and prada p-values are empirical, at least 1/(m+1) with m null windows of the "
          f"size ({cal.n_null}); behaviour and combined use Brown's fit.")
    print("\n| persona | scorer | windows | AUROC | TPR@0.3% | TPR@1% |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.persona} | {r.scorer} | {r.windows} | {r.auroc:.3f} | "
              f"{r.tpr[0.003]:.2f} | {r.tpr[0.01]:.2f} |")
    print(f"\n| persona | scorer | accounts | flagged (within {BUDGET}) | median queries to flag"
          " | blocked | median queries to block |\n|---|---|---|---|---|---|---|")
    for p in sorted(until["combined"]):
        for k in UNTIL:
            v = until[k][p]
            f = [x for x, _ in v if x]
            b = [y for _, y in v if y]
            print(f"| {p} | {k} | {len(v)} | {len(f)} ({sum(x <= BUDGET for x in f)}) | "
                  f"{np.median(f) if f else '-'} | {len(b)} | {np.median(b) if b else '-'} |")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"embedder": a.embedder, "fpr": fpr, "heldout": heldout,
                       "scorers": list(SCORERS), "benign": list(S.BENIGN),
                       "results": [r.__dict__ for r in results], "until": until,
                       "seconds": elapsed}, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
