"""The engine interface, and helpers that work over any backend.

A backend (this package's TorchEngine today; llama.cpp on CPU or vLLM on GPU later) needs a
tokenizer, a model name and one batched `generate`. Streaming and chat are built on top.
"""

from __future__ import annotations

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
