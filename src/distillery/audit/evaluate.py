"""Detection quality on labelled traffic: every window of every account (and cluster) scored,
AUROC and TPR at a calibrated FPR per attack persona and scorer, the benign FPR measured.

The benign windows here must come from traffic the calibration never saw (another seed):
that is what makes the measured FPR an estimate and not a restatement of the calibration.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from distillery.audit.calibrate import SCORERS, Calibration, size_for, sliding
from distillery.audit.cluster import find_clusters, pooled, signature
from distillery.audit.offline import Histories
from distillery.audit.traffic import Label


@dataclass(frozen=True)
class PersonaResult:
    persona: str
    scorer: str
    windows: int
    auroc: float
    tpr: dict[float, float]  # nominal FPR -> share of this persona's windows with p <= it


def window_pvalues(cal: Calibration, h: Histories, size: int | None = None,
                   stride_frac: float = 0.5, cap: int = 20) -> dict[str, list[dict]]:
    """account -> the p-values (per scorer) of its windows (of `size`, or the largest size
    its history fills)."""
    out: dict[str, list[dict]] = {}
    for a in h:
        rows, emb = h[a]
        s = size_for(len(rows), cal.sizes) if size is None else (
            size if len(rows) >= size else None)
        if s is None:
            continue
        out[a] = [cal.score(rows[i:j], emb[i:j]).p_values
                  for i, j in sliding(len(rows), s, max(int(s * stride_frac), 1), cap)]
    return out


def cluster_pvalues(cal: Calibration, h: Histories, eps: float = 0.7, min_accounts: int = 5
                    ) -> dict[tuple[str, ...], dict]:
    """cluster members -> the p-values of the cluster's pooled last window."""
    sigs = [signature(a, rows, emb) for a, (rows, emb) in h.items()]
    out = {}
    for cl in find_clusters(sigs, eps, min_accounts):
        n = sum(len(h[a][0]) for a in cl.accounts)
        s = size_for(n, cal.sizes)
        if s is not None:
            out[cl.accounts] = cal.score(*pooled(h, cl.accounts, s)).p_values
    return out


def auroc(neg: np.ndarray, pos: np.ndarray) -> float:
    """P(pos score > neg score) + 1/2 P(tie): the Mann-Whitney form of the AUROC."""
    from scipy.stats import mannwhitneyu

    if not len(neg) or not len(pos):
        return float("nan")
    return float(mannwhitneyu(pos, neg, alternative="greater").statistic / (len(pos) * len(neg)))


def evaluate(cal: Calibration, h: Histories, labels: dict[str, Label],
             fprs: tuple[float, ...] = (0.003, 0.01), size: int | None = None
             ) -> tuple[list[PersonaResult], dict]:
    """Per attack persona and scorer; and {scorer: {fpr: measured benign FPR}} (with the
    number of benign windows under the key "windows")."""
    pv = window_pvalues(cal, h, size)
    by: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for a, ws in pv.items():
        lab = labels[a]
        key = "benign" if lab.role == "benign" else lab.persona
        for w in ws:
            for k in SCORERS:
                by[key][k].append(w[k])
    for members, p in cluster_pvalues(cal, h).items():
        roles = {labels[a].role for a in members}
        key = "benign" if roles == {"benign"} else labels[members[0]].persona + "(cluster)"
        for k in SCORERS:
            by[key][k].append(p[k])
    results = []
    neg = {k: -np.log(np.asarray(by["benign"][k])) for k in SCORERS}
    for persona, d in sorted(by.items()):
        if persona == "benign":
            continue
        for k in SCORERS:
            p = np.asarray(d[k])
            results.append(PersonaResult(persona, k, len(p), auroc(neg[k], -np.log(p)),
                                         {f: float((p <= f).mean()) for f in fprs}))
    fpr = {k: {f: float((np.asarray(by["benign"][k]) <= f).mean()) for f in fprs}
           | {"windows": len(by["benign"][k])} for k in SCORERS}
    return results, fpr


def passes(cal: Calibration, rows: list, emb: np.ndarray, step: int = 10
           ) -> list[tuple[int, int, dict[str, float]]]:
    """(queries so far, window size, p-values) of a pass every `step` queries of one history,
    each scoring the last window, as the auditor does."""
    out = []
    for n in range(step, len(rows) + 1, step):
        s = size_for(n, cal.sizes)
        if s is not None:
            out.append((n, s, cal.score(rows[n - s:n], emb[n - s:n]).p_values))
    return out


def policy_replay(scored: list[tuple[int, int, dict[str, float]]], config=None,
                  scorer: str = "combined") -> tuple[int | None, int | None]:
    """(queries until flagged, until blocked) under the policy reading `scorer`'s p-value
    (the auditor's is "combined") at each pass of `passes` (None: never)."""
    from distillery.audit.config import AuditConfig
    from distillery.audit.policy import StrikeState, decide

    cfg = config or AuditConfig()
    state, status, flagged, blocked = StrikeState(), "active", None, None
    for n, s, ps in scored:
        v = decide(ps[scorer], list(range(n - s + 1, n + 1)), status, state, cfg)
        if v.strike:
            state, status = StrikeState(v.strikes, n), v.status
            flagged = flagged or n
            if status == "blocked":
                blocked = n
                break
    return flagged, blocked


def queries_until(cal: Calibration, rows: list, emb: np.ndarray, config=None, step: int = 10,
                  scorer: str = "combined") -> tuple[int | None, int | None]:
    """(queries until flagged, until blocked) of one history under the policy, a pass every
    `step` of its queries (None: never)."""
    return policy_replay(passes(cal, rows, emb, step), config, scorer)
