"""Text detection: the scoring loop shared by every scheme, single-key tests and key scans.

The loop (three_bricks' detector): token ids -> scored positions (those with a full context)
-> the tested layer's positions -> de-duplicated (window, token) tuples, minus those that occur
in a given prompt -> scheme.score_tok for K keys at once -> summed -> scheme.test (exact p,
z beside it). The tuples de-duplicated are those of one key and layer, i.e. (key, window,
token) when keys are pooled (REFERENCES "De-duplicate per key").

A p-value here is for a fixed sample: the whole text as given. Reading a p-value recomputed as
tokens arrive, and stopping when it first dips, is not a valid test (REFERENCES "No optional
stopping").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from transformers import PreTrainedTokenizerBase

from distillery.stats import first_occurrences, holm_bonferroni, rows_in
from distillery.watermark.keys import WatermarkKey
from distillery.watermark.scheme import Layer, WatermarkScheme


@dataclass(frozen=True)
class TokenMark:
    """One token of the text, for reports: was it scored, and its score under the key."""

    position: int
    token_id: int
    text: str
    layer: Layer | None  # None: no full context yet (never scored)
    scored: bool  # False also for repeats and prompt tuples
    score: float | None


@dataclass(frozen=True)
class DetectionResult:
    key_id: str
    scheme: str
    layer: Layer
    n_tokens: int  # tokens in the text
    n_scored: int  # de-duplicated tuples of this layer that entered the test (T)
    score: float  # green count (KGW) or summed -log(1 - r) (Gumbel)
    z: float
    p_value: float
    marks: tuple[TokenMark, ...] | None = None


@dataclass(frozen=True)
class KeyTest:
    key_id: str
    account: str | None
    result: DetectionResult
    adjusted_p: float  # Holm-Bonferroni over every key of the scan


@dataclass(frozen=True)
class ScanResult:
    """Which account's key, if any, marked a text: the best key and its adjusted p-value."""

    best_key_id: str | None  # None when no key was scanned
    best_account: str | None
    adjusted_p: float
    per_key: tuple[KeyTest, ...]  # in the order of the schemes given
    global_result: DetectionResult | None  # zero-bit test with the provider key, if any


def _tuples(ids: np.ndarray, scheme: WatermarkScheme) -> np.ndarray:
    """(n,) -> (n - start, w + 1) context window and token of each scored position."""
    w = scheme.window
    return sliding_window_view(ids, w + 1)[scheme.start - w:]


def _layer_tuples(ids: np.ndarray, scheme: WatermarkScheme, layer: Layer,
                  prompt_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (the layer's tuples (M, w + 1) not in the prompt, their positions (M,),
    whether each scored position is global (n - start,))."""
    n, start = len(ids), scheme.start
    if n <= start:
        empty = np.zeros((0, scheme.window + 1), dtype=np.int64)
        return empty, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    is_global = scheme.global_positions(ids)
    sel = np.flatnonzero(is_global if layer == "global" else ~is_global)
    mine = _tuples(ids, scheme)[sel]
    if prompt_ids is not None and len(prompt_ids) > scheme.window:
        prompt_tuples = sliding_window_view(np.asarray(prompt_ids, dtype=np.int64),
                                            scheme.window + 1)
        keep = ~rows_in(mine, prompt_tuples)
        sel, mine = sel[keep], mine[keep]
    return mine, sel + start, is_global


def _dedup_masks(scheme: WatermarkScheme, tuples: np.ndarray, keys: Sequence[WatermarkKey],
                 dedup: bool) -> np.ndarray:
    """(M, w + 1) tuples -> (K, M) True where key k scores the tuple (its first occurrence)."""
    if not dedup:
        return np.ones((len(keys), len(tuples)), dtype=bool)
    if not scheme.dedup_per_key:
        return np.broadcast_to(first_occurrences(tuples), (len(keys), len(tuples)))
    return np.stack([first_occurrences(scheme.dedup_rows(tuples, k)) for k in keys])


def score_keys(ids: Sequence[int] | np.ndarray, scheme: WatermarkScheme, layer: Layer,
               keys: Sequence[WatermarkKey], prompt_ids: Sequence[int] | None = None,
               dedup: bool = True) -> list[DetectionResult]:
    """Test K keys of one scheme family on one layer of a text given as token ids."""
    ids = np.asarray(ids, dtype=np.int64)
    tuples, _, _ = _layer_tuples(ids, scheme, layer, prompt_ids)
    if len(tuples):
        mask = _dedup_masks(scheme, tuples, keys, dedup)  # (K, M)
        sums = (scheme.score_tok(tuples[:, :-1], tuples[:, -1], keys) * mask).sum(axis=1)
        counts = mask.sum(axis=1)
    else:
        sums = counts = np.zeros(len(keys), dtype=np.int64)
    out = []
    for k, s, n in zip(keys, sums, counts, strict=True):
        t = scheme.test(np.array([s]), int(n))[0]
        out.append(DetectionResult(k.key_id, scheme.name, layer, len(ids), t.n_scored, t.score,
                                   t.z, t.p_value))
    return out


def scored_tokens(ids: Sequence[int] | np.ndarray, scheme: WatermarkScheme,
                  layer: Layer | None = None, prompt_ids: Sequence[int] | None = None,
                  dedup: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The tokens one key's test scores, in text order: (positions (T,), scores (T,)).

    For reports (token marks) and for power curves on the first T scored tokens.
    """
    ids = np.asarray(ids, dtype=np.int64)
    layer = layer or scheme.own_layer
    key = scheme.key_for(layer)
    tuples, positions, _ = _layer_tuples(ids, scheme, layer, prompt_ids)
    if not len(tuples):
        return positions, np.zeros(0)
    mask = _dedup_masks(scheme, tuples, [key], dedup)[0]
    scores = scheme.score_tok(tuples[mask, :-1], tuples[mask, -1], [key])[0]
    return positions[mask], scores


def detect_ids(ids: Sequence[int] | np.ndarray, scheme: WatermarkScheme,
               layer: Layer | None = None, prompt_ids: Sequence[int] | None = None,
               dedup: bool = True) -> DetectionResult:
    """One key on a text given as token ids: the scheme's key of `layer`; by default its own
    key (scheme.key_id: the account layer's when it has one)."""
    layer = layer or scheme.own_layer
    return score_keys(ids, scheme, layer, [scheme.key_for(layer)], prompt_ids, dedup)[0]


def _marks(ids: np.ndarray, scheme: WatermarkScheme, layer: Layer, prompt_ids, dedup: bool,
           tokenizer: PreTrainedTokenizerBase) -> tuple[TokenMark, ...]:
    positions, scores = scored_tokens(ids, scheme, layer, prompt_ids, dedup)
    by_pos = dict(zip(positions.tolist(), scores.tolist(), strict=True))
    is_global = scheme.global_positions(ids)
    out = []
    for p, t in enumerate(ids.tolist()):
        lay = None
        if p >= scheme.start:
            lay = "global" if is_global[p - scheme.start] else "account"
        out.append(TokenMark(p, t, tokenizer.decode([t]), lay, p in by_pos, by_pos.get(p)))
    return tuple(out)


def encode(text: str, tokenizer: PreTrainedTokenizerBase) -> np.ndarray:
    return np.asarray(tokenizer.encode(text, add_special_tokens=False), dtype=np.int64)


def detect(text: str, tokenizer: PreTrainedTokenizerBase, scheme: WatermarkScheme,
           layer: Layer | None = None, prompt: str | None = None, dedup: bool = True,
           marks: bool = False) -> DetectionResult:
    """Is `text` marked by `scheme`'s key of `layer`? Exact test on de-duplicated tokens.

    layer: "global" (the provider key: zero-bit), "account" (attribution), or None for the
    scheme's own key (scheme.key_id).
    prompt: tuples that also occur in it are not scored (a model copying its context is not
    marked). marks: attach per-token marks for reports.
    """
    ids = encode(text, tokenizer)
    prompt_ids = encode(prompt, tokenizer) if prompt else None
    layer = layer or scheme.own_layer
    result = detect_ids(ids, scheme, layer, prompt_ids, dedup)
    if marks:
        from dataclasses import replace

        result = replace(result, marks=_marks(ids, scheme, layer, prompt_ids, dedup, tokenizer))
    return result


def scan_ids(ids: Sequence[int] | np.ndarray, schemes: Sequence[WatermarkScheme],
             prompt_ids: Sequence[int] | None = None, dedup: bool = True) -> ScanResult:
    """Test every scheme's attribution key (its account key, else its only key); Holm-adjust.

    Schemes that differ only in their account key are scored in one vectorised pass.
    """
    ids = np.asarray(ids, dtype=np.int64)
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(schemes):
        groups.setdefault(s.group_key(), []).append(i)
    results: list[DetectionResult | None] = [None] * len(schemes)
    for idx in groups.values():
        head = schemes[idx[0]]
        layer = head.own_layer
        keys = [schemes[i].key_for(layer) for i in idx]
        for i, r in zip(idx, score_keys(ids, head, layer, keys, prompt_ids, dedup), strict=True):
            results[i] = r
    adjusted = holm_bonferroni([r.p_value for r in results])
    per_key = tuple(
        KeyTest(r.key_id, s.account_key.account if s.account_key else None, r, float(a))
        for s, r, a in zip(schemes, results, adjusted, strict=True)
    )
    glob = None
    if schemes and schemes[0].account_key is not None:
        glob = detect_ids(ids, schemes[0], "global", prompt_ids, dedup)
    if not per_key:
        return ScanResult(None, None, 1.0, (), glob)
    best = min(per_key, key=lambda k: k.adjusted_p)
    return ScanResult(best.key_id, best.account, best.adjusted_p, per_key, glob)


def scan(text: str, tokenizer: PreTrainedTokenizerBase, schemes: Sequence[WatermarkScheme],
         prompt: str | None = None, dedup: bool = True) -> ScanResult:
    """Which of these accounts' keys marked `text`? For the gateway and forensics, which pass
    the schemes of the accounts they know (e.g. every account in the database)."""
    prompt_ids = encode(prompt, tokenizer) if prompt else None
    return scan_ids(encode(text, tokenizer), schemes, prompt_ids, dedup)
