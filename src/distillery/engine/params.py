"""Requests, sampling parameters and results shared by every engine backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

MAX_TOP_LOGPROBS = 20  # what OpenAI-compatible servers (and vLLM by default) offer
MAX_N = 64
MAX_STOP = 16

FinishReason = Literal["stop", "length", "abort"]  # abort: cancelled by the caller


class LogitsProcessor(Protocol):
    """transformers' signature, so its processors (e.g. WatermarkLogitsProcessor) plug in.

    input_ids: (b, T) left-padded prompt + generated ids of the rows sharing this processor;
    scores: (b, V) next-token logits. Returns the new (b, V) logits.
    """

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        ...


class TokenSampler(Protocol):
    """Replaces random sampling (e.g. Gumbel-max watermark: deterministic given the key).

    input_ids: (b, T) as above; logits: (b, V) after temperature and top-p (masked = -inf).
    Returns (b,) token ids.
    """

    def __call__(self, input_ids: torch.LongTensor, logits: torch.FloatTensor) -> torch.LongTensor:
        ...


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None  # choice i of n uses seed + i
    n: int = 1
    repetition_penalty: float = 1.0  # CTRL-style (Keskar et al. 2019), as in transformers
    logprobs: bool = False
    top_logprobs: int = 0
    logits_processors: list[LogitsProcessor] = field(default_factory=list)
    sampler: TokenSampler | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if not isinstance(self.max_tokens, int) or self.max_tokens <= 0:
            raise ValueError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if not 0 <= self.temperature <= 100:
            raise ValueError(
                f"temperature must be in [0, 100] (0 = greedy), got {self.temperature}"
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not isinstance(self.n, int) or not 1 <= self.n <= MAX_N:
            raise ValueError(f"n must be an integer in [1, {MAX_N}], got {self.n!r}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise ValueError(
                f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {self.top_logprobs}"
            )
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs=True")
        if len(self.stop) > MAX_STOP or not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"stop must be at most {MAX_STOP} non-empty strings")
        if self.seed is not None and not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class GenerationRequest:
    """A prompt as text (tokenized by the engine) or as token ids."""

    prompt: str | list[int]
    params: SamplingParams = field(default_factory=SamplingParams)

    def __post_init__(self) -> None:
        if not self.prompt or (isinstance(self.prompt, str) and not self.prompt.strip()):
            raise ValueError("prompt is empty: give some text to continue")


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    token: str
    logprob: float
    top: tuple[tuple[int, str, float], ...] = ()  # (id, text, logprob), most likely first


@dataclass
class Choice:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    logprobs: list[TokenLogprob] | None = None


@dataclass
class GenerationResult:
    prompt_tokens: int
    choices: list[Choice]

    @property
    def completion_tokens(self) -> int:
        return sum(len(c.token_ids) for c in self.choices)


@dataclass(frozen=True)
class StreamDelta:
    """One increment of one choice: new text (possibly empty), and the finish reason at the end."""

    request_index: int
    choice_index: int
    text: str
    token: TokenLogprob | None = None
    finish_reason: FinishReason | None = None
