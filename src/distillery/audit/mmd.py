"""Maximum mean discrepancy of a window of prompt embeddings against benign traffic.

The MMD detector (arXiv 2606.05725; REFERENCES, "Detecting extraction in usage logs"):
prompts embedded and L2-normalised; kernel = mean of RBF kernels at bandwidths
{0.5, 1, 2, 4} x the median pairwise distance of benign points; unbiased MMD^2 (Gretton et
al. 2012, eq. 3). H0: the window's prompts and the benign reference come from one distribution.
A window's statistic is the minimum of MMD^2 over fixed benign reference samples
(NearestReference says why the minimum, not the paper's mean); its null distribution is the
same statistic (same window size, same samples, same reduction) over benign windows, each
compared without its own account's sample (calibrate.py: leave one account out), so the
test's level is what that null says, not the conservative single-draw null of the paper.
Deviations from the paper, side by side: BENCHMARKS.md, Audit.
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


class NearestReference:
    """Benign reference samples (one per benign reference account), within-terms cached.

    statistic(x) = min over samples j of the unbiased MMD^2(x, y_j): the distance of a window
    to the nearest benign behaviour. The paper scores windows of mixed traffic against draws
    of pooled benign traffic and averages over 20 draws; we score one account at a time, and
    one benign account (a translation pipeline, a support bot) is far from pooled benign
    traffic, so the pooled form flags focused benign users as readily as attackers (its AUROC
    on our simulator was near 0.5). The minimum over per-account samples asks instead "does
    this look like any benign user?". Its null is measured the same way (calibrate.py).
    """

    def __init__(self, samples: list[np.ndarray], sigma: float):
        if not samples:
            raise ValueError("no benign reference samples: calibrate on benign traffic")
        self.sigma = sigma
        self.offsets = np.cumsum([0, *(len(y) for y in samples)])
        self.owner = np.repeat(np.arange(len(samples)), np.diff(self.offsets))  # point -> sample
        self.y = np.concatenate(samples).astype(np.float32)  # (sum n_j, d)
        self.kyy = np.array([_within(kernel(y, y, sigma)) for y in samples])

    def statistics(self, x: np.ndarray, exclude: tuple[int, ...] = ()) -> np.ndarray:
        """(J,) unbiased MMD^2 of x (B, d) against each reference sample (+inf for the samples
        in `exclude`: a calibration window's own account, see calibrate.calibrate)."""
        kxx = _within(kernel(x, x, self.sigma))
        kxy = kernel(x, self.y, self.sigma).mean(0)  # (sum n_j,): one kernel call for all
        means = np.add.reduceat(kxy, self.offsets[:-1]) / np.diff(self.offsets)
        out = kxx + self.kyy - 2 * means
        out[list(exclude)] = np.inf
        return out

    def statistic(self, x: np.ndarray, exclude: tuple[int, ...] = ()) -> float:
        return float(self.statistics(x, exclude).min())

    def novelty(self, x: np.ndarray, exclude: tuple[int, ...] = ()) -> float:
        """Mean over the window's prompts of the distance to the nearest benign reference
        prompt (any sample): a k-nearest-neighbour novelty score, k = 1.

        Why beside MMD: a window where a share s of the prompts come from elsewhere moves the
        population MMD^2 by ~s^2 (times the discrepancy), this mean by ~s. Extraction mixed
        into a real product's traffic (30% of its rows) is where MMD^2 loses its power."""
        d2 = _sq_dists(x.astype(np.float32), self.y)
        if exclude:
            d2[:, np.isin(self.owner, exclude)] = np.inf
        return float(np.sqrt(d2.min(1)).mean())


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Unbiased MMD^2 of two samples (Gretton et al. 2012, eq. 3) with the averaged RBF kernel."""
    return _within(kernel(x, x, sigma)) + _within(kernel(y, y, sigma)) - 2 * float(
        kernel(x, y, sigma).mean())
