"""Batched generation with a Hugging Face causal LM and a KV cache, in plain torch.

Many requests (and the n choices of each) decode together in one left-padded batch. Each row
keeps its own sampling parameters, its own seeded generator (so a seeded output does not
depend on what else is in the batch), its own stop strings and length; finished rows are
dropped from the batch and the cache. Logits processors use transformers' signature, so the
watermark (and transformers' own processors) plug in unchanged.

Per step the rows still running take their next token from the step's logits through
sampling.pick (penalty, logits processors, temperature, top-p, the row's seeded draw or a
TokenSampler, logprobs).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence

import torch
from transformers import DynamicCache, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

from distillery.engine.batch import Batch, Row, holdback
from distillery.engine.params import (
    Choice,
    GenerationRequest,
    GenerationResult,
    StreamDelta,
)
from distillery.engine.sampling import pick
from distillery.models.loader import LoadedModel, load

log = logging.getLogger(__name__)


def end_token_ids(tokenizer: PreTrainedTokenizerBase, eos: int | list[int] | None) -> set[int]:
    """Every id that ends a turn: the tokenizer's eos, the model's own (eos), <|im_end|> etc."""
    ids = {tokenizer.eos_token_id}
    ids.update(eos if isinstance(eos, list) else [eos])
    for tok in ("<|im_end|>", "<end_of_turn>", "<|endoftext|>", "<eos>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            ids.add(tid)
    return {i for i in ids if i is not None}


class TorchEngine:
    """The in-process engine (CPU or one GPU)."""

    continuous_batching = True  # generate() takes admit= and on_result=
    cancellable = True  # generate() takes is_cancelled=

    def __init__(self, loaded: LoadedModel, max_batch_size: int = 64):
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.model_name = loaded.spec.name
        self.max_batch_size = max_batch_size
        self.end_ids = end_token_ids(self.tokenizer, self.model.generation_config.eos_token_id)
        self.pad_id = self.tokenizer.pad_token_id
        self.device = self.model.device
        self.max_context = getattr(self.model.config, "max_position_embeddings", 8192)

    @classmethod
    def from_name(cls, name: str, dtype: str | torch.dtype = torch.float32, **kw) -> TorchEngine:
        return cls(load(name, dtype=dtype), **kw)

    def encode(self, prompt: str | list[int]) -> list[int]:
        return list(prompt) if isinstance(prompt, list) else self.tokenizer.encode(prompt)

    def _rows(self, index: int, req: GenerationRequest) -> list[Row]:
        """The n rows of one request; ValueError when it cannot run."""
        ids = self.encode(req.prompt)
        if not ids:
            raise ValueError(f"request {index}: the prompt encodes to no tokens")
        if len(ids) + req.params.max_tokens > self.max_context:
            raise ValueError(
                f"request {index}: prompt ({len(ids)} tokens) + max_tokens "
                f"({req.params.max_tokens}) exceeds the model's context of {self.max_context}"
            )
        rows = []
        for c in range(req.params.n):
            seed = req.params.seed + c if req.params.seed is not None else secrets.randbits(63)
            gen = torch.Generator(device=self.device).manual_seed(seed)
            rows.append(Row(index, c, ids, req.params, gen))
        return rows

    @torch.inference_mode()
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_delta: Callable[[StreamDelta], None] | None = None,
        admit: Callable[[int], Sequence[GenerationRequest]] | None = None,
        on_result: Callable[[int, GenerationResult | Exception], None] | None = None,
        is_cancelled: Callable[[int], bool] | None = None,
    ) -> list[GenerationResult]:
        """Decode all requests in shared batches; return their results in order.

        Continuous batching: `admit(free_rows)` is called between decode steps while the
        batch has room; the requests it returns join the running batch, numbered on from
        len(requests). `on_result(index, result)` fires as soon as every choice of a request
        has finished (with the ValueError instead, for an admitted request that cannot run).
        Admitted requests are reported only through on_result, so a long-running call holds
        no state for requests already answered. Without `admit`, an invalid request raises
        before any work is done. `is_cancelled(index)` is asked after every step (and before a
        queued request starts): a request it answers True for stops there, its result keeping
        the tokens so far with finish_reason "abort" (vLLM's name), and its rows free their
        batch slots.
        """
        pending: list[Row] = []
        open_rows: dict[int, list[Row]] = {}  # request index -> its rows, until all finish
        for i, req in enumerate(requests):
            open_rows[i] = self._rows(i, req)
            pending.extend(open_rows[i])
        results: list[GenerationResult | None] = [None] * len(requests)
        next_index = len(requests)

        def finished(r: Row) -> None:
            rows = open_rows[r.request_index]
            if all(x.finish_reason is not None for x in rows):
                del open_rows[r.request_index]
                res = self._result(rows)
                if r.request_index < len(results):
                    results[r.request_index] = res
                if on_result is not None:
                    on_result(r.request_index, res)

        def cancelled(r: Row) -> bool:
            if is_cancelled is None or r.finish_reason is not None:
                return False
            if is_cancelled(r.request_index):
                r.finish_reason = "abort"
            return r.finish_reason is not None

        def take(free: int) -> list[Row]:
            """Rows to start now: queued ones first, then newly admitted requests."""
            nonlocal next_index
            for r in [r for r in pending if cancelled(r)]:
                pending.remove(r)
                finished(r)
            while admit is not None and len(pending) < free and (new := admit(free - len(pending))):
                for req in new:
                    index, next_index = next_index, next_index + 1
                    try:
                        open_rows[index] = self._rows(index, req)
                    except ValueError as e:
                        if on_result is None:
                            raise
                        on_result(index, e)
                        continue
                    pending.extend(open_rows[index])
            out = pending[:free]
            del pending[:free]
            return out

        while rows := take(self.max_batch_size):
            self._decode(rows, on_delta, finished, take, cancelled)
        return results

    def _result(self, rows: list[Row]) -> GenerationResult:
        return GenerationResult(
            prompt_tokens=len(rows[0].prompt_ids),
            choices=[Choice(index=r.choice_index, text=r.text, token_ids=r.ids,
                            finish_reason=r.finish_reason,
                            logprobs=r.logprobs if r.params.logprobs else None)
                     for r in sorted(rows, key=lambda r: r.choice_index)],
        )

    def _prefill(self, rows: list[Row]) -> Batch:
        B, L = len(rows), max(len(r.prompt_ids) for r in rows)
        dev = self.device
        seqs = torch.full((B, L), self.pad_id, dtype=torch.long, device=dev)  # left-padded
        attn = torch.zeros((B, L), dtype=torch.long, device=dev)
        for i, r in enumerate(rows):
            seqs[i, L - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids, device=dev)
            attn[i, L - len(r.prompt_ids) :] = 1
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=seqs, attention_mask=attn, position_ids=pos,
                         cache=cache, use_cache=True, logits_to_keep=1)
        seen = torch.zeros((B, out.logits.shape[-1]), dtype=torch.bool, device=dev)
        for i, r in enumerate(rows):
            seen[i, torch.tensor(r.prompt_ids, device=dev)] = True
        return Batch(rows, seqs, attn, cache, out.logits[:, -1, :].float(), seen)

    def _decode(
        self,
        rows: list[Row],
        on_delta: Callable[[StreamDelta], None] | None,
        finished: Callable[[Row], None],
        take: Callable[[int], list[Row]],
        cancelled: Callable[[Row], bool],
    ) -> None:
        """Run a batch until every row in it (admitted ones included) has finished."""
        batch = self._prefill(rows)
        mergeable = all(type(layer) is DynamicLayer for layer in batch.cache.layers)
        while True:
            tokens = self._pick(batch.rows, batch.seqs, batch.logits, batch.seen)  # (b,)
            keep = []
            for i, r in enumerate(batch.rows):
                self._advance(r, int(tokens[i]), on_delta)
                if r.finish_reason is None and not cancelled(r):
                    keep.append(i)
                else:
                    finished(r)
            if len(keep) < len(batch.rows):
                batch.select(torch.tensor(keep, dtype=torch.long, device=self.device))
                tokens = tokens[keep]
            new_rows = take(self.max_batch_size - len(keep)) if mergeable or not keep else []
            if not keep:
                if not new_rows:
                    return
                batch = self._prefill(new_rows)
                continue
            batch.append(tokens)
            out = self.model(input_ids=tokens[:, None], attention_mask=batch.attn,
                             position_ids=batch.attn.sum(-1, keepdim=True) - 1,
                             cache=batch.cache, use_cache=True, logits_to_keep=1)
            batch.logits = out.logits[:, -1, :].float()
            if new_rows:
                batch.merge(self._prefill(new_rows), self.pad_id)

    def _pick(self, rows: list[Row], seqs: torch.Tensor, logits: torch.Tensor,
              seen: torch.Tensor | None) -> torch.Tensor:
        """Next token of each row (sampling.pick); records logprobs where asked."""
        return pick(rows, seqs, logits, seen, self.tokenizer)

    def _advance(
        self, r: Row, token: int, on_delta: Callable[[StreamDelta], None] | None
    ) -> None:
        """Append a token to a row; decide whether it finished; stream the text now safe."""
        r.ids.append(token)
        stops = r.params.stop
        if token in self.end_ids:
            r.finish_reason = "stop"
        else:
            prev = len(r.text)
            r.text = self.tokenizer.decode(r.ids, skip_special_tokens=True)
            if stops:
                start = max(0, prev - max(len(s) for s in stops))
                hits = [p for s in stops if (p := r.text.find(s, start)) >= 0]
                if hits:
                    r.text = r.text[: min(hits)]
                    r.finish_reason = "stop"
        if r.finish_reason is None and len(r.ids) >= r.params.max_tokens:
            r.finish_reason = "length"
        if on_delta is None:
            return
        if r.finish_reason is None:
            safe = len(r.text) - holdback(r.text, stops)
            if r.text[:safe].endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for more
                safe = r.text.rfind("\ufffd", r.emitted)
        else:
            safe = len(r.text)
        delta = r.text[r.emitted : max(safe, r.emitted)]
        r.emitted = max(safe, r.emitted)
        tok = r.logprobs[-1] if r.params.logprobs else None
        on_delta(StreamDelta(r.request_index, r.choice_index, delta, tok, r.finish_reason))
