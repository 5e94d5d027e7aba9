"""False-positive rates of the transformers-compatible KGW construction on 10,000 null texts
per configuration (seedings lefthash/selfhash, context widths 1-4), with the null families of
tests/watermark/test_transformers_null.py (standard-library code and docstrings, templated
text, a repeated-bigram family, random tokens; fresh hashing keys).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/watermark_null_calibration.py

KS is on the randomized p-value P(S > s) + U P(S = s), exactly uniform under H0.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "watermark"))
import test_transformers_null as t  # noqa: E402

from distillery.models import load_tokenizer  # noqa: E402

torch.set_num_threads(1)
texts = t.null_texts.__wrapped__(load_tokenizer("tiny-random"))
every, bigram = t._families(texts, 1)
for (seeding, width), (n, s, p) in t._null_scores(every).items():
    u = np.random.default_rng(width).random(len(p))
    rp = stats.binom.sf(s, n, 0.25) + u * stats.binom.pmf(s, n, 0.25)
    print(f"{seeding} width {width}: N={len(p)}  p<=1e-2 {(p <= 1e-2).mean():.4f}  "
          f"p<=1e-3 {(p <= 1e-3).mean():.4f}  bigram family p<=1e-2 "
          f"{(p[bigram] <= 1e-2).mean():.4f}  KS p={stats.kstest(rp, 'uniform').pvalue:.3f}",
          flush=True)
