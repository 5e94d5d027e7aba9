"""The radioactivity test's core: scored candidates -> de-duplicated tuples -> exact tests.

Both modes reduce a suspect to candidates: (teacher context window, token the suspect chose)
in corpus order, each with its watermark layer (from the window, through the global key's
layer split, as in text detection). Reading mode (open weights) chooses the suspect's top-1
prediction on our text; API mode the tokens it generated. Then, per key (Sander et al. 2024;
REFERENCES "Radioactivity"):

    candidates of the tested layer -> minus excluded ones (a tuple of the text fed in, or a
    window of the answer's own prompt: a clean model that copies its context is not marked)
    -> de-duplicated on what determines the key's outcome (the scheme's dedup rows) ->
    scheme.score_tok -> summed -> scheme.test (exact: binomial or Gamma tail)

H0 for one key: the suspect never learned from text marked with this key. Each distinct tuple
left is then green (or scores Exp(1)) independently of the others, whatever the suspect is,
because its choice is a function of the suspect and the text, and the key's outcomes of
tuples that did not occur in that text are independent of both. Independent keys score the
same tuples independently, so summed scores of a cluster of keys have the same exact null with
T = sum of the keys' counts. Only the whole, planned corpus is tested: never a p-value read
as tokens arrive (REFERENCES "No optional stopping").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import gammainc
from scipy.stats import binom

from distillery.stats import P_FLOOR, first_occurrences, rows_in
from distillery.watermark.keys import WatermarkKey
from distillery.watermark.scheme import Layer, WatermarkScheme

KEY_CHUNK = 64  # keys scored at once: (64, M) float64 per pass bounds memory at large M


@dataclass
class Candidates:
    """What a suspect chose, in teacher tokens, before exclusion and de-duplication."""

    windows: np.ndarray  # (M, w) int64 teacher context windows
    tokens: np.ndarray  # (M,) int64 the suspect's token (-1: could not be mapped)
    is_global: np.ndarray  # (M,) bool: the position's layer
    excluded: np.ndarray  # (M,) bool: a window of the answer's own prompt (API mode)
    text_tuples: np.ndarray  # (E, w + 1) tuples of the text fed in (reading mode)
    n_rows: int = 0  # texts or answers behind these candidates
    n_tokens: int = 0  # suspect tokens read (reading) or generated (API)
    info: dict = field(default_factory=dict)  # what the mode lost on the way, for the report
    # reading mode with top_k, API mode with top logprobs: the suspect's k likeliest next
    # tokens in teacher ids (-1: not mapped) and their probabilities, summed where two map to
    # one teacher token (M, k); all 0 where API mode aligned no generated step
    top_tokens: np.ndarray | None = None
    top_probs: np.ndarray | None = None

    @classmethod
    def empty(cls, w: int) -> Candidates:
        z = np.zeros((0, w), dtype=np.int64)
        return cls(z, np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, bool),
                   np.zeros((0, w + 1), np.int64))

    @classmethod
    def concat(cls, parts: Sequence[Candidates], w: int) -> Candidates:
        if not parts:
            return cls.empty(w)
        info: dict = {}
        for p in parts:
            for k, v in p.info.items():  # counts add up; flags (bool) stay flags
                info[k] = v if isinstance(v, bool) else info.get(k, 0) + v
        top = all(p.top_tokens is not None for p in parts)
        return cls(np.concatenate([p.windows for p in parts]),
                   np.concatenate([p.tokens for p in parts]),
                   np.concatenate([p.is_global for p in parts]),
                   np.concatenate([p.excluded for p in parts]),
                   np.concatenate([p.text_tuples for p in parts]),
                   sum(p.n_rows for p in parts), sum(p.n_tokens for p in parts), info,
                   np.concatenate([p.top_tokens for p in parts]) if top else None,
                   np.concatenate([p.top_probs for p in parts]) if top else None)

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class KeyScore:
    """One key (or a pooled cluster of keys) on one layer of the candidates."""

    key_id: str
    layer: Layer
    n_scored: int  # de-duplicated tuples tested (T; summed over a cluster's keys)
    score: float  # green count (KGW) or summed -log(1 - r) (Gumbel)
    z: float
    p_value: float  # upper tail: trained on this key's text?
    p_lower: float  # lower tail: significantly *below* chance points to key-aware tampering
    # the green-mass statistics (mass_results): the probability mass scored (for the shift,
    # the mass the suspect moved away from its reference), the null variance of the score,
    # and the bound on one window's centred term (Bernstein); None for the top-1 statistics
    mass: float | None = None
    var: float | None = None
    bound: float | None = None

    @property
    def rate(self) -> float:
        """Mean score per tuple: the green rate (KGW, gamma under H0) or 1 (Gumbel); for
        the green mass, green mass per unit of mass scored (gamma under H0)."""
        if self.mass is not None:
            return self.score / self.mass if self.mass else float("nan")
        return self.score / self.n_scored if self.n_scored else float("nan")


def lower_tail(scheme: WatermarkScheme, score: float, n: int) -> float:
    """P(score <= observed) under H0: binomial CDF (KGW) or the regularised lower incomplete
    gamma P(n, s) (Gumbel: a sum of n Exp(1))."""
    if n == 0:
        return 1.0
    if scheme.name == "kgw":
        return float(max(binom.cdf(score, n, scheme.gamma), P_FLOOR))
    if scheme.name == "gumbel":
        return float(max(gammainc(n, score), P_FLOOR))
    raise ValueError(f"no lower tail for scheme {scheme.name!r}")


def _layer_tuples(c: Candidates, layer: Layer) -> np.ndarray:
    sel = (c.is_global if layer == "global" else ~c.is_global) & ~c.excluded & (c.tokens >= 0)
    return np.concatenate([c.windows[sel], c.tokens[sel, None]], axis=1)


def scored_masks(scheme: WatermarkScheme, tuples: np.ndarray, text_tuples: np.ndarray,
                 keys: Sequence[WatermarkKey]) -> np.ndarray:
    """(M, w + 1) tuples -> (K, M) True where key k scores the tuple: not an outcome of the
    text fed in, and the first occurrence of its outcome (per key when the scheme's outcome
    rows depend on the key, e.g. min-hash seeding)."""
    if not scheme.dedup_per_key:
        keep = ~rows_in(tuples, text_tuples)
        mask = np.zeros(len(tuples), dtype=bool)
        mask[np.flatnonzero(keep)[first_occurrences(tuples[keep])]] = True
        return np.broadcast_to(mask, (len(keys), len(tuples)))
    out = np.zeros((len(keys), len(tuples)), dtype=bool)
    for i, k in enumerate(keys):
        rows = scheme.dedup_rows(tuples, k)
        keep = ~rows_in(rows, scheme.dedup_rows(text_tuples, k)) if len(text_tuples) else \
            np.ones(len(rows), dtype=bool)
        out[i, np.flatnonzero(keep)[first_occurrences(rows[keep])]] = True
    return out


def key_sums(c: Candidates, scheme: WatermarkScheme, layer: Layer,
             keys: Sequence[WatermarkKey]) -> tuple[np.ndarray, np.ndarray]:
    """-> (summed scores (K,), scored counts (K,)) of each key on one layer."""
    tuples = _layer_tuples(c, layer)
    sums = np.zeros(len(keys))
    counts = np.zeros(len(keys), dtype=np.int64)
    if not len(tuples):
        return sums, counts
    if not scheme.dedup_per_key:  # one key-free mask: score only its tuples, once
        t = tuples[scored_masks(scheme, tuples, c.text_tuples, keys[:1])[0]]
        for lo in range(0, len(keys), KEY_CHUNK):
            ks = keys[lo: lo + KEY_CHUNK]
            sums[lo: lo + len(ks)] = scheme.score_tok(t[:, :-1], t[:, -1], ks).sum(axis=1)
        counts[:] = len(t)
        return sums, counts
    for lo in range(0, len(keys), KEY_CHUNK):
        ks = keys[lo: lo + KEY_CHUNK]
        mask = scored_masks(scheme, tuples, c.text_tuples, ks)
        s = scheme.score_tok(tuples[:, :-1], tuples[:, -1], ks)
        sums[lo: lo + len(ks)] = (s * mask).sum(axis=1)
        counts[lo: lo + len(ks)] = mask.sum(axis=1)
    return sums, counts


def key_result(scheme: WatermarkScheme, key_id: str, layer: Layer, score: float,
             n: int) -> KeyScore:
    t = scheme.test(np.array([score]), int(n))[0]
    return KeyScore(key_id, layer, int(n), float(score), t.z, t.p_value,
                    lower_tail(scheme, float(score), int(n)))


def key_results(c: Candidates, scheme: WatermarkScheme, layer: Layer,
              keys: Sequence[WatermarkKey]) -> list[KeyScore]:
    """Each key alone on one layer of the candidates."""
    sums, counts = key_sums(c, scheme, layer, keys)
    return [key_result(scheme, k.key_id, layer, s, n)
            for k, s, n in zip(keys, sums, counts, strict=True)]


def scored_count(c: Candidates, scheme: WatermarkScheme, layer: Layer, key: WatermarkKey) -> int:
    """Tuples one key's test would score: a function of the suspect's tokens, not of any
    key's outcomes (for schemes whose de-duplication is key-free), so a budget may stop on it."""
    tuples = _layer_tuples(c, layer)
    return int(scored_masks(scheme, tuples, c.text_tuples, [key])[0].sum()) if len(tuples) else 0


def pool(scheme: WatermarkScheme, name: str, members: Sequence[KeyScore]) -> KeyScore:
    """A cluster of keys under one null: summed scores over summed counts (each key's tuples
    de-duplicated per key; independent keys score them independently)."""
    layer = members[0].layer if members else "account"
    if members and members[0].var is not None:
        return mass_result(scheme, name, layer, sum(m.score for m in members),
                           sum(m.mass for m in members), sum(m.var for m in members),
                           sum(m.n_scored for m in members), max(m.bound for m in members))
    return key_result(scheme, name, layer, sum(m.score for m in members),
                    sum(m.n_scored for m in members))


# -- the green-mass statistic ---------------------------------------------------------------
# Top-1 reading scores a position only by the suspect's argmax, which a fine-tune that shifts
# probabilities by a few percent rarely flips. The green mass scores the whole (top-k) next-
# token distribution: at each distinct window i, m_i = sum_t p_it g_it over the suspect's
# likeliest teacher tokens t (g = green under the key). Under H0 (a suspect and a text
# independent of the key) each g_it is an independent Bernoulli(gamma) (KGW's green bit is a
# PRF of key, window and token), so with a_i = sum_t p_it the centred terms
# X_i = m_i - gamma a_i are independent, mean 0, variance gamma (1 - gamma) sum_t p_it^2, and
# bounded by max(gamma, 1 - gamma). Bernstein's inequality then gives a valid (conservative)
# p-value, P(sum X_i >= s) <= exp(-s^2 / (2 V + 2 b s / 3)), with no normal approximation.
# The text must not be marked with the tested key (its windows would depend on the key): read
# fresh, unmarked teacher answers, or score the suspect's own answers through the top logprobs
# of an endpoint (API mode: under H0 they do not depend on the key; the windows of an
# answer's own prompt are excluded as for the argmax). Windows are de-duplicated: one term per
# distinct window.
#
# The shift (shift_candidates): when the suspect's clean base is known (an open student and
# its base model), most of the suspect's distribution is the base's, and its green mass is
# noise that the null variance must carry. Score the difference d_it = p_it - q_it of the two
# distributions instead (the union of both top-k, merged per teacher token): under H0 (neither
# model learned from the key) X_i = sum_t d_it (g_it - gamma) is again a sum of independent
# centred Bernoulli terms, mean 0, variance gamma (1 - gamma) sum_t d_it^2, and
# |X_i| <= max(gamma, 1 - gamma) sum_t |d_it|. The variance falls from sum p^2 (about the
# top token's probability) to sum d^2 (what fine-tuning moved), so the same windows give a
# larger z when the suspect moved its mass towards green. Reported: the moved mass
# (sum |d| / 2) as `mass`, and gamma * mass + X as `score`, so that rate - gamma is the
# excess green share of the moved mass and every formula of the green mass applies as is.


def bernstein_p(s: float, var: float, bound: float) -> float:
    if s <= 0 or var <= 0:
        return 1.0
    return float(max(min(1.0, math.exp(-s * s / (2 * var + 2 * bound * s / 3))), P_FLOOR))


def mass_result(scheme: WatermarkScheme, key_id: str, layer: Layer, green: float, mass: float,
                var: float, n: int, bound: float | None = None) -> KeyScore:
    """bound: the largest |X_i| (default max(gamma, 1 - gamma): a distribution of mass <= 1)."""
    g = scheme.gamma
    b = max(g, 1 - g) if bound is None else bound
    s = green - g * mass
    z = s / math.sqrt(var) if var > 0 else 0.0
    return KeyScore(key_id, layer, int(n), float(green), float(z), bernstein_p(s, var, b),
                    bernstein_p(-s, var, b), float(mass), float(var), float(b))


def shift_candidates(suspect: Candidates, reference: Candidates) -> Candidates:
    """The suspect's top-k minus its reference's on the same positions, for the shift
    statistic: top_probs holds d = p - q over the union of both supports (see above)."""
    if suspect.top_tokens is None or reference.top_tokens is None:
        raise ValueError("the shift statistic needs both models' top-k distributions")
    _check_same_positions(suspect, reference, "shift")
    t, d = merge_duplicates(np.concatenate([suspect.top_tokens, reference.top_tokens], axis=1),
                            np.concatenate([suspect.top_probs, -reference.top_probs], axis=1))
    out = Candidates(suspect.windows, suspect.tokens, suspect.is_global,
                     suspect.excluded | reference.excluded, suspect.text_tuples,
                     suspect.n_rows, suspect.n_tokens + reference.n_tokens, dict(suspect.info),
                     t, d)
    out.info["shift"] = True
    return out


def _check_same_positions(suspect: Candidates, reference: Candidates, statistic: str) -> None:
    if suspect.windows.shape != reference.windows.shape or not (
            np.array_equal(suspect.windows, reference.windows)
            and np.array_equal(suspect.is_global, reference.is_global)):
        raise ValueError("the suspect and its reference were not read at the same positions "
                         f"(the {statistic} statistic needs the same texts and the same "
                         "tokenizer)")


def disagreement_candidates(suspect: Candidates, reference: Candidates) -> Candidates:
    """The suspect's top-1 only where its clean reference's top-1 differs (the "disagree"
    statistic: the argmax's exact binomial test on these positions).

    Where the two models agree, fine-tuning did not move the argmax and the tuple is green at
    gamma whatever the suspect learned: scoring it only dilutes the signal. Where they
    disagree, the suspect chose a token that training put on top, which is green more often
    if it learned from the key's text. Under H0 (neither model nor the text depends on the
    key) the positions kept are a function of the two models and the text alone, so each
    distinct tuple left is still green independently with probability gamma: the same exact
    test, on the tuples that carry the signal (rate - gamma grows by 1 / the disagreement
    share, n falls by it: z grows by 1 / sqrt of it). A position the reference did not read
    (token -1) is dropped: whether the two differ there is unknown.

    In API mode the suspect's tokens are those it generated, and the reference is a clean
    model's top-1 on the same answers (api.disagreeing)."""
    _check_same_positions(suspect, reference, "disagree")
    agree = (suspect.tokens == reference.tokens) | (reference.tokens < 0)
    out = Candidates(suspect.windows, suspect.tokens, suspect.is_global,
                     suspect.excluded | reference.excluded | agree, suspect.text_tuples,
                     suspect.n_rows, suspect.n_tokens + reference.n_tokens, dict(suspect.info))
    out.info["disagreements"] = int((~agree).sum())
    return out


def _mass_rows(c: Candidates, layer: Layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (windows (n, w), tokens (n, k), probs (n, k)): one row per distinct window, its
    first occurrence that carries some mass (a position no generated step aligned to in API
    mode, or whose tokens all failed to map, does not use up its window's one term; the choice
    depends on the suspect's output alone, never on a key)."""
    if c.top_tokens is None:
        raise ValueError("the green-mass statistic needs the suspect's top-k distribution: "
                         "read with top_k > 0 (open mode) or ask for top_logprobs (api mode)")
    sel = (c.is_global if layer == "global" else ~c.is_global) & ~c.excluded & \
        (c.top_probs != 0).any(axis=1)
    w = c.windows[sel]
    first = first_occurrences(w) if len(w) else np.zeros(0, bool)
    return w[first], c.top_tokens[sel][first], c.top_probs[sel][first]


def mass_count(c: Candidates, layer: Layer) -> int:
    """Windows the green mass scores on one layer: key-free, so a budget may stop on it."""
    return len(_mass_rows(c, layer)[0])


def mass_results(c: Candidates, scheme: WatermarkScheme, layer: Layer,
                 keys: Sequence[WatermarkKey]) -> list[KeyScore]:
    """Each key's green mass on one layer (KGW only: Gumbel has no green bit)."""
    if scheme.name != "kgw":
        raise ValueError("the green-mass statistic is defined for KGW")
    w, t, p = _mass_rows(c, layer)
    g = scheme.gamma
    var = float(g * (1 - g) * (p ** 2).sum())
    bound = max(g, 1 - g) * float(np.abs(p).sum(axis=1).max()) if len(w) else max(g, 1 - g)
    k = t.shape[1] if t.ndim == 2 else 0
    green = np.zeros(len(keys))
    if len(w):
        wr, tr, pr = np.repeat(w, k, axis=0), t.ravel(), p.ravel()
        for lo in range(0, len(keys), KEY_CHUNK):
            ks = keys[lo: lo + KEY_CHUNK]
            green[lo: lo + len(ks)] = scheme.score_tok(wr, tr, ks) @ pr
    if c.info.get("shift"):  # signed d: report the moved mass, centre on the net mass
        moved, net = float(np.abs(p).sum()) / 2, float(p.sum())
        green = green - g * net + g * moved
        mass = moved
    else:
        mass = float(p.sum())
    return [mass_result(scheme, key.key_id, layer, s, mass, var, len(w), bound)
            for key, s in zip(keys, green, strict=True)]


def merge_duplicates(tokens: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, k) teacher ids (-1: unmapped) and probabilities -> the same with each row's
    repeated ids merged (probabilities summed into one entry, the others zeroed) and unmapped
    entries zeroed: one green bit per teacher token, so the null variance sums each teacher
    token's probability squared once."""
    order = np.argsort(tokens, axis=1, kind="stable")
    t = np.take_along_axis(tokens, order, 1)
    p = np.take_along_axis(probs, order, 1).astype(np.float64)
    p[t < 0] = 0.0
    for j in range(1, t.shape[1]):
        dup = t[:, j] == t[:, j - 1]
        p[dup, j] += p[dup, j - 1]
        p[dup, j - 1] = 0.0
    return t, p


# statistics read against the suspect's clean reference on the same positions: candidates of
# the pair -> candidates the statistic scores
PAIRED = {"shift": shift_candidates, "disagree": disagreement_candidates}
