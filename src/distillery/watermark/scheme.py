"""The scheme interface: one object holds the keys and the seeding, and serves both sides.

Generation calls `apply(params)` (a logits processor or a sampler goes into SamplingParams);
detection calls `score_tok` and `test` from detect.py's loop (three_bricks' split: the base
runs the loop, each scheme supplies the per-token score and its null distribution). Since both
sides read the same key seeds and the same hash, they cannot drift apart.

Two layers (REFERENCES "Design notes: Dilution"). A campaign spread over A accounts gives one
account's key ~1/A of the data, so a watermark carrying only per-account keys is invisible to
exactly the large campaigns. Each generated position is therefore assigned, by a keyed hash of
its context window (the global key's "layer" seed), to the global layer (provider key: zero-bit
detection, pooled over all accounts) with probability `global_share`, else to the account layer
(attribution). A test scores only its own layer's positions; the assignment needs only the
global key, so a detector finds the layers without knowing the account. A scheme built without
an account key marks every position with the global key.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from distillery.engine.params import SamplingParams
from distillery.stats import TestResult
from distillery.watermark import prf
from distillery.watermark.keys import WatermarkKey

Layer = Literal["global", "account"]
DEFAULT_GLOBAL_SHARE = 0.5  # the gateway's split: a detector without the account assumes it


class WatermarkScheme(ABC):
    name: ClassVar[str]
    # Extra bits of the derivation label: the same key gives independent draws per scheme.
    label: ClassVar[str]
    # False for constructions with one key and no layer split (transformers'): the provider
    # test then has one hypothesis, every position
    layered: ClassVar[bool] = True

    def __init__(self, global_key: WatermarkKey, account_key: WatermarkKey | None = None,
                 context_width: int = 2, global_share: float = DEFAULT_GLOBAL_SHARE):
        if not isinstance(context_width, int) or context_width < 1:
            raise ValueError(f"context_width must be an integer >= 1, got {context_width!r}")
        if not 0 < global_share <= 1:
            raise ValueError(f"global_share must be in (0, 1], got {global_share}")
        if account_key is not None and account_key.scope != "account":
            raise ValueError(f"account_key must be an account key, got {account_key.key_id}")
        self.global_key = global_key
        self.account_key = account_key
        self.context_width = context_width
        self.global_share = 1.0 if account_key is None else global_share
        self._layer_seed = global_key.seed64("layer")
        self._token_hashes: dict[tuple[int, torch.device], torch.Tensor] = {}

    # ---- identity --------------------------------------------------------------------

    def key_for(self, layer: Layer | None) -> WatermarkKey:
        """The key of a layer; None: the scheme's own key (see key_id)."""
        if layer is None:
            return self.account_key or self.global_key
        if layer == "global":
            return self.global_key
        if layer == "account" and self.account_key is not None:
            return self.account_key
        raise ValueError(f"this {self.name} scheme has no {layer!r} layer (no account key)")

    def with_global_share(self, global_share: float) -> WatermarkScheme:
        """A detection view of this scheme whose layer split has share `global_share`: e.g. a
        scheme built without an account key (share 1) viewed as the gateway's two-layer one,
        to test the global layer of its answers. Only the global key's tests are meaningful
        on a view (it keeps this scheme's account key, if any); never generate with it."""
        if not 0 < global_share <= 1:
            raise ValueError(f"global_share must be in (0, 1], got {global_share}")
        if not self.layered and global_share < 1:
            raise ValueError(f"this {self.name} construction has no layer split")
        view = copy.copy(self)
        view.global_share = global_share
        view._token_hashes = {}
        view.__dict__.pop("_seed_cache", None)
        return view

    @property
    def own_layer(self) -> Layer:
        return "global" if self.account_key is None else "account"

    @property
    def key_id(self) -> str:
        """The scheme's own key: the account's for attribution, else the global one."""
        return (self.account_key or self.global_key).key_id

    @property
    def key_ids(self) -> dict[str, str]:
        """What the usage log records per response: the public ids of the keys that marked it."""
        ids = {"scheme": self.name, "global": self.global_key.key_id}
        if self.account_key is not None:
            ids["account"] = self.account_key.key_id
        return ids

    def group_key(self) -> tuple:
        """Schemes equal in everything but the account key can be scored together."""
        return (type(self), self.global_key.key_id, self.context_width, self.global_share,
                self.params())

    @abstractmethod
    def params(self) -> tuple:
        """The scheme's own parameters, hashable (for grouping and reporting)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key_ids}, context_width={self.context_width})"

    # ---- seeding (shared) -----------------------------------------------------------

    @property
    def window(self) -> int:
        """Previous tokens in a scored tuple's context window (w)."""
        return self.context_width

    @property
    def start(self) -> int:
        """First position with a full context (seed window and layer window)."""
        return self.context_width

    def seed(self, key: WatermarkKey) -> int:
        return key.seed64(self.label)

    def global_positions(self, ids: np.ndarray) -> np.ndarray:
        """(n,) token ids -> (n - start,) True where a scored position is in the global layer."""
        n_pos = max(len(ids) - self.start, 0)
        if self.global_share >= 1:
            return np.ones(n_pos, dtype=bool)
        w = self.context_width  # the layer window: the context_width tokens before a position
        return self._in_global_layer(sliding_window_view(ids, w)[self.start - w: len(ids) - w])

    def _in_global_layer(self, windows: np.ndarray) -> np.ndarray:
        """(n, context_width) layer windows -> (n,) True where the position is global."""
        return prf.below(prf.keyed(prf.window_hash(windows), self._layer_seed), self.global_share)

    def token_hashes_t(self, vocab: int, device: torch.device) -> torch.Tensor:
        """(V,) int64 token_hash of every vocabulary id, built once per size and device."""
        key = (vocab, device)
        if key not in self._token_hashes:
            self._token_hashes[key] = prf.token_hash_t(torch.arange(vocab, device=device))
        return self._token_hashes[key]

    def _layer_seeds(self) -> dict[str, int]:
        """The uint64 seed of each layer's key under this scheme (cached: HMAC per call)."""
        if not hasattr(self, "_seed_cache"):
            self._seed_cache = {"global": self.seed(self.global_key)}
            if self.account_key is not None:
                self._seed_cache["account"] = self.seed(self.account_key)
        return self._seed_cache

    def row_layers_t(self, input_ids: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, T) -> ((b,) bool global layer?, (b,) int64 seed) for each row's next position."""
        b, t = input_ids.shape
        seeds = self._layer_seeds()
        dev = input_ids.device
        if self.global_share >= 1:
            return (torch.ones(b, dtype=torch.bool, device=dev),
                    torch.full((b,), prf.as_int64(seeds["global"]), device=dev))
        wh = prf.window_hash_t(input_ids[:, t - self.context_width:])
        is_global = prf.below_t(prf.keyed_t(wh, self._layer_seed), self.global_share)
        g = torch.tensor(prf.as_int64(seeds["global"]), device=dev)
        a = torch.tensor(prf.as_int64(seeds["account"]), device=dev)
        return is_global, torch.where(is_global, g, a)

    def row_layers_np(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """row_layers_t in numpy: (b, >= context_width) ids -> ((b,) bool, (b,) uint64)."""
        seeds = self._layer_seeds()
        if self.global_share >= 1:
            return (np.ones(len(ids), dtype=bool),
                    np.full(len(ids), seeds["global"], dtype=np.uint64))
        is_global = self._in_global_layer(ids[:, ids.shape[1] - self.context_width:])
        return is_global, np.where(is_global, np.uint64(seeds["global"]),
                                   np.uint64(seeds["account"]))

    def keyed_context_t(self, input_ids: torch.LongTensor, window: int) -> torch.Tensor:
        """(b, T) -> (b,) int64: the hash of each row's last `window` tokens under the key of
        its next position's layer. On the CPU in numpy: for (b,)-sized arrays a numpy call
        costs ~1 us against a torch op's ~10 us (~0.3 ms a decoding step)."""
        t = input_ids.shape[1]
        if input_ids.device.type == "cpu":
            ids = input_ids[:, t - max(window, self.context_width):].numpy()
            _, seeds = self.row_layers_np(ids)
            c = prf.keyed(prf.window_hash(ids[:, ids.shape[1] - window:]), seeds)
            return torch.from_numpy(c.view(np.int64))
        wh = prf.window_hash_t(input_ids[:, t - window:])
        return prf.keyed_t(wh, self.row_layers_t(input_ids)[1])

    # ---- detection hooks ------------------------------------------------------------

    # Three Bricks de-duplicates the tuples that determine a score. For a window hash that is
    # (window, token), the same for every key. A min-hash seed (selfhash) depends only on the
    # window's minimum under the key, so distinct windows can share one outcome: such schemes
    # set dedup_per_key and give, per key, the rows that determine the outcome.
    dedup_per_key: ClassVar[bool] = False

    def dedup_rows(self, tuples: np.ndarray, key: WatermarkKey) -> np.ndarray:
        """(M, w + 1) tuples -> (M, k) rows equal exactly when the key's outcome must be."""
        return tuples

    @abstractmethod
    def score_tok(self, windows: np.ndarray, tokens: np.ndarray,
                  keys: Sequence[WatermarkKey]) -> np.ndarray:
        """(M, w) windows, (M,) tokens, K keys -> (K, M) per-token scores."""

    @abstractmethod
    def test(self, score: np.ndarray, n_scored: int) -> list[TestResult]:
        """(K,) summed scores over n_scored tokens -> one exact test per key."""

    # ---- generation hook ------------------------------------------------------------

    @abstractmethod
    def apply(self, params: SamplingParams) -> SamplingParams:
        """Mark what `params` generates: adds this scheme's logits processor or sampler."""
