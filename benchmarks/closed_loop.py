"""The closed loop's headline per attack persona (BENCHMARKS.md, Closed loop).

For each persona: `distillery experiment` with that extraction (the benign traffic, the
teacher, the student and the audit as in the configuration given), then one table row:
queries asked and served before the block, accounts blocked, gap closed before the block and
for the counterfactual, the forensic verdicts, benign accounts blocked. Each persona's run
directory is kept (a rerun resumes).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/closed_loop.py \
        --personas campaign taxonomy cot mixed slow_low --out runs/closed-loop
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# accounts x requests of each extraction persona (a campaign spreads over accounts)
ATTACKS = {"campaign": (8, 30), "taxonomy": (1, 240), "cot": (1, 240), "self_instruct": (1, 240),
           "logprobs": (1, 240), "mixed": (1, 240), "slow_low": (1, 120),
           "careful": (1, 240), "careful_mixed": (1, 240), "careful_campaign": (8, 30)}


def row(persona: str, s: dict) -> dict:
    c, lb, lc = s["campaign"], s["leak"]["before_block"], s["leak"]["counterfactual"]
    f = {w: x and {k: x[k] for k in ("verdict", "global_p", "scored_tokens", "named",
                                     "campaign_accounts_named")}
         for w, x in s["forensics"].items()}
    return {"persona": persona, "asked": c["asked"], "served": c["served"],
            "blocked": f"{c['accounts_blocked']}/{c['accounts']}",
            "gap_before_block": lb.get("gap_closed"), "gap_ci": lb.get("gap_closed_ci"),
            "gap_counterfactual": lc.get("gap_closed"), "gap_cf_ci": lc.get("gap_closed_ci"),
            "forensics": f, "benign_blocked": len(s["benign"]["blocked"]),
            "benign_flagged": len(s["benign"]["flagged"]), "timings_s": s["timings_s"]}


def main() -> None:
    from distillery.experiment import ExperimentConfig, run_experiment

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="an experiment TOML (default: the demo's)")
    ap.add_argument("--personas", nargs="+", default=["campaign"])
    ap.add_argument("--out", default="runs/closed-loop")
    args = ap.parse_args()
    rows = []
    for persona in args.personas:
        if persona not in ATTACKS:
            raise SystemExit(f"unknown persona {persona!r}; known: {', '.join(ATTACKS)}")
        cfg = ExperimentConfig.from_toml(args.config, run_dir=str(Path(args.out) / persona),
                                         attack={persona: ATTACKS[persona]})
        rows.append(row(persona, run_experiment(cfg, say=print)))
        print(json.dumps(rows[-1], indent=1, default=str))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "headline.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
