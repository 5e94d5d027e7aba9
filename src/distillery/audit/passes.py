"""One audit pass over the usage store: new rows -> features + embeddings -> scores -> policy.

    usage (id > cursor) -> audit_rows (Row + embedding, once per usage row; cursor advances in
    the same transaction) -> each touched account's last window -> clusters of recently
    active accounts -> their pooled windows -> calibrated p-values -> strikes -> status

Only rows new since the last pass are read and embedded; the windows re-read come from
`audit_rows` (index account_id, created_at). Cursor caveat: usage ids are taken in commit
order by the gateway's single writer; several gateway processes writing one PostgreSQL
database can commit ids out of order, and a row committed behind the cursor is then skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Engine, and_, desc, func, insert, select, update
from sqlalchemy.orm import Session

from distillery.audit.calibrate import Calibration, WindowScore, size_for
from distillery.audit.cluster import Cluster, find_clusters, pooled, signature
from distillery.audit.config import AuditConfig
from distillery.audit.embed import get_embedder
from distillery.audit.features import Row, row_from_dict, row_from_usage
from distillery.audit.policy import StrikeState, decide
from distillery.store.audit_models import AuditCursor, AuditRow
from distillery.store.models import Account, Usage, utcnow

log = logging.getLogger(__name__)
CURSOR = "main"
AUDITED_ROUTES = ("/v1/chat/completions", "/v1/completions")
History = tuple[list[Row], np.ndarray, list[int]]  # rows (time order), embeddings, usage ids


@dataclass(frozen=True)
class EntityScore:
    entity: str  # "account:<name>" | "cluster:<id>"
    accounts: tuple[str, ...]
    score: WindowScore
    window_start: datetime
    window_end: datetime
    usage_ids: tuple[int, ...]


@dataclass
class PassResult:
    rows_read: int = 0
    cursor: int = 0
    scores: list[EntityScore] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)

    def ranked(self) -> list[EntityScore]:
        return sorted(self.scores, key=lambda e: (e.score.p_value, -e.score.stats["combined"]))


class Auditor:
    def __init__(self, engine: Engine, calibration: Calibration, config: AuditConfig | None = None):
        self.engine, self.cal = engine, calibration
        self.config = config or AuditConfig()
        self.embedder = get_embedder(calibration.embedder)
        self.window = max(calibration.sizes)

    # -- ingest -----------------------------------------------------------------------------
    def ingest(self) -> tuple[int, set[int], int]:
        """Embed and store every usage row past the cursor; (rows, touched accounts, cursor)."""
        u = Usage.__table__
        cols = [u.c.id, u.c.account_id, u.c.created_at, u.c.prompt, u.c.max_tokens, u.c.n,
                u.c.logprobs, u.c.top_logprobs, u.c.temperature, u.c.user_agent]
        total, touched = 0, set()
        with Session(self.engine) as s:
            cur = s.get(AuditCursor, CURSOR) or AuditCursor(name=CURSOR, last_usage_id=0)
            last = cur.last_usage_id
        while True:
            with self.engine.connect() as c:
                batch = [dict(r._mapping) for r in c.execute(
                    select(*cols).where(and_(u.c.id > last, u.c.account_id.is_not(None),
                                             u.c.route.in_(AUDITED_ROUTES), u.c.status_code < 400))
                    .order_by(u.c.id).limit(self.config.read_batch))]
                top = c.scalar(select(func.max(u.c.id)).where(u.c.id > last))
            if not batch:
                if top is not None:  # only unaudited routes / failures: skip past them
                    self._save_cursor(top, [])
                    last = top
                break
            rows = [row_from_usage(b) for b in batch]
            emb = self.embedder.embed([r.text for r in rows])
            values = [{"usage_id": b["id"], "account_id": b["account_id"],
                       "created_at": _utc(b["created_at"]), "embedder": self.embedder.name,
                       "embedding": e.astype(np.float32).tobytes(), "features": r.as_dict()}
                      for b, r, e in zip(batch, rows, emb, strict=True)]
            last = batch[-1]["id"]
            self._save_cursor(last, values)
            total += len(batch)
            touched |= {b["account_id"] for b in batch}
            log.info("audit: %d rows embedded (cursor %d)", total, last)
        return total, touched, last

    def _save_cursor(self, last: int, values: list[dict]) -> None:
        with self.engine.begin() as c:
            if values:
                c.execute(insert(AuditRow.__table__), values)
            t = AuditCursor.__table__
            if c.execute(update(t).where(t.c.name == CURSOR).values(
                    last_usage_id=last, updated_at=utcnow())).rowcount == 0:
                c.execute(insert(t).values(name=CURSOR, last_usage_id=last, updated_at=utcnow()))

    # -- windows ----------------------------------------------------------------------------
    def history(self, account_id: int, limit: int | None = None) -> History:
        t = AuditRow.__table__
        with self.engine.connect() as c:
            recs = list(c.execute(select(t.c.usage_id, t.c.embedding, t.c.features).where(
                and_(t.c.account_id == account_id, t.c.embedder == self.embedder.name))
                .order_by(desc(t.c.created_at), desc(t.c.usage_id)).limit(limit or self.window)))
        recs.reverse()
        rows = [row_from_dict(r.features) for r in recs]
        emb = (np.stack([np.frombuffer(r.embedding, np.float32) for r in recs]) if recs
               else np.zeros((0, self.embedder.dim), np.float32))
        return rows, emb, [r.usage_id for r in recs]

    def _entity(self, entity: str, accounts: tuple[str, ...], h: History) -> EntityScore | None:
        rows, emb, ids = h
        size = size_for(len(rows), self.cal.sizes)
        if size is None:
            return None
        rows, emb, ids = rows[-size:], emb[-size:], ids[-size:]
        return EntityScore(entity, accounts, self.cal.score(rows, emb),
                           datetime.fromtimestamp(rows[0].t, UTC),
                           datetime.fromtimestamp(rows[-1].t, UTC), tuple(ids))

    def _active_accounts(self) -> list[int]:
        """Accounts with rows in the horizon, the most recently active first (capped)."""
        t = AuditRow.__table__
        cap = self.config.cluster_max_accounts
        with self.engine.connect() as c:
            newest = c.scalar(select(func.max(t.c.created_at)))
            if newest is None:
                return []
            since = _utc(newest).timestamp() - self.config.cluster_horizon_s
            last = func.max(t.c.created_at)
            ids = list(c.scalars(select(t.c.account_id).where(
                t.c.created_at >= datetime.fromtimestamp(since, UTC)).group_by(t.c.account_id)
                .order_by(desc(last)).limit(cap + 1)))
        if len(ids) > cap:
            log.warning("audit: more than %d recently active accounts; clustering the %d most "
                        "recent (raise cluster_max_accounts)", cap, cap)
        return ids[:cap]

    # -- the pass ---------------------------------------------------------------------------
    def run(self, dry_run: bool = False, rescore_all: bool = False) -> PassResult:
        n, touched, cursor = self.ingest()
        res = PassResult(rows_read=n, cursor=cursor)
        names = self._names()
        todo = set(names) if rescore_all else touched
        hist: dict[int, History] = {a: self.history(a) for a in todo}
        for a in sorted(todo):
            e = self._entity(f"account:{names[a]}", (names[a],), hist[a])
            if e is not None:
                res.scores.append(e)
        if self.config.clusters and touched:
            res.clusters = self._clusters(names, hist, touched)
            by_name = {names[a]: a for a in names}
            for cl in res.clusters:
                members = {m: hist[by_name[m]] for m in cl.accounts}
                rows, emb = pooled({m: h[:2] for m, h in members.items()}, cl.accounts,
                                   self.window)
                ids = _pooled_ids(members, rows)
                e = self._entity(f"cluster:{cl.id}", cl.accounts, (rows, emb, ids))
                if e is not None:
                    res.scores.append(e)
        if not dry_run:
            res.decisions = self.apply(res)
        return res

    def _clusters(self, names, hist, touched) -> list[Cluster]:
        cfg = self.config
        active = set(self._active_accounts())
        active |= set(sorted(touched)[:max(0, cfg.cluster_max_accounts - len(active))])
        for a in active - set(hist):
            hist[a] = self.history(a)
        sigs = [signature(names[a], hist[a][0], hist[a][1]) for a in sorted(active)
                if hist[a][0]]
        cls = find_clusters(sigs, cfg.cluster_eps, cfg.cluster_min_accounts, cfg.ua_weight,
                            cfg.template_weight)
        # a cluster matters only when it has new rows
        return [c for c in cls if any(names[a] in c.accounts for a in touched)]

    def _names(self) -> dict[int, str]:
        with self.engine.connect() as c:
            return {r.id: r.name for r in c.execute(select(Account.id, Account.name))}

    # -- policy -----------------------------------------------------------------------------
    def apply(self, res: PassResult) -> list[dict]:
        from distillery.audit.decisions import record, strike_state

        out = []
        for e in res.ranked():
            if e.score.p_value > self.config.flag_fpr:
                continue
            for name in e.accounts:
                with Session(self.engine) as s:
                    acct = s.scalar(select(Account).where(Account.name == name))
                    state = strike_state(s, acct.id) if acct else StrikeState()
                if acct is None:
                    continue
                v = decide(e.score.p_value, list(e.usage_ids), acct.status, state, self.config)
                if not v.strike:
                    continue
                after = v.status if self.config.enforce else acct.status
                out.append(record(self.engine, acct.id, name, v.action, acct.status, after,
                                  "auditor", e, v.strikes))
        return out


def _pooled_ids(members: dict[str, History], rows: list[Row]) -> list[int]:
    by_key = {(id(r)): i for h in members.values() for r, i in zip(h[0], h[2], strict=True)}
    return [by_key[id(r)] for r in rows]


def _utc(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=UTC)
