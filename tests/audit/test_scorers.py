"""The statistics: MMD, PRADA, Brown's combination, and the calibration's realised FPR."""

from __future__ import annotations

import numpy as np
import pytest

from distillery.audit.calibrate import brown_p, size_for, sliding
from distillery.audit.mmd import NearestReference, median_distance, mmd2_unbiased
from distillery.audit.prada import min_distances, prada


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_unbiased_mmd_is_centred_under_the_null_and_positive_under_a_shift():
    rng = np.random.default_rng(0)
    same = [mmd2_unbiased(_unit(rng.normal(size=(40, 16))), _unit(rng.normal(size=(40, 16))), 1.0)
            for _ in range(200)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))
    shift = np.zeros(16)
    shift[0] = 2.0
    diff = mmd2_unbiased(_unit(rng.normal(size=(40, 16)) + shift),
                         _unit(rng.normal(size=(40, 16))), 1.0)
    assert diff > np.quantile(same, 0.999)


def test_nearest_reference_takes_the_closest_sample():
    rng = np.random.default_rng(1)
    a = _unit(rng.normal(size=(50, 8)) + np.eye(8)[0] * 3)
    b = _unit(rng.normal(size=(50, 8)) + np.eye(8)[1] * 3)
    sigma = median_distance(np.concatenate([a, b]))
    ref = NearestReference([a[:25], b[:25]], sigma)
    stats = ref.statistics(b[25:])
    assert stats.argmin() == 1
    assert ref.statistic(b[25:]) == pytest.approx(mmd2_unbiased(b[25:], b[:25], sigma), abs=1e-5)


def test_prada_min_distances_and_sweep_departs_from_normal():
    e = _unit(np.eye(4)[[0, 1, 0, 2]].astype(float) + 1e-9)
    d = min_distances(e)
    assert d[1] == pytest.approx(0.0, abs=1e-4)  # the third query repeats the first
    rng = np.random.default_rng(2)
    normal_like = prada(_unit(rng.normal(size=(60, 32))))
    grid = np.repeat(_unit(rng.normal(size=(6, 32))), 10, axis=0)  # a sweep of repeats
    assert prada(grid).score > normal_like.score


def test_brown_matches_fisher_for_independent_p_values():
    """k independent uniform p-values: Fisher's sum is chi^2_2k, so Brown's fit gives back
    (nearly) Fisher's own p-value."""
    from scipy.stats import chi2

    rng = np.random.default_rng(3)
    null = -2 * np.log(rng.uniform(size=(20_000, 5))).sum(1)
    for x in (10.0, 20.0, 30.0):
        assert brown_p(null, x) == pytest.approx(chi2.sf(x, 10), rel=0.1)


def test_window_sizes_and_sliding():
    assert size_for(19) is None and size_for(20) == 20 and size_for(199) == 100
    w = sliding(100, 50, 20, cap=10)
    assert w[0] == (0, 50) and w[-1] == (50, 100) and all(j - i == 50 for i, j in w)


def test_realised_fpr_on_held_out_benign_traffic(calibration):
    """Benign traffic of seeds the calibration never saw: the combined p-value's realised
    false-positive rate stays near its nominal level (it would not if the null were built
    with other window sizes or reductions than the scored statistic)."""
    from distillery.audit.evaluate import window_pvalues
    from distillery.audit.offline import histories
    from distillery.audit.simulate import BENIGN, DEFAULT_MIX, SimConfig, simulate

    cal, _ = calibration
    mix = {k: v for k, v in DEFAULT_MIX.items() if k in BENIGN}
    reqs, _ = simulate(SimConfig(seed=7, mix=mix, scale=0.6))
    pv = window_pvalues(cal, histories(reqs, "hashing"), size=50)
    p = np.array([w["combined"] for ws in pv.values() for w in ws])
    assert len(p) >= 50
    assert (p <= 0.05).mean() <= 0.10
    assert (p <= 0.01).mean() <= 0.04
