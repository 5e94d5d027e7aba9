"""Prompt strategies, the harvesting client, and the harvested dataset."""

from distillery.harvest.config import HarvestConfig, load_config
from distillery.harvest.dataset import DatasetWriter, dataset_sha256, read_rows, to_parquet
from distillery.harvest.harvester import HarvestReport, harvest, parse_retry_after
from distillery.harvest.prompts import (
    COT_VARIANTS,
    TAXONOMY,
    Prompt,
    PromptFile,
    cot_prompts,
    iter_prompts,
    load_seed_tasks,
    prompt_hash,
    seed_prompts,
    taxonomy_prompts,
)
from distillery.harvest.rouge import rouge_l
from distillery.harvest.selfinstruct import SelfInstructConfig, self_instruct

__all__ = [
    "COT_VARIANTS", "TAXONOMY", "DatasetWriter", "HarvestConfig", "HarvestReport", "Prompt",
    "PromptFile", "SelfInstructConfig", "cot_prompts", "dataset_sha256", "harvest",
    "iter_prompts", "load_config", "load_seed_tasks", "parse_retry_after", "prompt_hash",
    "read_rows", "rouge_l", "self_instruct", "seed_prompts", "taxonomy_prompts", "to_parquet",
]
