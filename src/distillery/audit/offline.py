"""Traffic files scored without a gateway: per-account histories, calibration from benign
traffic (`distillery audit calibrate`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from distillery.audit.calibrate import SIZES, Calibration, calibrate
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


def calibrate_traffic(requests: Iterable[Request], embedder: str = "minilm",
                      sizes: tuple[int, ...] = SIZES, seed: int = 0
                      ) -> Calibration:
    """Calibration from benign traffic only (the caller vouches for it: no labels are read).

    The nulls hold accounts' windows only. A benign cluster's pooled window would be compared
    without its members' samples, and in a calibration a benign cluster is often a whole
    persona (the six evaluation runs): without them the reference lacks that kind of traffic
    and the window scores as novel, a null value no deployed cluster of that kind would see.
    A cluster is scored against the accounts' nulls; benign clusters' false alarms are
    counted in evaluate.py."""
    h = histories(requests, embedder)
    return calibrate(h, embedder, sizes, seed=seed)
