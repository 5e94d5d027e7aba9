"""Extraction audit at scale: a full pass over N usage rows, then an incremental pass over
M new ones, on SQLite and/or PostgreSQL (time and peak memory).

    python benchmarks/audit_scale.py --rows 1000000 --new 10000 --database sqlite
    python benchmarks/audit_scale.py --rows 1000000 --new 10000 \
        --database postgresql+psycopg://postgres@127.0.0.1:5432/test --schema audit_bench

Rows are simulated requests (audit.simulate, repeated with fresh accounts until N) inserted
straight into `usage` (the gateway's columns); the pass embeds with --embedder (hashing by
default: MiniLM on this CPU embeds ~200 prompts/s, so 1M rows is ~1.5 h of embedding alone).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import UTC, datetime

from sqlalchemy import insert, text

from distillery import store
from distillery.audit import AuditConfig, Auditor
from distillery.audit.offline import calibrate_traffic
from distillery.audit.simulate import CALIBRATION_MIX, SimConfig, simulate


def usage_rows(n: int, start_seed: int, account_ids: dict[str, int], engine) -> list[dict]:
    out, seed = [], start_seed
    while len(out) < n:
        reqs, labels = simulate(SimConfig(seed=seed, prefix=f"s{seed}-"))
        for lab in labels:
            if lab.account not in account_ids:
                account_ids[lab.account] = store.create_account(engine, lab.account).id
        for r in reqs:
            p = r.params
            out.append({
                "request_id": f"b{seed}-{len(out)}", "account_id": account_ids[r.account],
                "created_at": datetime.fromtimestamp(r.t, UTC),
                "finished_at": datetime.fromtimestamp(r.t + 0.1, UTC), "method": "POST",
                "route": "/v1/chat/completions" if r.endpoint == "chat" else "/v1/completions",
                "model": "fake", "status_code": 200,
                "prompt": list(r.messages) if r.messages is not None else r.prompt,
                "max_tokens": p.get("max_tokens", 512), "n": p.get("n", 1),
                "temperature": p.get("temperature", 1.0), "logprobs": bool(p.get("logprobs")),
                "top_logprobs": p.get("top_logprobs"), "latency_ms": 1.0,
                "user_agent": r.user_agent})
        seed += 1
    return out[:n]


def insert_rows(engine, rows: list[dict], batch: int = 5000) -> None:
    for i in range(0, len(rows), batch):
        with engine.begin() as c:
            c.execute(insert(store.Usage.__table__), rows[i:i + batch])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--new", type=int, default=10_000)
    ap.add_argument("--database", default="sqlite")
    ap.add_argument("--schema", default="audit_bench")
    ap.add_argument("--embedder", default="hashing")
    a = ap.parse_args()
    if a.database == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp()}/scale.db"
    else:
        admin = store.make_engine(a.database)
        with admin.begin() as c:
            c.execute(text(f"DROP SCHEMA IF EXISTS {a.schema} CASCADE"))
            c.execute(text(f"CREATE SCHEMA {a.schema}"))
        admin.dispose()
        url = f"{a.database}?options=-csearch_path%3D{a.schema}"
    store.migrate(url)
    engine = store.make_engine(url)
    cal_reqs, _ = simulate(SimConfig(seed=1, mix=CALIBRATION_MIX))
    cal = calibrate_traffic(cal_reqs, a.embedder)
    ids: dict[str, int] = {}
    t = time.time()
    insert_rows(engine, usage_rows(a.rows, 100, ids, engine))
    print(f"inserted {a.rows} rows of {len(ids)} accounts in {time.time() - t:.0f} s")
    auditor = Auditor(engine, cal, AuditConfig())

    def timed_pass(label: str) -> None:
        t = time.time()
        res = auditor.run()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{label} pass: {res.rows_read} rows, {len(res.scores)} windows, "
              f"{len(res.clusters)} clusters, {len(res.decisions)} decisions in "
              f"{time.time() - t:.1f} s; peak RSS {rss:.0f} MiB")

    timed_pass("full")
    insert_rows(engine, usage_rows(a.new, 10_000, ids, engine))
    timed_pass("incremental")
    engine.dispose()


if __name__ == "__main__":
    main()
