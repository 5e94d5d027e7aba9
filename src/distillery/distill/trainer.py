"""Student training: sequence-level KD (+ sparse top-k KD), LoRA or full, checkpoints, resume.

A plain torch loop rather than TRL's trainers: TRL is not installed here, and the loop is
short enough to read (nanoGPT-style), handles the sparse top-k targets that TRL's GKD trainer
(which wants the full teacher model) does not, and resumes exactly: the batch order is a pure
function of (seed, epoch), and each checkpoint holds the trainable weights, the optimizer, the
scheduler and the step.

Layout of output_dir:
  checkpoints/step-NNNNNN/  trainable.pt, optimizer.pt, scheduler.pt, state.json (last 2 kept)
  student/                  the final student (LoRA adapter or full model) + student.json
  snapshots/step-NNNNNN/    the student after step N, for each of cfg.snapshot_steps
  train_result.json, manifest.json
"""

from __future__ import annotations

import json
import logging
import math
import resource
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from distillery.distill.config import TrainConfig
from distillery.distill.data import Example, batches, collate, encode_rows, split_rows
from distillery.distill.forward import answer_logits
from distillery.distill.losses import topk_kl_loss
from distillery.harvest.dataset import dataset_sha256, read_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    steps: int
    train_examples: int
    heldout_examples: int
    heldout_loss_before: float        # mean nats per answer token, held-out split
    heldout_loss_after: float
    train_loss_last: float            # mean over the last log_every steps
    tokens_seen: int                  # non-padding tokens through the model (this run)
    tokens_per_s: float
    peak_rss_mb: float
    peak_gpu_mb: float
    wall_s: float
    student_dir: str
    resumed_from: int


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def apply_lora(model, cfg: TrainConfig):
    from peft import LoraConfig, get_peft_model

    targets = cfg.lora_targets
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    pcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, pcfg)


def step_loss(model, batch: dict[str, torch.Tensor], kd_weight: float) -> torch.Tensor:
    """(1 - w) * response CE + w * top-k KL (losses.py); the KL term only where targets exist.
    Logits are computed only at answer positions (forward.py)."""
    logits, targets, keep = answer_logits(model, batch["input_ids"], batch["attention_mask"],
                                          batch["labels"])
    ce = F.cross_entropy(logits.float(), targets) if len(targets) else logits.sum() * 0.0
    if kd_weight == 0 or "kd_b" not in batch:
        return ce
    row = keep.flatten().cumsum(0).view_as(keep) - 1  # (b, t) -> row of logits
    s = logits[row[batch["kd_b"], batch["kd_t"]]]  # (N, V)
    kd = topk_kl_loss(s, batch["kd_ids"], batch["kd_lp"], batch["kd_mask"])
    return (1 - kd_weight) * ce + kd_weight * kd


@torch.no_grad()
def heldout_loss(model, examples: list[Example], pad_id: int, batch_size: int = 8) -> float:
    """Mean cross-entropy per answer token (nats) over examples."""
    if not examples:
        return float("nan")
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    total, n = 0.0, 0
    for i in range(0, len(examples), batch_size):
        b = {k: v.to(dev) for k, v in collate(examples[i : i + batch_size], pad_id).items()}
        logits, targets, _ = answer_logits(model, b["input_ids"], b["attention_mask"],
                                           b["labels"])
        total += float(F.cross_entropy(logits.float(), targets, reduction="sum"))
        n += len(targets)
    model.train(was_training)
    return total / max(n, 1)


def _latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((out / "checkpoints").glob("step-*"))
    return ckpts[-1] if ckpts else None


def _resumable_checkpoint(out: Path, cfg: TrainConfig, data_sha: str) -> Path | None:
    """The checkpoint to resume from, refusing one trained on another dataset: the manifest
    names one dataset, so a run that mixed two would misstate its provenance. Without
    resume, an earlier run's checkpoints and snapshots are removed (starting over)."""
    ckpt = _latest_checkpoint(out)
    if ckpt is None:
        return None
    if not cfg.resume:
        log.warning("--no-resume: removing the earlier run's checkpoints and snapshots in %s",
                    out)
        for d in ("checkpoints", "snapshots"):
            shutil.rmtree(out / d, ignore_errors=True)
        return None
    state = json.loads((ckpt / "state.json").read_text())
    recorded = state.get("dataset_sha256")
    if recorded is None and (out / "manifest.json").is_file():  # checkpoints before the hash
        recorded = json.loads((out / "manifest.json").read_text())["dataset"]["sha256"]
    if recorded is not None and recorded != data_sha:
        raise ValueError(
            f"{out} holds a run trained on another dataset (sha256 {recorded[:12]}…, this one "
            f"{data_sha[:12]}…): give a new --output-dir, or --no-resume to start over there")
    return ckpt


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(out: Path, step: int, model, opt, sched, dataset_sha: str) -> None:
    d = out / "checkpoints" / f"step-{step:06d}"
    tmp = d.with_name(d.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(_trainable_state(model), tmp / "trainable.pt")
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    torch.save(sched.state_dict(), tmp / "scheduler.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "dataset_sha256": dataset_sha}))
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)  # a checkpoint is complete or absent
    for old in sorted((out / "checkpoints").glob("step-??????"))[:-2]:
        shutil.rmtree(old, ignore_errors=True)


def save_student(model, tokenizer, cfg: TrainConfig, out: Path, name: str = "student") -> Path:
    d = out / name
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    (d / "student.json").write_text(json.dumps({"base": cfg.student, "lora": cfg.lora}))
    return d


def load_student(path: str | Path):
    """A trained student directory -> (model, tokenizer, base name). LoRA adapters are loaded
    onto their base (models.load), so `with model.disable_adapter():` gives the base back."""
    from distillery.models import load
    from distillery.models.registry import STUDENT_FILE

    path = Path(path)
    if not (path / STUDENT_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a student directory (no {STUDENT_FILE}): "
                                "point at <output_dir>/student from `distillery train`")
    loaded = load(str(path))
    loaded.model.eval()
    return loaded.model, loaded.tokenizer, loaded.spec.base


def train(cfg: TrainConfig, progress: bool = True) -> TrainResult:
    """Fine-tune cfg.student on the harvested answers; see the module docstring."""
    from distillery.models import load

    t_start = time.perf_counter()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    data_sha = dataset_sha256(cfg.dataset)
    ckpt = _resumable_checkpoint(out, cfg, data_sha)
    out.mkdir(parents=True, exist_ok=True)
    loaded = load(cfg.student, dtype=cfg.dtype)
    tok, model = loaded.tokenizer, loaded.model
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(dev)
    rows_train, rows_held = split_rows(read_rows(cfg.dataset), cfg.heldout_fraction)
    if not rows_train:
        raise ValueError(f"no training rows in {cfg.dataset} after holding out "
                         f"{cfg.heldout_fraction:.0%}: harvest more answers")
    use_topk = cfg.kd_weight > 0
    train_ex = encode_rows(rows_train, tok, cfg.max_len, use_topk)
    held_ex = encode_rows(rows_held[: cfg.eval_max_examples], tok, cfg.max_len)
    if cfg.lora:
        model = apply_lora(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

    def lr_lambda(step: int) -> float:  # linear warm-up, then linear decay to 10%
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return max(0.1, 1 - 0.9 * frac)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    step = 0
    if ckpt is not None:
        missing = model.load_state_dict(torch.load(ckpt / "trainable.pt"), strict=False)
        assert not missing.unexpected_keys, missing.unexpected_keys
        opt.load_state_dict(torch.load(ckpt / "optimizer.pt"))
        sched.load_state_dict(torch.load(ckpt / "scheduler.pt"))
        step = json.loads((ckpt / "state.json").read_text())["step"]
        log.info("resumed from %s (step %d)", ckpt, step)
    resumed_from = step
    pad = tok.pad_token_id
    before = heldout_loss(model, held_ex, pad, cfg.batch_size)
    log.info("held-out loss before: %.4f", before)
    n_micro = cfg.batch_size
    per_epoch = batches(train_ex, n_micro, cfg.seed, 0)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=step, desc="train", unit="step",
                   dynamic_ncols=True)
    tokens, recent, t_loop = 0, [], time.perf_counter()
    while step < cfg.max_steps:
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for micro in range(cfg.grad_accum):
            k = step * cfg.grad_accum + micro
            epoch, idx = divmod(k, len(per_epoch))
            order = batches(train_ex, n_micro, cfg.seed, epoch)
            b = collate([train_ex[i] for i in order[idx]], pad)
            b = {key: v.to(dev) for key, v in b.items()}
            loss = step_loss(model, b, cfg.kd_weight) / cfg.grad_accum
            loss.backward()
            loss_sum += float(loss.detach())
            tokens += int(b["attention_mask"].sum())
        if not math.isfinite(loss_sum):
            raise RuntimeError(f"loss is {loss_sum} at step {step}: lower learning_rate")
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        step += 1
        recent = [*recent[-(cfg.log_every - 1):], loss_sum]
        tps = tokens / (time.perf_counter() - t_loop)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum:.3f}", tok_s=f"{tps:.0f}")
        if step % cfg.log_every == 0:
            log.info("step %d loss %.4f lr %.2e %.0f tok/s", step, sum(recent) / len(recent),
                     sched.get_last_lr()[0], tps)
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps:
            log.info("step %d held-out loss %.4f", step,
                     heldout_loss(model, held_ex, pad, cfg.batch_size))
        if cfg.save_every and step % cfg.save_every == 0:
            _save_checkpoint(out, step, model, opt, sched, data_sha)
        if step in cfg.snapshot_steps:
            save_student(model, tok, cfg, out, f"snapshots/step-{step:06d}")
    train_s = time.perf_counter() - t_loop
    if bar is not None:
        bar.close()
    _save_checkpoint(out, step, model, opt, sched, data_sha)
    after = heldout_loss(model, held_ex, pad, cfg.batch_size)
    log.info("held-out loss after: %.4f", after)
    student_dir = save_student(model, tok, cfg, out)
    result = TrainResult(
        steps=step, train_examples=len(train_ex), heldout_examples=len(held_ex),
        heldout_loss_before=before, heldout_loss_after=after,
        train_loss_last=sum(recent) / len(recent) if recent else float("nan"),
        tokens_seen=tokens, tokens_per_s=tokens / train_s if train_s and tokens else 0.0,
        peak_rss_mb=peak_rss_mb(),
        peak_gpu_mb=torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else 0.0,
        wall_s=time.perf_counter() - t_start, student_dir=str(student_dir),
        resumed_from=resumed_from)
    (out / "train_result.json").write_text(json.dumps(asdict(result), indent=2))
    from distillery.distill.manifest import write_manifest

    write_manifest(out / "manifest.json", cfg, result)
    return result
