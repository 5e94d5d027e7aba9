"""Coordinated accounts: accounts whose traffic looks like one client's, grouped and scored as one.

An account's signature: the mean of its recent prompt embeddings (what it asks), its client
fingerprint (user agent, and its usual sampling parameters), its template mix (first words)
and its active span (first to last request). Distance between two accounts: cosine distance
of the mean embeddings + `ua_weight` if their user agents differ + `ua_weight` if their usual
parameters differ + `template_weight` x the Jaccard distance of their template sets +
`time_weight` x (1 - the overlap of their spans, intersection over union): a campaign shares
a client, a parameter set and a schedule. scikit-learn's DBSCAN on that precomputed matrix
finds dense groups of >= min_accounts accounts; a cluster's window
is the last rows of all its members together, scored like an account's (calibrate.py), so a
campaign of 50 accounts x 20 requests has windows no single account has.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from distillery.audit.features import Row


@dataclass(frozen=True)
class Signature:
    account: str
    mean: np.ndarray  # (d,) unit mean embedding
    ua: str
    params: tuple  # the most common (endpoint, max_tokens, temperature, n, top_logprobs)
    templates: frozenset[str]
    span: tuple[float, float]  # first and last request time


@dataclass(frozen=True)
class Cluster:
    id: str  # stable for the same members: "c-" + hash of the sorted names
    accounts: tuple[str, ...]


def signature(account: str, rows: list[Row], emb: np.ndarray) -> Signature:
    m = emb.mean(0)
    ua = Counter(r.ua for r in rows).most_common(1)[0][0]
    params = Counter((r.completions, r.max_tokens, r.temperature, r.n, r.top_logprobs)
                     for r in rows).most_common(1)[0][0]
    return Signature(account, m / max(float(np.linalg.norm(m)), 1e-9), ua, params,
                     frozenset(r.template for r in rows), (rows[0].t, rows[-1].t))


def distances(sigs: list[Signature], ua_weight: float = 0.5, template_weight: float = 0.3,
              time_weight: float = 0.5) -> np.ndarray:
    """(A, A) pairwise distances of account signatures."""
    means = np.stack([s.mean for s in sigs])  # (A, d)
    d = 1.0 - means @ means.T
    ua = np.array([hash(s.ua) for s in sigs])
    params = np.array([hash(s.params) for s in sigs])
    d += ua_weight * (ua[:, None] != ua[None, :]) + ua_weight * (params[:, None] != params[None, :])
    t0 = np.array([s.span[0] for s in sigs])
    t1 = np.array([s.span[1] for s in sigs])
    inter = np.maximum(np.minimum(t1[:, None], t1[None, :]) - np.maximum(t0[:, None], t0[None, :]),
                       0.0)
    union = np.maximum(t1[:, None], t1[None, :]) - np.minimum(t0[:, None], t0[None, :])
    d += time_weight * (1 - inter / np.maximum(union, 1.0))
    if template_weight:
        d += template_weight * _jaccard_distances([s.templates for s in sigs])
    np.fill_diagonal(d, 0.0)
    return np.maximum(d, 0.0)


def _jaccard_distances(sets: list[frozenset[str]]) -> np.ndarray:
    """(A, A) 1 - |a & b| / |a | b| through one sparse product (A x templates incidence)."""
    from scipy.sparse import csr_matrix

    vocab: dict[str, int] = {}
    cols = [vocab.setdefault(t, len(vocab)) for s in sets for t in s]
    rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    m = csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(sets), max(len(vocab), 1)))
    inter = (m @ m.T).toarray()
    size = np.array([len(s) for s in sets], dtype=float)
    union = size[:, None] + size[None, :] - inter
    return 1 - inter / np.maximum(union, 1.0)


def find_clusters(sigs: list[Signature], eps: float = 0.7, min_accounts: int = 5,
                  ua_weight: float = 0.5, template_weight: float = 0.3) -> list[Cluster]:
    """DBSCAN groups of at least min_accounts accounts (noise points belong to none)."""
    from sklearn.cluster import DBSCAN

    if len(sigs) < min_accounts:
        return []
    labels = DBSCAN(eps=eps, min_samples=min_accounts, metric="precomputed").fit_predict(
        distances(sigs, ua_weight, template_weight))
    out = []
    for lab in sorted(set(labels) - {-1}):
        names = tuple(sorted(s.account for s, lb in zip(sigs, labels, strict=True) if lb == lab))
        if len(names) >= min_accounts:
            cid = "c-" + hashlib.sha1("\n".join(names).encode()).hexdigest()[:10]
            out.append(Cluster(cid, names))
    return out


def pooled(histories: dict[str, tuple[list[Row], np.ndarray]], members: tuple[str, ...],
           size: int) -> tuple[list[Row], np.ndarray]:
    """The last `size` rows of the members together, in time order."""
    items = [(r.t, a, i) for a in members for i, r in enumerate(histories[a][0])]
    items.sort()
    items = items[-size:]
    rows = [histories[a][0][i] for _, a, i in items]
    emb = np.stack([histories[a][1][i] for _, a, i in items])
    return rows, emb
