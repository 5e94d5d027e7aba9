"""Text detection: the scoring loop shared by every scheme, single-key tests and key scans.

The loop (three_bricks' detector): token ids -> scored positions (those with a full context)
-> the tested layer's positions -> de-duplicated (window, token) tuples, minus those that occur
in a given prompt -> scheme.score_tok for K keys at once -> summed -> scheme.test (exact p,
z beside it). The tuples de-duplicated are those of one key and layer, i.e. (key, window,
token) when keys are pooled (REFERENCES "De-duplicate per key"), or whatever else determines
the outcome (scheme.dedup_rows: a min-hash seed, transformers' generator seed).

Which question a p-value answers:
- per text (detect, score_keys): was this text marked with this key? Valid over the key's
  randomness, one text at a time. Under one fixed key, near-identical texts get near-identical
  p-values: a family of templated documents is flagged together or not at all.
- per collection (score_corpus, detect_corpus_ids): tuples de-duplicated across all the
  documents, one test for the whole collection: valid for families of near-identical texts.
- provider (detect_provider_ids): the provider key when the layout is unknown, two hypotheses
  (gateway two-layer text, one-layer text), Bonferroni-corrected.
- scan: which account's key, Holm over the keys.

A p-value here is for a fixed sample: the whole text as given. Reading a p-value recomputed as
tokens arrive, and stopping when it first dips, is not a valid test (REFERENCES "No optional
stopping").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from transformers import PreTrainedTokenizerBase

from distillery.stats import first_occurrences, holm_bonferroni, row_ids, rows_in
from distillery.watermark.keys import WatermarkKey
from distillery.watermark.scheme import DEFAULT_GLOBAL_SHARE, Layer, WatermarkScheme

# A test's positions: one layer's, or "every" position with the global key (one-layer text).
Tested = Literal["global", "account", "every"]


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
    layer: Tested
    n_tokens: int  # tokens in the text (all documents' for a corpus)
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
class ProviderResult:
    """Zero-bit: did the provider key mark this text (or collection), layout unknown?

    Gateway answers carry two layers (the provider key on the global layer's positions, an
    account key on the others), text from a scheme without an account key carries the provider
    key at every position; scoring the wrong positions halves the signal. Two exact tests with
    the provider key: H0_g on the global layer's positions (split at the scheme's share, or the
    gateway's DEFAULT_GLOBAL_SHARE), H0_e on every position. H0: the provider key did not mark
    the text, so both p-values are valid; p_value = min(1, 2 min(p_g, p_e)) (Bonferroni over
    the two tests, conservative as they overlap; Holm 1979's smallest adjusted p is the same).
    Power: never worse than the test that knows the layout by more than the factor 2
    (tests/watermark/test_provider.py).
    Schemes without a layer split (transformers') have one test: p_value = p_e.
    """

    key_id: str
    p_value: float
    hypothesis: Literal["global layer", "every position"]  # the test with the smaller p
    global_layer: DetectionResult | None  # None without a layer split
    every_position: DetectionResult


@dataclass(frozen=True)
class ScanResult:
    """Which account's key, if any, marked a text: the best key and its adjusted p-value."""

    best_key_id: str | None  # None when no key was scanned
    best_account: str | None
    adjusted_p: float
    per_key: tuple[KeyTest, ...]  # in the order of the schemes given
    global_result: DetectionResult | None  # the provider key on the global layer, if any
    provider: ProviderResult | None = None  # both layouts, corrected: read this one


def _tuples(ids: np.ndarray, scheme: WatermarkScheme) -> np.ndarray:
    """(n,) -> (n - start, w + 1) context window and token of each scored position."""
    w = scheme.window
    return sliding_window_view(ids, w + 1)[scheme.start - w:]


def _layer_tuples(ids: np.ndarray, scheme: WatermarkScheme, layer: Tested,
                  prompt_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (the layer's tuples (M, w + 1) not in the prompt, their positions (M,),
    whether each scored position is global (n - start,)); layer "every": all positions."""
    n, start = len(ids), scheme.start
    if n <= start:
        empty = np.zeros((0, scheme.window + 1), dtype=np.int64)
        return empty, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    is_global = scheme.global_positions(ids)
    if layer == "every":
        sel = np.arange(len(is_global))
    else:
        sel = np.flatnonzero(is_global if layer == "global" else ~is_global)
    mine = _tuples(ids, scheme)[sel]
    if prompt_ids is not None and len(prompt_ids) > scheme.window:
        prompt_tuples = sliding_window_view(np.asarray(prompt_ids, dtype=np.int64),
                                            scheme.window + 1)
        keep = ~rows_in(mine, prompt_tuples)
        sel, mine = sel[keep], mine[keep]
    return mine, sel + start, is_global


def _docs_tuples(arrays: Sequence[np.ndarray], scheme: WatermarkScheme, layer: Tested,
                 prompt_ids) -> tuple[np.ndarray, np.ndarray]:
    """_layer_tuples of many documents in one pass: -> (tuples (M, w + 1), document (M,)).

    The documents are concatenated; a position is scored when it has a full context inside
    its own document (offset >= start), so windows across a boundary are never used."""
    w, start = scheme.window, scheme.start
    lens = np.array([len(a) for a in arrays], dtype=np.int64)
    ids = np.concatenate(arrays) if len(arrays) else np.zeros(0, dtype=np.int64)
    if len(ids) <= start:
        return np.zeros((0, w + 1), dtype=np.int64), np.zeros(0, dtype=np.int64)
    doc = np.repeat(np.arange(len(arrays)), lens)
    offset = np.arange(len(ids)) - np.repeat(np.cumsum(lens) - lens, lens)
    pos = np.flatnonzero(offset >= start)  # positions of the concatenation, all >= start
    if layer != "every":
        is_global = scheme.global_positions(ids)[pos - start]
        pos = pos[is_global if layer == "global" else ~is_global]
    tuples = sliding_window_view(ids, w + 1)[pos - w]
    if prompt_ids is not None and len(prompt_ids) > w:
        prompt_tuples = sliding_window_view(np.asarray(prompt_ids, dtype=np.int64), w + 1)
        keep = ~rows_in(tuples, prompt_tuples)
        tuples, pos = tuples[keep], pos[keep]
    return tuples, doc[pos]


def _dedup_masks(scheme: WatermarkScheme, tuples: np.ndarray, keys: Sequence[WatermarkKey],
                 dedup: bool) -> np.ndarray:
    """(M, w + 1) tuples -> (K, M) True where key k scores the tuple (its first occurrence)."""
    if not dedup:
        return np.ones((len(keys), len(tuples)), dtype=bool)
    if not scheme.dedup_per_key:
        return np.broadcast_to(first_occurrences(tuples), (len(keys), len(tuples)))
    return np.stack([first_occurrences(scheme.dedup_rows(tuples, k)) for k in keys])


def _key_of(scheme: WatermarkScheme, layer: Tested) -> WatermarkKey:
    return scheme.key_for("global" if layer == "every" else layer)


def score_corpus(docs: Sequence[Sequence[int] | np.ndarray], scheme: WatermarkScheme,
                 layer: Tested, keys: Sequence[WatermarkKey],
                 prompt_ids: Sequence[int] | None = None, dedup: bool = True
                 ) -> list[DetectionResult]:
    """Test K keys on one layer of a collection of texts as one sample: one p-value per key.

    H0: the key did not mark any of the documents. Tuples are de-duplicated across all the
    documents (three_bricks' rule applied to the collection), so under one fixed key a family
    of near-identical documents contributes each shared tuple once: the test stays valid for
    templated corpora, where per-text p-values are flagged together. The exact test is the
    scheme's (binomial for KGW, Gamma for Gumbel); the de-duplication is Three Bricks'
    (Fernandez et al. 2023, Sec. 4) over the union of the documents' tuples. A corpus of one
    document is score_keys.
    """
    arrays = [np.asarray(d, dtype=np.int64) for d in docs]
    tuples, _ = _docs_tuples(arrays, scheme, layer, prompt_ids)
    if len(tuples):
        mask = _dedup_masks(scheme, tuples, keys, dedup)  # (K, M)
        sums = (scheme.score_tok(tuples[:, :-1], tuples[:, -1], keys) * mask).sum(axis=1)
        counts = mask.sum(axis=1)
    else:
        sums = counts = np.zeros(len(keys), dtype=np.int64)
    n_tokens = sum(len(a) for a in arrays)
    out = []
    for k, s, n in zip(keys, sums, counts, strict=True):
        t = scheme.test(np.array([s]), int(n))[0]
        out.append(DetectionResult(k.key_id, scheme.name, layer, n_tokens, t.n_scored, t.score,
                                   t.z, t.p_value))
    return out


def score_keys(ids: Sequence[int] | np.ndarray, scheme: WatermarkScheme, layer: Tested,
               keys: Sequence[WatermarkKey], prompt_ids: Sequence[int] | None = None,
               dedup: bool = True) -> list[DetectionResult]:
    """Test K keys of one scheme family on one layer of a text given as token ids."""
    return score_corpus([ids], scheme, layer, keys, prompt_ids, dedup)


def score_each(docs: Sequence[Sequence[int] | np.ndarray], scheme: WatermarkScheme,
               layer: Tested | None = None, prompt_ids: Sequence[int] | None = None,
               dedup: bool = True) -> list[DetectionResult]:
    """One key, one test per document: detect_ids for each, in one scoring pass.

    The same tests as detect_ids (de-duplication within each document, H0 per document), for
    many texts under one key (a dataset's answers) without a scoring call per text.
    """
    layer = layer or scheme.own_layer
    key = _key_of(scheme, layer)
    arrays = [np.asarray(d, dtype=np.int64) for d in docs]
    tuples, doc = _docs_tuples(arrays, scheme, layer, prompt_ids)  # doc: (M,) of each tuple
    sums = counts = np.zeros(len(arrays))
    if len(doc):
        mask = np.ones(len(tuples), dtype=bool)
        if dedup:
            rows = scheme.dedup_rows(tuples, key) if scheme.dedup_per_key else tuples
            mask = first_occurrences(np.stack([doc, row_ids(rows)], axis=1))
        scores = scheme.score_tok(tuples[mask, :-1], tuples[mask, -1], [key])[0]
        sums = np.bincount(doc[mask], weights=scores, minlength=len(arrays))
        counts = np.bincount(doc[mask], minlength=len(arrays))
    out = []
    for a, s, n in zip(arrays, sums, counts, strict=True):
        t = scheme.test(np.array([s]), int(n))[0]
        out.append(DetectionResult(key.key_id, scheme.name, layer, len(a), t.n_scored, t.score,
                                   t.z, t.p_value))
    return out


def detect_corpus_ids(docs: Sequence[Sequence[int] | np.ndarray], scheme: WatermarkScheme,
                      layer: Tested | None = None, prompt_ids: Sequence[int] | None = None,
                      dedup: bool = True) -> DetectionResult:
    """One key on a collection of texts, one test (score_corpus); by default the scheme's own
    key."""
    layer = layer or scheme.own_layer
    return score_corpus(docs, scheme, layer, [_key_of(scheme, layer)], prompt_ids, dedup)[0]


def detect_provider_corpus(docs: Sequence[Sequence[int] | np.ndarray],
                           scheme: WatermarkScheme, prompt_ids: Sequence[int] | None = None,
                           dedup: bool = True) -> ProviderResult:
    """The provider (global) key, layout unknown: see ProviderResult. `scheme` gives the key
    and parameters; its account key, if any, is not used."""
    every = detect_corpus_ids(docs, scheme, "every", prompt_ids, dedup)
    if not scheme.layered:
        return ProviderResult(every.key_id, every.p_value, "every position", None, every)
    share = scheme.global_share if scheme.global_share < 1 else DEFAULT_GLOBAL_SHARE
    glob = detect_corpus_ids(docs, scheme.with_global_share(share), "global", prompt_ids,
                             dedup)
    best = "global layer" if glob.p_value <= every.p_value else "every position"
    p = min(1.0, 2 * min(glob.p_value, every.p_value))
    return ProviderResult(every.key_id, p, best, glob, every)


def detect_provider_ids(ids: Sequence[int] | np.ndarray, scheme: WatermarkScheme,
                        prompt_ids: Sequence[int] | None = None, dedup: bool = True
                        ) -> ProviderResult:
    """The default zero-bit test of one text: detect_provider_corpus of one document."""
    return detect_provider_corpus([ids], scheme, prompt_ids, dedup)


def scored_tokens(ids: Sequence[int] | np.ndarray, scheme: WatermarkScheme,
                  layer: Layer | None = None, prompt_ids: Sequence[int] | None = None,
                  dedup: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The tokens one key's test scores, in text order: (positions (T,), scores (T,)).

    For reports (token marks) and for power curves on the first T scored tokens.
    """
    ids = np.asarray(ids, dtype=np.int64)
    layer = layer or scheme.own_layer
    key = _key_of(scheme, layer)
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
    return score_keys(ids, scheme, layer, [_key_of(scheme, layer)], prompt_ids, dedup)[0]


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
    glob = provider = None
    if schemes and schemes[0].account_key is not None:
        provider = detect_provider_ids(ids, schemes[0], prompt_ids, dedup)
        glob = provider.global_layer
    if not per_key:
        return ScanResult(None, None, 1.0, (), glob, provider)
    best = min(per_key, key=lambda k: k.adjusted_p)
    return ScanResult(best.key_id, best.account, best.adjusted_p, per_key, glob, provider)


def scan(text: str, tokenizer: PreTrainedTokenizerBase, schemes: Sequence[WatermarkScheme],
         prompt: str | None = None, dedup: bool = True) -> ScanResult:
    """Which of these accounts' keys marked `text`? For the gateway and forensics, which pass
    the schemes of the accounts they know (e.g. every account in the database)."""
    prompt_ids = encode(prompt, tokenizer) if prompt else None
    return scan_ids(encode(text, tokenizer), schemes, prompt_ids, dedup)
