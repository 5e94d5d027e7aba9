"""Maximum mean discrepancy of a window of prompt embeddings against benign traffic.

The MMD detector (arXiv 2606.05725; REFERENCES, "Detecting extraction in usage logs"):
prompts embedded and L2-normalised; kernel = mean of RBF kernels at bandwidths
{0.5, 1, 2, 4} x the median pairwise distance of benign points; unbiased MMD^2 (Gretton et
al. 2012, eq. 3). H0: the window's prompts and the benign reference come from one distribution.
A window's statistic is the mean of MMD^2 over R fixed reference draws of the window's size;
its null distribution is the same statistic (same size, same R draws, same averaging) over
benign windows disjoint from the reference (calibrate.py), so the test's level is what that
null says, not the conservative single-draw null of the paper.
"""

from __future__ import annotations

import numpy as np

BANDWIDTH_FACTORS = (0.5, 1.0, 2.0, 4.0)


def median_distance(x: np.ndarray, max_points: int = 2000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance of (a sample of) the benign points x (N, d)."""
    rng = np.random.default_rng(seed)
    if len(x) > max_points:
        x = x[rng.choice(len(x), max_points, replace=False)]
    d2 = _sq_dists(x, x)
    iu = np.triu_indices(len(x), 1)
    return float(np.sqrt(np.median(d2[iu])))


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Na, Nb) squared distances."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


def kernel(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    """Mean of RBF kernels exp(-d^2 / (2 (f sigma)^2)) over f in BANDWIDTH_FACTORS; (Na, Nb)."""
    d2 = _sq_dists(a, b)
    return sum(np.exp(-d2 / (2 * (f * sigma) ** 2)) for f in BANDWIDTH_FACTORS) / len(
        BANDWIDTH_FACTORS)


def _within(k: np.ndarray) -> float:
    """Mean of the off-diagonal entries (the unbiased within-sample term)."""
    m = len(k)
    return float((k.sum() - np.trace(k)) / (m * (m - 1)))


class MMDReference:
    """R fixed draws of a benign reference pool at one window size, their within-terms cached."""

    def __init__(self, pool: np.ndarray, size: int, draws: int, sigma: float, seed: int = 0):
        if len(pool) < size:
            raise ValueError(f"the benign reference has {len(pool)} prompts; a window of {size} "
                             "needs at least as many: calibrate on more benign traffic")
        rng = np.random.default_rng(seed)
        self.sigma = sigma
        self.draws = [pool[rng.choice(len(pool), size, replace=False)] for _ in range(draws)]
        self.kyy = [_within(kernel(y, y, sigma)) for y in self.draws]

    def statistic(self, x: np.ndarray) -> float:
        """Mean over the draws of the unbiased MMD^2 between x (B, d) and each draw."""
        kxx = _within(kernel(x, x, self.sigma))
        y_all = np.concatenate(self.draws)  # (R*B, d): one kernel call for all draws
        kxy = kernel(x, y_all, self.sigma).reshape(len(x), len(self.draws), -1).mean(axis=(0, 2))
        return float(np.mean([kxx + kyy - 2 * c for kyy, c in zip(self.kyy, kxy, strict=True)]))


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Unbiased MMD^2 of two samples (Gretton et al. 2012, eq. 3) with the averaged RBF kernel."""
    return _within(kernel(x, x, sigma)) + _within(kernel(y, y, sigma)) - 2 * float(
        kernel(x, y, sigma).mean())
