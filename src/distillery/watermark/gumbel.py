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
    RACE_K = 64  # tokens raced in full per step; the rest are screened by one comparison

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

    def context_t(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """(b, T) -> (b,) int64 keyed context of each row's next position."""
        return self.keyed_context_t(input_ids, self.window)

    def uniforms_t(self, input_ids: torch.LongTensor, vocab: int) -> torch.Tensor:
        """(b, T) -> (b, V) float64 r_v of each row's next position."""
        vh = self.token_hashes_t(vocab, input_ids.device)
        return prf.unit_t(prf.combine_t(self.context_t(input_ids)[:, None], vh[None, :]))

    def __call__(self, input_ids: torch.LongTensor, logits: torch.FloatTensor) -> torch.LongTensor:
        """The TokenSampler: logits (b, V) after temperature and top-p -> (b,) token ids,
        argmax_v log(r_v) / p_v computed exactly without evaluating it for every token.

        The race is run on the K most likely tokens; its winner g* < 0. Any other token u has
        p_u <= p_K, so it can win only if log(r_u) > g* p_u >= g* p_K, i.e. r_u > exp(g* p_K):
        one integer comparison on its hash. The few tokens that pass are raced exactly. Per
        step this costs a multiply, a xor and a compare over (b, V) instead of ~10 float64
        passes (measured in benchmarks/watermark_speed.py)."""
        b, V = logits.shape
        ctx = self.context_t(input_ids)[:, None]            # (b, 1)
        vh = self.token_hashes_t(V, logits.device)
        top = logits.topk(min(self.RACE_K, V), dim=-1)
        # top-p left fewer than K tokens in every row: the rest have p = 0 and cannot win,
        # and the normaliser is over the top K alone (no pass over the vocabulary at all)
        nucleus_inside = V <= self.RACE_K or bool(torch.isinf(top.values[:, -1]).all())
        lse = (top.values if nucleus_inside else logits).float().logsumexp(-1, keepdim=True)
        lse = lse.double()

        def race(rows: torch.Tensor, toks: torch.Tensor) -> torch.Tensor:
            r = prf.unit_t(prf.combine_t(ctx[rows, 0], vh[toks]))
            p = (logits[rows, toks].double() - lse[rows, 0]).exp()
            return r.log() / p                             # p = 0 (masked): -inf

        rows = torch.arange(b, device=logits.device)[:, None].expand_as(top.indices)
        g = race(rows, top.indices)
        best, arg = g.max(-1)
        choice = top.indices.gather(-1, arg[:, None])[:, 0]
        if nucleus_inside:
            return choice
        p_k = (top.values[:, -1].double() - lse[:, 0]).exp()
        # r_u > rho  <=  top 53 bits of h_u >= q  <=  h_u >= q << 11 (unsigned), conservative
        q = ((best * p_k).exp() * prf.TWO53).floor().long() - 2
        lo = torch.iinfo(torch.long).min
        passed = (prf.combine_t(ctx, vh[None, :]) ^ lo) >= ((q << 11) ^ lo)[:, None]
        pr, pt = passed.nonzero(as_tuple=True)
        if len(pr):
            gx = race(pr, pt)
            best_x = torch.full_like(best, -torch.inf).scatter_reduce(0, pr, gx, "amax")
            win = gx == best_x[pr]
            tok_x = torch.zeros_like(choice).scatter(0, pr[win], pt[win])
            choice = torch.where(best_x > best, tok_x, choice)
        return choice

    def apply(self, params: SamplingParams) -> SamplingParams:
        if params.sampler is not None and params.sampler is not self:
            raise ValueError("these sampling parameters already have a sampler: "
                             "a Gumbel watermark replaces sampling and cannot stack")
        params.sampler = self
        return params
