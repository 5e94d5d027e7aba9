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


def test_novelty_moves_with_the_foreign_share_where_mmd_moves_with_its_square():
    """30% foreign prompts in a window: novelty has moved ~0.3 of the way from a clean window
    to a fully foreign one, MMD^2 only ~0.3^2 (mmd.NearestReference.novelty says why it
    matters: extraction mixed into a product's traffic)."""
    rng = np.random.default_rng(4)
    home = _unit(rng.normal(size=(400, 16)) + np.eye(16)[0] * 2)
    away = _unit(rng.normal(size=(100, 16)) + np.eye(16)[1] * 2)
    ref = NearestReference([home[:200]], median_distance(home[:200]))
    clean, foreign = home[200:300], away
    mixed = np.concatenate([home[300:370], away[:30]])

    def moved(f):
        return (f(mixed) - f(clean)) / (f(foreign) - f(clean))

    assert moved(ref.novelty) == pytest.approx(0.3, abs=0.05)
    assert moved(ref.statistic) < 0.15


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
    for k in ("combined", "mmd", "novelty"):
        p = np.array([w[k] for ws in pv.values() for w in ws])
        assert len(p) >= 50
        assert (p <= 0.05).mean() <= 0.10, k
        assert (p <= 0.01).mean() <= 0.04, k


def test_each_null_is_the_scored_statistic_on_benign_windows_of_the_same_size():
    """The null of MMD (and of every scorer) holds exactly what `score` computes (the same
    window size, reference samples and minimum over them) on the windows it was fitted on."""
    from distillery.audit.calibrate import SCORERS, Calibration
    from distillery.audit.offline import histories
    from distillery.audit.simulate import SimConfig, simulate

    reqs, _ = simulate(SimConfig(seed=8, mix={"developer": (6, 120), "student": (6, 60)}))
    h = histories(reqs, "hashing")
    names = sorted(h)
    samples = [h[a][1][:60] for a in names[:4]]
    cal = Calibration("hashing", median_distance(np.concatenate(samples)), samples, sizes=(20,))
    windows = [(rows[i:i + 20], emb[i:i + 20]) for rows, emb in (h[a] for a in names[4:])
               for i in range(0, len(rows) - 19, 10)]
    cal.fit(windows)
    for rows, emb in windows[1::2]:  # part B: the nulls
        st = cal.score(rows, emb).stats
        for k in SCORERS:
            assert np.isclose(cal.nulls[20][k], st[k], rtol=1e-6, atol=1e-9).any(), k
