"""Database URLs, engines and migrations (SQLite with WAL by default, PostgreSQL by URL)."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from distillery.models.registry import distillery_home

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key for migrations (any constant: one lock per database)
MIGRATION_LOCK = 0x64697374  # "dist"


def default_url() -> str:
    """SQLite at $DISTILLERY_HOME/distillery.db."""
    return f"sqlite:///{distillery_home() / 'distillery.db'}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL: readers (audit, admin) never block the usage writer; NORMAL is durable across a
    # process crash in WAL mode (only an OS crash may lose the last transactions).
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str | None = None, **kw) -> Engine:
    """An SQLAlchemy engine for a URL (default: the local SQLite file)."""
    url = url or default_url()
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            private_file(Path(u.database).expanduser())
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kw)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **kw)


def private_file(path: Path) -> None:
    """Create `path` (and its missing directories) readable by its owner only: the usage
    database holds prompts and responses. SQLite gives its -wal and -shm files the database
    file's mode. An existing file keeps the mode its owner gave it."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def migrate(url: str | None = None) -> None:
    """Bring the database at `url` to the newest schema (alembic, shipped in the package)."""
    from alembic import command
    from alembic.config import Config

    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # two processes starting on a fresh database at once would both create the
                # tables (one dies on a unique violation): the second waits, then finds head;
                # the lock is released at this transaction's commit
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()
