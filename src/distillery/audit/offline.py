"""Traffic files scored without a gateway: per-account histories, calibration from benign
traffic (`distillery audit calibrate`), and the clusters of a set of histories."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from distillery.audit.calibrate import SIZES, Calibration, calibrate
from distillery.audit.cluster import find_clusters, pooled, signature
from distillery.audit.embed import get_embedder
from distillery.audit.features import Row, row_from_request
from distillery.audit.traffic import Request

Histories = dict[str, tuple[list[Row], np.ndarray]]


def histories(requests: Iterable[Request], embedder: str) -> Histories:
    """Each account's rows in time order with their embeddings."""
    by: dict[str, list[Row]] = defaultdict(list)
    for r in sorted(requests, key=lambda q: q.t):
        by[r.account].append(row_from_request(r))
    flat = [r for rows in by.values() for r in rows]
    texts = list(dict.fromkeys(r.text for r in flat))  # each distinct text embedded once
    index = {t: i for i, t in enumerate(texts)}
    emb = get_embedder(embedder).embed(texts)[[index[r.text] for r in flat]]
    out, i = {}, 0
    for a, rows in by.items():
        out[a] = (rows, emb[i:i + len(rows)])
        i += len(rows)
    return out


def cluster_windows(h: Histories, sizes: tuple[int, ...], min_accounts: int = 5,
                    eps: float = 0.7) -> list[tuple[list[Row], np.ndarray, tuple[str, ...]]]:
    """The pooled windows of the clusters found among these accounts (each size that fits),
    with the cluster's members."""
    sigs = [signature(a, rows, emb) for a, (rows, emb) in h.items()]
    out = []
    for cl in find_clusters(sigs, eps, min_accounts):
        n = sum(len(h[a][0]) for a in cl.accounts)
        for s in sizes:
            if s <= n:
                out.append((*pooled(h, cl.accounts, s), cl.accounts))
    return out


def calibrate_traffic(requests: Iterable[Request], embedder: str = "minilm",
                      sizes: tuple[int, ...] = SIZES, seed: int = 0
                      ) -> Calibration:
    """Calibration from benign traffic only (the caller vouches for it: no labels are read).
    Benign clusters' pooled windows join the nulls, so a cluster is judged like an account."""
    h = histories(requests, embedder)
    return calibrate(h, embedder, sizes, extra_windows=cluster_windows(h, sizes), seed=seed)
