"""Decision rows: every policy action and operator override, with its evidence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, desc, insert, select
from sqlalchemy.orm import Session

from distillery.audit.policy import StrikeState
from distillery.store.accounts import set_status
from distillery.store.audit_models import AuditDecision
from distillery.store.models import Account, utcnow


@dataclass(frozen=True)
class DecisionInfo:
    id: int
    created_at: datetime
    account: str
    action: str
    status_before: str
    status_after: str
    actor: str
    entity: str
    strikes: int
    p_value: float | None
    evidence: dict | None


def strike_state(s: Session, account_id: int) -> StrikeState:
    """Strikes since the account's last operator decision, and the last strike's newest row."""
    d = AuditDecision
    last = s.scalar(select(d).where(d.account_id == account_id).order_by(desc(d.id)).limit(1))
    if last is None or last.actor != "auditor":
        return StrikeState()
    return StrikeState(last.strikes, int((last.evidence or {}).get("last_usage_id", 0)))


def record(engine: Engine, account_id: int, account: str, action: str, before: str, after: str,
           actor: str, e, strikes: int) -> dict:
    """One decision row (and the account's new status when it changes)."""
    sc = e.score
    evidence = {"scores": sc.stats, "p_values": sc.p_values, "features": sc.features,
                "cluster": list(e.accounts) if e.entity.startswith("cluster:") else None,
                "last_usage_id": max(e.usage_ids), "reason": f"{e.entity} p={sc.p_value:.4g}"}
    row = {"created_at": utcnow(), "account_id": account_id, "action": action,
           "status_before": before, "status_after": after, "actor": actor, "entity": e.entity,
           "strikes": strikes, "risk": sc.stats["combined"], "p_value": sc.p_value,
           "window_start": e.window_start, "window_end": e.window_end, "window_size": sc.size,
           "evidence": evidence}
    with engine.begin() as c:
        c.execute(insert(AuditDecision.__table__), [row])
    if after != before:
        set_status(engine, account, after, f"audit: {action} ({evidence['reason']})")
    return {**row, "account": account}


def override(engine: Engine, account: str, status: str, reason: str | None = None,
             actor: str = "operator") -> DecisionInfo:
    """An operator's status; the account's strikes start afresh after it."""
    with Session(engine) as s:
        a = s.scalar(select(Account).where(Account.name == account))
        if a is None:
            raise KeyError(f"no account named {account!r}")
        before, aid = a.status, a.id
    set_status(engine, account, status, f"operator: {reason or 'override'}")
    with engine.begin() as c:
        c.execute(insert(AuditDecision.__table__), [{
            "created_at": utcnow(), "account_id": aid, "action": "override",
            "status_before": before, "status_after": status, "actor": actor,
            "entity": f"account:{account}", "strikes": 0,
            "evidence": {"reason": reason or "override"}}])
    return list_decisions(engine, account, limit=1)[0]


def list_decisions(engine: Engine, account: str | None = None, limit: int = 50
                   ) -> list[DecisionInfo]:
    d = AuditDecision
    with Session(engine) as s:
        q = select(d, Account.name).join(Account, Account.id == d.account_id)
        if account:
            q = q.where(Account.name == account)
        return [DecisionInfo(x.id, x.created_at, name, x.action, x.status_before,
                             x.status_after, x.actor, x.entity, x.strikes or 0, x.p_value,
                             x.evidence)
                for x, name in s.execute(q.order_by(desc(d.id)).limit(limit))]
