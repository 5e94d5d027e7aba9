"""TrainConfig and EvalConfig: validated in __post_init__, loadable from TOML (see
`distillery.harvest.config.load_config`), overridable by flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class TrainConfig:
    dataset: str = ""                 # harvested JSONL
    output_dir: str = ""              # checkpoints, the student, the manifest
    student: str = "gemma-3-270m"     # registered name or a local HF directory
    # 0 = sequence-level KD only (SFT on the answers); > 0 mixes in the sparse top-k KL
    # (needs a student sharing the teacher's tokenizer and harvested top-k logprobs).
    kd_weight: float = 0.0
    lora: bool = True                 # False = full fine-tuning
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: str = "all-linear"  # peft target_modules; comma-separated names also work
    learning_rate: float = 2e-4       # LoRA's usual; use ~2e-5 for full fine-tuning
    weight_decay: float = 0.0
    warmup_steps: int = 10
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int = 200
    max_len: int = 256                # prompt + answer tokens; longer answers are cut
    heldout_fraction: float = 0.1     # split by prompt hash; evaluation uses the same split
    eval_every: int = 50              # held-out loss every N steps (0 = start and end only)
    eval_max_examples: int = 64
    save_every: int = 50              # checkpoint every N steps (0 = end only)
    # also save the student as it is after these steps (snapshots/step-NNNNNN/, a learning
    # curve from one run: the student after the first n * batch_size answers)
    snapshot_steps: tuple[int, ...] = ()
    log_every: int = 10
    seed: int = 0
    dtype: str = "float32"
    num_threads: int | None = None    # torch.set_num_threads (the machine is shared)
    resume: bool = True               # continue from the latest checkpoint in output_dir

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ValueError("dataset is required: the JSONL written by `distillery harvest`")
        if not self.output_dir:
            raise ValueError("output_dir is required: where the student and manifest go")
        if not 0 <= self.kd_weight <= 1:
            raise ValueError("kd_weight must be in [0, 1] (0 = SFT only, 1 = top-k KL only)")
        if self.lora and (self.lora_r < 1 or self.lora_alpha < 1):
            raise ValueError("lora_r and lora_alpha must be >= 1 (try r=16, alpha=32)")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError("lora_dropout must be in [0, 1)")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be > 0 (2e-4 for LoRA, 2e-5 for full)")
        if self.batch_size < 1 or self.grad_accum < 1 or self.max_steps < 1:
            raise ValueError("batch_size, grad_accum and max_steps must be >= 1")
        if self.max_len < 16:
            raise ValueError("max_len must be >= 16 tokens")
        if not 0 <= self.heldout_fraction < 1:
            raise ValueError("heldout_fraction must be in [0, 1)")
        if any(s < 1 for s in self.snapshot_steps):
            raise ValueError("snapshot_steps must be >= 1")
        if min(self.eval_every, self.save_every, self.warmup_steps) < 0 or self.log_every < 1:
            raise ValueError("eval_every, save_every, warmup_steps must be >= 0, log_every >= 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class EvalConfig:
    dataset: str = ""                 # harvested JSONL (the held-out split is used)
    student: str = ""                 # a trained student directory (output_dir/student)
    base: str | None = None           # the student before training (default: read from it)
    teacher: str | None = None        # local teacher weights; default: harvested logprobs
    heldout_fraction: float = 0.1     # must match training; 1: the whole dataset is held out
    max_examples: int = 100
    max_len: int = 384
    max_new_tokens: int = 128         # student answers for ROUGE-L
    batch_size: int = 8
    bootstrap: int = 1000             # resamples of the held-out prompts for the CIs
    confidence: float = 0.95
    seed: int = 0
    rouge: bool = True                # generating answers is the slow part; off = bpb only
    rouge_max_examples: int | None = None  # ROUGE-L on the first N held-out prompts only
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if not self.dataset or not self.student:
            raise ValueError("dataset and student are required (the harvested JSONL and the "
                             "student directory written by `distillery train`)")
        if not 0 <= self.heldout_fraction <= 1:
            raise ValueError("heldout_fraction must be in [0, 1] and match training (1: a "
                             "dataset of held-out prompts only)")
        if self.max_examples < 2:
            raise ValueError("max_examples must be >= 2 (confidence intervals need several)")
        if self.bootstrap < 100:
            raise ValueError("bootstrap must be >= 100 resamples (1000 is usual)")
        if not 0.5 < self.confidence < 1:
            raise ValueError("confidence must be in (0.5, 1), e.g. 0.95")
        if self.rouge_max_examples is not None and self.rouge_max_examples < 2:
            raise ValueError("rouge_max_examples must be >= 2 (or unset for all)")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
