import dataclasses
import json

import numpy as np
import pytest

from distillery.engine import GenerationRequest, SamplingParams
from distillery.stats import P_FLOOR
from distillery.watermark import (
    detect,
    detect_corpus_ids,
    detect_ids,
    detect_provider_ids,
    make_scheme,
    make_schemes,
    scan,
    scan_ids,
    score_each,
)
from distillery.watermark.detect import scored_tokens


def _marked(engine, scheme, n=2, tokens=120):
    reqs = [GenerationRequest([1, 300 + i, 700 + i], scheme.apply(
        SamplingParams(max_tokens=tokens, seed=i))) for i in range(n)]
    return [r.choices[0] for r in engine.generate(reqs)]


def test_short_and_empty_texts_score_nothing(ring):
    scheme = make_scheme("kgw", ring, account="a")
    for ids in ([], [5], [5, 6]):
        r = detect_ids(ids, scheme)
        assert r.n_scored == 0 and r.p_value == 1.0 and r.n_tokens == len(ids)


def test_tuples_of_the_prompt_are_not_scored(ring):
    scheme = make_scheme("kgw", ring)
    ids = np.random.default_rng(0).integers(0, 49152, 200)
    full = detect_ids(ids, scheme)
    assert detect_ids(ids, scheme, prompt_ids=ids).n_scored == 0  # a pure copy
    half = detect_ids(ids, scheme, prompt_ids=ids[:100])
    assert half.n_scored == full.n_scored - 98  # 100 prompt tokens hold 98 full tuples


def test_detect_text_with_marks(tiny_engine, tokenizer, ring):
    scheme = make_scheme("kgw", ring, account="alice")
    choice = _marked(tiny_engine, scheme, n=1)[0]
    r = detect(choice.text, tokenizer, scheme, layer="global", marks=True)
    assert r.p_value < 1e-6 and r.key_id == ring.global_key().key_id
    assert len(r.marks) == r.n_tokens
    assert sum(m.scored for m in r.marks) == r.n_scored
    assert sum(m.score for m in r.marks if m.scored) == r.score
    assert {m.layer for m in r.marks[scheme.start:]} == {"global", "account"}


def test_results_serialise_to_json_with_plain_types(ring):
    """--json writes dataclasses.asdict: every field must be a plain Python value (a numpy
    int64 would make json.dumps raise) and survive the round trip."""
    ids = np.random.default_rng(2).integers(0, 49152, 300)
    scheme = make_scheme("kgw", ring, account="a")
    r = detect_ids(ids, scheme)
    back = json.loads(json.dumps(dataclasses.asdict(r)))
    assert back == {**dataclasses.asdict(r), "marks": None}
    assert type(back["n_scored"]) is int and type(back["p_value"]) is float
    provider = json.loads(json.dumps(dataclasses.asdict(detect_provider_ids(ids, scheme))))
    assert provider["every_position"]["layer"] == "every"
    assert provider["global_layer"]["n_scored"] + scheme.start < len(ids)
    scanned = json.loads(json.dumps(dataclasses.asdict(scan_ids(ids, [scheme]))))
    assert scanned["per_key"][0]["result"] == back


@pytest.mark.parametrize(("name", "params"), [("kgw", {}), ("kgw", {"seeding": "selfhash",
                         "context_width": 3}), ("gumbel", {"context_width": 1})])
def test_score_each_and_corpus_of_one_equal_detect_ids(ring, name, params):
    rng = np.random.default_rng(4)
    docs = [rng.integers(0, 400, n) for n in (0, 1, 2, 3, 50, 200)] + [np.resize([7, 8], 90)]
    scheme = make_scheme(name, ring, account="a", **params)
    prompt = docs[5][:60]
    for layer in ("global", "account", "every"):
        for dedup in (True, False):
            each = score_each(docs, scheme, layer, prompt, dedup)
            for d, r in zip(docs, each, strict=True):
                one = detect_ids(d, scheme, layer, prompt, dedup)
                # an independent path: scored_tokens walks one text position by position
                positions, scores = scored_tokens(d, scheme, layer, prompt, dedup)
                assert one.n_scored == len(positions)
                assert one.score == pytest.approx(scores.sum(), rel=1e-12)
                for x in (r, detect_corpus_ids([d], scheme, layer, prompt, dedup)):
                    floats = ("score", "z", "p_value")  # Gumbel's float sums: another order
                    assert [getattr(x, f) for f in floats] == pytest.approx(
                        [getattr(one, f) for f in floats], rel=1e-12, nan_ok=True)
                    assert dataclasses.replace(x, score=0, z=0, p_value=0) == (
                        dataclasses.replace(one, score=0, z=0, p_value=0))


def test_detect_defaults_to_the_schemes_own_key(tiny_engine, tokenizer, ring):
    scheme = make_scheme("gumbel", ring, account="carol")
    text = _marked(tiny_engine, scheme, n=1)[0].text
    r = detect(text, tokenizer, scheme)
    assert r.key_id == scheme.key_id == ring.account_key("carol").key_id
    assert r.layer == "account" and r.p_value < 1e-6


def test_scan_names_the_account_and_adjusts(tiny_engine, tokenizer, ring):
    accounts = [f"user{i}" for i in range(50)]
    for name in ("kgw", "gumbel"):
        schemes = make_schemes(name, ring, accounts)
        choice = _marked(tiny_engine, schemes[17], n=1)[0]
        res = scan(choice.text, tokenizer, schemes)
        assert res.best_account == "user17" and res.best_key_id == schemes[17].account_key.key_id
        best = res.per_key[17]
        assert res.adjusted_p == best.adjusted_p <= 50 * best.result.p_value
        assert res.adjusted_p < 1e-6 and res.global_result.p_value < 1e-6
        others = [k.adjusted_p for i, k in enumerate(res.per_key) if i != 17]
        assert min(others) > 1e-3


def test_scan_vectorised_equals_one_by_one(ring):
    ids = np.random.default_rng(3).integers(0, 49152, 300)
    schemes = make_schemes("kgw", ring, ["a", "b", "c"]) + [make_scheme("gumbel", ring, "d")]
    res = scan_ids(ids, schemes)
    for s, k in zip(schemes, res.per_key, strict=True):
        assert k.result == detect_ids(ids, s, "account")


def test_p_is_floored_not_zero(ring):
    scheme = make_scheme("gumbel", ring)
    ids = np.random.default_rng(0).integers(0, 49152, 3000)
    # pretend every token scored the maximum: the tail underflows and must floor
    r = scheme.test(np.array([40.0 * 3000]), 3000)[0]
    assert r.p_value == P_FLOOR > 0
    assert detect_ids(ids, scheme).p_value > 0


def test_selfhash_dedups_on_the_anchor_not_the_window(ring):
    """Hash construction, selfhash: the outcome depends on (min-hash anchor, token) only, so
    windows sharing their minimum token are one outcome and one scored tuple (the transformers
    construction: test_kgw_transformers.py; lefthash and Gumbel hash the whole window)."""
    from distillery.watermark import prf

    scheme = make_scheme("kgw", ring, seeding="selfhash", context_width=3)
    key = scheme.global_key
    g = prf.mix64(np.uint64(scheme.seed(key)) ^ prf.token_hash(np.arange(5000))) >> np.uint64(1)
    a = int(np.argmin(g))  # the anchor of any window holding it
    b = (a + 1) % 5000
    xs = np.random.default_rng(0).integers(0, 5000, 60)
    ids = np.stack([xs, np.full(60, a), np.full(60, b)], 1).ravel()  # x1 a b x2 a b ...
    r = detect_ids(ids, scheme)
    # (x, a) -> b and (b, x) -> a are one outcome each; (a, b) -> x one per distinct x
    assert r.n_scored == 2 + len(set(xs[1:].tolist()))
    assert detect_ids(ids, scheme, dedup=False).n_scored == len(ids) - scheme.start
