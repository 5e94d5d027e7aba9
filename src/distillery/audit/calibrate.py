"""Scorers of a window, and their calibration on benign traffic only.

A window (an account's or a cluster's last W rows, W in SIZES) gets five statistics:
- `mmd`: MMD^2 to the nearest benign reference sample (mmd.py);
- `prada`: 1 - Shapiro-Wilk W of the minimum query distances (prada.py);
- `novelty`: the mean distance of the window's prompts to their nearest benign reference
  prompt (mmd.NearestReference.novelty): linear in the share of foreign prompts, where MMD^2
  is quadratic, so it keeps power on extraction mixed into benign traffic;
- `behaviour`: Fisher's -2 sum log p over the behavioural features (features.BEHAVIOUR),
  each p the feature's empirical upper tail (in its suspicious direction) among benign windows;
- `combined`: the same Fisher sum over mmd's, prada's and novelty's empirical p-values and the
  features.
Each statistic's null is measured on benign windows of the same size scored the same way.
mmd, prada and novelty get the empirical upper tail, (1 + #{null >= s}) / (m + 1), which cannot go
below 1 / (m + 1). Fisher's sum assumes independent p-values, which these are not: behaviour
and combined use Brown's method (Brown 1975, "A method for combining non-independent,
one-sided tests of significance"): the sum is taken as c * chi^2_f with c and f matching the
null's measured mean and variance, which reaches the small p-values a policy needs; the
realised false-positive rate is then checked on held-out benign traffic (evaluate.py).

Calibration (benign traffic only), leave one account out: every benign account gives a
reference sample (up to `ref_size` of its prompts) and its windows to the nulls, and a null
window's mmd and novelty are computed against the reference *without its own account's
sample* (without its members' samples, for a benign cluster's pooled window). So the null
is what a new, never-seen benign account scores against the full reference, up to one sample
fewer in the minimum, which makes its statistics a little larger: conservative. (The first
version split the accounts in two, one half reference, one half nulls: with two support
products, a calibration whose reference half held only one of them let every bot of the
other score as novel on held-out traffic; the leave-one-out reference holds both halves.)
The null windows alternate between part A (the per-feature tails inside behaviour/combined)
and part B (the nulls of the five statistics), so no statistic is calibrated on the windows
that defined it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillery.audit.features import BEHAVIOUR, Row, window_features
from distillery.audit.mmd import NearestReference, median_distance
from distillery.audit.prada import prada

SIZES = (20, 50, 100, 200)
SCORERS = ("mmd", "prada", "novelty", "behaviour", "combined")
CONTENT = ("mmd", "prada", "novelty")  # statistics of the embeddings, each an empirical tail
FORMAT = 2  # calibration file format: 2 added novelty


@dataclass(frozen=True)
class WindowScore:
    size: int
    features: dict[str, float]
    stats: dict[str, float]  # per scorer
    p_values: dict[str, float]  # per scorer, calibrated on benign windows of this size

    @property
    def p_value(self) -> float:
        return self.p_values["combined"]


def size_for(n: int, sizes: tuple[int, ...] = SIZES) -> int | None:
    """The largest window size a history of n rows fills, or None."""
    fit = [s for s in sizes if s <= n]
    return max(fit) if fit else None


def _tail(sorted_null: np.ndarray, x: float) -> float:
    """Empirical upper-tail p-value (1 + #{null >= x}) / (m + 1)."""
    ge = len(sorted_null) - np.searchsorted(sorted_null, x, side="left")
    return float((1 + ge) / (len(sorted_null) + 1))


def _fisher(ps: list[float]) -> float:
    return float(-2 * np.sum(np.log(ps)))


def brown_p(null: np.ndarray, x: float) -> float:
    """P(c chi^2_f >= x), c = var / (2 mean), f = 2 mean^2 / var of the measured null (Brown)."""
    from scipy.stats import chi2

    mean, var = float(np.mean(null)), float(np.var(null, ddof=1))
    if var <= 0:
        return 1.0 if x <= mean else 0.0
    c, f = var / (2 * mean), 2 * mean * mean / var
    return float(chi2.sf(x / c, f))


FISHER = ("behaviour", "combined")


class Calibration:
    def __init__(self, embedder: str, sigma: float, samples: list[np.ndarray],
                 sizes: tuple[int, ...] = SIZES):
        self.embedder, self.sigma, self.samples = embedder, sigma, samples
        self.sizes = tuple(sizes)
        self.ref = NearestReference(samples, sigma)
        self.tails: dict[int, dict[str, np.ndarray]] = {}  # part A: per component
        self.nulls: dict[int, dict[str, np.ndarray]] = {}  # part B: per scorer
        self.n_null: dict[int, int] = {}

    def _raw(self, rows: list[Row], emb: np.ndarray, exclude: tuple[int, ...] = ()
             ) -> tuple[dict, dict]:
        feats = window_features(rows, emb)
        return feats, {"mmd": self.ref.statistic(emb, exclude), "prada": prada(emb).score,
                       "novelty": self.ref.novelty(emb, exclude)}

    def _stats(self, size: int, feats: dict, raw: dict) -> tuple[dict, dict]:
        tails = self.tails[size]
        pf = [_tail(tails[name], sign * feats[name]) for name, sign in BEHAVIOUR]
        pc = {k: _tail(tails[k], raw[k]) for k in CONTENT}
        stats = {**raw, "behaviour": _fisher(pf), "combined": _fisher([*pc.values(), *pf])}
        comp = {**pc, **{n: p for (n, _), p in zip(BEHAVIOUR, pf, strict=True)}}
        return stats, comp

    def fit(self, windows: list[tuple]) -> Calibration:
        """Fill tails and nulls from benign null windows: (rows in time order, embeddings[,
        indices of the reference samples the window must not be compared with])."""
        by_size: dict[int, list[tuple[dict, dict]]] = {s: [] for s in self.sizes}
        for rows, emb, *exclude in windows:
            if len(rows) in by_size:
                by_size[len(rows)].append(self._raw(rows, emb, *exclude))
        for s, raws in by_size.items():
            if len(raws) < 20:
                raise ValueError(f"only {len(raws)} benign windows of {s} rows: calibrate on "
                                 "more benign traffic (or fewer window sizes)")
            part_a, part_b = raws[0::2], raws[1::2]
            tails = {k: [r[k] for _, r in part_a] for k in CONTENT}
            for name, sign in BEHAVIOUR:
                tails[name] = [sign * f[name] for f, _ in part_a]
            self.tails[s] = {k: np.sort(np.asarray(v)) for k, v in tails.items()}
            b_stats = [self._stats(s, f, r)[0] for f, r in part_b]
            self.nulls[s] = {k: np.sort([st[k] for st in b_stats]) for k in SCORERS}
            self.n_null[s] = len(part_b)
        return self

    def score(self, rows: list[Row], emb: np.ndarray) -> WindowScore:
        """Score one window of exactly one of the calibrated sizes."""
        size = len(rows)
        if size not in self.nulls:
            raise ValueError(f"no calibration for windows of {size} rows; sizes: {self.sizes}")
        feats, raw = self._raw(rows, emb)
        stats, comp = self._stats(size, feats, raw)
        ps = {k: (brown_p if k in FISHER else _tail)(self.nulls[size][k], stats[k])
              for k in SCORERS}
        return WindowScore(size, {**feats, **{f"p_{k}": v for k, v in comp.items()}}, stats, ps)

    def threshold(self, size: int, scorer: str, fpr: float) -> float:
        """The statistic's benign (1 - fpr) quantile at this size (part B)."""
        return float(np.quantile(self.nulls[size][scorer], 1 - fpr))

    # -- persistence: one .npz (arrays) with a JSON header ---------------------------------
    def save(self, path: str | Path) -> None:
        arrays = {"pool": np.concatenate(self.samples),
                  "offsets": np.cumsum([0, *(len(y) for y in self.samples)])}
        for s in self.sizes:
            for k, v in self.tails[s].items():
                arrays[f"tail/{s}/{k}"] = v
            for k, v in self.nulls[s].items():
                arrays[f"null/{s}/{k}"] = v
        meta = {"embedder": self.embedder, "sigma": self.sigma, "sizes": list(self.sizes),
                "n_null": self.n_null, "format": FORMAT}
        buf = io.BytesIO()
        np.savez_compressed(buf, meta=np.array(json.dumps(meta)), **arrays)
        Path(path).write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        try:
            z = np.load(path, allow_pickle=False)
            meta = json.loads(str(z["meta"]))
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{path} is not an audit calibration ({e}); make one with "
                             "`distillery audit calibrate`") from None
        if meta.get("format", 1) != FORMAT:
            raise ValueError(f"{path} is an audit calibration of format {meta.get('format', 1)}"
                             f", this version scores format {FORMAT}: run `distillery audit "
                             "calibrate` again")
        pool, off = z["pool"], z["offsets"]
        samples = [pool[i:j] for i, j in zip(off[:-1], off[1:], strict=True)]
        c = cls(meta["embedder"], meta["sigma"], samples, tuple(meta["sizes"]))
        for s in c.sizes:
            c.tails[s] = {k.split("/")[2]: z[k] for k in z.files if k.startswith(f"tail/{s}/")}
            c.nulls[s] = {k.split("/")[2]: z[k] for k in z.files if k.startswith(f"null/{s}/")}
            c.n_null[s] = int(meta["n_null"][str(s)])
        return c


def sliding(n: int, size: int, stride: int, cap: int) -> list[tuple[int, int]]:
    """Up to `cap` windows [i, i+size) of a history of n rows, the last one included."""
    starts = list(range(0, n - size + 1, stride))
    if starts and starts[-1] != n - size:
        starts.append(n - size)
    if len(starts) > cap:
        starts = [starts[round(i * (len(starts) - 1) / (cap - 1))] for i in range(cap)]
    return [(i, i + size) for i in starts]


def calibrate(histories: dict[str, tuple[list[Row], np.ndarray]], embedder: str,
              sizes: tuple[int, ...] = SIZES, ref_size: int = 100, cap: int = 60,
              extra_windows: list[tuple] | None = None, seed: int = 0) -> Calibration:
    """A calibration from benign accounts' histories (rows in time order, embeddings), leave
    one account out (module docstring). extra_windows: (rows, embeddings, member accounts),
    e.g. benign clusters' pooled windows, compared without their members' samples.

    Windows slide by a quarter of their size (up to `cap` per account and size): overlapping
    windows are not independent, but each is a draw of the null, and the empirical p-value's
    floor 1 / (m + 1) must sit below the 0.3% a policy asks of it."""
    names = sorted(histories)
    index = {a: j for j, a in enumerate(names)}
    rng = np.random.default_rng(seed)
    samples = []
    for a in names:
        emb = histories[a][1]
        pick = np.sort(rng.choice(len(emb), min(ref_size, len(emb)), replace=False))
        samples.append(emb[pick].astype(np.float32))
    sigma = median_distance(np.concatenate(samples), seed=seed)
    cal = Calibration(embedder, sigma, samples, sizes)
    windows = [(rows, emb, tuple(index[a] for a in members))
               for rows, emb, members in extra_windows or []]
    for a in names:
        rows, emb = histories[a]
        for s in cal.sizes:
            for i, j in sliding(len(rows), s, max(s // 4, 5), cap):
                windows.append((rows[i:j], emb[i:j], (index[a],)))
    return cal.fit(windows)
