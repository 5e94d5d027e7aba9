"""KGW green-list watermark (Kirchenbauer et al. 2023, "A Watermark for Large Language Models").

Per step the key and the context window pick a fraction gamma of the vocabulary ("green") and
delta is added to green logits. Detection counts green tokens S among T de-duplicated scored
tokens; under H0 S ~ Binom(T, gamma) (exact tail: stats.binomial_test).

This module is the `hash` construction (the default): membership of (window, token) is a keyed
integer hash (prf.py), computed for the whole vocabulary at once when generating ((b, V) int64
ops per step) and for every position and every key at once when detecting ((K, M) uint64 ops).
Seeding (prf.py's names; `below(x, gamma)` is a Bernoulli(gamma) read of a 64-bit value):
  lefthash  green(v) = below(combine(mix(window_hash(prev w tokens) ^ seed), token_hash(v)))
  selfhash  anchored min-hash (lm-watermarking's "ff-anchored_minhash", Algorithm 3): with
            g(t) = mix(seed ^ token_hash(t)) >> 1 over the previous w - 1 tokens and the
            candidate v, m = min_t g(t), green(v) = below(combine(m, token_hash(v))). The
            candidate is part of its own seed; an edited context token changes the seed only
            when it held the minimum. g over the vocabulary is a per-key table, so a step
            costs a few (b, V) ops either way.
The transformers-compatible construction is in kgw_transformers.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from distillery.engine.params import SamplingParams
from distillery.stats import TestResult, binomial_test
from distillery.watermark import prf
from distillery.watermark.keys import WatermarkKey
from distillery.watermark.scheme import WatermarkScheme

Seeding = Literal["lefthash", "selfhash"]
SEEDINGS = ("lefthash", "selfhash")


def check_kgw(gamma: float, delta: float, seeding: str) -> None:
    if not 0 < gamma < 1:
        raise ValueError(f"gamma (green fraction) must be in (0, 1), got {gamma}")
    if not delta >= 0:
        raise ValueError(f"delta (green logit bias) must be >= 0, got {delta}")
    if seeding not in SEEDINGS:
        raise ValueError(f"unknown seeding {seeding!r}: use one of {', '.join(SEEDINGS)}")


class KGW(WatermarkScheme):
    name = "kgw"
    label = "kgw-hash"

    def __init__(self, global_key: WatermarkKey, account_key: WatermarkKey | None = None,
                 gamma: float = 0.25, delta: float = 2.0, context_width: int = 2,
                 seeding: Seeding = "lefthash", global_share: float = 0.5):
        check_kgw(gamma, delta, seeding)
        super().__init__(global_key, account_key, context_width, global_share)
        self.gamma, self.delta, self.seeding = gamma, delta, seeding
        self._vocab_hash: dict[tuple[int, torch.device], torch.Tensor] = {}

    def params(self) -> tuple:
        return ("hash", self.gamma, self.delta, self.seeding)

    @property
    def window(self) -> int:
        return self.context_width - (self.seeding == "selfhash")

    # ---- detection -------------------------------------------------------------------

    @property
    def dedup_per_key(self) -> bool:
        return self.seeding == "selfhash"

    def _seeds(self, keys: Sequence[WatermarkKey]) -> np.ndarray:
        return np.array([self.seed(k) for k in keys], dtype=np.uint64)[:, None]  # (K, 1)

    def _anchor(self, windows: np.ndarray, tokens: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """selfhash: m = min over the window and the token of g(t), (K, M) uint64."""
        one = np.uint64(1)
        m = prf.mix64(seeds ^ prf.token_hash(tokens)[None, :]) >> one
        for j in range(windows.shape[1]):
            m = np.minimum(m, prf.mix64(seeds ^ prf.token_hash(windows[:, j])[None, :]) >> one)
        return m

    def dedup_rows(self, tuples: np.ndarray, key: WatermarkKey) -> np.ndarray:
        """selfhash: the outcome depends on (m, token) only."""
        m = self._anchor(tuples[:, :-1], tuples[:, -1], self._seeds([key]))[0]
        return np.stack([m.view(np.int64), tuples[:, -1]], axis=1)

    def score_tok(self, windows: np.ndarray, tokens: np.ndarray,
                  keys: Sequence[WatermarkKey]) -> np.ndarray:
        """(M, w), (M,), K keys -> (K, M) green indicators as float."""
        seeds = self._seeds(keys)
        if self.seeding == "lefthash":
            c = prf.keyed(prf.window_hash(windows)[None, :], seeds)  # (K, M)
        else:
            c = self._anchor(windows, tokens, seeds)
        return prf.below(prf.combine(c, prf.token_hash(tokens)[None, :]), self.gamma).astype(
            np.float64)

    def test(self, score: np.ndarray, n_scored: int) -> list[TestResult]:
        return [binomial_test(int(s), n_scored, self.gamma) for s in score]

    # ---- generation ------------------------------------------------------------------

    def _tables(self, vocab: int, device: torch.device) -> dict[str, torch.Tensor]:
        """Per-vocabulary tables, (V,) int64, built once per vocabulary size and device:
        token_hash, and for selfhash g(t) under each of the scheme's keys."""
        key = (vocab, device)
        if key not in self._vocab_hash:
            th = self.token_hashes_t(vocab, device)
            tables = {"th": th}
            if self.seeding == "selfhash":
                for layer, s in self._layer_seeds().items():
                    tables[layer] = prf._shr(prf.mix64_t(th ^ prf.as_int64(s)), 1)
            self._vocab_hash[key] = tables
        return self._vocab_hash[key]

    def _context_t(self, input_ids: torch.LongTensor, vocab: int,
                   ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, T) -> (c, th): green iff (c | 1) * th < threshold, with c (b, 1) the keyed
        window (lefthash) or (b, V) the min-hash anchor (selfhash), th (V,) the token hashes.
        With ids (b, k), for those columns only: c (b, 1) or (b, k), th (b, k)."""
        tables = self._tables(vocab, input_ids.device)
        th = tables["th"] if ids is None else tables["th"][ids]
        if self.seeding == "lefthash":
            return self.keyed_context_t(input_ids, self.window)[:, None], th
        is_global, seeds = self.row_layers_t(input_ids)  # (b,), (b,)
        prev = input_ids[:, input_ids.shape[1] - self.window:]  # (b, w)
        g = tables["global"] if ids is None else tables["global"][ids]
        if "account" in tables:
            a = tables["account"] if ids is None else tables["account"][ids]
            g = torch.where(is_global[:, None], g, a)  # (b, V) or (b, k)
        elif ids is None:
            g = g[None, :]
        prev_min = torch.full_like(seeds, (1 << 63) - 1)
        for j in range(prev.shape[1]):
            h = prf._shr(prf.mix64_t(seeds ^ prf.token_hash_t(prev[:, j])), 1)
            prev_min = torch.minimum(prev_min, h)
        return torch.minimum(g, prev_min[:, None]), th

    def green_mask_t(self, input_ids: torch.LongTensor, vocab: int,
                     ids: torch.Tensor | None = None) -> torch.Tensor:
        """(b, T) -> (b, V) bool: the green list of each row's next position (with ids (b, k):
        of those tokens only)."""
        c, th = self._context_t(input_ids, vocab, ids)
        return prf.below_t(prf.combine_t(c, th), self.gamma)

    @property
    def max_bias(self) -> float:
        """The logits processor adds between 0 and this to any logit (the engine's sparse
        step, engine.sampling.pick_sparse, relies on it)."""
        return self.delta

    def bias_at(self, input_ids: torch.LongTensor, vocab: int, ids: torch.Tensor) -> torch.Tensor:
        """What __call__ adds to the logits of tokens ids (b, k): delta where green, 0 else."""
        return self.green_mask_t(input_ids, vocab, ids).float() * self.delta

    CHUNK_ELEMENTS = 1 << 17  # hashes per pass in __call__ (1 MiB of int64): stays in cache

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """The logits processor (transformers' signature): scores (b, V) + delta on green.

        The same test as green_mask_t, a chunk of columns at a time into two small buffers:
        the full (b, V) int64 hash array missed the cache in the decode loop (2.8% of a
        batch-16 step against 1.8-2.1% chunked; BENCHMARKS.md, Watermark)."""
        b, V = scores.shape
        c, th = self._context_t(input_ids, V)
        c1 = c | 1
        thr = prf.threshold(self.gamma)
        out = torch.empty_like(scores)
        n = min(V, max(1024, self.CHUNK_ELEMENTS // b))  # batch 16: 8,192 columns
        h = torch.empty((b, n), dtype=torch.long, device=scores.device)
        green = torch.empty((b, n), dtype=torch.bool, device=scores.device)
        for j in range(0, V, n):
            k = min(n, V - j)
            cj = c1 if c1.shape[1] == 1 else c1[:, j:j + k]
            torch.mul(cj, th[j:j + k], out=h[:, :k])
            torch.lt(h[:, :k], thr, out=green[:, :k])
            torch.add(scores[:, j:j + k], green[:, :k], alpha=self.delta, out=out[:, j:j + k])
        return out

    def apply(self, params: SamplingParams) -> SamplingParams:
        params.logits_processors = [*params.logits_processors, self]
        return params
