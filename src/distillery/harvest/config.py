"""HarvestConfig (TOML loading with flag overrides: distillery.config.load_config)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from distillery.config import load_config  # noqa: F401  (its old home: callers import it here)


@dataclass
class HarvestConfig:
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "smollm2-135m-instruct"
    # One or more API keys; requests rotate over them (a campaign spread over accounts).
    # Empty: read $OPENAI_API_KEY (a comma-separated list is accepted there too).
    api_keys: list[str] = field(default_factory=list)
    concurrency: int = 8              # requests in flight
    rpm_per_key: float = 0.0          # client-side limit per key, requests/minute (0 = none)
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    top_logprobs: int = 0             # ask for top-k logprobs (0 = none; servers cap at 20)
    seed: int | None = None
    timeout_s: float = 120.0
    max_retries: int = 8              # per prompt, over 429 / 5xx / timeouts / connection
    backoff_base_s: float = 0.5       # exponential backoff: base * 2^attempt, jittered
    backoff_max_s: float = 30.0
    limit: int | None = None          # harvest at most this many new prompts
    # Price per million tokens, for the cost shown while harvesting.
    price_in_per_m: float = 0.0
    price_out_per_m: float = 0.0
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.api_keys, str):
            self.api_keys = [k for k in self.api_keys.split(",") if k]
        self.api_keys = list(self.api_keys)
        if not self.api_keys:
            env = os.environ.get("OPENAI_API_KEY", "")
            self.api_keys = [k.strip() for k in env.split(",") if k.strip()]
        if not self.api_keys:
            raise ValueError("no API key: pass --api-key (repeatable), api_keys in the config "
                             "file, or set OPENAI_API_KEY")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url must be an http(s) URL ending in /v1, got {self.base_url!r}")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.rpm_per_key < 0:
            raise ValueError("rpm_per_key must be >= 0 (0 disables the client-side limit)")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if not 0 <= self.top_logprobs <= 20:
            raise ValueError(
                "top_logprobs must be in [0, 20] (OpenAI-compatible servers cap at 20)")
        if self.max_retries < 0 or self.backoff_base_s < 0 or self.backoff_max_s < 0:
            raise ValueError("max_retries and backoff times must be >= 0")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if self.limit is not None and self.limit < 0:
            raise ValueError("limit must be >= 0")

    def public(self) -> dict:
        """The configuration without secrets (for logs and the manifest)."""
        d = dataclasses.asdict(self)
        d["api_keys"] = len(self.api_keys)
        return d
