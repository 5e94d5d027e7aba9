"""`distillery train`, `distillery evaluate`, `distillery manifest verify`."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("dataset")
@click.option("-o", "--output-dir", default=None, help="checkpoints, student/, manifest.json")
@click.option("--config", "config_path", default=None, help="TOML with TrainConfig keys")
@click.option("--student", default=None, help="registered name or HF dir [gemma-3-270m]")
@click.option("--kd-weight", type=float, default=None,
              help="weight of the top-k KL (needs a shared tokenizer and --top-logprobs data)")
@click.option("--lora/--full", "lora", default=None, help="LoRA adapter (default) or full")
@click.option("--lora-r", type=int, default=None)
@click.option("--lora-alpha", type=int, default=None)
@click.option("--learning-rate", "--lr", "learning_rate", type=float, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--grad-accum", type=int, default=None)
@click.option("--max-steps", type=int, default=None)
@click.option("--max-len", type=int, default=None)
@click.option("--heldout-fraction", type=float, default=None)
@click.option("--eval-every", type=int, default=None)
@click.option("--save-every", type=int, default=None)
@click.option("--snapshot-steps", type=int, multiple=True, callback=lambda c, p, v: v or None,
              help="also keep the student after step N (repeatable): a learning curve")
@click.option("--seed", type=int, default=None)
@click.option("--num-threads", type=int, default=None)
@click.option("--no-resume", is_flag=True, help="ignore checkpoints in output_dir")
@click.option("--no-progress", is_flag=True)
def train(dataset, config_path, no_resume, no_progress, **flags) -> None:
    """Fine-tune a student on the harvested DATASET (answers only; optional top-k KD)."""
    from distillery.distill.config import TrainConfig
    from distillery.harvest.config import load_config

    cfg = load_config(TrainConfig, config_path, section="train", dataset=dataset,
                      resume=False if no_resume else None, **flags)
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
@click.option("--student", default=None, help="<output_dir>/student from `distillery train`")
@click.option("--config", "config_path", default=None, help="TOML with EvalConfig keys")
@click.option("--base", default=None, help="the student before training (full fine-tuning)")
@click.option("--teacher", default=None,
              help="local teacher weights for its bpb (default: the harvested logprobs)")
@click.option("--heldout-fraction", type=float, default=None)
@click.option("--max-examples", type=int, default=None)
@click.option("--max-new-tokens", type=int, default=None)
@click.option("--bootstrap", type=int, default=None)
@click.option("--no-rouge", is_flag=True, help="bits per byte only (no generation)")
@click.option("--rouge-max-examples", type=int, default=None,
              help="ROUGE-L on the first N held-out prompts only (generation is slow)")
@click.option("--num-threads", type=int, default=None)
@click.option("--json", "json_out", default=None, help="write the full result here")
def evaluate(dataset, config_path, no_rouge, json_out, **flags) -> None:
    """Teacher-relative metrics on DATASET's held-out prompts, with bootstrap CIs."""
    from distillery.distill.config import EvalConfig
    from distillery.harvest.config import load_config

    cfg = load_config(EvalConfig, config_path, section="evaluate", dataset=dataset,
                      rouge=False if no_rouge else None, **flags)
    from distillery.distill.evaluation import evaluate, write_eval

    r = evaluate(cfg)
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
def verify(manifest_path, dataset) -> None:
    """Check MANIFEST_PATH is complete and matches its dataset's hash and counts."""
    from distillery.distill import verify_manifest

    problems = verify_manifest(manifest_path, dataset)
    if problems:
        for p in problems:
            click.echo(f"problem: {p}", err=True)
        raise SystemExit(1)
    from pathlib import Path

    m = json.loads(Path(manifest_path).read_text())
    click.echo(f"ok: {m['queries']['count']} queries to {', '.join(m['teacher']['models'])}, "
               f"dataset sha256 {m['dataset']['sha256'][:16]}…")


COMMANDS = [train, evaluate, manifest]
