import numpy as np
import torch
from scipy import stats as sps

from distillery.watermark import prf


def test_numpy_and_torch_twins_agree_bit_for_bit():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64, endpoint=True)
    as_t = torch.from_numpy(x.view(np.int64))
    assert np.array_equal(prf.mix64(x), prf.mix64_t(as_t).numpy().view(np.uint64))
    toks = rng.integers(0, 300_000, (400, 3))
    wh = prf.window_hash(toks)
    assert np.array_equal(wh, prf.window_hash_t(torch.from_numpy(toks)).numpy().view(np.uint64))
    seed = int(x[0])
    k = prf.keyed(wh, seed)
    k_t = prf.keyed_t(torch.from_numpy(wh.view(np.int64)), seed)
    assert np.array_equal(k, k_t.numpy().view(np.uint64))
    t = prf.token_hash(toks[:, 0])
    c, c_t = prf.combine(k, t), prf.combine_t(k_t, torch.from_numpy(t.view(np.int64)))
    assert np.array_equal(c, c_t.numpy().view(np.uint64))
    assert np.array_equal(prf.below(c, 0.3), prf.below_t(c_t, 0.3).numpy())
    assert np.array_equal(prf.unit(c), prf.unit_t(c_t).numpy())


def test_unit_is_uniform_and_open():
    u = prf.unit(prf.mix64(np.arange(200_000, dtype=np.uint64)))
    assert u.min() > 0 and u.max() < 1
    assert sps.kstest(u, "uniform").pvalue > 1e-3


def test_combined_values_are_bernoulli_and_pairwise_independent():
    """Over keyed contexts, below(combine(c, t), gamma) is Bernoulli(gamma) for each token and
    independent between tokens: the multiply-shift read of high bits."""
    rng = np.random.default_rng(1)
    c = prf.keyed(prf.window_hash(rng.integers(0, 50000, (40000, 2))), 12345)[:, None]
    t = prf.token_hash(np.array([3, 4, 1000, 49151]))[None, :]
    green = prf.below(prf.combine(c, t), 0.25)  # (40000, 4)
    assert np.all(np.abs(green.mean(axis=0) - 0.25) < 0.01)
    both = (green[:, 0] & green[:, 1]).mean()
    assert abs(both - 0.0625) < 0.006


def test_window_order_matters():
    assert prf.window_hash(np.array([[1, 2]]))[0] != prf.window_hash(np.array([[2, 1]]))[0]
