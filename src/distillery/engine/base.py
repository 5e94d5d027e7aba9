"""The engine interface, and helpers that work over any backend.

A backend (this package's TorchEngine today; llama.cpp on CPU or vLLM on GPU later) needs a
tokenizer, a model name and one batched `generate`. Streaming and chat are built on top.
"""

from __future__ import annotations

import importlib.util
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from transformers import PreTrainedTokenizerBase

from distillery.engine.params import (
    GenerationRequest,
    GenerationResult,
    SamplingParams,
    StreamDelta,
)
from distillery.models.chat import default_stop, format_chat


class Engine(Protocol):
    """What a backend provides. A backend whose `continuous_batching` is True also takes
    `admit=` and `on_result=` in `generate`, and one whose `cancellable` is True takes
    `is_cancelled=` (see TorchEngine.generate)."""

    model_name: str
    tokenizer: PreTrainedTokenizerBase
    continuous_batching: bool
    cancellable: bool

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_delta: Callable[[StreamDelta], None] | None = None,
    ) -> list[GenerationResult]:
        """Run all requests (n choices each) in shared batches; report text as it is decoded."""
        ...


ENGINES = ("auto", "torch", "llama")


def pick_engine(model: str, engine: str = "auto") -> str:
    """The backend for a model: "auto" is llama.cpp when llama-cpp-python is installed (the
`[llama]` extra) and the model ships a GGUF (faster on CPU at every concurrency, BENCHMARKS.md,
Engine), else torch (any Hugging Face model: students, local directories)."""
    from distillery.models.registry import has_gguf, resolve

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    installed = importlib.util.find_spec("llama_cpp") is not None
    gguf = model != "fake" and has_gguf(resolve(model))
    if engine == "llama" and not installed:
        raise ValueError("the llama engine needs llama-cpp-python: make install, or pip install "
                         "-e '.[llama]' (it builds llama.cpp from source, ~5 minutes on 2 cores)")
    if engine == "llama" and not gguf:
        raise ValueError(f"model {model!r} ships no GGUF: serve it with --engine torch")
    if engine != "auto":
        return engine
    return "llama" if installed and gguf else "torch"


def load_engine(model: str, engine: str = "auto", dtype: str = "float32",
                max_batch_size: int = 64) -> Engine:
    """A backend by name (see pick_engine); dtype applies to the torch engine only."""
    if pick_engine(model, engine) == "llama":
        from distillery.engine.llama_engine import LlamaCppEngine

        return LlamaCppEngine(model, max_batch_size=max_batch_size)
    from distillery.engine.torch_engine import TorchEngine

    return TorchEngine.from_name(model, dtype=dtype, max_batch_size=max_batch_size)


def chat_request(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict], params: SamplingParams
) -> GenerationRequest:
    """A chat turn as a text request; base models also stop where the user's turn would start."""
    extra = [s for s in default_stop(tokenizer) if s not in params.stop]
    if extra:
        params.stop = [*params.stop, *extra]
    return GenerationRequest(prompt=format_chat(tokenizer, messages), params=params)


def stream(engine: Engine, request: GenerationRequest) -> Iterator[StreamDelta]:
    """Yield deltas of one request as they are generated (generation runs in a thread)."""
    q: queue.Queue = queue.Queue()
    done = object()

    def run() -> None:
        try:
            engine.generate([request], on_delta=q.put)
        except BaseException as e:  # re-raised in the consumer
            q.put(e)
        q.put(done)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
    thread.join()
