"""ServeConfig: everything `distillery serve` takes, validated, loadable from TOML."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

WATERMARKS = ("kgw", "gumbel", "none")
ENGINES = ("auto", "torch", "llama")  # engine.ENGINES (not imported: it loads torch)
LOOPS = ("auto", "uvloop", "asyncio")  # uvicorn's names; auto: uvloop when installed
HTTP_IMPLS = ("auto", "httptools", "h11")  # auto: httptools when installed


@dataclass
class ServeConfig:
    model: str = "smollm2-135m-instruct"  # a registered name, a local HF dir, or "fake"
    # auto | torch | llama (engine.pick_engine): auto is llama.cpp when installed and the
    # model ships a GGUF, else torch
    engine: str = "auto"
    watermark: str = "kgw"  # every response carries its account's key (kgw | gumbel | none)
    watermark_key: str | None = None  # the key ring's file; None: $DISTILLERY_WATERMARK_KEY
    # the scheme's parameters, e.g. {"context_width": 1, "delta": 2.0} (make_scheme's keyword
    # arguments; {}: the scheme's defaults). Forensics must be told the same (--context-width)
    watermark_params: dict = field(default_factory=dict)
    database: str | None = None  # SQLAlchemy URL; None: SQLite at $DISTILLERY_HOME
    host: str = "127.0.0.1"
    port: int = 8000
    # uvloop + httptools cut the server's own cost per request (see BENCHMARKS.md, Gateway)
    loop: str = "auto"
    http: str = "auto"
    # admin routes (/admin/...) need this bearer token; None disables them
    admin_token: str | None = field(default_factory=lambda: os.environ.get(
        "DISTILLERY_ADMIN_TOKEN") or None, repr=False)
    # /metrics and /openapi.json need this bearer token (or the admin token): the metrics
    # name every account. A secret like the key ring: from the environment, never logged
    metrics_token: str | None = field(default_factory=lambda: os.environ.get(
        "DISTILLERY_METRICS_TOKEN") or None, repr=False)
    public_docs: bool = False  # True: /docs and /openapi.json open to anyone
    header_timeout_s: float = 10.0  # a request's headers must arrive within this (else 408)
    body_timeout_s: float = 30.0  # and its body within this of the headers (else 408)
    redis_url: str | None = None  # shared rate limits across gateway processes
    redis_prefix: str = "distillery"
    # a Redis call slower than this counts as Redis down: per-process limits until it is back
    redis_timeout_s: float = 0.5
    redis_retry_s: float = 2.0  # while down, try Redis again this often
    rpm_limit: int = 600  # per key, unless the key sets its own
    tpm_limit: int = 1_000_000
    throttled_factor: float = 0.1  # a throttled account gets this fraction of its limits
    dynamic_batching: bool = True
    max_batch_size: int = 16  # requests per engine call
    batch_wait_ms: float = 0.0  # extra wait for companions once a request arrives
    max_queue: int = 256  # waiting requests beyond this get 503
    max_body_bytes: int = 1 << 20  # larger bodies get 413
    max_prompt_tokens: int = 4096  # longer prompts get 400 (context_length_exceeded)
    max_tokens_limit: int = 4096  # max_tokens above this gets 400
    default_max_tokens: int = 512  # chat requests without max_tokens
    # serve at most this many new tokens per answer, whatever max_tokens asks (the answer
    # ends with finish_reason "length"); the usage row keeps the max_tokens the client asked
    # for, which the audit reads. None: no cap. The closed loop's cost knob on a CPU.
    generation_cap: int | None = None
    max_n: int = 16
    store_text: bool = True  # False: usage rows keep only sha256 of prompts and responses
    auth_cache_ttl_s: float = 1.0  # key -> account/status cache; status changes apply within it
    usage_batch_size: int = 500
    usage_interval_s: float = 0.05
    fake_tokens: int = 8  # tokens per choice of the fake engine (model = "fake")
    # replayed traffic: honour the x-distillery-sim-time header as the usage row's created_at.
    # Off by default: a client must never choose the time its requests are recorded at.
    simulated_clock: bool = False
    # the background auditor (gateway/auditor.py): off unless a calibration file is given
    audit_calibration: str | None = None
    audit_config: str | None = None  # TOML of AuditConfig settings
    dtype: str = "float32"
    log_level: str = "info"

    def __post_init__(self) -> None:
        if self.watermark not in WATERMARKS:
            raise ValueError(f"watermark must be one of {', '.join(WATERMARKS)}, "
                             f"got {self.watermark!r}")
        if self.watermark_params and self.watermark != "none":
            from distillery.watermark import KeyRing, make_scheme

            # a throwaway ring: bad parameters fail here, not on the first request
            make_scheme(self.watermark, KeyRing.generate(), account="probe",
                        **self.watermark_params)
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.loop not in LOOPS:
            raise ValueError(f"loop must be one of {', '.join(LOOPS)}, got {self.loop!r}")
        if self.http not in HTTP_IMPLS:
            raise ValueError(f"http must be one of {', '.join(HTTP_IMPLS)}, got {self.http!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        for name in ("rpm_limit", "tpm_limit", "max_batch_size", "max_queue", "max_body_bytes",
                     "max_prompt_tokens", "max_tokens_limit", "default_max_tokens", "max_n",
                     "usage_batch_size", "fake_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.generation_cap is not None and self.generation_cap < 1:
            raise ValueError(f"generation_cap must be >= 1 or unset, got {self.generation_cap}")
        if not 0 < self.throttled_factor <= 1:
            raise ValueError(f"throttled_factor must be in (0, 1], got {self.throttled_factor}")
        if self.batch_wait_ms < 0 or self.auth_cache_ttl_s < 0 or self.usage_interval_s < 0:
            raise ValueError("batch_wait_ms, auth_cache_ttl_s and usage_interval_s must be >= 0")
        for name in ("header_timeout_s", "body_timeout_s", "redis_timeout_s", "redis_retry_s"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not 0 < v <= 3600:
                raise ValueError(f"{name} must be a number of seconds in (0, 3600], got {v!r}")
        for name in ("admin_token", "metrics_token"):
            v = getattr(self, name)
            if v is not None and len(v) < 16:
                raise ValueError(f"{name} must have at least 16 characters")

    @classmethod
    def from_toml(cls, path: str | Path | None = None, **overrides) -> ServeConfig:
        """Values from a TOML file (top level or a [serve] table), then non-None overrides."""
        from distillery.config import load_config

        return load_config(cls, path, section="serve", **overrides)
