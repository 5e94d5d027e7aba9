"""Student training (sequence-level KD, sparse top-k KD, LoRA), evaluation, provenance.

Names resolve lazily, so `from distillery.distill import TrainConfig` (config validation in
the CLI) does not pay for importing torch, transformers and peft.
"""

from __future__ import annotations

from distillery.lazy import lazy_getattr

_WHERE = {
    "EvalConfig": "config", "TrainConfig": "config",
    "EvalResult": "evaluation", "Metric": "evaluation", "evaluate": "evaluation",
    "gap_closed": "evaluation",
    "bits": "losses", "response_ce_loss": "losses", "topk_kl_loss": "losses",
    "build_manifest": "manifest", "dataset_summary": "manifest", "verify_manifest": "manifest",
    "TrainResult": "trainer", "load_student": "trainer", "train": "trainer",
}
__all__ = sorted(_WHERE)


__getattr__ = lazy_getattr(__name__, _WHERE)
