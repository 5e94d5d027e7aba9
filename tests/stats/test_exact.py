import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from distillery.stats import P_FLOOR, binomial_tail, binomial_test, gamma_tail, gamma_test


@given(n=st.integers(1, 2000), frac=st.floats(0, 1), p=st.floats(0.01, 0.99))
def test_binomial_tail_matches_the_survival_function(n, frac, p):
    k = int(frac * n)
    expected = max(sps.binom.sf(k - 1, n, p), P_FLOOR)
    assert binomial_tail(k, n, p) == pytest.approx(expected, rel=1e-7, abs=1e-300)


@given(n=st.integers(1, 2000), s=st.floats(0, 5000))
def test_gamma_tail_matches_the_survival_function(n, s):
    expected = max(sps.gamma.sf(s, n), P_FLOOR)
    assert gamma_tail(s, n) == pytest.approx(expected, rel=1e-7, abs=1e-300)


def test_edges_and_floor():
    assert binomial_tail(0, 10, 0.25) == 1.0
    assert binomial_tail(11, 10, 0.25) == P_FLOOR  # impossible count: floored, never 0
    assert binomial_test(5000, 5000, 0.25).p_value == P_FLOOR
    assert gamma_test(1e6, 100).p_value == P_FLOOR
    assert gamma_tail(0.0, 10) == 1.0
    empty = binomial_test(0, 0, 0.25)
    assert empty.p_value == 1.0 and empty.n_scored == 0 and math.isnan(empty.z)


def test_z_beside_p():
    r = binomial_test(40, 100, 0.25)
    assert r.z == pytest.approx((40 - 25) / math.sqrt(100 * 0.25 * 0.75))
    g = gamma_test(130.0, 100)
    assert g.z == pytest.approx(3.0) and g.score == 130.0


def test_exact_beats_normal_tail_where_z_fails():
    """At T = 25 the z-test's normal tail overstates significance (Three Bricks, Fig. 2)."""
    r = binomial_test(15, 25, 0.25)
    normal = sps.norm.sf(r.z)
    assert r.p_value > 3 * normal


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5])
def test_binomial_pvalues_are_valid_under_the_null(p):
    """P(p-value <= alpha) <= alpha: simulated green counts under H0 (discrete: conservative)."""
    rng = np.random.default_rng(0)
    n = rng.integers(5, 300, 20000)
    k = rng.binomial(n, p)
    pv = binomial_tail(k, n, p)
    for alpha in (0.01, 0.05, 0.2):
        assert (pv <= alpha).mean() <= alpha + 3 * math.sqrt(alpha / 20000)


def test_gamma_pvalues_are_uniform_under_the_null():
    rng = np.random.default_rng(1)
    n = rng.integers(1, 300, 20000)
    s = np.array([rng.exponential(size=m).sum() for m in n])
    pv = gamma_tail(s, n)
    assert sps.kstest(pv, "uniform").pvalue > 1e-3
