"""KGW, `transformers` construction: bit-compatible with transformers' watermarking.

Generation runs transformers' own `WatermarkLogitsProcessor` and detection asks that same
processor for green lists, so the green lists are transformers' by construction: text marked
through `model.generate(..., watermarking_config=WatermarkingConfig(...))` is detected here,
and text marked here is detected by transformers' `WatermarkDetector` (both directions are in
tests/watermark/test_kgw_transformers.py).

What this construction is and is not:
- One key, one layer. transformers' hashing key is one integer: either given (its default,
  15485863, to read text marked by anyone using transformers' defaults), or derived from a
  WatermarkKey as the 31-bit integer HMAC(key, "kgw-transformers")[:4] & 0x7fffffff. 31 bits
  can be brute-forced: this construction is for interoperability, not secrecy. The two-layer
  split is not applied (transformers' detector would not know it).
- Slow: the green list is a seeded `randperm` of the vocabulary per context (~0.4 ms), and
  selfhash tries the top 40 candidates one by one. Detection computes each tuple's generator
  seed (`outcome_seeds`: lefthash reads only the last token), one green list per distinct
  seed, cached across schemes; the seed is also what de-duplication keys on.
- Green lists depend on the torch device (CPU and CUDA randperm differ): detect on the
  device type generation ran on (`device`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from transformers.generation.logits_process import WatermarkLogitsProcessor

from distillery.engine.params import SamplingParams
from distillery.stats import TestResult, binomial_test
from distillery.watermark.keys import WatermarkKey
from distillery.watermark.kgw import Seeding, check_kgw
from distillery.watermark.scheme import WatermarkScheme

TRANSFORMERS_DEFAULT_KEY = 15485863  # transformers' default hashing_key (the millionth prime)
CACHE_SIZE = 4096  # green lists kept for detection: 4096 x V bools (200 MB at V = 49k)
TABLE_SIZE = 1_000_003  # transformers' fixed_table size (selfhash)


def transformers_hashing_key(key: WatermarkKey) -> int:
    return int.from_bytes(key.derive("kgw-transformers")[:4], "little") & 0x7FFFFFFF


@lru_cache(maxsize=4)
def _fixed_table(hashing_key: int, device: str) -> torch.Tensor:
    """(TABLE_SIZE,) transformers' selfhash table for a key, as its processor builds it
    (~8 ms, so shared by every scheme of that key: widths, gammas)."""
    rng = torch.Generator(device=device)
    rng.manual_seed(hashing_key)
    return torch.randperm(TABLE_SIZE, generator=rng, device=device).cpu()


@lru_cache(maxsize=CACHE_SIZE)
def _green_mask(vocab_size: int, n_green: int, device: str, seed: int) -> np.ndarray:
    """(V,) bool, read-only: transformers' green list for a generator seed (its
    `_get_greenlist_ids`: the first n_green ids of a seeded randperm of the vocabulary)."""
    rng = torch.Generator(device=device)
    rng.manual_seed(seed)
    ids = torch.randperm(vocab_size, generator=rng, device=device)[:n_green].cpu().numpy()
    mask = np.zeros(vocab_size, dtype=bool)
    mask[ids] = True
    mask.flags.writeable = False
    return mask


def _public_key(hashing_key: int) -> WatermarkKey:
    """An identity for a public hashing key (not a secret: transformers users share it)."""
    return WatermarkKey(f"transformers:{hashing_key}", "global", 0, None, b"")


class TransformersKGW(WatermarkScheme):
    name = "kgw"
    label = "kgw-transformers"
    layered = False

    def __init__(self, vocab_size: int, key: WatermarkKey | None = None,
                 hashing_key: int | None = None, gamma: float = 0.25, delta: float = 2.0,
                 context_width: int = 1, seeding: Seeding = "lefthash", device: str = "cpu"):
        check_kgw(gamma, delta, seeding)
        if (key is None) == (hashing_key is None):
            raise ValueError("give either key (a WatermarkKey) or hashing_key (an int), not both")
        if not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"vocab_size must be the model's vocabulary size, got {vocab_size!r}")
        self.hashing_key = transformers_hashing_key(key) if key is not None else hashing_key
        super().__init__(key if key is not None else _public_key(hashing_key),
                         context_width=context_width)
        self.vocab_size, self.gamma, self.delta, self.seeding = vocab_size, gamma, delta, seeding
        self.device = torch.device(device).type
        self._procs: dict[str, WatermarkLogitsProcessor] = {}

    def params(self) -> tuple:
        return ("transformers", self.gamma, self.delta, self.seeding, self.vocab_size,
                self.device)

    @property
    def key_ids(self) -> dict[str, str]:
        return {**super().key_ids, "construction": "transformers"}

    @property
    def window(self) -> int:
        return self.context_width - (self.seeding == "selfhash")

    @property
    def start(self) -> int:
        return self.window

    def watermarking_config(self):
        """The equivalent transformers `WatermarkingConfig`."""
        from transformers import WatermarkingConfig

        return WatermarkingConfig(greenlist_ratio=self.gamma, bias=self.delta,
                                  hashing_key=self.hashing_key, seeding_scheme=self.seeding,
                                  context_width=self.context_width)

    def processor(self, device: torch.device | str) -> WatermarkLogitsProcessor:
        dev = torch.device(device).type
        if dev not in self._procs:
            self._procs[dev] = WatermarkLogitsProcessor(
                vocab_size=self.vocab_size, device=dev, greenlist_ratio=self.gamma,
                bias=self.delta, hashing_key=self.hashing_key, seeding_scheme=self.seeding,
                context_width=self.context_width)
        return self._procs[dev]

    # ---- detection -------------------------------------------------------------------

    # Every scored tuple's green outcome is `token in green_mask(seed)`, with the seed
    # transformers' set_seed gives its generator: de-duplication keys on (seed, token), for
    # both seedings (the whole window would count tuples sharing one outcome several times).
    dedup_per_key = True

    def outcome_seeds(self, tuples: np.ndarray) -> np.ndarray:
        """(M, w + 1) tuples -> (M,) int64: the generator seed of each tuple's green list, as
        transformers' `set_seed` computes it, reduced to the bits its generator reads.

        lefthash: hash_key * (last window token); selfhash: min over the last context_width
        tokens t (the candidate included) of hash_key * (T[t] + 1) * (T[candidate] + 1) in
        int64 wrap-around, T the key's fixed table. transformers seeds with seed % (2^64 - 1);
        torch's CPU generator (mt19937) keeps only the low 32 bits of that, so tuples equal
        there share one green list on the CPU (checked in test_kgw_transformers.py).
        """
        if not len(tuples):
            return np.zeros(0, dtype=np.int64)
        if self.seeding == "lefthash":
            last, inverse = np.unique(tuples[:, -2], return_inverse=True)
            raw = [(self.hashing_key * int(t)) % (2**64 - 1) for t in last]  # python ints
            seeds = np.array(raw, dtype=np.uint64)[inverse.ravel()]
        else:
            table = _fixed_table(self.hashing_key, self.device)
            t = torch.as_tensor(tuples[:, -self.context_width:])  # (M, cw)
            a = table[t % TABLE_SIZE] + 1
            b = table[t[:, -1:] % TABLE_SIZE] + 1
            mins = (self.hashing_key * a * b).min(dim=1).values.numpy()  # int64 wrap-around
            # python's mins % (2^64 - 1): a negative s becomes s + 2^64 - 1, as uint64 bits - 1
            seeds = mins.view(np.uint64) - (mins < 0).astype(np.uint64)
        if self.device == "cpu":
            seeds = seeds & np.uint64(0xFFFFFFFF)
        return seeds.view(np.int64)

    def dedup_rows(self, tuples: np.ndarray, key: WatermarkKey) -> np.ndarray:
        """(M, w + 1) -> (M, 2) (seed, token): equal exactly when the green outcome must be.
        transformers' own detector de-duplicates whole n-grams instead, which lets tuples
        sharing one outcome count more than once (lefthash at context_width >= 2: the
        earlier window tokens do not enter the seed)."""
        return np.stack([self.outcome_seeds(tuples), tuples[:, -1]], axis=1)

    def score_tok(self, windows: np.ndarray, tokens: np.ndarray,
                  keys: Sequence[WatermarkKey]) -> np.ndarray:
        if [k.key_id for k in keys] != [self.global_key.key_id]:
            raise ValueError("the transformers construction scores its own single key only")
        tuples = np.concatenate([windows, tokens[:, None]], axis=1)
        seeds = self.outcome_seeds(tuples).view(np.uint64)
        valid = np.flatnonzero((tokens >= 0) & (tokens < self.vocab_size))
        order = valid[np.argsort(seeds[valid], kind="stable")]  # tuples grouped by seed
        out = np.zeros((1, len(tokens)))
        if not len(order):
            return out
        uniq, starts = np.unique(seeds[order], return_index=True)
        n_green = int(self.vocab_size * self.gamma)  # transformers' greenlist_size
        ends = [*starts[1:].tolist(), len(order)]
        for seed, a, b in zip(uniq.tolist(), starts.tolist(), ends, strict=True):
            rows = order[a:b]
            out[0, rows] = _green_mask(self.vocab_size, n_green, self.device, seed)[tokens[rows]]
        return out

    def test(self, score: np.ndarray, n_scored: int) -> list[TestResult]:
        return [binomial_test(int(s), n_scored, self.gamma) for s in score]

    # ---- generation ------------------------------------------------------------------

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[-1] != self.vocab_size:
            raise ValueError(f"this scheme was built for vocab_size {self.vocab_size}, the model "
                             f"gives {scores.shape[-1]} logits: pass model.config.vocab_size")
        return self.processor(scores.device)(input_ids, scores)

    def apply(self, params: SamplingParams) -> SamplingParams:
        params.logits_processors = [*params.logits_processors, self]
        return params
