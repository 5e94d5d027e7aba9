"""Radioactivity on the real models, end to end: the SmolLM2 gateway (KGW, context width 1)
serves a thief account and a bystander; a Gemma-3-270M + LoRA student is trained on the
thief's harvest; the open-weights check reads fresh *unmarked* teacher answers through it
(the shift statistic: the student's distribution minus its base's; the disagree statistic: its
top-1 where it differs from its base's, the text's own tuples scored) among 100 account keys.

What a test's budget can show on this CPU is the check's validity on real models, not its
power: students of a few hundred answers inherit too little to be detected in a few hundred
texts (BENCHMARKS.md, Forensics: z <= 2.5 with 200 texts for 346 answers x 2 epochs). So:
the controls stay uniform, no account is named wrongly, the verdict on the student is
"inconclusive" (never "not detected" below the planner's budget) unless it is "detected" with
the thief named; the untouched base Gemma is not detected."""

from __future__ import annotations

import json
import math
import random

import pytest

pytestmark = pytest.mark.slow

WM = {"context_width": 1}
HARVEST, FRESH, TOKENS = 96, 64, 64
DECOYS = [f"decoy-{i:03d}" for i in range(98)]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    import torch

    from distillery import store
    from distillery.distill import TrainConfig, train
    from distillery.forensics.api import generate_locally
    from distillery.forensics.reading import TextRow
    from distillery.gateway import ServeConfig, start_in_thread
    from distillery.harvest import HarvestConfig, harvest, seed_prompts, taxonomy_prompts
    from distillery.watermark import KeyRing

    torch.set_num_threads(2)
    run = tmp_path_factory.mktemp("forensics-real")
    key_file = run / "watermark.key"
    KeyRing.generate().save(key_file)
    db = f"sqlite:///{run / 'gateway.db'}"
    keys = store.provision(db, ["thief", "bystander"])
    prompts = [*seed_prompts(), *taxonomy_prompts()]
    random.Random(0).shuffle(prompts)
    assert len(prompts) >= HARVEST + FRESH + 8
    cfg = ServeConfig(model="smollm2-135m-instruct", watermark="kgw", watermark_params=WM,
                      watermark_key=str(key_file), database=db, port=0, rpm_limit=100_000,
                      tpm_limit=100_000_000, max_batch_size=16, log_level="warning")
    data = run / "harvest.jsonl"
    server = start_in_thread(cfg, timeout=600)
    try:
        for name, ps in (("thief", prompts[:HARVEST]), ("bystander", prompts[-8:])):
            rep = harvest(ps, run / f"harvest-{name}.jsonl", HarvestConfig(
                base_url=server.base_url + "/v1", model="smollm2-135m-instruct",
                api_keys=[keys[name]], concurrency=16, max_tokens=TOKENS, temperature=0.7,
                top_p=0.95, timeout_s=600, progress=False))
            assert rep.failed == 0
    finally:
        server.stop()
    data.write_text((run / "harvest-thief.jsonl").read_text())
    res = train(TrainConfig(dataset=str(data), output_dir=str(run / "student"),
                            student="gemma-3-270m", lora=True, batch_size=8,
                            max_steps=math.ceil(HARVEST / 8), max_len=160,
                            learning_rate=2e-4, warmup_steps=4, heldout_fraction=0.0,
                            eval_every=0, save_every=0, num_threads=2), progress=False)
    fresh = generate_locally([TextRow(p.messages, "") for p in prompts[HARVEST: HARVEST + FRESH]],
                             "smollm2-135m-instruct", max_tokens=96)
    texts = run / "fresh.jsonl"
    texts.write_text("".join(json.dumps({"messages": list(r.messages), "response": r.response})
                             + "\n" for r in fresh))
    return {"db": db, "key_file": str(key_file), "student": res.student_dir,
            "texts": str(texts)}


def check(real_run, suspect: str, statistic: str):
    from distillery.forensics import ForensicsConfig, run_check

    return run_check(ForensicsConfig(
        suspect=suspect, mode="open", dataset=real_run["texts"], unmarked_text=True,
        database=real_run["db"],
        key_file=real_run["key_file"], scheme_params=WM, accounts=("thief", "bystander",
                                                                   *DECOYS),
        statistic=statistic, controls=100, max_len=256, num_threads=2), progress=False)


@pytest.mark.parametrize("statistic", ["shift", "disagree"])
def test_the_real_student_check_is_valid(real_run, statistic):
    v = check(real_run, real_run["student"], statistic)
    a = v.suspect_analysis
    assert v.statistic == statistic and v.usage["rows"] == FRESH
    if statistic == "shift":
        assert a.global_result.n_scored > 500 and a.global_result.var > 0
    else:  # LoRA moved the top-1 at a share of the ~6,000 positions
        assert a.global_result.n_scored > 50 and not v.usage["text_excluded"]
    assert set(a.named) <= {"thief"}, a.named  # never the bystander or a decoy
    if v.verdict != "detected":  # a negative needs far more than 64 texts: "inconclusive"
        assert v.verdict == "inconclusive", (v.verdict, a.global_result, v.plan)
        assert a.global_result.n_scored < v.plan.tokens_for_min_shift
    for s in a.controls:
        assert s.ks_p > 1e-3, s


def test_the_real_base_model_is_not_detected(real_run):
    v = check(real_run, "gemma-3-270m", "mass")
    a = v.suspect_analysis
    assert v.verdict in ("inconclusive", "not detected"), v.verdict
    assert a.global_result.p_value > 1e-3 and a.named == []
    for s in a.controls:
        assert s.ks_p > 1e-3, s
