import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from distillery.stats import holm_bonferroni


def test_holm_known_values():
    # Holm (1979) by hand: sorted 0.01, 0.02, 0.03, 0.5 -> 0.04, 0.06, 0.06, 0.5
    adj = holm_bonferroni([0.03, 0.01, 0.5, 0.02])
    assert adj == pytest.approx([0.06, 0.04, 0.5, 0.06])


def test_holm_caps_at_one_and_handles_empty():
    assert holm_bonferroni([0.9, 0.8]).max() == 1.0
    assert holm_bonferroni([]).size == 0


@given(st.lists(st.floats(0, 1), min_size=1, max_size=50))
def test_holm_between_raw_and_bonferroni(ps):
    ps = np.array(ps)
    adj = holm_bonferroni(ps)
    assert np.all(adj >= ps - 1e-15)
    assert np.all(adj <= np.minimum(1, len(ps) * ps) + 1e-15)
    order = np.argsort(ps, kind="stable")
    assert np.all(np.diff(adj[order]) >= -1e-15)  # monotone in the raw p


def test_holm_controls_familywise_error():
    rng = np.random.default_rng(0)
    hits = sum(holm_bonferroni(rng.uniform(size=100)).min() <= 0.05 for _ in range(4000))
    assert hits / 4000 <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 4000)
