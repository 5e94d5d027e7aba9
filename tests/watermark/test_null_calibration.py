"""Null calibration: over >= 10,000 unmarked texts the exact tests keep their false-positive rate.

Each null text is scored with a fresh random key ring (the probability in a p-value is over
keys), as token ids directly. Sources: uniform random token streams, repetitive loops with a
little noise, templated sentences, Python source code, and unmarked tiny-model outputs (only
64: sampling them costs ~0.4 s of CPU each). A rate passes when its count is at most the
99.5% quantile of Binom(N, alpha): alpha lies within the rate's 99% binomial interval or above.
Every configuration is checked on the global layer; the default one on the account layer too.
"""

import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as sps

from distillery.watermark import KeyRing, detect_ids, make_scheme, score_keys

V = 49152
ALPHAS = (1e-2, 1e-3)
CONFIGS = {
    "kgw-lefthash": ("kgw", {}),
    "kgw-selfhash": ("kgw", {"seeding": "selfhash", "context_width": 3}),
    "gumbel": ("gumbel", {}),
}

TEMPLATES = [
    "Dear {name}, your order #{num} has shipped and will arrive on {day}.",
    "The {adj} {noun} is {num} meters long.",
    "Q: What is {num} plus {num}? A: The answer is {num}.",
    "Step {num}: open the {noun} and press the {adj} button.",
    "Thank you for contacting support, {name}. Your ticket {num} is {adj}.",
    "- {noun}: {num} units, status {adj}",
]
FILL = {
    "name": ["Alice", "Bob", "Chen", "Dana", "Eve", "Farid"],
    "num": [str(i) for i in range(40)],
    "day": ["Monday", "Tuesday", "Friday"],
    "adj": ["red", "open", "large", "closed", "pending", "blue"],
    "noun": ["box", "door", "bridge", "table", "river", "file"],
}


def _template_text(rng) -> str:
    out = []
    for _ in range(rng.integers(3, 12)):
        t = TEMPLATES[rng.integers(len(TEMPLATES))]
        while "{" in t:
            slot = t[t.index("{") + 1: t.index("}")]
            t = t.replace("{" + slot + "}", FILL[slot][rng.integers(len(FILL[slot]))], 1)
        out.append(t)
    return "\n".join(out)


def _repetitive(rng, n: int) -> list[np.ndarray]:
    """Loops of 1-12 tokens repeated to 50-300 tokens, 2% of tokens replaced at random."""
    texts = []
    for _ in range(n):
        loop = rng.integers(0, V, rng.integers(1, 13))
        ids = np.resize(loop, rng.integers(50, 301))
        noise = rng.random(len(ids)) < 0.02
        ids[noise] = rng.integers(0, V, noise.sum())
        texts.append(ids)
    return texts


@pytest.fixture(scope="module")
def null_texts(tiny_engine) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(20231)
    tok = tiny_engine.tokenizer
    texts = {
        "random": [rng.integers(0, V, rng.integers(30, 301)) for _ in range(4600)],
        "repetitive": _repetitive(rng, 2000),
        "templated": [np.array(tok.encode(_template_text(rng), add_special_tokens=False))
                      for _ in range(1500)],
    }
    code = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:120]:
        ids = np.array(tok.encode(path.read_text(errors="ignore"), add_special_tokens=False))
        for start in range(0, len(ids) - 50, 250):
            code.append(ids[start: start + rng.integers(50, 301)])
    texts["code"] = code[:2000]
    # unmarked model outputs; transformers' generate skips the engine's per-step decoding
    torch.manual_seed(0)
    starts = torch.tensor(rng.integers(3, V, (64, 2)))
    out = tiny_engine.model.generate(starts, attention_mask=torch.ones_like(starts),
                                     do_sample=True, max_new_tokens=100, min_new_tokens=100,
                                     pad_token_id=tiny_engine.pad_id)
    texts["model"] = list(out[:, 2:].numpy())
    assert len(texts["code"]) == 2000
    assert sum(len(v) for v in texts.values()) >= 10_000
    return texts


def _p_values(texts, name, params, layer="global", dedup=True, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for ids in texts:
        scheme = make_scheme(name, KeyRing({1: rng.bytes(32)}), account="acct", **params)
        out.append(detect_ids(ids, scheme, layer, dedup=dedup).p_value)
    return np.array(out)


def _bound(n: int, alpha: float) -> int:
    return int(sps.binom.ppf(0.995, n, alpha))


@pytest.mark.parametrize("config", CONFIGS)
def test_false_positive_rate_at_alpha(null_texts, config):
    name, params = CONFIGS[config]
    everything = [t for v in null_texts.values() for t in v]
    for layer in ("global", "account") if config == "kgw-lefthash" else ("global",):
        p = _p_values(everything, name, params, layer)
        for alpha in ALPHAS:
            hits = int((p <= alpha).sum())
            assert hits <= _bound(len(p), alpha), (config, layer, alpha, hits / len(p))
        assert (p <= 0.1).mean() > 0.03  # not vacuous: the test does reject sometimes


@pytest.mark.parametrize("config", CONFIGS)
def test_repetitive_text_is_flagged_without_dedup_and_not_with_it(null_texts, config):
    """The 15-44% failure of z-tests on repetitive text, and de-duplication as the cure."""
    name, params = CONFIGS[config]
    texts = null_texts["repetitive"]
    raw = _p_values(texts, name, params, dedup=False)
    assert (raw <= 0.01).mean() > 0.10  # would be flagged: a loop repeats one outcome
    deduped = _p_values(texts, name, params)
    for alpha in ALPHAS:
        assert (deduped <= alpha).sum() <= _bound(len(texts), alpha)


def test_scan_of_many_keys_keeps_the_familywise_rate(null_texts):
    """Holm over 100 account keys per text: P(min adjusted p <= alpha) <= alpha."""
    from distillery.stats import holm_bonferroni

    rng = np.random.default_rng(7)
    texts = null_texts["random"][:500] + null_texts["templated"][:500]
    best = []
    for ids in texts:
        ring = KeyRing({1: rng.bytes(32)})
        scheme = make_scheme("kgw", ring, account="a0")
        keys = [ring.account_key(f"a{i}") for i in range(100)]
        ps = [r.p_value for r in score_keys(ids, scheme, "account", keys)]
        best.append(holm_bonferroni(ps).min())
    best = np.array(best)
    for alpha in ALPHAS:
        assert (best <= alpha).sum() <= _bound(len(best), alpha)
