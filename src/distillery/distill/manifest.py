"""The provenance manifest written beside every student.

What a distilled model's disclosure needs (cf. the EU AI Act's training-content summary for
general-purpose models): which teacher (endpoint and model), how many queries and tokens, when,
with which prompt strategies, exactly which data (sha256 of the dataset in canonical order),
and how the student was trained. `verify_manifest` checks a manifest against its dataset.
"""

from __future__ import annotations

import json
import platform
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from distillery.distill.config import TrainConfig
from distillery.harvest.dataset import dataset_sha256, read_rows

SCHEMA = "distillery.provenance/1"
REQUIRED = ("schema", "created_at", "student", "teacher", "queries", "dataset", "training",
            "result")


def dataset_summary(path: str | Path) -> dict:
    """Counts, tokens, dates, strategies and the canonical hash of a harvested dataset."""
    rows = read_rows(path)
    if not rows:
        raise ValueError(f"dataset {path} is empty: nothing to describe")
    dates = sorted(r["created_at"] for r in rows)
    strategies = Counter(r.get("strategy", "") for r in rows)
    return {
        "teacher": {
            "endpoints": sorted({r["endpoint"] for r in rows}),
            "models": sorted({r["model"] for r in rows}),
        },
        "queries": {
            "count": len(rows),
            "prompt_tokens": sum(r["usage"]["prompt_tokens"] for r in rows),
            "completion_tokens": sum(r["usage"]["completion_tokens"] for r in rows),
            "with_logprobs": sum(bool(r.get("logprobs")) for r in rows),
            "api_keys_used": len({r["key_index"] for r in rows}),
            "first": dates[0],
            "last": dates[-1],
            "strategies": dict(sorted(strategies.items())),
        },
        "dataset": {"path": str(Path(path).resolve()), "sha256": dataset_sha256(path),
                    "rows": len(rows), "hash_of": "canonical JSON lines sorted by prompt_hash"},
    }


def build_manifest(cfg: TrainConfig, result) -> dict:
    summary = dataset_summary(cfg.dataset)
    import torch
    import transformers

    return {
        "schema": SCHEMA,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "student": {"base_model": cfg.student, "method": "lora" if cfg.lora else "full",
                    "objective": "sequence-level KD" + (" + top-k KL" if cfg.kd_weight else ""),
                    "path": result.student_dir},
        **summary,
        "training": {"config": cfg.to_dict(),
                     "software": {"torch": torch.__version__,
                                  "transformers": transformers.__version__,
                                  "python": platform.python_version()}},
        "result": asdict(result),
    }


def write_manifest(path: str | Path, cfg: TrainConfig, result) -> dict:
    m = build_manifest(cfg, result)
    Path(path).write_text(json.dumps(m, indent=2, ensure_ascii=False))
    return m


def read_manifest(path: str | Path) -> dict:
    """The manifest as a dict; a file that is not one is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}: `distillery train` writes "
                                "<output_dir>/manifest.json")
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None
    if not isinstance(m, dict):
        raise ValueError(f"{path}: not a manifest (a JSON object)")
    return m


def verify_manifest(manifest_path: str | Path, dataset_path: str | Path | None = None
                    ) -> list[str]:
    """Problems with a manifest ([] = complete and matching its dataset)."""
    m = read_manifest(manifest_path)
    problems = [f"missing field {k!r}" for k in REQUIRED if k not in m]
    if problems:
        return problems
    if m["schema"] != SCHEMA:
        problems.append(f"schema {m['schema']!r} is not {SCHEMA!r}")
    data = Path(dataset_path or m["dataset"]["path"])
    if not data.is_file():
        return [*problems, f"dataset {data} not found"]
    actual = dataset_summary(data)
    if actual["dataset"]["sha256"] != m["dataset"]["sha256"]:
        problems.append("dataset sha256 differs: the dataset changed after training")
    for key in ("count", "prompt_tokens", "completion_tokens", "first", "last", "strategies"):
        if actual["queries"][key] != m["queries"].get(key):
            problems.append(f"queries.{key} is {m['queries'].get(key)!r}, dataset says "
                            f"{actual['queries'][key]!r}")
    if actual["teacher"] != m["teacher"]:
        problems.append("teacher endpoints/models differ from the dataset's")
    return problems
