"""A fast fake engine with the engine's interface, for load tests and the overhead benchmark.

It answers every choice with `tokens` fixed words at once (no model), streams them as
deltas, and reports logprobs. Its default tokenizer splits on whitespace, so that a
benchmark of the gateway measures the gateway, not a tokenizer.
"""

from __future__ import annotations

import math
import threading
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
    continuous_batching = False  # the Engine protocol: generate() takes no admit=
    def __init__(self, tokens: int = 8, tokenizer=None, model_name: str = "fake",
                 max_context: int = 8192):
        self.tokens = tokens
        self.tokenizer = tokenizer or WhitespaceTokenizer()
        self.model_name = model_name
        self.max_context = max_context
        self.calls = 0  # generate() calls, and requests seen: how batching grouped them
        self.requests_seen = 0
        self._word_ids = [self.tokenizer.encode(w)[0] for w in WORDS]

    def encode(self, prompt: str | list[int]) -> list[int]:
        return list(prompt) if isinstance(prompt, list) else self.tokenizer.encode(prompt)

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_delta: Callable[[StreamDelta], None] | None = None,
    ) -> list[GenerationResult]:
        self.calls += 1
        self.requests_seen += len(requests)
        results = []
        lp = -math.log(len(WORDS))
        for ri, req in enumerate(requests):
            p = req.params
            k = min(self.tokens, p.max_tokens)
            choices = []
            for c in range(p.n):
                ids = [self._word_ids[(c + t) % len(WORDS)] for t in range(k)]
                words = [WORDS[(c + t) % len(WORDS)] for t in range(k)]
                logprobs = None
                if p.logprobs:
                    top = tuple((self._word_ids[j], WORDS[j], lp)
                                for j in range(min(p.top_logprobs, len(WORDS))))
                    logprobs = [TokenLogprob(i, w + " ", lp, top)
                                for i, w in zip(ids, words, strict=True)]
                finish = "length" if k == p.max_tokens else "stop"
                if on_delta is not None:
                    for t, w in enumerate(words):
                        last = t == k - 1
                        on_delta(StreamDelta(ri, c, w + " ", logprobs[t] if logprobs else None,
                                             finish if last else None))
                choices.append(Choice(c, "".join(w + " " for w in words), ids, finish,
                                      logprobs))
            results.append(GenerationResult(len(self.encode(req.prompt)), choices))
        return results
