"""The closed loop end to end on tiny models: the real gateway over HTTP, the audit's policy,
two students, evaluation, forensics, summary.json and report.html (rendered in Chromium)."""

from __future__ import annotations

import json
import math

import pytest
from report_check import assert_report_rendered
from sqlalchemy import create_engine, text

from distillery.experiment import ExperimentConfig, Run, run_experiment
from distillery.experiment.report import PLOTS, SECTIONS
from distillery.models import load_tokenizer
from distillery.models.loader import tiny_random_model

CAP = 16


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    d = tmp_path_factory.mktemp("experiment")
    base = d / "student-base"  # a tiny student unlike the tiny teacher: a finite gap to close
    tok = load_tokenizer("tiny-random")
    tiny_random_model(len(tok), seed=1).save_pretrained(base)
    tok.save_pretrained(base)
    cfg = ExperimentConfig(
        run_dir=str(d / "run"), teacher="tiny-random", student=str(base), embedder="hashing",
        generation_cap=CAP, eval_prompts=8, forensics_texts=16, forensics_max_tokens=24,
        epochs=1.0, benign={"developer": (2, 24), "student": (2, 10), "support_bot": (1, 40),
                            "eval_run": (1, 30), "translation": (1, 20)},
        attack={"campaign": (6, 30)}, window_sizes=(20, 50), audit_every=10,
        # a small calibration resolves p down to ~0.004 at 50 rows: block at the flag level
        audit={"block_fpr": 0.01},
        calibration={"developer": (8, 80), "student": (10, 20), "writer": (4, 60),
                     "support_bot": (4, 100), "eval_run": (4, 100), "translation": (4, 100)})
    return cfg, run_experiment(cfg)


def test_the_campaign_is_blocked_and_no_benign_account_is(done):
    _, s = done
    c = s["campaign"]
    # a member that joins the cluster late can outlive the others (its own window alone is
    # weaker evidence): most accounts blocked, every one at least throttled
    assert c["accounts"] == 6 and c["accounts_blocked"] >= 5
    assert all(x["final_status"] in ("throttled", "blocked") for x in s["accounts"].values()
               if x["role"] == "attack")
    assert 0 < c["served"] < c["asked"]
    assert c["first_flag_after_requests"] <= c["last_block_after_requests"]
    assert s["benign"]["blocked"] == [] and s["benign"]["throttled"] == []
    # refused requests are the blocked accounts' only: every 403 came after its block
    for a, x in s["accounts"].items():
        if x["refused_403"]:
            assert x["role"] == "attack" and x["final_status"] == "blocked", a


def test_the_gateway_caps_generation_but_records_what_was_asked(done):
    cfg, _ = done
    db = create_engine(f"sqlite:///{cfg.run_dir}/gateway.db")
    with db.connect() as conn:
        asked, most = conn.execute(text(
            "select max(max_tokens), max(completion_tokens) from usage where status_code = 200"
        )).one()
    assert asked >= 1024 and most <= CAP  # the campaign asks 1,024 tokens; served 16 at most


def test_students_evaluation_and_forensics_are_filled(done):
    _, s = done
    before, cf = s["leak"]["before_block"], s["leak"]["counterfactual"]
    assert before["trained"] and cf["trained"]
    assert before["answers"] == s["campaign"]["served"] < cf["answers"]
    for x in (before, cf):
        assert math.isfinite(x["gap_closed"]) and x["eval_prompts"] == 8
        lo, hi = x["gap_closed_ci"]
        assert lo <= x["gap_closed"] <= hi
    for f in s["forensics"].values():
        assert f["verdict"] in ("detected", "not detected", "inconclusive",
                                "tampering suspected", "detected (account layer)")
        assert 0 < f["global_p"] <= 1 and f["scored_tokens"] > 0
        assert {c["layer"]: c["n_keys"] for c in f["controls"]} == {"global": 100, "account": 100}
        assert f["accounts_tested"] == 6 + 7  # every account of the store
        assert f["trace"] and f["trace"][-1][0] == f["scored_tokens"]  # verdict = last point
        # disagree (the default) has the clean base inside it: no separate reference read
        assert f["statistic"] == "disagree" and f["reference"].endswith("(the suspect's base)")
        assert f["reference_trace"] is None and f["reference_p"] is None


def test_summary_json_is_the_returned_summary(done):
    cfg, s = done
    with open(f"{cfg.run_dir}/summary.json") as f:
        on_disk = json.load(f)
    assert on_disk["campaign"] == s["campaign"]
    assert on_disk["leak"]["counterfactual"]["gap_closed"] == pytest.approx(
        s["leak"]["counterfactual"]["gap_closed"])


def test_a_second_run_resumes_every_stage(done):
    cfg, s = done
    said = []
    again = Run(cfg, say=said.append).all()
    assert all("kept from an earlier run" in m for m in said), said
    assert again["campaign"] == s["campaign"] and again["leak"] == s["leak"]


def test_the_report_renders_in_chromium(done, rendered_dom):
    cfg, s = done
    dom = rendered_dom(f"{cfg.run_dir}/report.html")
    assert_report_rendered(dom, SECTIONS, PLOTS)
    assert f"asked {s['campaign']['asked']} queries" in dom  # the headline is this run's
