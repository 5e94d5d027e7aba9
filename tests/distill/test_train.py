import json

import pytest

from distillery.distill import (
    EvalConfig,
    TrainConfig,
    evaluate,
    load_student,
    train,
    verify_manifest,
)
from distillery.harvest import dataset_sha256
from distillery.harvest.dataset import DatasetWriter


def tcfg(data, out, **kw):
    base = dict(dataset=str(data), output_dir=str(out), student="tiny-random", max_steps=12,
                batch_size=4, max_len=64, learning_rate=1e-2, warmup_steps=0, eval_every=0,
                save_every=6, heldout_fraction=0.2, num_threads=1, lora_r=8, lora_alpha=16)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained(echo_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return out, train(tcfg(echo_dataset, out, snapshot_steps=(3,)), progress=False)


def test_a_few_lora_steps_lower_the_heldout_loss(trained):
    _, res = trained
    assert res.steps == 12 and res.heldout_examples > 0
    assert res.heldout_loss_after < res.heldout_loss_before - 0.5
    assert res.tokens_per_s > 0 and res.peak_rss_mb > 0


def test_manifest_is_complete_and_matches_the_dataset(trained, echo_dataset, tmp_path):
    out, res = trained
    m = json.loads((out / "manifest.json").read_text())
    assert verify_manifest(out / "manifest.json", echo_dataset) == []
    assert m["dataset"]["sha256"] == dataset_sha256(echo_dataset)
    assert m["queries"]["count"] == 60 and m["queries"]["completion_tokens"] == 60 * 9
    assert m["teacher"] == {"endpoints": ["http://fake/v1"], "models": ["fake"]}
    assert m["queries"]["strategies"] == {"seed": 60}
    assert m["queries"]["first"] < m["queries"]["last"]
    assert m["training"]["config"]["student"] == "tiny-random" and m["student"]["method"] == "lora"
    # a changed dataset no longer matches
    changed = tmp_path / "d.jsonl"
    changed.write_text(echo_dataset.read_text())
    rows = [json.loads(x) for x in changed.read_text().splitlines()]
    rows[0]["response"] = "tampered"
    changed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = verify_manifest(out / "manifest.json", changed)
    assert any("sha256" in p for p in problems)


def test_snapshot_keeps_the_student_after_its_step(trained):
    out, _ = trained
    import torch

    early, _, _ = load_student(out / "snapshots" / "step-000003")
    final, _, _ = load_student(out / "student")
    lora = [n for n, _ in early.named_parameters() if "lora_B" in n][0]
    a, b = dict(early.named_parameters())[lora], dict(final.named_parameters())[lora]
    assert a.abs().sum() > 0 and not torch.equal(a, b)


def test_student_loads_with_its_adapter(trained):
    out, _ = trained
    model, tok, base = load_student(out / "student")
    assert base == "tiny-random" and hasattr(model, "disable_adapter")


def test_every_command_taking_a_model_accepts_a_student_directory(trained):
    from click.testing import CliRunner

    from distillery.cli import main

    out, _ = trained
    res = CliRunner().invoke(main, ["generate", "--model", str(out / "student"), "--max-tokens",
                                    "4", "--seed", "0", "--no-stream", "Tell me about sea 1"])
    assert res.exit_code == 0, res.output
    assert res.output.strip()


def test_resume_continues_from_the_last_checkpoint(echo_dataset, trained, tmp_path):
    out, first = trained
    res = train(tcfg(echo_dataset, out, max_steps=16), progress=False)
    assert res.resumed_from == 12 and res.steps == 16
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == \
        ["step-000012", "step-000016"]


def test_full_finetuning_lowers_the_heldout_loss(echo_dataset, tmp_path):
    res = train(tcfg(echo_dataset, tmp_path, lora=False, learning_rate=3e-3, max_steps=4,
                     save_every=0), progress=False)
    assert res.heldout_loss_after < res.heldout_loss_before - 0.5
    model, _, _ = load_student(tmp_path / "student")
    assert not hasattr(model, "disable_adapter")


def test_sparse_topk_kd_trains_on_the_harvested_logprobs(engine_dataset, tmp_path):
    import torch

    from distillery.distill.data import collate, encode_rows, split_rows
    from distillery.distill.trainer import step_loss
    from distillery.harvest import read_rows
    from distillery.models import load

    m = load("tiny-random")
    rows = read_rows(engine_dataset)
    exs = [e for e in encode_rows(rows, m.tokenizer, 64, True) if e.topk]
    b = collate(exs[:4], m.tokenizer.pad_token_id)
    with torch.no_grad():
        ce, kd = step_loss(m.model, b, 0.0), step_loss(m.model, b, 1.0)
    # the tiny student *is* the tiny teacher (same seed, sampled at temperature 1, no penalty):
    # KL is zero up to float error (measured <= 5e-8); a misaligned position would show
    assert torch.isfinite(kd) and abs(float(kd)) < 1e-6 < float(ce)
    # a known target the student does not match yet: each position's top-5 logprobs reversed
    # (the same tokens, the teacher's probabilities on them flipped); training on the KL alone
    # must bring the student towards it on the training batch
    for r in rows:
        for t in r["logprobs"]:
            lps = [a["logprob"] for a in t["top"]][::-1]
            t["top"] = [{**a, "logprob": lp} for a, lp in zip(t["top"], lps, strict=True)]
    flipped = tmp_path / "flipped.jsonl"
    with DatasetWriter(flipped) as w:
        for r in rows:
            w.append(r)
    train_rows, _ = split_rows(rows, 0.2)
    batch = collate([e for e in encode_rows(train_rows, m.tokenizer, 64, True) if e.topk][:8],
                    m.tokenizer.pad_token_id)
    with torch.no_grad():
        before = float(step_loss(m.model, batch, 1.0))
    res = train(tcfg(flipped, tmp_path / "run", kd_weight=1.0, max_steps=12, save_every=0),
                progress=False)
    student, _, _ = load_student(tmp_path / "run" / "student")
    with torch.no_grad():
        after = float(step_loss(student, batch, 1.0))
    assert res.steps == 12 and before > 0.1
    assert after < 0.5 * before, (before, after)


def test_train_refuses_to_resume_on_another_dataset(trained, echo_rows, tmp_path):
    out, _ = trained
    other = tmp_path / "other.jsonl"
    with DatasetWriter(other) as w:
        for r in echo_rows(40):
            w.append(r)
    with pytest.raises(ValueError, match="another dataset.*--no-resume"):
        train(tcfg(other, out, max_steps=20), progress=False)
    # starting over in a copy of that directory: the earlier run's checkpoints and snapshots
    # go, and the manifest names the dataset the student was trained on
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    res = train(tcfg(other, copy, max_steps=2, resume=False, save_every=0), progress=False)
    assert res.resumed_from == 0 and not (copy / "snapshots").exists()
    assert verify_manifest(copy / "manifest.json") == []
    m = json.loads((copy / "manifest.json").read_text())
    assert m["dataset"]["sha256"] == dataset_sha256(other)


def test_topk_kd_refuses_a_dataset_without_logprobs(echo_dataset, tmp_path):
    with pytest.raises(ValueError, match="kd_weight = 0"):
        train(tcfg(echo_dataset, tmp_path, kd_weight=0.5), progress=False)


def test_evaluate_reports_gap_closed_with_cis(trained, echo_dataset, tmp_path):
    out, _ = trained
    # the echo rows carry no logprobs: the tiny-random base stands in as a 'teacher' model
    res = evaluate(EvalConfig(dataset=str(echo_dataset), student=str(out / "student"),
                              teacher="tiny-random", heldout_fraction=0.2, max_new_tokens=8,
                              bootstrap=200, num_threads=1))
    assert res.n_prompts >= 2
    assert res.bpb.student < res.bpb.base  # trained on the teacher's answers
    lo, hi = res.bpb.student_ci
    assert lo <= res.bpb.student <= hi
    assert 0 <= res.rouge_l.student <= 1
    pp = res.per_prompt
    assert len(pp["prompt_hash"]) == len(pp["bits_student"]) == res.n_prompts
    assert len(pp["rouge_student"]) == res.n_rouge_prompts == res.n_prompts
    # an earlier snapshot against the same base and teacher: only the student is run
    snap = evaluate(EvalConfig(dataset=str(echo_dataset), student=str(out / "snapshots" /
                                                                      "step-000003"),
                               teacher="tiny-random", heldout_fraction=0.2, rouge=False,
                               bootstrap=200, num_threads=1), reference=res)
    assert snap.per_prompt["bits_base"] == pp["bits_base"]
    assert res.bpb.student < snap.bpb.student < snap.bpb.base == res.bpb.base
    again = evaluate(EvalConfig(dataset=str(echo_dataset), student=str(out / "student"),
                                heldout_fraction=0.2, rouge=False, bootstrap=200,
                                num_threads=1), reference=res)  # no teacher needed
    assert again.bpb.student == pytest.approx(res.bpb.student)


def test_eval_checks_its_inputs_before_loading_anything(echo_dataset, tmp_path):
    from click.testing import CliRunner

    from distillery.cli import main

    # a student directory whose adapter weights are missing: the checks must come first
    student = tmp_path / "student"
    student.mkdir()
    (student / "student.json").write_text('{"base": "tiny-random", "lora": true}')
    with pytest.raises(ValueError, match="no teacher bits.*--teacher.*--top-logprobs"):
        evaluate(EvalConfig(dataset=str(echo_dataset), student=str(student),
                            heldout_fraction=0.2, rouge=False, bootstrap=100))
    r = CliRunner().invoke(main, ["evaluate", str(echo_dataset), "--student", str(student),
                                  "--teacher", "gpt-17", "--heldout-fraction", "0.2"])
    assert r.exit_code == 1 and "unknown model 'gpt-17'" in r.output, r.output
    r = CliRunner().invoke(main, ["evaluate", str(echo_dataset), "--student", str(tmp_path),
                                  "--teacher", "tiny-random", "--heldout-fraction", "0.2"])
    assert r.exit_code == 1 and "is not a student directory" in r.output, r.output


def test_evaluate_shows_progress(trained, echo_dataset, capsys):
    out, _ = trained
    evaluate(EvalConfig(dataset=str(echo_dataset), student=str(out / "student"),
                        teacher="tiny-random", heldout_fraction=0.2, max_new_tokens=2,
                        rouge_max_examples=2, bootstrap=100, num_threads=1), progress=True)
    err = capsys.readouterr().err
    for stage in ("bits: student", "bits: base", "bits: teacher", "answers: student"):
        assert stage in err, err[-500:]


def test_manifest_verify_json(trained, echo_dataset, tmp_path):
    from click.testing import CliRunner

    from distillery.cli import main

    out, _ = trained
    r = CliRunner().invoke(main, ["manifest", "verify", str(out / "manifest.json"), "--json"])
    v = json.loads(r.output)
    assert r.exit_code == 0 and v["ok"] is True and v["problems"] == [] and v["queries"] == 60
    changed = tmp_path / "d.jsonl"
    changed.write_text(echo_dataset.read_text().replace("sea 0", "sky 0", 1))
    r = CliRunner().invoke(main, ["manifest", "verify", str(out / "manifest.json"), "--dataset",
                                  str(changed), "--json"])
    v = json.loads(r.output)
    assert r.exit_code == 1 and v["ok"] is False and any("sha256" in p for p in v["problems"])
    (tmp_path / "m.json").write_text('{"schema": \n')
    r = CliRunner().invoke(main, ["manifest", "verify", str(tmp_path / "m.json")])
    assert r.exit_code == 1 and "m.json:2: not JSON" in r.output, r.output


def test_config_errors_say_how_to_fix(tmp_path):
    with pytest.raises(ValueError, match="distillery harvest"):
        TrainConfig(output_dir="x")
    with pytest.raises(ValueError, match="kd_weight"):
        TrainConfig(dataset="d", output_dir="o", kd_weight=2)
    with pytest.raises(ValueError, match="1000 is usual"):
        EvalConfig(dataset="d", student="s", bootstrap=5)


def test_empty_training_split_is_a_clear_error(tmp_path, echo_rows):
    p = tmp_path / "d.jsonl"
    with DatasetWriter(p) as w:
        w.append(echo_rows(1)[0])
    with pytest.raises(ValueError, match="harvest more"):
        train(tcfg(p, tmp_path / "o", heldout_fraction=0.99), progress=False)


def test_cli_trains_and_keeps_snapshots(echo_dataset, tmp_path):
    from click.testing import CliRunner

    from distillery.cli import main

    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", str(echo_dataset), "-o", str(out), "--student",
                                    "tiny-random", "--max-steps", "2", "--batch-size", "4",
                                    "--max-len", "64", "--snapshot-steps", "1",
                                    "--num-threads", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (out / "snapshots" / "step-000001" / "student.json").is_file()
    assert "student:" in res.output


def test_cli_config_file_values_stand_unless_a_flag_is_given(echo_dataset, tmp_path):
    """The flags show their defaults in --help; a flag left at its default must not
    override the --config file's value."""
    from click.testing import CliRunner

    from distillery.cli import main

    cfg = tmp_path / "train.toml"
    cfg.write_text(f'[train]\noutput_dir = "{tmp_path / "run"}"\nstudent = "tiny-random"\n'
                   "max_steps = 1\nbatch_size = 4\nmax_len = 64\nnum_threads = 1\n")
    res = CliRunner().invoke(main, ["train", str(echo_dataset), "--config", str(cfg),
                                    "--no-progress"])
    assert res.exit_code == 0 and res.output.startswith("1 steps;"), res.output
    res = CliRunner().invoke(main, ["train", str(echo_dataset), "--config", str(cfg),
                                    "--max-steps", "2", "--no-progress"])
    assert res.exit_code == 0 and res.output.startswith("2 steps;"), res.output
