"""Radioactivity on the real models, end to end, cross-family: the SmolLM2 gateway (Gumbel-max,
context width 1, on the torch engine at batch 64) serves a thief account and a bystander; a
Gemma-3-270M student is fully fine-tuned on the thief's harvest (320 answers x 128 tokens, 2
epochs); the open-weights check reads 160 fresh *unmarked* teacher answers through it, maps
its top-1 through text to SmolLM2's tokens and scores it at the positions where it differs from
its untouched base's (the disagree statistic; the text's own tuples scored, exact on unmarked
text) among 100 account keys and 100 control keys.

Gumbel, not the gateway's default KGW delta 2, for the margin: a CPU-sized student inherits
both, Gumbel more (BENCHMARKS.md, Forensics, "A cross-family student detected": the same recipe
at 400 answers, 128 texts, z 9.2 and p 1e-17 under Gumbel, z 6.8 and p 2e-11 under KGW).
The test asserts the verdict, not a power: the student is detected and the thief named, the
bystander and the decoys are not, the controls stay uniform; the untouched base Gemma is not
detected. About 30 minutes on 2 cores."""

from __future__ import annotations

import json
import math
import random

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

SCHEME, WM = "gumbel", {"context_width": 1}
HARVEST, FRESH, TOKENS = 320, 160, 128
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
    cfg = ServeConfig(model="smollm2-135m-instruct", watermark=SCHEME, watermark_params=WM,
                      watermark_key=str(key_file), database=db, port=0, rpm_limit=100_000,
                      tpm_limit=100_000_000, engine="torch", max_batch_size=64,
                      log_level="warning")
    data = run / "harvest.jsonl"
    server = start_in_thread(cfg, timeout=600)
    try:
        for name, ps in (("thief", prompts[:HARVEST]), ("bystander", prompts[-8:])):
            rep = harvest(ps, run / f"harvest-{name}.jsonl", HarvestConfig(
                base_url=server.base_url + "/v1", model="smollm2-135m-instruct",
                api_keys=[keys[name]], concurrency=64, max_tokens=TOKENS, temperature=0.7,
                top_p=0.95, timeout_s=900, progress=False))
            assert rep.failed == 0
    finally:
        server.stop()
    data.write_text((run / "harvest-thief.jsonl").read_text())
    res = train(TrainConfig(dataset=str(data), output_dir=str(run / "student"),
                            student="gemma-3-270m", lora=False, batch_size=8,
                            max_steps=math.ceil(2 * HARVEST / 8), max_len=256,
                            learning_rate=5e-5, warmup_steps=10, heldout_fraction=0.0,
                            eval_every=0, save_every=0, num_threads=2), progress=False)
    fresh = generate_locally([TextRow(p.messages, "") for p in prompts[HARVEST: HARVEST + FRESH]],
                             "smollm2-135m-instruct", max_tokens=96, engine="torch")
    texts = run / "fresh.jsonl"
    texts.write_text("".join(json.dumps({"messages": list(r.messages), "response": r.response})
                             + "\n" for r in fresh))
    return {"db": db, "key_file": str(key_file), "student": res.student_dir,
            "texts": str(texts)}


def check(real_run, suspect: str, statistic: str):
    from distillery.forensics import ForensicsConfig, run_check

    return run_check(ForensicsConfig(
        suspect=suspect, mode="open", dataset=real_run["texts"], unmarked_text=True,
        database=real_run["db"], key_file=real_run["key_file"], scheme=SCHEME,
        scheme_params=WM, accounts=("thief", "bystander", *DECOYS), statistic=statistic,
        controls=100, max_len=256, num_threads=2), progress=False)


def test_the_real_student_is_detected_and_the_thief_named(real_run):
    v = check(real_run, real_run["student"], "disagree")
    a = v.suspect_analysis
    print(v.verdict, a.global_result, a.named, [(x.name, x.result.z, x.adjusted_p)
                                                for x in a.accounts[:3]])
    assert v.usage["rows"] == FRESH and not v.usage["text_excluded"]
    assert v.verdict == "detected", (v.verdict, a.global_result, v.plan)
    assert a.global_result.p_value <= 1e-6
    assert a.named == ["thief"], a.named  # never the bystander or a decoy
    for s in a.controls:
        assert s.ks_p > 1e-3, s


def test_the_real_base_model_is_not_detected(real_run):
    v = check(real_run, "gemma-3-270m", "argmax")
    a = v.suspect_analysis
    print(v.verdict, a.global_result, a.named)
    assert v.verdict in ("inconclusive", "not detected"), v.verdict
    assert a.global_result.p_value > 1e-3 and a.named == []
    for s in a.controls:
        assert s.ks_p > 1e-3, s
