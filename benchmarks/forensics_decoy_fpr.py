"""False-positive rate of the disagree statistic on a real student, on keys the calibration
never saw: the run's student and its base read the first N fresh unmarked texts (read whole,
as `forensics check --fresh` does), and 996 decoy account keys that never served anyone are
each tested on the account layer; the share rejected at 0.05 / 0.01 / 0.001, with exact CIs.
(The verdict's own 100 control keys are another, fixed family: check.control_keys.)

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/forensics_decoy_fpr.py runs/self-1600 160
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest


def main() -> None:
    from distillery.forensics.evidence import disagreement_candidates, key_results
    from distillery.forensics.reading import Reader, TextRow
    from distillery.forensics.run import LAYER_PROBE, load_suspect
    from distillery.models import load, load_tokenizer
    from distillery.watermark import KeyRing, make_scheme

    run, n_texts = Path(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(2)
    ring = KeyRing.load(run / "watermark.key")
    scheme = make_scheme("kgw", ring, account=LAYER_PROBE, context_width=1)
    lines = (run / "fresh-power.jsonl").read_text().splitlines()[:n_texts]
    rows = [TextRow(tuple(r["messages"]), r["response"]) for r in map(json.loads, lines)]
    model, tok, base, _ = load_suspect(str(run / "student-run" / "student"))
    ref = load(base)
    ttok = load_tokenizer("smollm2-135m-instruct")
    c = Reader(model, tok, ttok, scheme, exclude_text=False).candidates(rows)
    rc = Reader(ref.model, ref.tokenizer, ttok, scheme, exclude_text=False).candidates(rows)
    decoys = [ring.account_key(f"decoy-{i:04d}") for i in range(996)]
    res = key_results(disagreement_candidates(c, rc), scheme, "account", decoys)
    p = np.array([r.p_value for r in res])
    out = {"texts": len(rows), "n_decoys": len(p), "scored": res[0].n_scored}
    for a in (0.05, 0.01, 0.001):
        k = int((p <= a).sum())
        ci = binomtest(k, len(p), a).proportion_ci()
        out[str(a)] = {"rejected": k, "rate": k / len(p), "ci95": [ci.low, ci.high],
                       "p_excess": binomtest(k, len(p), a, alternative="greater").pvalue}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
