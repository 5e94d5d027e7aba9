"""Corpus mode: a family of near-identical documents under one fixed key.

A per-text p-value is valid over the key's randomness, one text at a time. Under one deployed
key, 300 near-identical documents share almost all their tuples, so they are flagged together
or not at all. Tested as one collection (tuples de-duplicated across documents) the family is
one sample, flagged at the nominal rate over keys.
"""

import numpy as np
import pytest
from scipy import stats as sps

from distillery.watermark import (
    KeyRing,
    detect_corpus_ids,
    detect_ids,
    detect_provider_corpus,
    make_scheme,
    score_each,
)

V = 49152
N_KEYS = 250


def _templated(rng, n_docs=300, length=120, edits=3) -> list[np.ndarray]:
    """One generated page, n_docs copies with `edits` slots filled differently (a name, a
    number): a man-page or invoice generator's family."""
    base = rng.integers(0, V, length)
    docs = []
    for _ in range(n_docs):
        d = base.copy()
        d[rng.choice(length, edits, replace=False)] = rng.integers(0, V, edits)
        docs.append(d)
    return docs


@pytest.mark.parametrize("name", ["kgw", "gumbel"])
def test_templated_corpus_is_flagged_at_the_nominal_rate_as_one_test(name):
    rng = np.random.default_rng(5)
    docs = _templated(rng)
    corpus_p, flagged_together = [], []
    for _ in range(N_KEYS):
        scheme = make_scheme(name, KeyRing({1: rng.bytes(32)}))  # one fixed deployed key
        corpus_p.append(detect_corpus_ids(docs, scheme).p_value)
        per_text = np.array([r.p_value for r in score_each(docs, scheme)])
        flagged_together.append((per_text <= 0.05).mean())
    corpus_p, flagged_together = np.array(corpus_p), np.array(flagged_together)
    for alpha in (0.05, 0.01):
        hits = int((corpus_p <= alpha).sum())
        assert sps.binomtest(hits, N_KEYS, alpha, alternative="greater").pvalue > 1e-4, alpha
    # per text, a key that flags one document flags most of the family
    assert flagged_together.max() > 0.5
    assert (flagged_together > 0.5).sum() >= 5


def test_corpus_dedups_across_documents_and_pools_the_signal(ring):
    rng = np.random.default_rng(1)
    docs = _templated(rng, n_docs=50)
    scheme = make_scheme("kgw", ring)
    one = detect_ids(docs[0], scheme)
    corpus = detect_corpus_ids(docs, scheme)
    # the shared tuples count once: 118 of the first page, plus at most 3 x 3 per other page
    assert one.n_scored <= corpus.n_scored <= one.n_scored + 9 * 49
    assert corpus.n_tokens == 50 * 120
    assert detect_corpus_ids([docs[0]], scheme) == one


def test_a_marked_corpus_is_detected_with_its_provider_test(tiny_engine, ring):
    from distillery.engine import GenerationRequest, SamplingParams

    scheme = make_scheme("kgw", ring, account="alice")
    reqs = [GenerationRequest([1, 200 + i, 31], scheme.apply(
        SamplingParams(max_tokens=30, seed=i))) for i in range(4)]
    docs = [r.choices[0].token_ids for r in tiny_engine.generate(reqs)]
    res = detect_provider_corpus(docs, make_scheme("kgw", ring))
    assert res.p_value < 1e-6 and res.hypothesis == "global layer"
    assert res.p_value < min(detect_ids(d, scheme, "global").p_value for d in docs)
