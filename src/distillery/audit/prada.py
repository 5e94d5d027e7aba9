"""PRADA (Juuti et al. 2019, "PRADA: Protecting against DNN Model Stealing Attacks", sec. 4):
for each query of a client, its minimum distance to the client's earlier queries; benign
clients give distances that look normally distributed, extraction sweeps do not.

H0: the window's minimum distances are a normal sample; Shapiro-Wilk's W (scipy.stats.shapiro)
tests it. The score is 1 - W (larger: less normal, more suspicious); its alarm threshold comes
from benign windows (calibrate.py), as PRADA sets delta on benign clients. Deviations from the
paper: one distance set (a prompt has no predicted class to split by), and the earlier queries
within the scored window of W rows rather than the client's whole growing history, so PRADA
shares the other scorers' windows, calibration and policy (BENCHMARKS.md, Audit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class PradaResult:
    n_scored: int  # distances tested (window size - 1)
    w: float  # Shapiro-Wilk statistic
    score: float  # 1 - W
    p_value: float  # Shapiro-Wilk's p-value under normality (reported, not used to decide)


def min_distances(emb: np.ndarray) -> np.ndarray:
    """For each row i >= 1 of emb (W, d), in time order: min_j<i ||e_i - e_j||."""
    d2 = (emb * emb).sum(1)[:, None] + (emb * emb).sum(1)[None, :] - 2 * emb @ emb.T
    d = np.sqrt(np.maximum(d2, 0.0))
    d[np.triu_indices(len(emb))] = np.inf  # only earlier queries count
    return d[1:].min(axis=1)


def prada(emb: np.ndarray) -> PradaResult:
    d = min_distances(emb)
    if len(d) < 3 or np.ptp(d) == 0:  # Shapiro-Wilk needs 3 distinct-enough values
        return PradaResult(len(d), 1.0, 0.0, 1.0)
    w, p = stats.shapiro(d)
    return PradaResult(len(d), float(w), float(1 - w), float(p))
