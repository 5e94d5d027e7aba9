"""The store: migrations, accounts and hashed keys, the batched usage writer; SQLite and the
real PostgreSQL on 127.0.0.1:5432 (in a schema of its own, dropped afterwards)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, inspect, select, text

from distillery import store


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path}/store.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return request.getfixturevalue("pg_url")


def row(i: int, account_id: int | None = None) -> dict:
    now = datetime.now(UTC)
    return {"request_id": f"r{i}", "account_id": account_id, "key_id": None, "created_at": now,
            "finished_at": now, "method": "POST", "route": "/v1/chat/completions",
            "status_code": 200, "latency_ms": 1.0, "prompt": [{"role": "user", "content": "x"}],
            "responses": ["y"], "prompt_tokens": 3, "completion_tokens": 1,
            "watermark_scheme": "kgw", "watermark_key_id": "account:a:v1:0123456789ab",
            "seed": 2**62}


def test_migrate_is_idempotent_and_builds_the_schema(url):
    store.migrate(url)
    store.migrate(url)
    db = store.make_engine(url)
    insp = inspect(db)
    assert {"accounts", "api_keys", "usage", "alembic_version"} <= set(insp.get_table_names())
    cols = {c["name"] for c in insp.get_columns("usage")}
    assert {"account_id", "key_id", "created_at", "prompt", "responses", "prompt_tokens",
            "completion_tokens", "watermark_scheme", "watermark_key_id", "latency_ms",
            "status_code", "client_addr", "user_agent", "logprobs", "top_logprobs"} <= cols
    idx = {i["name"]: i["column_names"] for i in insp.get_indexes("usage")}
    assert idx["ix_usage_account_created"] == ["account_id", "created_at"]
    db.dispose()


def test_models_match_the_migrations(sqlite_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store.migrate(sqlite_url)
    db = store.make_engine(sqlite_url)
    with db.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), store.Base.metadata)
    db.dispose()
    assert diff == []


def test_accounts_and_keys(url):
    store.migrate(url)
    db = store.make_engine(url)
    a = store.create_account(db, "alice")
    with pytest.raises(ValueError, match="exists"):
        store.create_account(db, "alice")
    new = store.create_key(db, "alice", rpm_limit=5)
    assert new.secret.startswith("dk-") and "secret" not in repr(new).replace("secret='***'", "")
    with db.connect() as c:  # only the hash is stored
        stored = c.execute(text("select key_hash from api_keys")).scalar()
    assert stored == store.hash_key(new.secret) and new.secret not in stored
    ident = store.lookup_key(db, store.hash_key(new.secret))
    assert ident.account == "alice" and ident.rpm_limit == 5 and ident.status == "active"
    assert store.lookup_key(db, store.hash_key("dk-other")) is None
    store.set_status(db, "alice", "throttled", "audit")
    assert store.lookup_key(db, store.hash_key(new.secret)).status == "throttled"
    with pytest.raises(ValueError, match="status must be"):
        store.set_status(db, "alice", "asleep")
    assert store.revoke_key(db, new.info.id).revoked
    assert store.lookup_key(db, store.hash_key(new.secret)) is None
    with pytest.raises(KeyError, match="no account"):
        store.create_key(db, "nobody")
    store.create_account(db, "bob")
    assert store.list_account_names(url) == ["alice", "bob"]
    assert [k.account for k in store.list_keys(db, "alice")] == ["alice"]
    assert a.status == "active"
    db.dispose()


def test_provision_makes_accounts_with_one_working_key_each(url):
    keys = store.provision(url, ["carol", "dave"])
    db = store.make_engine(url)
    assert [store.lookup_key(db, store.hash_key(keys[a])).account for a in ("carol", "dave")] \
        == ["carol", "dave"]
    db.dispose()


def test_usage_writer_batches_and_flushes_on_close(url):
    store.migrate(url)
    db = store.make_engine(url)
    acc = store.create_account(db, "alice")
    w = store.UsageWriter(db, batch_size=100, interval_s=0.01)
    for i in range(1234):
        w.record(row(i, acc.id))
    assert w.flush(30)
    for i in range(1234, 1300):
        w.record(row(i, acc.id))
    w.close()  # no flush: close writes what is queued
    with db.connect() as c:
        assert c.scalar(select(func.count()).select_from(store.Usage)) == 1300
        got = c.execute(select(store.Usage.responses, store.Usage.seed)).first()
    assert got == (["y"], 2**62)
    db.dispose()


def test_usage_writer_spills_to_a_file_when_the_database_is_gone(tmp_path):
    db = store.make_engine(f"sqlite:///{tmp_path}/missing-tables.db")  # never migrated
    w = store.UsageWriter(db, interval_s=10, fallback_dir=tmp_path)
    w.record(row(1))
    w.close()
    spilled = list(tmp_path.glob("usage-unwritten-*.jsonl"))
    assert spilled and '"request_id": "r1"' in spilled[0].read_text()


def test_one_refused_row_does_not_block_the_batch(url):
    """A row the database refuses (here: a request id already stored) is dropped, logged and
    counted; every other row of its batch, and of the batches after it, is written."""
    store.migrate(url)
    db = store.make_engine(url)
    w = store.UsageWriter(db, batch_size=50, interval_s=0.01)
    w.record(row(5))
    assert w.flush(10)
    for i in range(200):
        w.record(row(i))  # r5 again: refused
    assert w.flush(10)
    assert w.dropped == 1 and w.backlog == 0
    with db.connect() as c:
        assert c.scalar(select(func.count()).select_from(store.Usage)) == 200
    w.close()
    db.dispose()


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(store.db.MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _migrate_at_once(url: str, barrier) -> None:
    barrier.wait()
    store.migrate(url)


def test_concurrent_first_start_on_postgresql(pg_url):
    """Several gateway processes migrating one fresh schema at once all succeed (forked, so
    that they start within milliseconds of each other)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_migrate_at_once, args=(pg_url, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    db = store.make_engine(pg_url)
    with db.connect() as c:
        head = c.execute(text("select version_num from alembic_version")).scalar()
    assert head == _head_revision()
    db.dispose()


def test_migration_0002_keeps_the_rows_of_0001(sqlite_url):
    from alembic import command
    from alembic.config import Config

    db = store.make_engine(sqlite_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(store.db.MIGRATIONS))
    with db.begin() as c:
        cfg.attributes["connection"] = c
        command.upgrade(cfg, "0001")
    old = {k: v for k, v in row(1).items()}
    with db.begin() as c:
        c.execute(store.Usage.__table__.insert().values(
            **old, stream=False, logprobs=False))
    store.migrate(sqlite_url)
    with db.connect() as c:
        got = c.execute(select(store.Usage.request_id, store.Usage.client_request_id)).all()
    assert got == [("r1", None)]
    db.dispose()
