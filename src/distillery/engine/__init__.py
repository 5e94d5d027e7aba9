"""Batched generation: sampling parameters, logits processors, top-k logprobs, streaming."""

from distillery.engine.base import ENGINES, Engine, chat_request, load_engine, pick_engine, stream
from distillery.engine.llama_engine import LlamaCppEngine
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
    "ENGINES", "MAX_TOP_LOGPROBS", "Choice", "Engine", "GenerationRequest", "GenerationResult",
    "LlamaCppEngine", "LogitsProcessor", "SamplingParams", "StreamDelta", "TokenLogprob",
    "TokenSampler", "TorchEngine", "chat_request", "load_engine", "pick_engine", "stream",
]
