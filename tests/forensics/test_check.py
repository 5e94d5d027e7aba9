"""The verdict's pieces without models: API-mode candidates and their prompt exclusion, the
planner, the tampering and inconclusive rules, the cross-tokenizer path, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from report_check import assert_report_rendered
from scipy.stats import kstest
from world import ACCOUNTS, CAMPAIGN, WM, alphabet_rows, save_student, teacher_rows

from distillery.cli import main
from distillery.forensics import Reader, TextRow, plan, tokens_needed
from distillery.forensics.api import answer_candidates
from distillery.forensics.check import control_keys, decide, randomized_p
from distillery.forensics.evidence import KeyScore, key_results
from distillery.forensics.tokens import TokenMap, token_bytes
from distillery.watermark import KeyRing, make_scheme


@pytest.fixture(scope="module")
def scheme(ring):
    return make_scheme("kgw", ring, account="forensics-layer-probe", **WM)


def test_prompt_window_exclusion_is_what_keeps_a_copying_model_calibrated(tokenizer, alphabet):
    """A clean model that repeats its (marked) prompt: 150 fresh rings, each marking the
    prompts; with the exclusion the p-values are uniform, without it they are not."""
    on, off = [], []
    u = np.random.default_rng(0).random(150)
    for i in range(150):
        ring = KeyRing({1: i.to_bytes(4, "little") * 8})
        sch = make_scheme("kgw", ring, account="forensics-layer-probe", **WM)
        marked = alphabet_rows(tokenizer, alphabet, sch, 2, seed=i, tokens=20)
        fresh = alphabet_rows(tokenizer, alphabet, None, 2, seed=10_000 + i, tokens=20)
        rows = [TextRow(({"role": "user", "content": "Repeat: " + m},), m + f)
                for m, f in zip(marked, fresh, strict=True)]
        for excl, out in ((True, on), (False, off)):
            c = answer_candidates(rows, tokenizer, sch, exclude_prompt=excl)
            r = key_results(c, sch, "global", [sch.global_key])[0]
            out.append(randomized_p(sch, r, u[i]))  # few tuples: the lattice alone fails KS
    assert kstest(on, "uniform").pvalue > 1e-3
    assert np.mean(np.array(on) <= 0.05) <= 0.1
    assert kstest(off, "uniform").pvalue < 1e-6
    assert np.mean(np.array(off) <= 0.05) > 0.3


def test_excluding_the_text_fed_in_keeps_a_predicting_clean_model_valid(tokenizer, alphabet):
    """Reading mode on our marked text with a clean model that predicts the text half the
    time (a model that has read similar text): 150 fresh rings. With the text's tuples
    excluded its p-values are valid (conservative: never too many small ones); without the
    exclusion it is called marked far above the nominal rate. On unmarked text (what --fresh
    reads) the exclusion is not needed: without it the p-values are uniform."""
    from scipy.stats import binom

    from distillery.forensics.evidence import Candidates
    from distillery.forensics.reading import text_tuples

    rng = np.random.default_rng(0)
    on, off, unmarked = [], [], []
    for i in range(150):
        ring = KeyRing({1: (i + 1000).to_bytes(4, "little") * 8})
        sch = make_scheme("kgw", ring, account="forensics-layer-probe", **WM)
        ids = np.concatenate([tokenizer.encode(t, add_special_tokens=False) for t in
                              alphabet_rows(tokenizer, alphabet, sch, 2, seed=i, tokens=40)])
        w, start = sch.window, sch.start
        nxt = ids[start:]
        guess = np.where(rng.random(len(nxt)) < 0.5, nxt, rng.choice(alphabet, len(nxt)))
        c = Candidates(np.lib.stride_tricks.sliding_window_view(ids, w)[start - w: len(ids) - w],
                       guess, sch.global_positions(ids), np.zeros(len(nxt), bool),
                       text_tuples(ids, w))
        on.append(key_results(c, sch, "global", [sch.global_key])[0].p_value)
        c.text_tuples = text_tuples(ids[:0], w)
        off.append(key_results(c, sch, "global", [sch.global_key])[0].p_value)
        # the same model on text no key marked, nothing excluded: exact, so uniform
        ids = np.concatenate([tokenizer.encode(t, add_special_tokens=False) for t in
                              alphabet_rows(tokenizer, alphabet, None, 2, seed=i, tokens=40)])
        guess = np.where(rng.random(len(nxt)) < 0.5, ids[start:],
                         rng.choice(alphabet, len(nxt)))
        c = Candidates(np.lib.stride_tricks.sliding_window_view(ids, w)[start - w: len(ids) - w],
                       guess, sch.global_positions(ids), np.zeros(len(nxt), bool),
                       text_tuples(ids[:0], w))
        r = key_results(c, sch, "global", [sch.global_key])[0]
        unmarked.append(randomized_p(sch, r, rng.random()))
    on, off = np.array(on), np.array(off)
    for a in (0.01, 0.05, 0.1):  # exact binomial: no more small p-values than alpha allows
        assert binom.sf((on <= a).sum() - 1, len(on), a) > 1e-3, a
    assert (off <= 0.05).mean() > 0.3
    assert kstest(unmarked, "uniform").pvalue > 1e-3


def _step(token: str, top: dict[str, float]) -> dict:
    """One generated token as harvested, its top alternatives given as probabilities."""
    return {"token": token, "logprob": math.log(top.get(token, 0.01)),
            "top": [{"token": s, "logprob": math.log(p)} for s, p in top.items()]}


def test_top_logprobs_align_to_teacher_positions_across_tokenizations(tokenizer, scheme):
    """Teacher (SmolLM2's tokenizer): ' The| quick| brown| fox|,| na|ïve| café'. The suspect
    split it ' The| qu|ick| brown fox|,| naïve| café' and ended its turn. A step is scored at
    the teacher position starting at its first byte; ' fox' and 'ïve' start inside a suspect
    token and get nothing; the end-of-turn token spells no text."""
    from distillery.forensics.api import aligned_steps, token_offsets

    text = " The quick brown fox, naïve café"
    ids = tokenizer.encode(text, add_special_tokens=False)
    tid = {s: tokenizer.encode(s, add_special_tokens=False)[0]
           for s in (" quick", " qu", " brown", " café")}
    steps = [_step(" The", {" The": 0.9}), _step(" qu", {" quick": 0.5, " qu": 0.2}),
             _step("ick", {"ick": 0.9}),
             _step(" brown fox", {" brown fox": 0.6, " brown": 0.3, "\ufffd": 0.05}),
             _step(",", {",": 0.8}), _step(" naïve", {" naïve": 0.7}),
             _step(" café", {" café": 0.4, " cafe": 0.3}), _step("<|im_end|>", {"<|im_end|>": 1})]
    strings = [s["token"] for s in steps]
    assert token_offsets(text, strings).tolist() == [0, 4, 7, 10, 20, 21, 28]  # ï: 2 bytes
    assert token_offsets(text, [" The", " qi", "ck"]).tolist() == [0]  # stops where it differs
    t, j = aligned_steps(text, strings, np.array(ids), token_bytes(tokenizer), scheme.start)
    assert list(zip(t.tolist(), j.tolist(), strict=True)) == [(1, 1), (2, 3), (4, 4), (5, 5),
                                                              (7, 6)]
    c = answer_candidates([TextRow((), text, tuple(steps))], tokenizer, scheme)
    assert c.top_tokens.shape == (len(ids) - scheme.start, 3)
    has = {int(i) + scheme.start for i in np.flatnonzero(c.top_probs.sum(axis=1) > 0)}
    assert has == {1, 2, 4, 5, 7}
    mass = {int(x): float(q) for x, q in zip(c.top_tokens[0], c.top_probs[0], strict=True)}
    assert mass[tid[" quick"]] == pytest.approx(0.5) and mass[tid[" qu"]] == pytest.approx(0.2)
    row = dict(zip(c.top_tokens[1].tolist(), c.top_probs[1].tolist(), strict=True))
    assert row[tid[" brown"]] == pytest.approx(0.9)  # ' brown fox' and ' brown': one token
    assert c.top_probs[1].sum() == pytest.approx(0.9)  # U+FFFD: unknown bytes, not scored
    assert c.info["positions_with_top_logprobs"] == 5


def test_top_logprobs_on_the_teachers_tokenizer_are_the_identity(tokenizer, scheme, alphabet):
    """Token strings decoded one id at a time, as the engine returns them: every position
    from the first full window aligns to its own step, and each top string to its id."""
    from distillery.forensics.api import aligned_steps

    rng = np.random.default_rng(0)
    ids = [int(i) for i in rng.choice(alphabet, 30)]
    text = tokenizer.decode(ids)
    steps = [{"token": tokenizer.decode([i]), "logprob": -1.0,
              "top": [{"token": tokenizer.decode([a]), "logprob": -2.0} for a in alphabet[:4]]}
             for i in ids]
    t, j = aligned_steps(text, [s["token"] for s in steps], np.array(ids),
                         token_bytes(tokenizer), scheme.start)
    assert t.tolist() == j.tolist() == list(range(scheme.start, 30))
    c = answer_candidates([TextRow((), text, tuple(steps))], tokenizer, scheme)
    assert (np.sort(c.top_tokens, axis=1) == np.sort(alphabet[:4])).all()


def test_tokens_needed_matches_the_references_rule():
    """REFERENCES: eps 0.0088 at alpha 1e-3, one key: ~24k tokens (the power-1/2 limit)."""
    sch = make_scheme("kgw", KeyRing({1: bytes(32)}))
    n = tokens_needed(sch, 0.0088, target_p=1e-3, n_keys=1, power=0.5)
    assert 22_000 < n < 25_000
    assert tokens_needed(sch, 0.0088, 1e-3, n_keys=10_000, power=0.5) > 2 * n
    assert tokens_needed(sch, -0.01) is None


def test_the_planners_interval_covers_the_true_shift():
    sch = make_scheme("kgw", KeyRing({1: bytes(32)}))
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        s = rng.binomial(5000, 0.26)
        pl = plan(sch, KeyScore("g", "global", 5000, float(s), 0.0, 0.5, 0.5))
        hits += pl.shift_ci[0] <= 0.01 <= pl.shift_ci[1]
    assert 0.92 <= hits / 400 <= 0.99


def test_few_tokens_and_nothing_found_is_inconclusive_and_below_reference_is_tampering(
        scheme):
    pl = plan(scheme, KeyScore("g", "global", 500, 125.0, 0.0, 0.5, 0.5), min_shift=0.005)
    a = analyse_stub(scheme, 125, 500)
    assert decide(a, pl, 1e-6, 1e-3) == "inconclusive"
    big = plan(scheme, KeyScore("g", "global", 10**6, 2.5e5, 0.0, 0.5, 0.5))
    assert decide(analyse_stub(scheme, 250_000, 10**6), big, 1e-6, 1e-3) == "not detected"
    assert decide(a, pl, 1e-6, 1e-3, p_tamper=1e-5) == "tampering suspected"


def analyse_stub(scheme, s, n):
    from distillery.forensics.check import Analysis
    from distillery.forensics.evidence import key_result

    g = key_result(scheme, "g", "global", float(s), n)
    return Analysis(g, min(2 * g.p_value, 1.0), [], [])


def test_the_alignment_path_equals_the_identity_path_on_one_tokenizer(world, tokenizer,
                                                                       scheme):
    """Cross-tokenizer reading (bytes, boundaries, first teacher token) forced on a shared
    tokenizer must give exactly the shared-tokenizer candidates."""
    rows = [TextRow((), r["response"]) for r in world["probe"][:10]]
    fast = Reader(world["marked"], tokenizer, tokenizer, scheme, max_len=128).candidates(rows)
    slow = Reader(world["marked"], tokenizer, tokenizer, scheme, max_len=128)
    slow.identity = False
    slow.tmap = TokenMap(tokenizer, tokenizer)
    slow.sbytes = slow.tbytes = token_bytes(tokenizer)
    c = slow.candidates(rows)
    assert np.array_equal(fast.windows, c.windows) and np.array_equal(fast.tokens, c.tokens)
    assert np.array_equal(fast.is_global, c.is_global)


def test_token_bytes_spell_the_text(tokenizer):
    text = " naïve café, 12 ½ — ok\n\nfin"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert b"".join(token_bytes(tokenizer)[i] for i in ids) == text.encode()


@pytest.mark.parametrize("statistic", ["argmax", "shift", "disagree"])
def test_forensics_check_cli_names_the_campaign(world, tokenizer, ring, tmp_path, statistic,
                                                 rendered_dom):
    """shift: the student's distribution minus its base's (tiny-random, loaded by name), read
    chunk by chunk together; no separate reference analysis then (the base is inside). Needs
    text the keys did not mark: the probe is unmarked teacher text. argmax also writes the HTML
    report (rendered in Chromium); shift and disagree (the top-1 where it differs from the
    base's, also read chunk by chunk together; the probe declared unmarked) are given a report
    path in a missing folder: the verdict is printed and written first, then one error line."""
    from distillery import store
    from distillery.forensics.report import PLOTS, SECTIONS

    student = save_student(world["marked"], tokenizer, tmp_path / "student")
    key = tmp_path / "wm.key"
    ring.save(key)
    db = f"sqlite:///{tmp_path / 'g.db'}"
    store.migrate(db)
    engine = store.make_engine(db)
    for a in ACCOUNTS:
        store.create_account(engine, a)
    data = tmp_path / "probe.jsonl"
    data.write_text("".join(json.dumps({"messages": [], "response": r["response"]}) + "\n"
                            for r in world["probe"]))
    report = tmp_path / ("report.html" if statistic == "argmax" else "missing/report.html")
    args = ["forensics", "check", "--suspect", student, "--dataset", str(data), "--database", db,
            "--key-path", str(key), "--teacher", "tiny-random", "--context-width", "1",
            "--controls", "100", "--json", "--statistic", statistic, "--output",
            str(tmp_path / "verdict.json"), "--report", str(report)]
    if statistic == "shift":  # 32 windows per layer: a Bernstein p cannot reach 1e-6 / 240
        args += ["--alpha", "1e-3"]
    if statistic == "disagree":  # the probe is unmarked: its own tuples are scored too
        args += ["--unmarked-text"]
    torch.set_num_threads(1)
    r = CliRunner().invoke(main, args)
    if statistic == "argmax":
        assert r.exit_code == 0, r.output
        v = json.loads(r.output.splitlines()[-1])
        dom = rendered_dom(report)
        assert_report_rendered(dom, SECTIONS, PLOTS)
        assert "<b>DETECTED</b>" in dom and "Only the final point" in dom
        assert f"named: {CAMPAIGN}." in dom
    else:
        assert r.exit_code == 1 and not report.exists()
        *out, err = r.output.splitlines()
        assert err.startswith(f"error: --report {report}: No such file or directory"), err
        assert "Traceback" not in r.output
        v = json.loads(out[-1])
        assert json.loads((tmp_path / "verdict.json").read_text()) == v
    assert v["verdict"] == "detected"
    named = [a["name"] for a in v["suspect_analysis"]["accounts"] if a["named"]]
    assert named == [CAMPAIGN]
    assert v["reference"] == "tiny-random (the suspect's base)" or v["reference"] == "tiny-random"
    assert v["statistic"] == statistic
    assert v["usage"]["text_excluded"] == (statistic != "disagree")
    if statistic == "argmax":
        assert v["reference_analysis"]["global_adjusted_p"] > 1e-3
    else:
        assert v["reference_analysis"] is None
        assert bool(v["suspect_analysis"]["global_result"]["var"]) == (statistic == "shift")
    assert len(v["suspect_analysis"]["controls"][0]["p_values"]) == 100
    assert math.isfinite(v["plan"]["tokens_for_min_shift"])


def test_bad_input_is_one_line(tmp_path):
    r = CliRunner().invoke(main, ["forensics", "check", "--suspect", "x"])
    assert r.exit_code != 0 and "give --database" in r.output and "Traceback" not in r.output


def test_api_mode_mass_asks_for_top_logprobs():
    """In api mode the mass statistic asks for 20 top logprobs unless told; too few, or the
    shift (it reads the suspect's weights), are one line from the CLI."""
    from distillery.forensics import ForensicsConfig

    url = "http://127.0.0.1:9/v1"
    assert ForensicsConfig(suspect=url, dataset="d.jsonl", statistic="mass").top_logprobs == 20
    assert ForensicsConfig(suspect=url, dataset="d.jsonl").top_logprobs == 0
    for extra, says in ((["--statistic", "mass", "--top-logprobs", "1"], "--top-logprobs 2..20"),
                        (["--statistic", "shift"], "--statistic disagree")):
        r = CliRunner().invoke(main, ["forensics", "check", "--suspect", url, "--dataset",
                                      "d.jsonl", *extra])
        assert r.exit_code != 0 and says in r.output and "Traceback" not in r.output, r.output


def test_controls_are_fixed_and_distinct():
    a, b = control_keys(150), control_keys(150)
    assert [k.key_id for k in a] == [k.key_id for k in b]
    assert len({k.secret for k in a}) == 150


def test_gumbel_scores_have_an_exact_null_on_unused_keys(tokenizer, alphabet, ring):
    """The same loop with the Gumbel scheme (Gamma tail): 200 unused keys on one suspect's
    answers give uniform p-values, and the lower tail is the Gamma CDF's complement."""
    sch = make_scheme("gumbel", ring, account="forensics-layer-probe", context_width=1)
    rows = [TextRow((), r["response"])
            for r in teacher_rows(tokenizer, alphabet, ring, None, 40, seed=7, tokens=40)]
    c = answer_candidates(rows, tokenizer, sch)
    res = key_results(c, sch, "account", control_keys(200))
    assert kstest([r.p_value for r in res], "uniform").pvalue > 1e-3
    r = res[0]
    assert 0.99 < r.p_value + r.p_lower < 1.01  # continuous: the two tails add up to 1


def _check_over_http(model, tokenizer, ring, tmp_path, **cfg):
    """The closed-model path as a user runs it: a model behind an OpenAI-compatible server,
    queried through the harvester with 96 prompts, scored, with a token budget."""
    from distillery.engine import TorchEngine
    from distillery.forensics import ForensicsConfig, run_check
    from distillery.harvest.testserver import ServerState, make_app, serve_in_thread

    student = save_student(model, tokenizer, tmp_path / "student")
    key = tmp_path / "wm.key"
    ring.save(key)
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Words {i}"}],
                                        "response": "-"}) + "\n" for i in range(96)))
    torch.set_num_threads(1)
    with serve_in_thread(make_app(ServerState(), engine=TorchEngine.from_name(student))) as url:
        cfg = ForensicsConfig(suspect=url, dataset=str(data), key_file=str(key),
                              teacher="tiny-random", scheme_params=WM, accounts=(CAMPAIGN, "x"),
                              max_tokens=16, work_dir=str(tmp_path / "w"),
                              reference="tiny-random", controls=100, **cfg)
        return run_check(cfg, progress=False)


@pytest.mark.parametrize("statistic", ["argmax", "disagree"])
def test_api_mode_end_to_end_over_http(world, tokenizer, ring, tmp_path, statistic):
    """disagree: the generated tokens where the teacher's own top-1 differs (here the teacher
    is tiny-random, whose top-1 is no alphabet word: it keeps every position)."""
    v = _check_over_http(world["marked"], tokenizer, ring, tmp_path, budget_tokens=100,
                         statistic=statistic)
    assert v.mode == "api" and 0 < v.usage["queries"] < 96  # stopped on the count
    assert v.suspect_analysis.global_result.n_scored >= 100
    assert v.verdict == "detected", v.suspect_analysis.global_result
    assert v.suspect_analysis.named == [CAMPAIGN]
    assert v.reference_analysis.global_adjusted_p > 1e-3
    assert ("disagreements" in v.usage) == (statistic == "disagree")


def test_api_disagree_scores_only_where_the_clean_model_differs(world, tokenizer, scheme,
                                                                alphabet):
    """A model's own greedy answers, judged by that model, leave nothing to score: every
    token is its top-1, which also shows the two position lists line up. Judged by another
    model, exactly the positions where the two differ are kept."""
    from distillery.forensics.api import disagreeing

    model = world["marked"]
    start = torch.tensor([[tokenizer.bos_token_id, int(a)] for a in alphabet[:6]])
    with torch.no_grad():
        out = model.generate(start, attention_mask=torch.ones_like(start), max_new_tokens=24,
                             do_sample=False, pad_token_id=tokenizer.bos_token_id)
    rows = [TextRow((), tokenizer.decode(o[1:])) for o in out]
    c = answer_candidates(rows, tokenizer, scheme)
    own = Reader(model, tokenizer, tokenizer, scheme, exclude_text=False).top1(rows)
    d = disagreeing(c, own)
    assert len(c) > 100 and d.info["disagreements"] == 0 and d.excluded.all()
    other = Reader(world["unmarked"], tokenizer, tokenizer, scheme, exclude_text=False).top1(rows)
    d = disagreeing(c, other)
    differ = c.tokens != np.concatenate(other)
    assert 0 < differ.sum() < len(c) and np.array_equal(~d.excluded, differ)
    with pytest.raises(ValueError, match="line up"):
        disagreeing(c, other[1:])


@pytest.mark.parametrize("suspect", ["marked", "unmarked"])
def test_api_mode_green_mass_from_top_logprobs(world, tokenizer, ring, tmp_path, suspect):
    """The green mass from the endpoint's top 20 logprobs on the suspect's own answers: the
    marked student is detected and the campaign named, a student of unmarked text is not, and
    the controls stay uniform for both. alpha 1e-3: with a one-token window the alphabet
    gives 32 windows per layer, and each window is one Bernstein term."""
    v = _check_over_http(world[suspect], tokenizer, ring, tmp_path, statistic="mass",
                         alpha=1e-3, budget_tokens=24)
    g = v.suspect_analysis.global_result
    assert v.statistic == "mass" and g.var is not None and g.n_scored >= 24
    assert 0 < v.usage["queries"] < 96  # stopped on the count of windows
    assert v.usage["positions_with_top_logprobs"] > 0.9 * v.usage["candidates"]
    assert all(s.ks_p > 1e-3 for s in v.suspect_analysis.controls)
    assert v.reference_analysis.global_result.var is not None  # read with top logprobs too
    assert v.reference_analysis.global_adjusted_p > 1e-3
    if suspect == "marked":
        assert v.verdict == "detected", g
        assert v.suspect_analysis.named == [CAMPAIGN]
    else:
        assert v.verdict != "detected" and v.suspect_analysis.global_adjusted_p > 1e-3, g
        assert v.suspect_analysis.named == []
