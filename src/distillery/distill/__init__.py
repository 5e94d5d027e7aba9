"""Student training (sequence-level KD, sparse top-k KD, LoRA), evaluation, provenance.

Names resolve lazily, so `from distillery.distill import TrainConfig` (config validation in
the CLI) does not pay for importing torch, transformers and peft.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "EvalConfig": "config", "TrainConfig": "config",
    "EvalResult": "evaluation", "Metric": "evaluation", "evaluate": "evaluation",
    "gap_closed": "evaluation",
    "bits": "losses", "response_ce_loss": "losses", "topk_kl_loss": "losses",
    "build_manifest": "manifest", "dataset_summary": "manifest", "verify_manifest": "manifest",
    "TrainResult": "trainer", "load_student": "trainer", "train": "trainer",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
