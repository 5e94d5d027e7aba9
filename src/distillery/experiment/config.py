"""ExperimentConfig: one closed-loop run (`distillery experiment [CONFIG.toml]`), validated.

The defaults are `make demo`'s small configuration: about 15 minutes on a quiet 2-core CPU.
`configs/experiment-gpu.toml` is the larger one for a GPU machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# benign personas (accounts x requests per account): hard negatives included
DEMO_BENIGN = {"developer": (3, 20), "student": (4, 8), "writer": (2, 12),
               "support_bot": (1, 48), "eval_run": (1, 40), "translation": (1, 32)}
# the extraction: a campaign of 8 accounts in lockstep, 30 requests each
DEMO_ATTACK = {"campaign": (8, 30)}
# benign only, another seed: the audit's thresholds (never the scored traffic)
DEMO_CALIBRATION = {"developer": (12, 120), "student": (20, 40), "writer": (8, 80),
                    "support_bot": (4, 250), "eval_run": (4, 200), "translation": (4, 200)}


@dataclass
class ExperimentConfig:
    run_dir: str = "runs/experiment"  # every stage's output; a killed run resumes from it
    seed: int = 0
    # the provider
    teacher: str = "smollm2-135m-instruct"
    watermark: str = "kgw"  # kgw | gumbel: the gateway's scheme, per-account keys
    generation_cap: int = 48  # new tokens served per answer, whatever max_tokens asks
    max_batch_size: int = 16
    # traffic (audit/simulate.py personas): benign accounts and the extraction
    benign: dict = field(default_factory=lambda: dict(DEMO_BENIGN))
    attack: dict = field(default_factory=lambda: dict(DEMO_ATTACK))
    calibration: dict = field(default_factory=lambda: dict(DEMO_CALIBRATION))
    days: float = 0.25  # accounts start at random times in [0, days) of simulated time
    concurrency: int = 16  # requests in flight during the replay
    # the audit: a pass every `audit_every` requests of the timeline (deterministic), its
    # policy settings as in AuditConfig (flag_fpr, block_fpr, strikes, ...)
    embedder: str = "minilm"  # minilm (the shipped all-MiniLM-L6-v2) | hashing
    # audit windows (rows): a small run's accounts reach 100 rows, not the default 200
    window_sizes: tuple[int, ...] = (20, 50, 100)
    audit_every: int = 20
    audit: dict = field(default_factory=dict)
    # the thief's student
    student: str = "gemma-3-270m"
    epochs: float = 1.0
    batch_size: int = 8
    max_len: int = 128
    learning_rate: float = 2e-4
    # evaluation: held-out seed tasks the campaign never sent, answered by the teacher
    eval_prompts: int = 24
    # forensics: fresh unmarked teacher answers read by each student (the exact test)
    forensics_texts: int = 40
    # disagree: each student's top-1 token (exact binomial) where it differs from its base's
    # (the LoRA adapter off): the strongest measured, on same- and cross-family students
    # (BENCHMARKS Forensics) | argmax: its top-1 everywhere | mass: the green mass of its top-k
    # distribution (the texts are unmarked, as it needs) | shift: the same of its difference
    # from its base
    forensics_statistic: str = "disagree"
    forensics_max_tokens: int = 64
    controls: int = 100
    alpha: float = 1e-6
    num_threads: int | None = None  # torch threads (None: torch's default)

    def __post_init__(self) -> None:
        from distillery.audit.simulate import ATTACKS, BENIGN, CAMPAIGNS

        if self.watermark not in ("kgw", "gumbel"):
            raise ValueError(f"watermark must be kgw or gumbel, got {self.watermark!r}")
        for name, mix, allowed in (("benign", self.benign, set(BENIGN)),
                                   ("calibration", self.calibration, set(BENIGN)),
                                   ("attack", self.attack, set(ATTACKS) | set(CAMPAIGNS))):
            bad = set(mix) - allowed
            if bad:
                raise ValueError(f"{name}: unknown personas {sorted(bad)}; valid: "
                                 f"{', '.join(sorted(allowed))}")
            for persona, v in mix.items():
                if len(v) != 2 or min(v) < 1:
                    raise ValueError(f"{name}.{persona} must be [accounts, requests], both >= 1")
            mix.update({k: tuple(int(x) for x in v) for k, v in mix.items()})
        if not self.attack:
            raise ValueError("attack is empty: the experiment needs an extraction to catch")
        self.window_sizes = tuple(sorted(int(x) for x in self.window_sizes))
        if not self.window_sizes or self.window_sizes[0] < 5:
            raise ValueError("window_sizes must be sizes of at least 5 rows")
        if self.forensics_statistic not in ("mass", "shift", "argmax", "disagree"):
            raise ValueError("forensics_statistic must be mass, shift, argmax or disagree, got "
                             f"{self.forensics_statistic!r}")
        if self.forensics_statistic in ("mass", "shift") and self.watermark != "kgw":
            raise ValueError("the green-mass statistic is defined for KGW: use "
                             "forensics_statistic = \"argmax\" or \"disagree\" with gumbel")
        if self.embedder not in ("minilm", "hashing"):
            raise ValueError(f"embedder must be minilm or hashing, got {self.embedder!r}")
        for name in ("generation_cap", "max_batch_size", "concurrency", "audit_every",
                     "batch_size", "max_len", "eval_prompts", "forensics_texts",
                     "forensics_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.eval_prompts < 2:
            raise ValueError("eval_prompts must be >= 2 (confidence intervals need several)")
        if self.epochs <= 0 or self.days <= 0:
            raise ValueError("epochs and days must be positive")
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must be in (0, 1)")
        from distillery.audit import AuditConfig

        AuditConfig(**self.audit)  # a bad policy setting fails here, not an hour later

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_toml(cls, path=None, **overrides) -> ExperimentConfig:
        """Values from a TOML file (top level or an [experiment] table), then overrides."""
        from distillery.config import load_config

        return load_config(cls, path, section="experiment", **overrides)
