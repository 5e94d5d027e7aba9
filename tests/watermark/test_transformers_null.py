"""Null calibration of the `transformers` KGW construction: context widths 1-4, both seedings.

transformers seeds its generator on the last token only (lefthash) or on a min-hash over the
window (selfhash), so distinct windows can share one green outcome; de-duplication must key on
what determines the outcome (kgw_transformers.outcome_seeds), or repeated (last token, token)
pairs in different contexts are counted several times and p-values fall below their level.

10,000 null texts per configuration, each scored under a fresh hashing key drawn for its group of
G texts. Green lists are randperms of the vocabulary, ~0.4 ms at V = 49k: each text's tokens
are therefore relabelled by first appearance into its own block of B ids of a V = G * B
vocabulary. The green outcomes depend on a text only through which of its tokens are equal
(lefthash: one seed per distinct last token; selfhash: one table entry per distinct token), so
relabelling keeps each text's null law; disjoint blocks keep the texts of one key apart.

Two checks per configuration, at a fixed seed:
- calibration: a two-sided Kolmogorov-Smirnov test of the randomized p-value
  P(S > s) + U P(S = s), U ~ Uniform(0, 1), against Uniform(0, 1) (the exact binomial p is
  discrete, so the KS is run on its randomized version, uniform under H0);
- level: for the exact p-values, P(p <= alpha) <= alpha at alpha = 0.1, 0.01 and 1e-3, each an
  exact one-sided binomial test of the flagged count against Binom(N, alpha) (H0: rate <= alpha).
"""

import ast
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from distillery.watermark import TransformersKGW
from distillery.watermark.detect import score_each

B, G = 32, 32  # ids per text, texts per hashing key
V = B * G  # 1024: gamma * V = 256 green ids exactly
GAMMA = 0.25
N_TEXTS = 10_000
ALPHAS = (0.1, 1e-2, 1e-3)
SEEDINGS, WIDTHS = ("lefthash", "selfhash"), (1, 2, 3, 4)
LEVEL = 1e-4  # each check's own false-alarm probability (they run at a fixed seed anyway)

TEMPLATES = [
    "Dear {name}, your order #{num} has shipped and will arrive on {day}.",
    "Step {num}: open the {noun} and press the {adj} button.",
    "Thank you for contacting support, {name}. Your ticket {num} is {adj}.",
    "- {noun}: {num} units, status {adj}",
]
FILL = {
    "name": ["Alice", "Bob", "Chen", "Dana"], "num": [str(i) for i in range(20)],
    "day": ["Monday", "Friday"], "adj": ["red", "open", "large", "pending"],
    "noun": ["box", "door", "bridge", "file"],
}


def _relabel(ids: np.ndarray) -> np.ndarray:
    """Token ids -> labels 0.. in order of first appearance, cut before the (B + 1)-th
    distinct token."""
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    labels = rank[inverse.reshape(-1)]
    over = np.flatnonzero(labels >= B)
    return labels[: over[0]] if len(over) else labels


def _template(rng) -> str:
    lines = []
    for _ in range(8):
        t = TEMPLATES[rng.integers(len(TEMPLATES))]
        while "{" in t:
            slot = t[t.index("{") + 1: t.index("}")]
            t = t.replace("{" + slot + "}", FILL[slot][rng.integers(len(FILL[slot]))], 1)
        lines.append(t)
    return "\n".join(lines)


def _bigram_in_contexts(rng) -> np.ndarray:
    """One bigram (a, b) repeated after varying tokens: x1 a b x2 a b ... (plus a loop of it)."""
    n = rng.integers(8, 40)
    if rng.random() < 0.2:
        return np.resize(np.array([0, 1]), 2 * n)
    xs = rng.integers(2, B, n)
    return np.stack([xs, np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)], 1).ravel()


@pytest.fixture(scope="module")
def null_texts(tokenizer) -> dict[str, list[np.ndarray]]:
    """10,000 texts of 10-120 tokens, each with at most B distinct tokens, labelled 0..B-1."""
    rng = np.random.default_rng(2024)
    stdlib = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:80]
    code, docs = [], []
    for path in stdlib:
        src = path.read_text(errors="ignore")
        ids = np.array(tokenizer.encode(src, add_special_tokens=False))
        for start in range(0, len(ids) - 200, 97):
            code.append(ids[start: start + 200])
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and ast.get_docstring(node):
                docs.append(np.array(tokenizer.encode(ast.get_docstring(node),
                                                      add_special_tokens=False)))
    templated = [np.array(tokenizer.encode(_template(rng), add_special_tokens=False))
                 for _ in range(1500)]

    def take(source: list[np.ndarray], n: int) -> list[np.ndarray]:
        out = []
        for i in rng.permutation(len(source)):
            t = _relabel(source[i])[: rng.integers(10, 121)]
            if len(t) >= 10:
                out.append(t)
            if len(out) == n:
                return out
        raise AssertionError(f"only {len(out)} texts of {n}")

    texts = {
        "code": take(code, 3000),
        "docs": take(docs, 1400),
        "templated": take(templated, 1500),
        "bigram": [_bigram_in_contexts(rng) for _ in range(1500)],
        "random": [rng.integers(0, B, rng.integers(10, 121)) for _ in range(2600)],
    }
    assert sum(len(v) for v in texts.values()) == N_TEXTS
    return texts


def _null_scores(everything: list[np.ndarray]) -> dict[tuple[str, int], tuple[np.ndarray, ...]]:
    """(seeding, width) -> (n_scored, green count, exact p) per text. Each group of G texts
    gets a fresh hashing key, shared by the 8 configurations (lefthash's green lists do not
    depend on the width, so they are computed once)."""
    rng = np.random.default_rng(7)
    out = {(sd, w): tuple(np.zeros(len(everything)) for _ in range(3))
           for sd in SEEDINGS for w in WIDTHS}
    for g in range(0, len(everything), G):
        docs = [ids + B * j for j, ids in enumerate(everything[g: g + G])]  # disjoint blocks
        key = int(rng.integers(1, 2**31))
        for (seeding, width), (n, s, p) in out.items():
            scheme = TransformersKGW(vocab_size=V, hashing_key=key, gamma=GAMMA,
                                     seeding=seeding, context_width=width)
            for j, r in enumerate(score_each(docs, scheme)):
                n[g + j], s[g + j], p[g + j] = r.n_scored, r.score, r.p_value
    return out


def _families(null_texts, every: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Every `every`-th text of each family, and which of them are bigram texts."""
    texts, bigram = [], []
    for name, family in null_texts.items():
        texts += family[::every]
        bigram += [name == "bigram"] * len(family[::every])
    return texts, np.array(bigram)


def _check(n, s, p, rng, what) -> None:
    u = rng.random(len(p))
    randomized = sps.binom.sf(s, n, GAMMA) + u * sps.binom.pmf(s, n, GAMMA)
    assert sps.kstest(randomized, "uniform").pvalue > LEVEL, what
    for alpha in ALPHAS:
        hits = int((p <= alpha).sum())
        level = sps.binomtest(hits, len(p), alpha, alternative="greater").pvalue
        assert level > LEVEL, (what, alpha, hits / len(p))


def _check_all(null_texts, every: int) -> None:
    texts, bigram = _families(null_texts, every)
    for (seeding, width), (n, s, p) in _null_scores(texts).items():
        what = (seeding, width, len(texts))
        _check(n, s, p, np.random.default_rng(width), what)
        assert n.mean() > 15 and (p <= 0.1).mean() > 0.03, what  # not vacuous
        flagged = int((p[bigram] <= 1e-2).sum())  # a repeated bigram is not flagged
        level = sps.binomtest(flagged, int(bigram.sum()), 1e-2, alternative="greater").pvalue
        assert level > LEVEL, (what, flagged)


def test_transformers_construction_is_calibrated(null_texts):
    """Fast tier: 2,500 texts per configuration, 20,000 tests (its full run is below)."""
    _check_all(null_texts, every=4)


@pytest.mark.slow
def test_transformers_construction_is_calibrated_on_10000_texts(null_texts):
    """10,000 texts per configuration, 80,000 tests (~1 min of CPU)."""
    _check_all(null_texts, every=1)
