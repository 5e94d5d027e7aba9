"""`distillery train`, `distillery evaluate`, `distillery manifest verify`."""

from __future__ import annotations

import json

import click

from distillery.cli import default, given
from distillery.distill.config import EvalConfig, TrainConfig


def _t(name: str):
    return default(TrainConfig, name)


def _e(name: str):
    return default(EvalConfig, name)


@click.command()
@click.argument("dataset")
@click.option("-o", "--output-dir", default=None,
              help="checkpoints, student/, snapshots/, manifest.json  [required]")
@click.option("--config", "config_path", default=None, help="TOML with TrainConfig keys (top "
              "level or a [train] table); flags override it")
@click.option("--student", default=_t("student"), show_default=True,
              help="the model to train: registered name or local HF directory")
@click.option("--kd-weight", type=float, default=_t("kd_weight"), show_default=True,
              help="weight of the top-k KL (needs a shared tokenizer and --top-logprobs data)")
@click.option("--lora/--full", "lora", default=_t("lora"), show_default=True,
              help="train a LoRA adapter, or every weight")
@click.option("--lora-r", type=int, default=_t("lora_r"), show_default=True,
              help="LoRA rank")
@click.option("--lora-alpha", type=int, default=_t("lora_alpha"), show_default=True,
              help="LoRA scaling (alpha / r)")
@click.option("--learning-rate", "--lr", "learning_rate", type=float,
              default=_t("learning_rate"), show_default=True, help="~2e-5 for --full")
@click.option("--batch-size", type=int, default=_t("batch_size"), show_default=True,
              help="answers per step (per micro-step with --grad-accum)")
@click.option("--grad-accum", type=int, default=_t("grad_accum"), show_default=True,
              help="micro-batches per optimizer step")
@click.option("--max-steps", type=int, default=_t("max_steps"), show_default=True,
              help="optimizer steps")
@click.option("--max-len", type=int, default=_t("max_len"), show_default=True,
              help="prompt + answer tokens; longer answers are cut")
@click.option("--heldout-fraction", type=float, default=_t("heldout_fraction"),
              show_default=True, help="split by prompt hash; give evaluate the same")
@click.option("--eval-every", type=int, default=_t("eval_every"), show_default=True,
              help="held-out loss every N steps (0 = start and end only)")
@click.option("--save-every", type=int, default=_t("save_every"), show_default=True,
              help="checkpoint every N steps (0 = end only)")
@click.option("--snapshot-steps", type=int, multiple=True,
              help="also keep the student after step N (repeatable): a learning curve")
@click.option("--seed", type=int, default=_t("seed"), show_default=True,
              help="initialisation and batch order")
@click.option("--num-threads", type=int, default=None,
              help="torch threads  [default: torch's, i.e. $OMP_NUM_THREADS]")
@click.option("--no-resume", is_flag=True, help="start over: ignore (and remove) the "
              "checkpoints and snapshots already in the output directory")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@click.pass_context
def train(ctx, dataset, config_path, no_resume, no_progress, **flags) -> None:
    """Fine-tune a student on the harvested DATASET (answers only; optional top-k KD).

    An interrupted run resumes from its last checkpoint when run again with the same
    dataset and output directory; another dataset there is refused."""
    from distillery.harvest.config import load_config

    cfg = load_config(TrainConfig, config_path, section="train", dataset=dataset,
                      resume=False if no_resume else None, **given(ctx, flags))
    from distillery.distill.trainer import train

    r = train(cfg, progress=not no_progress)
    click.echo(f"{r.steps} steps; held-out loss {r.heldout_loss_before:.4f} -> "
               f"{r.heldout_loss_after:.4f} nats/token; {r.tokens_per_s:.0f} tokens/s; peak "
               f"RSS {r.peak_rss_mb:.0f} MiB; {r.wall_s:.0f} s")
    click.echo(f"student: {r.student_dir}")
    click.echo(f"manifest: {cfg.output_dir}/manifest.json")


def _fmt(name: str, m, digits: int = 3) -> str:
    lo, hi = m.student_ci
    glo, ghi = m.gap_closed_ci
    return (f"{name:<8} student {m.student:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]  "
            f"base {m.base:.{digits}f}  teacher {m.teacher:.{digits}f}  gap closed "
            f"{m.gap_closed:.2f} [{glo:.2f}, {ghi:.2f}]")


@click.command()
@click.argument("dataset")
@click.option("--student", default=None,
              help="<output_dir>/student from `distillery train`  [required]")
@click.option("--config", "config_path", default=None, help="TOML with EvalConfig keys (top "
              "level or an [evaluate] table); flags override it")
@click.option("--base", default=None, help="the student before training (full fine-tuning) "
              " [default: the base named in student.json]")
@click.option("--teacher", default=None,
              help="local teacher weights (a model name) for its bits per byte  [default: the "
              "harvested logprobs: harvest with --top-logprobs]")
@click.option("--heldout-fraction", type=float, default=_e("heldout_fraction"),
              show_default=True, help="must match training")
@click.option("--max-examples", type=int, default=_e("max_examples"), show_default=True,
              help="held-out prompts evaluated")
@click.option("--max-new-tokens", type=int, default=_e("max_new_tokens"), show_default=True,
              help="length of the generated answers for ROUGE-L")
@click.option("--bootstrap", type=int, default=_e("bootstrap"), show_default=True,
              help="resamples for the confidence intervals")
@click.option("--no-rouge", is_flag=True, help="bits per byte only (no generation)")
@click.option("--rouge-max-examples", type=int, default=None,
              help="ROUGE-L on the first N held-out prompts only (generation is slow) "
              " [default: all]")
@click.option("--num-threads", type=int, default=None,
              help="torch threads  [default: torch's, i.e. $OMP_NUM_THREADS]")
@click.option("--no-progress", is_flag=True, help="no progress bars")
@click.option("--json", "json_out", default=None, help="write the full result here")
@click.pass_context
def evaluate(ctx, dataset, config_path, no_rouge, no_progress, json_out, **flags) -> None:
    """Teacher-relative metrics on DATASET's held-out prompts, with bootstrap CIs."""
    from distillery.harvest.config import load_config

    cfg = load_config(EvalConfig, config_path, section="evaluate", dataset=dataset,
                      rouge=False if no_rouge else None, **given(ctx, flags))
    from distillery.distill.evaluation import evaluate, write_eval

    r = evaluate(cfg, progress=not no_progress)
    click.echo(f"{r.n_prompts} held-out prompts ({r.n_rouge_prompts} for ROUGE-L), "
               f"{r.wall_s:.0f} s")
    click.echo(_fmt("bpb", r.bpb))
    if r.rouge_l is not None:
        click.echo(_fmt("rouge-l", r.rouge_l))
    if json_out:
        write_eval(json_out, r, cfg)


@click.group()
def manifest() -> None:
    """Provenance manifests of distilled students."""


@manifest.command("verify")
@click.argument("manifest_path")
@click.option("--dataset", default=None, help="default: the path recorded in the manifest")
@click.option("--json", "as_json", is_flag=True,
              help="one JSON object: ok, problems, and the manifest's summary")
def verify(manifest_path, dataset, as_json) -> None:
    """Check MANIFEST_PATH is complete and matches its dataset's hash and counts."""
    from distillery.distill.manifest import read_manifest, verify_manifest

    problems = verify_manifest(manifest_path, dataset)
    m = read_manifest(manifest_path)
    if as_json:
        click.echo(json.dumps({"ok": not problems, "problems": problems,
                               "queries": m.get("queries", {}).get("count"),
                               "teacher": m.get("teacher"), "dataset": m.get("dataset")}))
    else:
        for p in problems:
            click.echo(f"problem: {p}", err=True)
        if not problems:
            click.echo(f"ok: {m['queries']['count']} queries to "
                       f"{', '.join(m['teacher']['models'])}, dataset sha256 "
                       f"{m['dataset']['sha256'][:16]}…")
    if problems:
        raise SystemExit(1)


COMMANDS = [train, evaluate, manifest]
