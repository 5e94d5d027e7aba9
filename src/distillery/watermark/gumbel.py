"""Distortion-free Gumbel-max watermark (Aaronson 2022; analysed in Fernandez et al. 2023).

Per step, the key and the context window give every token v a uniform r_v in (0, 1) (the same
keyed hash as KGW's lefthash, with its own derivation label). The sampler emits
argmax_v log(r_v) / p_v (= argmax r_v^(1/p_v)) over the distribution the engine would have
sampled from (after temperature and top-p). For uniform r this picks v with probability
exactly p_v, so over keys the output distribution is unchanged; given key and context it is
deterministic (the same prompt gets the same answer, unless the context differs).

Detection: per-token score -log(1 - r_{x_t}); under H0 the r are uniform, so the sum over T
de-duplicated tokens is Gamma(T, 1) (exact tail: stats.gamma_test). Greedy rows (temperature
0) never reach the sampler and stay unmarked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from distillery.engine.params import SamplingParams
from distillery.stats import TestResult, gamma_test
from distillery.watermark import prf
from distillery.watermark.keys import WatermarkKey
from distillery.watermark.scheme import WatermarkScheme


class Gumbel(WatermarkScheme):
    name = "gumbel"
    label = "gumbel-hash"

    def __init__(self, global_key: WatermarkKey, account_key: WatermarkKey | None = None,
                 context_width: int = 2, global_share: float = 0.5):
        super().__init__(global_key, account_key, context_width, global_share)
        self._vocab_hash: dict[tuple[int, torch.device], torch.Tensor] = {}

    def params(self) -> tuple:
        return ("hash",)

    def score_tok(self, windows: np.ndarray, tokens: np.ndarray,
                  keys: Sequence[WatermarkKey]) -> np.ndarray:
        """(M, w), (M,), K keys -> (K, M) scores -log(1 - r)."""
        seeds = np.array([self.seed(k) for k in keys], dtype=np.uint64)[:, None]
        ctx = prf.keyed(prf.window_hash(windows)[None, :], seeds)
        r = prf.unit(prf.combine(ctx, prf.token_hash(tokens)[None, :]))
        return -np.log1p(-r)

    def test(self, score: np.ndarray, n_scored: int) -> list[TestResult]:
        return [gamma_test(float(s), n_scored) for s in score]

    def uniforms_t(self, input_ids: torch.LongTensor, vocab: int) -> torch.Tensor:
        """(b, T) -> (b, V) float64 r_v of each row's next position."""
        key = (vocab, input_ids.device)
        if key not in self._vocab_hash:
            self._vocab_hash[key] = prf.token_hash_t(torch.arange(vocab, device=input_ids.device))
        t = input_ids.shape[1]
        wh = prf.window_hash_t(input_ids[:, t - self.window:])
        ctx = prf.keyed_t(wh, self.row_layers_t(input_ids)[1])  # (b,)
        return prf.unit_t(prf.combine_t(ctx[:, None], self._vocab_hash[key][None, :]))

    def __call__(self, input_ids: torch.LongTensor, logits: torch.FloatTensor) -> torch.LongTensor:
        """The TokenSampler: logits (b, V) after temperature and top-p -> (b,) token ids."""
        r = self.uniforms_t(input_ids, logits.shape[-1])
        p = logits.double().softmax(-1)
        return (r.log() / p).argmax(-1)  # p = 0 (masked) gives -inf: never chosen

    def apply(self, params: SamplingParams) -> SamplingParams:
        if params.sampler is not None and params.sampler is not self:
            raise ValueError("these sampling parameters already have a sampler: "
                             "a Gumbel watermark replaces sampling and cannot stack")
        params.sampler = self
        return params
