"""Simulator traffic through the real gateway (HTTP, openai client, simulated clock), audited
by passes every 50 requests: detection floors, the policy's outcomes, the campaign cluster."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from distillery import store
from distillery.audit import AuditConfig, Auditor
from distillery.audit.evaluate import evaluate
from distillery.audit.passes import AUDITED_ROUTES
from distillery.audit.replay import provision, replay
from distillery.audit.simulate import SimConfig, simulate
from distillery.store.audit_models import AuditDecision, AuditRow

PURE = ("self_instruct", "taxonomy", "cot", "logprobs", "careful")  # blocked within the budget
BUDGET = 200  # requests an attacker of PURE gets served before its first 403
# combined score on windows of 50 rows: (AUROC, TPR at FPR 1%) floors, with margin below what
# this seed measures. The mixed-in careful attacker (30% of a support bot's requests) is the
# one the audit does not catch: measured AUROC 0.89-0.93, TPR 0 (BENCHMARKS, Audit).
FLOORS = {"self_instruct": (0.95, 0.8), "taxonomy": (0.95, 0.8), "cot": (0.95, 0.8),
          "logprobs": (0.95, 0.8), "slow_low": (0.95, 0.8), "mixed": (0.95, 0.8),
          "careful": (0.95, 0.5), "careful_mixed": (0.8, 0.0)}


@pytest.fixture(scope="module")
def audited(calibration, tmp_path_factory, sim_gateway, eval_mix):
    cal, _ = calibration
    url = f"sqlite:///{tmp_path_factory.mktemp('e2e')}/gateway.db"
    server = sim_gateway(url, simulated_clock=True)
    reqs, labels = simulate(SimConfig(seed=2, mix=eval_mix))
    labels = {lab.account: lab for lab in labels}
    keys = provision(url, labels)
    db = store.make_engine(url)
    auditor = Auditor(db, cal, AuditConfig())
    passes = []

    def audit_pass():
        assert server.gateway.usage.flush(30)
        passes.append(auditor.run())

    res = replay(reqs, server.base_url + "/v1", keys, every=50, between=audit_pass)
    audit_pass()
    server.stop()
    yield dict(db=db, labels=labels, res=res, passes=passes, auditor=auditor, reqs=reqs)
    db.dispose()


def test_simulated_clock_is_recorded(audited):
    t = store.Usage.__table__
    with audited["db"].connect() as c:
        times = sorted(r.created_at.timestamp() for r in c.execute(
            select(t.c.created_at).where(t.c.route.in_(AUDITED_ROUTES))))
    sent = sorted(r.t for r in audited["reqs"])
    assert times[0] == pytest.approx(sent[0], abs=0.01)
    assert times[-1] == pytest.approx(sent[-1], abs=0.01)


def test_passes_are_incremental(audited):
    db, auditor = audited["db"], audited["auditor"]
    with db.connect() as c:
        audited_rows = c.scalar(select(func.count()).select_from(AuditRow.__table__))
        served = c.scalar(select(func.count()).select_from(store.Usage.__table__).where(
            store.Usage.__table__.c.status_code < 400,
            store.Usage.__table__.c.route.in_(AUDITED_ROUTES)))
    assert audited_rows == served == sum(p.rows_read for p in audited["passes"])
    assert auditor.run(dry_run=True).rows_read == 0  # nothing new: nothing read


def _statuses(db) -> dict[str, str]:
    return {a.name: a.status for a in store.list_accounts(db)}


def test_no_benign_account_is_blocked_or_throttled(audited):
    st = _statuses(audited["db"])
    bad = {a: st[a] for a, lab in audited["labels"].items()
           if lab.role == "benign" and st[a] in ("throttled", "blocked")}
    assert not bad


def test_pure_attackers_blocked_within_budget(audited):
    st, by = _statuses(audited["db"]), audited["res"].by_account
    for a, lab in audited["labels"].items():
        if lab.persona in PURE:
            assert st[a] == "blocked", (a, st[a])
            assert by[a][403] > 0 and by[a][200] <= BUDGET, (a, dict(by[a]))


def test_every_attacker_is_flagged(audited):
    """Every account of every attack persona; of the careful campaign, whose 20-request
    accounts are each judged alone (they share no client, parameters or schedule to be
    clustered by), at least 90% (measured: 92-100%). The mixed-in careful attacker is the
    exception (BENCHMARKS, Audit)."""
    st = _statuses(audited["db"])
    by: dict[str, list[str]] = {}
    for a, lab in audited["labels"].items():
        if lab.role == "attack":
            by.setdefault(lab.persona, []).append(st[a])
    missed = {p: v for p, v in by.items() if "active" in v
              and p not in ("careful_mixed", "careful_campaign")}
    assert not missed
    camp = by["careful_campaign"]
    assert sum(s != "active" for s in camp) >= 0.9 * len(camp), camp


def test_campaign_found_as_a_cluster(audited):
    labels = audited["labels"]
    campaign = {a for a, lab in labels.items() if lab.persona == "campaign"}
    found = [set(c.accounts) for p in audited["passes"] for c in p.clusters]
    assert any(len(c & campaign) >= 45 and c <= campaign for c in found), found
    with audited["db"].connect() as c:
        entities = {e for (e,) in c.execute(select(AuditDecision.entity))}
    assert any(e.startswith("cluster:") for e in entities)


def test_detection_floors_per_attack_persona(audited, calibration):
    """Windows of 50 rows from the stored audit rows; benign windows from seed 2, which the
    calibration (seed 1) never saw."""
    cal, _ = calibration
    auditor, db = audited["auditor"], audited["db"]
    ids = {a.name: a.id for a in store.list_accounts(db)}
    h = {a: auditor.history(ids[a], limit=10_000)[:2] for a in audited["labels"]}
    results, fpr = evaluate(cal, h, audited["labels"], fprs=(0.01,), size=50)
    combined = {r.persona: r for r in results if r.scorer == "combined"}
    for persona, (auroc, tpr) in FLOORS.items():
        r = combined[persona]
        assert r.auroc >= auroc and r.tpr[0.01] >= tpr, r
    assert fpr["combined"][0.01] <= 0.03, fpr
