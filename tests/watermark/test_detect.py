import dataclasses

import numpy as np

from distillery.engine import GenerationRequest, SamplingParams
from distillery.stats import P_FLOOR
from distillery.watermark import detect, detect_ids, make_scheme, make_schemes, scan, scan_ids


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
    dataclasses.asdict(r)  # serialisable for --json


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
