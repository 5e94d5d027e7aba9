"""Continuous batching on llama.cpp (llama-cpp-python's low-level API), with our own sampling.

Why: on a CPU llama.cpp runs SmolLM2's 4-bit weights ~7x faster than the fp32 torch engine
for one stream (BENCHMARKS.md, Engine), but llama-cpp-python's `Llama` decodes one sequence
at a time. Here every running choice is its own llama.cpp sequence (a seq id in one unified
KV cache); each step puts every sequence's next token, and chunks of newly admitted prompts,
into one `llama_batch` and reads the logits of each sequence's last position.

Those logits then go through TorchEngine's own per-step code (this class inherits it):
repetition penalty, logits processors (the KGW watermark), temperature, top-p, the row's
seeded draw or a TokenSampler (the Gumbel watermark), logprobs, stop strings, streaming,
cancellation and admission. So a key marks text the same way on either engine, and the same
detector reads it; only the forward pass differs (4-bit weights and f16 KV cache here).

KV room is reserved per row (prompt + max_tokens) when it starts, so a step never runs out of
cache cells: a row that does not fit waits until running rows finish.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from distillery.engine.batch import Row
from distillery.engine.params import StreamDelta
from distillery.engine.torch_engine import TorchEngine, end_token_ids
from distillery.models.loader import gguf_file, load_tokenizer
from distillery.models.registry import resolve


@dataclass(eq=False)  # compared by identity
class _Seq:
    """A running row and its llama.cpp sequence."""

    row: Row
    seq_id: int
    ids: np.ndarray  # prompt + generated ids so far (capacity prompt + max_tokens)
    n: int  # ids known
    fed: int = 0  # ids already in the KV cache

    @property
    def reserved(self) -> int:
        return len(self.ids)


def _free(ll, ctx, model, batch) -> None:
    ll.llama_batch_free(batch)
    ll.llama_free(ctx)
    ll.llama_model_free(model)


class LlamaCppEngine(TorchEngine):
    """TorchEngine's scheduling and sampling over llama.cpp's multi-sequence forward pass."""

    continuous_batching = True
    cancellable = True

    def __init__(self, name: str, max_batch_size: int = 64, n_ctx: int | None = None,
                 n_threads: int | None = None, n_batch: int = 512, flash_attn: bool = False):
        """n_ctx: KV cache cells shared by all running rows (default: the model's trained
        context, at most 8,192); n_batch: tokens per step, prompt chunks included.
        flash_attn: off by default: llama.cpp's flash attention decodes one row with other
        numerics than several (logits apart by ~5e-2 on the tiny test model, 1e-6 without it),
        so with it a row's tokens would depend on what else shares its batch."""
        import llama_cpp as ll

        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # its C log lines
        ll.llama_backend_init()
        self._ll = ll
        spec = resolve(name)
        self.model_name = spec.name
        self.tokenizer = load_tokenizer(name)
        self.pad_id = self.tokenizer.pad_token_id
        self.device = torch.device("cpu")
        self.max_batch_size = max_batch_size
        self.n_batch = max(n_batch, max_batch_size)
        threads = n_threads or torch.get_num_threads() or os.cpu_count()

        mparams = ll.llama_model_default_params()
        # llama-cpp-python 0.3.36 built here (GGML_NATIVE on an AMX Xeon) segfaults in
        # llama_decode on SmolLM2's Q4_1/Q8_0 weights with the extra (repacked/AMX) weight
        # buffers; the plain CPU buffers work (BENCHMARKS.md, Engine serving)
        mparams.use_extra_bufts = False
        self._model = ll.llama_model_load_from_file(str(gguf_file(name)).encode(), mparams)
        if not self._model:
            raise RuntimeError(f"llama.cpp could not load {gguf_file(name)}")
        vocab = ll.llama_model_get_vocab(self._model)
        self.n_vocab = ll.llama_vocab_n_tokens(vocab)
        self.end_ids = end_token_ids(self.tokenizer, ll.llama_vocab_eos(vocab))  # as torch's
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = n_ctx or min(ll.llama_model_n_ctx_train(self._model), 8192)
        cparams.n_batch = cparams.n_ubatch = self.n_batch
        cparams.n_seq_max = max_batch_size
        cparams.flash_attn_type = (ll.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                   else ll.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        cparams.kv_unified = True  # one pool of cells: a row uses what it needs
        cparams.n_threads = cparams.n_threads_batch = threads
        self._ctx = ll.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            ll.llama_model_free(self._model)
            raise RuntimeError("llama.cpp could not create a context")
        self.max_context = ll.llama_n_ctx(self._ctx)
        self._mem = ll.llama_get_memory(self._ctx)
        self._batch = ll.llama_batch_init(self.n_batch, 0, 1)
        b, n = self._batch, self.n_batch
        self._tok = np.ctypeslib.as_array(b.token, shape=(n,))
        self._pos = np.ctypeslib.as_array(b.pos, shape=(n,))
        self._out = np.ctypeslib.as_array(b.logits, shape=(n,))
        np.ctypeslib.as_array(b.n_seq_id, shape=(n,))[:] = 1
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _free, ll, self._ctx, self._model, self._batch)

    @classmethod
    def from_name(cls, name: str, **kw) -> LlamaCppEngine:
        """As TorchEngine.from_name (whose load() this engine does not use)."""
        return cls(name, **kw)

    def generate(self, *args, **kw):
        """As TorchEngine.generate; calls run one at a time (they share one llama.cpp context:
        the gateway makes one long call anyway, `stream` one per request)."""
        with self._lock:
            return super().generate(*args, **kw)

    def _decode(
        self,
        rows: list[Row],
        on_delta: Callable[[StreamDelta], None] | None,
        finished: Callable[[Row], None],
        take: Callable[[int], list[Row]],
        cancelled: Callable[[Row], bool],
    ) -> None:
        """Run until every row, and every row `take` still gives, has finished."""
        self._ll.llama_memory_clear(self._mem, False)  # nothing left by a call that raised
        waiting, running = list(rows), []
        free_ids = list(range(self.max_batch_size - 1, -1, -1))
        used = 0  # KV cells reserved by running rows

        def stop(s: _Seq) -> None:
            nonlocal used
            running.remove(s)
            self._ll.llama_memory_seq_rm(self._mem, s.seq_id, -1, -1)
            free_ids.append(s.seq_id)
            used -= s.reserved
            finished(s.row)

        while True:
            for r in [r for r in waiting if cancelled(r)]:
                waiting.remove(r)
                finished(r)
            while free_ids:
                if not waiting:
                    waiting.extend(take(len(free_ids)))
                    if not waiting:
                        break
                r = waiting[0]
                ids = np.zeros(len(r.prompt_ids) + r.params.max_tokens, dtype=np.int64)
                if used + len(ids) > self.max_context:
                    break
                waiting.pop(0)
                ids[: len(r.prompt_ids)] = r.prompt_ids
                running.append(_Seq(r, free_ids.pop(), ids, len(r.prompt_ids)))
                used += len(ids)
            if not running:
                return
            ready = self._forward(running)  # (sequences with logits, (b, V) logits)
            for s in [s for s in running if s not in ready[0] and cancelled(s.row)]:
                stop(s)
            if not ready[0]:
                continue
            seqs, logits = ready
            tokens = self._pick([s.row for s in seqs], self._context(seqs), logits,
                                self._seen(seqs, logits.shape[-1]))
            for s, t in zip(seqs, tokens.tolist(), strict=True):
                self._advance(s.row, t, on_delta)
                s.ids[s.n] = t
                s.n += 1
                if s.row.finish_reason is not None or cancelled(s.row):
                    stop(s)

    def _forward(self, running: list[_Seq]) -> tuple[list[_Seq], torch.Tensor]:
        """One llama_decode: each decoding row's last token, then prompt chunks up to n_batch
        tokens. Returns the rows whose next-token logits it computed, and those logits."""
        ll, k, ready = self._ll, 0, []
        order = sorted(running, key=lambda s: s.n - s.fed > 1)  # decoding rows first
        for s in order:
            m = min(s.n - s.fed, self.n_batch - k)
            if m <= 0:
                break
            self._tok[k : k + m] = s.ids[s.fed : s.fed + m]
            self._pos[k : k + m] = np.arange(s.fed, s.fed + m)
            self._out[k : k + m] = 0
            for j in range(k, k + m):
                self._batch.seq_id[j][0] = s.seq_id
            s.fed += m
            k += m
            if s.fed == s.n:
                self._out[k - 1] = 1
                ready.append((s, k - 1))
        self._batch.n_tokens = k
        rc = ll.llama_decode(self._ctx, self._batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed ({rc})")
        if not ready:
            return [], torch.empty(0)
        rank = {id(s): i for i, s in enumerate(running)}
        ready.sort(key=lambda x: rank[id(x[0])])  # the rows' own order, as in the torch engine
        logits = np.stack([np.ctypeslib.as_array(ll.llama_get_logits_ith(self._ctx, i),
                                                 shape=(self.n_vocab,)) for _, i in ready])
        return [s for s, _ in ready], torch.from_numpy(logits)

    def _context(self, seqs: list[_Seq]) -> torch.Tensor:
        """(b, T) left-padded prompt + generated ids: what logits processors see."""
        T = max(s.n for s in seqs)
        out = np.full((len(seqs), T), self.pad_id, dtype=np.int64)
        for i, s in enumerate(seqs):
            out[i, T - s.n :] = s.ids[: s.n]
        return torch.from_numpy(out)

    @staticmethod
    def _seen(seqs: list[_Seq], vocab: int) -> torch.Tensor | None:
        """(b, V) ids already in each row, for the repetition penalty (None when unused)."""
        if all(s.row.params.repetition_penalty == 1 for s in seqs):
            return None
        seen = np.zeros((len(seqs), vocab), dtype=bool)
        for i, s in enumerate(seqs):
            seen[i, s.ids[: s.n]] = True
        return torch.from_numpy(seen)
