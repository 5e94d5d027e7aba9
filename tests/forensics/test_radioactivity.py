"""End to end on tiny models: a student of marked text is detected and attributed; students
of unmarked text, of another account's text, and the untouched base are not (wrongly)."""

from __future__ import annotations

import pytest
from world import ACCOUNTS, CAMPAIGN, OTHER, WM

from distillery.forensics import Reader, TextRow, verdict_for
from distillery.forensics.check import control_keys, read_in_budget
from distillery.forensics.evidence import Candidates, key_results
from distillery.watermark import make_scheme


@pytest.fixture(scope="module")
def scheme(ring):
    return make_scheme("kgw", ring, account="forensics-layer-probe", **WM)


@pytest.fixture(scope="module")
def accounts(ring):
    return {a: ring.account_key(a) for a in ACCOUNTS}


@pytest.fixture(scope="module")
def probe(world):
    return [TextRow(tuple(r["messages"]), r["response"]) for r in world["probe"]]


def read(model, probe, scheme, tokenizer) -> Candidates:
    return Reader(model, tokenizer, tokenizer, scheme, max_len=128).candidates(probe)


@pytest.fixture(scope="module")
def verdicts(world, probe, scheme, accounts, tokenizer):
    return {name: verdict_for(read(world[name], probe, scheme, tokenizer), scheme, accounts,
                              mode="open", suspect=name, n_controls=200, min_shift=0.1)
            for name in ("marked", "unmarked", "other", "base")}


def test_marked_student_is_detected_and_attributed_among_120_accounts(verdicts):
    v = verdicts["marked"]
    print({k: (x.verdict, x.suspect_analysis.global_result, x.suspect_analysis.accounts[:2])
           for k, x in verdicts.items()})
    assert v.verdict == "detected"
    assert v.suspect_analysis.global_result.p_value < 1e-9
    assert v.suspect_analysis.named == [CAMPAIGN]
    assert v.suspect_analysis.accounts[0].adjusted_p < 1e-6


def test_clean_controls_are_not_detected(verdicts):
    for name in ("unmarked", "base"):
        a = verdicts[name].suspect_analysis
        assert verdicts[name].verdict in ("not detected", "inconclusive"), name
        assert a.global_result.p_value > 1e-3, name
        assert a.named == [], name


def test_another_accounts_student_is_ours_but_not_the_campaigns(verdicts):
    a = verdicts["other"].suspect_analysis
    assert verdicts["other"].verdict == "detected"  # the global layer: trained on our outputs
    assert CAMPAIGN not in a.named
    assert a.named == [OTHER]


def test_control_keys_are_uniform_on_every_model(verdicts):
    """>= 200 keys that never served anyone: their p-values pass KS against uniform."""
    for name, v in verdicts.items():
        for s in v.suspect_analysis.controls:
            assert s.n_keys == 200
            assert s.ks_p > 1e-3, (name, s.layer, s.ks_p)


def test_feeding_the_corpus_ten_times_changes_nothing(world, probe, scheme, tokenizer):
    reader = Reader(world["marked"], tokenizer, tokenizer, scheme, max_len=128)
    once = reader.candidates(probe[:20])
    ten = reader.candidates(probe[:20] * 10)
    for layer in ("global", "account"):
        a = key_results(once, scheme, layer, [scheme.global_key, *control_keys(3)])
        b = key_results(ten, scheme, layer, [scheme.global_key, *control_keys(3)])
        assert [(r.n_scored, r.score, r.p_value) for r in a] == \
            [(r.n_scored, r.score, r.p_value) for r in b]


def test_a_budget_stops_on_the_count_and_reads_the_rows_in_order(world, probe, scheme,
                                                                  tokenizer):
    reader = Reader(world["marked"], tokenizer, tokenizer, scheme, max_len=128)
    c = read_in_budget(reader.candidates, probe, scheme, budget_tokens=50, chunk_rows=8)
    assert c.info["rows_read"] < len(probe)
    assert c.n_rows == c.info["rows_read"]
