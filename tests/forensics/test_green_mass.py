"""The green-mass statistics (evidence.mass_results) on the tiny world: the marked student is
detected and attributed, the clean models are not, the null variance is right (control keys'
z against N(0, 1)), and the calibration fails where its two assumptions are broken. Both
the green mass of the suspect's distribution ("mass") and of its difference from a clean
reference read at the same positions ("shift", shift_candidates). Beside them the top-1
statistic read against the same reference ("disagree", disagreement_candidates): the exact
binomial test at the positions where the student's top-1 differs from the reference's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import kstest
from world import ACCOUNTS, CAMPAIGN, OTHER, WM

from distillery.forensics import Reader, TextRow, verdict_for
from distillery.forensics.check import SCRUBBING_NOTE, control_keys
from distillery.forensics.evidence import (
    PAIRED,
    Candidates,
    bernstein_p,
    disagreement_candidates,
    key_results,
    mass_results,
    merge_duplicates,
    shift_candidates,
)
from distillery.watermark import make_scheme

TOP_K = 16


@pytest.fixture(scope="module")
def scheme(ring):
    return make_scheme("kgw", ring, account="forensics-layer-probe", **WM)


@pytest.fixture(scope="module")
def read(world, scheme, tokenizer):
    probe = [TextRow(tuple(r["messages"]), r["response"]) for r in world["probe"]]
    cache = {}

    def read(name: str) -> Candidates:
        if name not in cache:
            cache[name] = Reader(world[name], tokenizer, tokenizer, scheme, max_len=128,
                                 top_k=TOP_K).candidates(probe)
        return cache[name]
    return read


@pytest.fixture(scope="module")
def verdicts(read, scheme, ring):
    """(statistic, suspect) -> verdict; the shift and disagree read each student against the
    untrained model (a clean reference on the same positions; the base itself would shift by
    zero and never disagree)."""
    accounts = {a: ring.account_key(a) for a in ACCOUNTS}
    # alpha 1e-3: the tiny world has 32 distinct windows per layer (64 tokens, width 1), which
    # bound a Bernstein p near 1e-7, above 1e-6 / (2 x 120) for attribution at the default
    out = {}
    for name in ("marked", "unmarked", "other", "base"):
        for statistic in ("mass", "shift", "disagree"):
            if statistic in PAIRED and name == "base":
                continue
            c = PAIRED[statistic](read(name), read("base")) if statistic in PAIRED else read(name)
            out[statistic, name] = verdict_for(c, scheme, accounts, mode="open", suspect=name,
                                               n_controls=200, min_shift=0.1,
                                               statistic=statistic, alpha=1e-3)
    return out


@pytest.mark.parametrize("statistic", ["mass", "shift", "disagree"])
def test_marked_student_is_detected_and_attributed(verdicts, statistic):
    v = verdicts[statistic, "marked"]
    assert v.statistic == statistic and v.verdict == "detected"
    # z ~ 17; the Bernstein bound's linear term, large for so few terms, keeps p near 1e-7
    assert v.suspect_analysis.global_result.z > 8
    assert v.suspect_analysis.global_result.p_value < 1e-6
    assert v.suspect_analysis.named == [CAMPAIGN]
    assert SCRUBBING_NOTE not in v.notes  # the note is for negative verdicts only


@pytest.mark.parametrize("statistic", ["mass", "shift", "disagree"])
def test_clean_models_are_not_detected_and_another_account_is_not_named(verdicts, statistic):
    for name in ("unmarked", "base"):
        if (statistic, name) not in verdicts:
            continue
        v = verdicts[statistic, name]
        a = v.suspect_analysis
        assert a.global_result.p_value > 1e-3 and a.named == [], name
        assert v.verdict == "detected" or SCRUBBING_NOTE in v.notes  # says what scrubbing does
    assert verdicts[statistic, "other"].verdict == "detected"
    assert verdicts[statistic, "other"].suspect_analysis.named == [OTHER]


def test_control_z_scores_are_standard_normal(verdicts):
    """200 keys that never served anyone: their z against N(0, 1) (KS on the normal tail),
    the check that the null variance is right; and the Bernstein p is never below it."""
    for name, v in verdicts.items():
        for s in v.suspect_analysis.controls:
            assert s.n_keys == 200 and s.ks_p > 1e-3, (name, s.layer, s.ks_p)


@pytest.mark.parametrize("statistic", sorted(PAIRED))
def test_paired_statistics_refuse_a_reference_read_elsewhere(read, statistic):
    a, b = read("marked"), read("base")
    short = Candidates(b.windows[1:], b.tokens[1:], b.is_global[1:], b.excluded[1:],
                       b.text_tuples, b.n_rows, b.n_tokens, {}, b.top_tokens[1:],
                       b.top_probs[1:])
    with pytest.raises(ValueError, match="same positions"):
        PAIRED[statistic](a, short)


def test_disagree_scores_only_where_the_top1_differs(read, scheme, verdicts):
    """A model against itself disagrees nowhere: nothing is scored. The marked student against
    a student of the same teacher's unmarked text (what a clean fine-tune would have chosen)
    scores fewer tuples than its plain argmax, at a higher green rate."""
    c = disagreement_candidates(read("marked"), read("marked"))
    assert c.info["disagreements"] == 0
    r = key_results(c, scheme, "global", control_keys(3))
    assert all(x.n_scored == 0 and x.p_value == 1.0 for x in r)
    d = disagreement_candidates(read("marked"), read("unmarked"))
    assert 0 < d.info["disagreements"] < len(d)
    g = key_results(d, scheme, "global", [scheme.global_key])[0]
    plain = key_results(read("marked"), scheme, "global", [scheme.global_key])[0]
    assert g.n_scored < plain.n_scored and g.rate > plain.rate


def test_shift_of_a_model_from_itself_is_empty(read, scheme):
    """Identical distributions: every d is 0, so every key scores exactly 0 (p = 1)."""
    c = shift_candidates(read("marked"), read("marked"))
    r = mass_results(c, scheme, "global", control_keys(5))
    assert all(x.score == 0 and x.p_value == 1.0 for x in r)


def _control_z(c: Candidates, scheme, n: int = 300) -> np.ndarray:
    return np.array([r.z for r in mass_results(c, scheme, "global", control_keys(n))])


def test_calibration_fails_without_window_dedup(read, scheme):
    """The same window twice shares one green list: counted twice, its terms are dependent
    and the null variance too small. Feeding every text four times without de-duplication
    (as if windows were independent) must fail the calibration the real test passes."""
    c = read("base")
    assert kstest(_control_z(c, scheme), "norm").pvalue > 1e-3
    dup = Candidates.concat([c] * 4, scheme.window)
    mass = dup.top_probs.sum(1)
    var1 = (dup.top_probs ** 2).sum()
    g = scheme.gamma
    z = []
    for key in control_keys(300):
        green = scheme.score_tok(np.repeat(dup.windows, TOP_K, 0), dup.top_tokens.ravel(),
                                 [key])[0] @ dup.top_probs.ravel()
        z.append((green - g * mass.sum()) / np.sqrt(g * (1 - g) * var1))
    assert np.std(z) > 1.5  # the naive variance undercounts: z spreads ~2x
    assert kstest(z, "norm").pvalue < 1e-6


def test_merge_duplicates_sums_a_teacher_tokens_probability_once():
    t = np.array([[5, 3, 5, -1], [1, 2, 3, 4]])
    p = np.array([[0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]])
    tt, pp = merge_duplicates(t, p)
    row0 = {int(a): float(b) for a, b in zip(tt[0], pp[0], strict=True) if b > 0}
    assert row0 == {3: pytest.approx(0.3), 5: pytest.approx(0.6)}  # -1 (unmapped) dropped
    assert pp[1].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("signed", [False, True])
def test_bernstein_bound_is_valid_and_conservative(signed):
    """Fixed distributions (or, signed, differences of two: the shift), green bits resampled:
    the bound at the simulated 0.999 and 0.99999 quantiles is never below their tail."""
    rng = np.random.default_rng(0)
    g, n, sims = 0.25, 200, 100_000
    p = rng.dirichlet(np.ones(8), size=n)
    if signed:
        p = 0.3 * (p - rng.dirichlet(np.ones(8), size=n))
    var = g * (1 - g) * (p ** 2).sum()
    bound = max(g, 1 - g) * np.abs(p).sum(1).max()
    s = np.concatenate([((rng.random((10_000, n, 8)) < g) * p).sum((1, 2)) - g * p.sum()
                        for _ in range(sims // 10_000)])
    for q in (0.999, 0.99999):
        assert bernstein_p(np.quantile(s, q), var, bound) >= 1 - q


def test_neutralisation_hook_prefers_the_two_token_prefix():
    from distillery.forensics.scrub import Neutraliser

    hook = Neutraliser({(7,): torch.tensor([1]), (3, 7): torch.tensor([2])}, penalty=5.0)
    out = hook(torch.zeros(3, 4), torch.tensor([[3, 7], [9, 7], [9, 9]]))
    assert out.tolist() == [[0, 0, -5, 0], [0, -5, 0, 0], [0, 0, 0, 0]]


def test_paraphrase_keeps_each_prompt_and_replaces_its_answer():
    """Scrubbing (a): the thief's own model rewrites every answer; prompts, hashes and order
    kept, the teacher's answer and logprobs no longer what it trains on."""
    from distillery.forensics.scrub import PARAPHRASE_PROMPT, paraphrase_rows

    rows = [{"prompt_hash": f"h{i}", "messages": [{"role": "user", "content": f"q{i}"}],
             "response": f"The answer number {i} is here.", "logprobs": [{"token": "x"}]}
            for i in range(3)]
    out = paraphrase_rows(rows, "tiny-random", max_tokens=6, engine="torch")
    assert [r["prompt_hash"] for r in out] == ["h0", "h1", "h2"]
    assert [r["messages"] for r in out] == [r["messages"] for r in rows]
    assert [r["original_response"] for r in out] == [r["response"] for r in rows]
    assert all(r["logprobs"] is None and r["scrubbed"] == "paraphrase:tiny-random" for r in out)
    assert all(r["response"] != r["original_response"] for r in out)
    assert "{text}" in PARAPHRASE_PROMPT
    assert paraphrase_rows(rows, "tiny-random", max_tokens=6, engine="torch") == out  # seeded


def test_neutralisation_lowers_the_marked_students_signal(world, scheme, tokenizer):
    """Pan et al.'s WN (scrub.py), built with no key from a corpus over the same alphabet
    (the thief's harvest would do as well), pushes down what fine-tuning raised: the marked
    student's green mass falls."""
    from distillery.forensics.scrub import neutraliser

    probe = [TextRow(tuple(r["messages"]), r["response"]) for r in world["probe"]]
    harvest = [r["response"] for r in world["probe"]]
    hook = neutraliser(world["marked"], world["base"], tokenizer, harvest, n1=64, n2=0,
                       top=12, penalty=8.0)
    assert hook.n_prefixes == 64

    def z(logits_hook):
        c = Reader(world["marked"], tokenizer, tokenizer, scheme, max_len=128, top_k=TOP_K,
                   logits_hook=logits_hook).candidates(probe)
        return mass_results(c, scheme, "global", [scheme.global_key])[0].z

    before, after = z(None), z(hook)
    assert after < before / 2, (before, after)


@pytest.mark.parametrize("mode", ["open", "api"])
def test_disagree_calibration_fails_without_tuple_dedup(read, world, scheme, tokenizer, mode):
    """disagree's null rests on the de-duplication: a (window, token) tuple seen twice has one
    green bit. Open: the clean student against the base, its probe read four times. API: the
    unmarked probe as a clean suspect's answers, judged by a model that never saw a key
    (api.disagreeing), fed four times. De-duplicated, the scored count is unchanged and 300
    control keys are uniform; counting every occurrence (as if each were a fresh draw) fails
    the same calibration."""
    from scipy.stats import binom

    from distillery.forensics.api import answer_candidates, disagreeing
    from distillery.forensics.check import randomized_p

    if mode == "open":
        once = disagreement_candidates(read("unmarked"), read("base"))
    else:
        probe = [TextRow((), r["response"]) for r in world["probe"]]
        judge = Reader(world["unmarked"], tokenizer, tokenizer, scheme, max_len=128)
        once = disagreeing(answer_candidates(probe, tokenizer, scheme), judge.top1(probe))
        assert 0 < once.info["disagreements"] < len(once)
    four = Candidates.concat([once] * 4, scheme.window)
    ctl = control_keys(300)
    u = np.random.default_rng(0).random(300)
    ded = key_results(four, scheme, "global", ctl)
    assert ded[0].n_scored == key_results(once, scheme, "global", ctl[:1])[0].n_scored
    assert kstest([randomized_p(scheme, r, x) for r, x in zip(ded, u, strict=True)],
                  "uniform").pvalue > 1e-3
    sel = four.is_global & ~four.excluded & (four.tokens >= 0)
    green = scheme.score_tok(four.windows[sel], four.tokens[sel], ctl).sum(axis=1)
    n, g = int(sel.sum()), scheme.gamma
    naive = binom.sf(green, n, g) + u * binom.pmf(green, n, g)  # as randomized_p
    assert kstest(naive, "uniform").pvalue < 1e-6
