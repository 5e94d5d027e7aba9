"""Student training (sequence-level KD, sparse top-k KD, LoRA), evaluation, provenance."""

from distillery.distill.config import EvalConfig, TrainConfig
from distillery.distill.evaluate import EvalResult, Metric, evaluate, gap_closed
from distillery.distill.losses import bits, response_ce_loss, topk_kl_loss
from distillery.distill.manifest import build_manifest, dataset_summary, verify_manifest
from distillery.distill.trainer import TrainResult, load_student, train

__all__ = [
    "EvalConfig", "EvalResult", "Metric", "TrainConfig", "TrainResult", "bits",
    "build_manifest", "dataset_summary", "evaluate", "gap_closed", "load_student",
    "response_ce_loss", "topk_kl_loss", "train", "verify_manifest",
]
