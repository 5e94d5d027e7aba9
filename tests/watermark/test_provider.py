"""The default zero-bit test (provider key, layout unknown): power on both layouts, a
calibrated null after the multiplicity correction, and scan's provider test."""

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats as sps

from distillery.engine import GenerationRequest, SamplingParams
from distillery.watermark import (
    KeyRing,
    detect_ids,
    detect_provider_ids,
    make_scheme,
    make_schemes,
    scan_ids,
)

V = 49152
LOG2 = math.log10(2)


def _generate(engine, scheme, n=4, tokens=120) -> list[list[int]]:
    reqs = [GenerationRequest([1, 500 + i, 900 + i, 31], scheme.apply(
        SamplingParams(max_tokens=tokens, seed=i, top_p=0.95))) for i in range(n)]
    return [r.choices[0].token_ids for r in engine.generate(reqs)]


@pytest.fixture(scope="module", params=["kgw", "gumbel"])
def marked(request, tiny_engine, ring):
    """Gateway text (two layers, account alice) and one-layer text (no account key)."""
    name = request.param
    two, one = make_scheme(name, ring, account="alice"), make_scheme(name, ring)
    return name, two, one, _generate(tiny_engine, two), _generate(tiny_engine, one)


def test_default_call_reaches_the_best_oracle_on_both_layouts(marked, ring):
    """The default (provider key, no account) is within log10(2) of the test that knows the
    layout, on gateway text and on one-layer text; scoring every position (the old default)
    loses a large share of log10 p on gateway text."""
    name, two, one, two_layer, one_layer = marked
    default = make_scheme(name, ring)  # what `detect` builds without --account
    for ids in two_layer:
        oracle = detect_ids(ids, two, "global")
        d = detect_provider_ids(ids, default)
        assert oracle.p_value < 1e-6
        assert math.log10(d.p_value) <= math.log10(oracle.p_value) + LOG2 + 1e-9
        assert d.global_layer.p_value == oracle.p_value  # the same test, found without alice
        old = detect_ids(ids, default).p_value  # every position only: the old default
        assert d.p_value < old / 10
    for ids in one_layer:
        oracle = detect_ids(ids, one)
        d = detect_provider_ids(ids, default)
        assert d.hypothesis == "every position"
        assert replace(d.every_position, layer="global") == oracle  # the same test
        assert math.log10(d.p_value) <= math.log10(oracle.p_value) + LOG2 + 1e-9
        assert d.p_value == min(1.0, 2 * min(d.global_layer.p_value, oracle.p_value))


def test_scan_tests_a_one_layer_text_in_full(marked, ring):
    name, _, one, _, one_layer = marked
    schemes = make_schemes(name, ring, ["alice", "bob", "carol"])
    for ids in one_layer:
        res = scan_ids(ids, schemes)
        assert res.provider.hypothesis == "every position"
        assert res.provider.p_value <= 2 * detect_ids(ids, one).p_value
        assert res.provider.p_value < res.global_result.p_value  # half the text: weaker


def _repetitive(rng) -> np.ndarray:
    loop = rng.integers(0, V, rng.integers(1, 9))
    ids = np.resize(loop, rng.integers(30, 301))
    noise = rng.random(len(ids)) < 0.05
    ids[noise] = rng.integers(0, V, noise.sum())
    return ids


@pytest.mark.parametrize("name", ["kgw", "gumbel"])
def test_the_corrected_provider_p_is_calibrated(name):
    """3,000 null texts (random and repetitive), a fresh key each: P(p <= alpha) <= alpha for
    the Bonferroni-corrected p, each rate an exact one-sided binomial test (H0: rate <= alpha)."""
    rng = np.random.default_rng(11)
    p = []
    for i in range(3000):
        ids = rng.integers(0, V, rng.integers(20, 301)) if i % 2 else _repetitive(rng)
        scheme = make_scheme(name, KeyRing({1: rng.bytes(32)}))
        p.append(detect_provider_ids(ids, scheme).p_value)
    p = np.array(p)
    for alpha in (0.1, 1e-2, 1e-3):
        hits = int((p <= alpha).sum())
        assert sps.binomtest(hits, len(p), alpha, alternative="greater").pvalue > 1e-4, alpha
    assert (p <= 0.1).mean() > 0.03  # not vacuous: it does reject at a loose level
