"""Prompt strategies, the harvesting client, and the harvested dataset.

Names resolve lazily (module __getattr__), so the CLI can read HarvestConfig's defaults for
its help without importing the HTTP client.
"""

from __future__ import annotations

from distillery.lazy import lazy_getattr

_WHERE = {
    "HarvestConfig": "config", "load_config": "config",
    "DatasetWriter": "dataset", "dataset_sha256": "dataset", "iter_jsonl": "dataset",
    "read_rows": "dataset", "to_parquet": "dataset",
    "HarvestReport": "harvester", "harvest": "harvester", "parse_retry_after": "harvester",
    "COT_VARIANTS": "prompts", "TAXONOMY": "prompts", "Prompt": "prompts",
    "PromptFile": "prompts", "cot_prompts": "prompts", "iter_prompts": "prompts",
    "load_seed_tasks": "prompts", "prompt_hash": "prompts", "seed_prompts": "prompts",
    "taxonomy_prompts": "prompts",
    "rouge_l": "rouge",
    "SelfInstructConfig": "selfinstruct", "self_instruct": "selfinstruct",
}
__all__ = sorted(_WHERE)


__getattr__ = lazy_getattr(__name__, _WHERE)
