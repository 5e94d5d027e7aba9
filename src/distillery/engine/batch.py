"""The state of a running batch: its rows (one per choice) and the tensors they share.

Rows are left-padded so that the last position of every row is aligned; a row that finishes
leaves the batch (and its cache rows go with it); with continuous batching, a freshly
prefilled batch merges in, the shorter side padded on the left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from distillery.engine.params import SamplingParams, TokenLogprob


@dataclass
class Row:
    """One choice being decoded."""

    request_index: int
    choice_index: int
    prompt_ids: list[int]
    params: SamplingParams
    generator: torch.Generator
    ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    text: str = ""
    emitted: int = 0  # characters of text already streamed
    finish_reason: str | None = None


@dataclass
class Batch:
    """The running batch: rows, left-padded ids and mask, KV cache, next-token logits."""

    rows: list[Row]
    seqs: torch.Tensor  # (b, T) prompt + generated ids, left-padded
    attn: torch.Tensor  # (b, T) 1 = real token
    cache: DynamicCache  # per layer keys/values (b, heads, T, head_dim)
    logits: torch.Tensor  # (b, V) next-token logits
    seen: torch.Tensor  # (b, V) ids already in each row, for the repetition penalty

    def select(self, idx: torch.Tensor) -> None:
        """Keep rows idx; drop the left columns that are padding in every remaining row."""
        self.rows = [self.rows[i] for i in idx.tolist()]
        for layer in self.cache.layers:
            layer.batch_select_indices(idx)
        self.seqs, self.attn, self.seen = self.seqs[idx], self.attn[idx], self.seen[idx]
        self.logits = self.logits[idx]
        if len(self.rows) and type(self.cache.layers[0]) is DynamicLayer:
            start = int(self.attn.any(0).int().argmax())
            if start > 0:
                self.seqs, self.attn = self.seqs[:, start:], self.attn[:, start:]
                for layer in self.cache.layers:
                    layer.keys = layer.keys[:, :, start:]
                    layer.values = layer.values[:, :, start:]

    def append(self, tokens: torch.Tensor) -> None:
        self.seqs = torch.cat([self.seqs, tokens[:, None]], dim=1)
        self.attn = torch.cat([self.attn, self.attn.new_ones((len(self.rows), 1))], dim=1)
        self.seen.scatter_(1, tokens[:, None], True)

    def merge(self, other: Batch, pad_id: int) -> None:
        """Continuous batching: join a freshly prefilled batch, left-padding the shorter one.

        Keys already carry their rotary position, so padding on the left changes nothing for
        the real tokens; masked columns are ignored by attention.
        """
        T = max(self.attn.shape[1], other.attn.shape[1])

        def left(x: torch.Tensor, dim: int, value=0) -> torch.Tensor:
            pad = T - x.shape[dim]
            if pad == 0:
                return x
            shape = list(x.shape)
            shape[dim] = pad
            return torch.cat([x.new_full(shape, value), x], dim=dim)

        for a, b in zip(self.cache.layers, other.cache.layers, strict=True):
            a.keys = torch.cat([left(a.keys, 2), left(b.keys, 2)])
            a.values = torch.cat([left(a.values, 2), left(b.values, 2)])
        self.seqs = torch.cat([left(self.seqs, 1, pad_id), left(other.seqs, 1, pad_id)])
        self.attn = torch.cat([left(self.attn, 1), left(other.attn, 1)])
        self.logits = torch.cat([self.logits, other.logits])
        self.seen = torch.cat([self.seen, other.seen])
        self.rows = self.rows + other.rows


def holdback(text: str, stops: list[str]) -> int:
    """Characters at the end of text to hold back: a suffix that may begin a stop string."""
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:k]):
                hold = k
                break
    return hold
