"""A fast fake engine with the engine's interface, for load tests and the overhead benchmark.

It answers every choice with `tokens` fixed words at once (no model), streams them as
deltas, and reports logprobs. Its default tokenizer splits on whitespace, so that a
benchmark of the gateway measures the gateway, not a tokenizer.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

from distillery.engine.params import (
    Choice,
    GenerationRequest,
    GenerationResult,
    StreamDelta,
    TokenLogprob,
)

WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "again")


class WhitespaceTokenizer:
    """Words <-> ids by a growing vocabulary; a chat template of "role: content" lines."""

    chat_template = "whitespace"
    eos_token_id = 0
    pad_token_id = 0

    def __init__(self) -> None:
        self._ids: dict[str, int] = {"<eos>": 0}
        self._words: list[str] = ["<eos>"]
        self._lock = threading.Lock()

    def _id(self, word: str) -> int:
        i = self._ids.get(word)
        if i is None:
            with self._lock:
                i = self._ids.setdefault(word, len(self._words))
                if i == len(self._words):
                    self._words.append(word)
        return i

    def encode(self, text: str, **_kw) -> list[int]:
        return [self._id(w) for w in text.split()]

    def decode(self, ids: Sequence[int], **_kw) -> str:
        return " ".join(self._words[i] if i < len(self._words) else "?" for i in ids)

    def apply_chat_template(self, messages: list[dict], **_kw) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"


class FakeEngine:
    """`tokens` words per choice, decoded in lock-step over the batch like a real engine's
    decode loop; `step_s` seconds per step make it slow (tests of timing and cancellation).

    Cancellation (what the batcher passes when `cancellable`): `generate(..., is_cancelled=f)`
    asks f(request index) before every step; a request it answers True for decodes no more,
    and its result keeps the tokens decoded so far with finish_reason "abort" (vLLM's name).
    """

    continuous_batching = False  # the Engine protocol: generate() takes no admit=
    cancellable = True  # generate() takes is_cancelled=

    def __init__(self, tokens: int = 8, tokenizer=None, model_name: str = "fake",
                 max_context: int = 8192, step_s: float = 0.0):
        self.tokens = tokens
        self.step_s = step_s
        self.tokenizer = tokenizer or WhitespaceTokenizer()
        self.model_name = model_name
        self.max_context = max_context
        self.calls = 0  # generate() calls, and requests seen: how batching grouped them
        self.requests_seen = 0
        self.steps = 0  # decode steps run (all calls)
        self.aborted = 0  # requests stopped by is_cancelled
        self._word_ids = [self.tokenizer.encode(w)[0] for w in WORDS]

    def encode(self, prompt: str | list[int]) -> list[int]:
        return list(prompt) if isinstance(prompt, list) else self.tokenizer.encode(prompt)

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_delta: Callable[[StreamDelta], None] | None = None,
        is_cancelled: Callable[[int], bool] | None = None,
    ) -> list[GenerationResult]:
        self.calls += 1
        self.requests_seen += len(requests)
        lengths = [min(self.tokens, r.params.max_tokens) for r in requests]
        decoded = [0] * len(requests)  # tokens decoded per request, per choice
        aborted: set[int] = set()
        for t in range(max(lengths, default=0)):
            live = [ri for ri in range(len(requests)) if t < lengths[ri] and ri not in aborted]
            if is_cancelled is not None:
                for ri in [ri for ri in live if is_cancelled(ri)]:
                    live.remove(ri)
                    aborted.add(ri)
                    self.aborted += 1
            if not live:  # every request finished or cancelled: the batch is free
                break
            if self.step_s:
                time.sleep(self.step_s)
            self.steps += 1
            for ri in live:
                req = requests[ri]
                decoded[ri] = t + 1
                if on_delta is not None:
                    last = t == lengths[ri] - 1
                    for c in range(req.params.n):
                        w = WORDS[(c + t) % len(WORDS)]
                        on_delta(StreamDelta(ri, c, w + " ", self._logprob(req, c, t),
                                             self._finish(req, lengths[ri]) if last else None))
        return [self._result(req, decoded[ri], "abort" if ri in aborted
                             else self._finish(req, lengths[ri]))
                for ri, req in enumerate(requests)]

    @staticmethod
    def _finish(req: GenerationRequest, length: int) -> str:
        return "length" if length == req.params.max_tokens else "stop"

    def _logprob(self, req: GenerationRequest, c: int, t: int) -> TokenLogprob | None:
        p = req.params
        if not p.logprobs:
            return None
        lp = -math.log(len(WORDS))
        top = tuple((self._word_ids[j], WORDS[j], lp)
                    for j in range(min(p.top_logprobs, len(WORDS))))
        i = (c + t) % len(WORDS)
        return TokenLogprob(self._word_ids[i], WORDS[i] + " ", lp, top)

    def _result(self, req: GenerationRequest, k: int, finish: str) -> GenerationResult:
        choices = []
        for c in range(req.params.n):
            words = [WORDS[(c + t) % len(WORDS)] for t in range(k)]
            ids = [self._word_ids[(c + t) % len(WORDS)] for t in range(k)]
            logprobs = [self._logprob(req, c, t) for t in range(k)] if req.params.logprobs \
                else None
            choices.append(Choice(c, "".join(w + " " for w in words), ids, finish, logprobs))
        return GenerationResult(len(self.encode(req.prompt)), choices)
