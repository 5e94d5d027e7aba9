"""Batched generation: sampling parameters, logits processors, top-k logprobs, streaming."""

from distillery.engine.base import Engine, chat_request, stream
from distillery.engine.params import (
    MAX_TOP_LOGPROBS,
    Choice,
    GenerationRequest,
    GenerationResult,
    LogitsProcessor,
    SamplingParams,
    StreamDelta,
    TokenLogprob,
    TokenSampler,
)
from distillery.engine.torch_engine import TorchEngine

__all__ = [
    "MAX_TOP_LOGPROBS", "Choice", "Engine", "GenerationRequest", "GenerationResult",
    "LogitsProcessor", "SamplingParams", "StreamDelta", "TokenLogprob", "TokenSampler",
    "TorchEngine", "chat_request", "stream",
]
