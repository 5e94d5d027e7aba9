"""False-positive rate of the disagree statistic on a real student, on keys the calibration
never saw: the run's student and its base read the first N fresh unmarked texts (read whole,
as `forensics check --fresh` does), and 996 decoy account keys that never served anyone are
each tested on the account layer; the share rejected at 0.05 / 0.01 / 0.001, with exact CIs.
(The verdict's own 100 control keys are another, fixed family: check.control_keys.)

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/forensics_decoy_fpr.py runs/self-1600 160

API mode (a third argument: a file of the suspect's answers, as forensics_api_power.py keeps
them): the first N answers, disagree as `forensics check --mode api` scores it (the generated
tokens where the teacher's own top-1 differs), the same 996 decoys.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/forensics_decoy_fpr.py runs/self-1600 250 \
        runs/self-1600/api-answers-student-run_student.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest


def main() -> None:
    from distillery.forensics.api import answer_candidates, disagreeing
    from distillery.forensics.evidence import disagreement_candidates, key_results
    from distillery.forensics.reading import Reader, TextRow
    from distillery.forensics.run import LAYER_PROBE, load_suspect
    from distillery.models import load, load_tokenizer
    from distillery.watermark import KeyRing, make_scheme

    run, n_texts = Path(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(2)
    ring = KeyRing.load(run / "watermark.key")
    scheme = make_scheme("kgw", ring, account=LAYER_PROBE, context_width=1)
    api = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    lines = (api or run / "fresh-power.jsonl").read_text().splitlines()[:n_texts]
    rows = [TextRow(tuple(r["messages"]), r["response"]) for r in map(json.loads, lines)]
    ttok = load_tokenizer("smollm2-135m-instruct")
    if api is not None:  # the teacher's own weights judge the answers
        teacher = load("smollm2-135m-instruct")
        judge = Reader(teacher.model, ttok, ttok, scheme, exclude_text=False)
        cand = disagreeing(answer_candidates(rows, ttok, scheme), judge.top1(rows))
    else:
        model, tok, base, _ = load_suspect(str(run / "student-run" / "student"))
        ref = load(base)
        c = Reader(model, tok, ttok, scheme, exclude_text=False).candidates(rows)
        rc = Reader(ref.model, ref.tokenizer, ttok, scheme, exclude_text=False).candidates(rows)
        cand = disagreement_candidates(c, rc)
    decoys = [ring.account_key(f"decoy-{i:04d}") for i in range(996)]
    res = key_results(cand, scheme, "account", decoys)
    p = np.array([r.p_value for r in res])
    out = {"mode": "api" if api else "open", "texts": len(rows), "n_decoys": len(p),
           "scored": res[0].n_scored}
    for a in (0.05, 0.01, 0.001):
        k = int((p <= a).sum())
        ci = binomtest(k, len(p), a).proportion_ci()
        out[str(a)] = {"rejected": k, "rate": k / len(p), "ci95": [ci.low, ci.high],
                       "p_excess": binomtest(k, len(p), a, alternative="greater").pvalue}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
