"""ForensicsConfig: one check's inputs, validated in __post_init__, loadable from TOML."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

KGW_ONLY = ("mass", "shift")  # statistics of the green list's mass: Gumbel has no green bit


@dataclass
class ForensicsConfig:
    suspect: str = ""                 # a student dir, a model name or dir (open), or a URL (api)
    mode: str = "auto"                # open | api | auto (a URL means api)
    teacher: str = "smollm2-135m-instruct"  # the watermark lives in its tokens
    scheme: str = "kgw"               # as the gateway served (`serve --watermark`)
    scheme_params: dict = field(default_factory=dict)  # e.g. {"delta": 2.0}: gateway defaults
    key_file: str | None = None       # the key ring; None: $DISTILLERY_WATERMARK_KEY or default
    database: str | None = None       # the usage store: texts, prompts and account names
    dataset: str | None = None        # texts / prompts from this JSONL instead of the store
    account: str | None = None        # test this account alone, on its own stored answers
    accounts: tuple[str, ...] = ()    # account names to test (default: all in the database)
    clusters: dict = field(default_factory=dict)  # name -> account names, pooled under one null
    budget_tokens: int | None = None  # planned scored tuples of the global layer (None: all)
    max_rows: int | None = None       # texts read (open) or prompts sent (api), at most
    skip_rows: int = 0                # rows a pilot (`forensics plan`) used: never reuse them
    fresh: int = 0                    # open mode: read N fresh *unmarked* teacher answers to
                                      # the stored prompts (exact) instead of the stored ones
    # the --dataset answers are not marked by the tested keys (e.g. fresh teacher answers, as
    # --fresh makes): their own (window, token) tuples are then scored too, not excluded
    # (nothing in the text depends on a key; excluding them drops the student's strongest
    # evidence: the tokens it now ranks first where its base did not, BENCHMARKS Forensics)
    unmarked_text: bool = False
    # argmax (the suspect's top-1 token, exact binomial, any text) | mass (its top_k
    # distribution's green mass, Bernstein bound: more power; KGW only; open mode needs
    # unmarked text, i.e. --fresh N or a dataset of unmarked answers; api mode reads the
    # endpoint's top_logprobs on the suspect's own answers) | shift (open mode: the green mass
    # of the suspect's distribution minus its clean base's: the base's share of the noise is
    # gone; needs the base, i.e. a LoRA student or --reference with the same tokenizer) |
    # disagree (open mode: the argmax's exact test at the positions where the suspect's top-1
    # differs from its clean base's; any text and scheme; needs the base as shift does;
    # api mode: the suspect's generated token where the teacher's own top-1 on its answer,
    # read with the teacher's unmarked weights, differs)
    statistic: str = "argmax"
    top_k: int = 32
    # api mode: top logprobs asked per generated token (OpenAI serves at most 20); None: 20
    # with the mass statistic (the most there is: each adds mass, hence power), else 0
    top_logprobs: int | None = None
    reference: str | None = None      # clean model (default: the suspect's base, else gemma)
    controls: int = 100               # keys that never served anyone, tested beside
    alpha: float = 1e-6               # family-wise level of the verdict
    tamper_alpha: float = 1e-3        # lower-tail level for "tampering suspected"
    min_shift: float = 0.005          # smallest green-rate shift a "not detected" must exclude
    seed: int = 0                     # the order texts / prompts are drawn in
    batch_size: int = 8
    max_len: int = 512
    num_threads: int | None = None
    # api mode
    api_key: str = "none"
    model: str | None = None          # the endpoint's model name (default: the suspect URL's)
    max_tokens: int = 128
    temperature: float = 0.7
    concurrency: int = 8
    work_dir: str | None = None       # answers kept here: an interrupted check resumes

    def __post_init__(self) -> None:
        if not self.suspect:
            raise ValueError("suspect is required: a student directory, a model, or a URL")
        if self.mode == "auto":
            self.mode = "api" if self.suspect.startswith(("http://", "https://")) else "open"
        if self.mode not in ("open", "api"):
            raise ValueError(f"mode must be open, api or auto, got {self.mode!r}")
        if self.mode == "api" and not self.suspect.startswith(("http://", "https://")):
            raise ValueError(f"api mode needs the suspect's base URL, got {self.suspect!r}")
        if self.database is None and self.dataset is None:
            raise ValueError("give --database (the usage store) or --dataset (a JSONL of our "
                             "texts): the check needs our texts or the harvest's prompts")
        if self.account is not None and self.accounts:
            raise ValueError("give --account or an account list, not both")
        if self.controls < 0:
            raise ValueError(f"controls must be >= 0, got {self.controls}")
        if not 0 < self.alpha < 1 or not 0 < self.tamper_alpha < 1:
            raise ValueError("alpha and tamper_alpha must be in (0, 1)")
        if self.min_shift <= 0:
            raise ValueError(f"min_shift must be > 0, got {self.min_shift}")
        for name in ("budget_tokens", "max_rows"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        from distillery.forensics.check import STATISTICS
        from distillery.forensics.evidence import PAIRED

        if self.statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got "
                             f"{self.statistic!r}")
        if self.top_logprobs is None:
            self.top_logprobs = 20 if self.mode == "api" and self.statistic == "mass" else 0
        if not 0 <= self.top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be in [0, 20] (OpenAI-compatible servers cap "
                             f"at 20), got {self.top_logprobs}")
        if self.statistic in KGW_ONLY and self.scheme != "kgw":
            raise ValueError(f"the {self.statistic} statistic is defined for KGW (--scheme kgw)")
        if self.mode == "api" and self.statistic in PAIRED and self.statistic != "disagree":
            raise ValueError(f"the {self.statistic} statistic reads an open-weights suspect "
                             "beside its base (--mode open); in api mode use --statistic "
                             "disagree, mass or argmax")
        if self.mode == "api" and self.statistic == "mass" and self.top_logprobs < 2:
            raise ValueError("the mass statistic in api mode reads the endpoint's top "
                             f"logprobs: give --top-logprobs 2..20, got {self.top_logprobs}")
        if self.mode == "open" and self.statistic in ("mass", "shift"):
            if not self.fresh and self.dataset is None:
                raise ValueError(f"the {self.statistic} statistic needs text not marked with the "
                                 "tested keys: give --fresh N (unmarked teacher answers)")
            if self.top_k < 2:
                raise ValueError(f"top_k must be >= 2 for the green mass, got {self.top_k}")
        if self.fresh < 0:
            raise ValueError(f"fresh must be >= 0, got {self.fresh}")
        if self.unmarked_text and (self.mode != "open" or self.dataset is None):
            raise ValueError("unmarked_text declares a --dataset of unmarked answers read in "
                             "open mode (--fresh N makes its own)")
        if self.skip_rows < 0 or self.batch_size < 1 or self.max_len < 16:
            raise ValueError("skip_rows >= 0, batch_size >= 1 and max_len >= 16 are required")
        self.clusters = {k: tuple(v) for k, v in self.clusters.items()}
        self.accounts = tuple(self.accounts)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("api_key")
        return d
