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
- Slow: the green list is a seeded `randperm` of the vocabulary per context (~0.5 ms), and
  selfhash tries the top 40 candidates one by one. Detection caches green lists (per previous
  token for lefthash, whose seed is only the last token; per window for selfhash).
- Green lists depend on the torch device (CPU and CUDA randperm differ): detect on the
  device type generation ran on (`device`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

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


def transformers_hashing_key(key: WatermarkKey) -> int:
    return int.from_bytes(key.derive("kgw-transformers")[:4], "little") & 0x7FFFFFFF


def _public_key(hashing_key: int) -> WatermarkKey:
    """An identity for a public hashing key (not a secret: transformers users share it)."""
    return WatermarkKey(f"transformers:{hashing_key}", "global", 0, None, b"")


class TransformersKGW(WatermarkScheme):
    name = "kgw"
    label = "kgw-transformers"

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
        self._green: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()

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

    def _green_list(self, prefix: tuple[int, ...]) -> np.ndarray:
        """(V,) bool green list for a seed prefix (lefthash: only its last token matters)."""
        ck = prefix[-1:] if self.seeding == "lefthash" else prefix
        if ck in self._green:
            self._green.move_to_end(ck)
            return self._green[ck]
        proc = self.processor(self.device)
        ids = proc._get_greenlist_ids(torch.tensor(prefix, device=self.device)).cpu().numpy()
        mask = np.zeros(self.vocab_size, dtype=bool)
        mask[ids] = True
        self._green[ck] = mask
        if len(self._green) > CACHE_SIZE:
            self._green.popitem(last=False)
        return mask

    @property
    def dedup_per_key(self) -> bool:
        return self.seeding == "selfhash"

    def dedup_rows(self, tuples: np.ndarray, key: WatermarkKey) -> np.ndarray:
        """selfhash: transformers' seed is a min over the window (its `set_seed`), so the
        outcome depends on (seed, token) only; transformers' own detector de-duplicates whole
        n-grams instead, which lets tuples sharing one outcome count more than once."""
        proc = self.processor(self.device)
        t = torch.as_tensor(tuples, device=self.device)[:, -self.context_width:]  # (M, cw)
        a = proc.fixed_table[t % proc.table_size] + 1
        b = proc.fixed_table[t[:, -1:] % proc.table_size] + 1
        seed = (proc.hash_key * a * b).min(dim=1).values  # int64 wrap-around, as transformers
        return np.stack([seed.cpu().numpy(), tuples[:, -1]], axis=1)

    def score_tok(self, windows: np.ndarray, tokens: np.ndarray,
                  keys: Sequence[WatermarkKey]) -> np.ndarray:
        if [k.key_id for k in keys] != [self.global_key.key_id]:
            raise ValueError("the transformers construction scores its own single key only")
        out = np.zeros((1, len(tokens)))
        for i, (w, t) in enumerate(zip(windows.tolist(), tokens.tolist(), strict=True)):
            prefix = (*w, t) if self.seeding == "selfhash" else tuple(w)
            out[0, i] = 0 <= t < self.vocab_size and self._green_list(prefix)[t]
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
