"""Batched usage writes off the request path.

The gateway calls `record(row)` (a dict of `usage` columns) before it sends the last byte of
a response; a background thread drains the queue into the database in batches (one
executemany per batch). `close()` writes everything still queued: the gateway calls it at
shutdown (uvicorn's graceful shutdown on SIGTERM waits for in-flight responses, then runs the
lifespan's shutdown), so no answered request goes unrecorded.

One bad row cannot block the others: when a batch fails for a reason other than the database
being unreachable (a constraint, a value the column refuses), the writer inserts that batch
row by row and drops, logs and counts (`dropped`) only the rows the database refuses. While
the database is unreachable the batch is retried, and spilled to a 0600 JSONL file at
shutdown. A SIGKILL loses what is queued: at most `interval_s` of rows (README, "Usage").
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, insert
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from distillery.store.models import Usage

log = logging.getLogger(__name__)


def _refused(e: Exception) -> bool:
    """A row the database refuses (a constraint, a value the column cannot hold, a value the
    driver cannot send): no retry will fix it. Anything else (database down, connection
    lost, table missing) is retried."""
    return isinstance(e, IntegrityError | DataError) or (
        isinstance(e, StatementError) and not isinstance(e, DBAPIError))


class UsageWriter:
    def __init__(self, engine: Engine, batch_size: int = 500, interval_s: float = 0.05,
                 fallback_dir: Path | None = None):
        self.engine = engine
        self.batch_size = batch_size
        self.interval_s = interval_s  # how often the writer wakes to drain the queue
        self.fallback_dir = fallback_dir
        # A deque, not a queue.Queue: appending wakes no thread, so a request pays no
        # context switch for its row; the writer drains every interval_s.
        self._q: deque[dict] = deque()
        self._recorded = 0  # rows recorded (only grows)
        self.written = 0  # rows written, spilled or dropped (only grows)
        self.dropped = 0  # rows the database refused (logged), so that the rest are written
        self._lock = threading.Lock()
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
        self._thread.start()

    def record(self, row: dict) -> None:
        with self._lock:
            self._recorded += 1
            self._q.append(row)

    @property
    def backlog(self) -> int:
        return self._recorded - self.written

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every row recorded so far is in the database."""
        target = self._recorded
        deadline = time.monotonic() + timeout
        with self._cv:
            while self.written < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, self.interval_s))
        return True

    def close(self, timeout: float = 60.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("usage writer did not finish in %.0f s; %d rows pending", timeout,
                      self.backlog)

    def _drain(self, final: bool) -> None:
        while self._q:
            batch = []
            while self._q and len(batch) < self.batch_size:
                batch.append(self._q.popleft())
            self._write(batch, final)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._drain(final=False)
        self._drain(final=True)  # everything recorded before close()

    def _insert(self, rows: list[dict]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(Usage.__table__), rows)

    def _write_rows(self, batch: list[dict]) -> list[dict]:
        """Row by row: drop (log, count) each row the database refuses; return the rows not
        tried because the database became unreachable."""
        for i, row in enumerate(batch):
            try:
                self._insert([row])
            except Exception as e:
                if not _refused(e):
                    return batch[i:]
                self.dropped += 1
                log.error("usage row of request %s refused by the database (%s: %s); "
                          "dropped, the others are written", row.get("request_id"),
                          type(e).__name__, str(getattr(e, "orig", e)).splitlines()[0][:200])
        return []

    def _write(self, batch: list[dict], final: bool) -> None:
        n = len(batch)
        delay = 0.1
        for attempt in range(1, 1_000_000):
            try:
                self._insert(batch)
                break
            except Exception as e:  # keep the rows; a database hiccup must not lose them
                if _refused(e):
                    batch = self._write_rows(batch)
                    if not batch:
                        break
                if (final or self._stop.is_set()) and attempt >= 3:
                    self._spill(batch, e)
                    break
                log.warning("usage write of %d rows failed (%s); retrying in %.1f s",
                            len(batch), type(e).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        with self._cv:
            self.written += n
            self._cv.notify_all()

    def _spill(self, batch: list[dict], error: Exception) -> None:
        """Last resort at shutdown with the database down: rows to a JSONL file, not lost."""
        from distillery.models.registry import distillery_home

        d = self.fallback_dir or distillery_home()
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = d / f"usage-unwritten-{int(time.time())}.jsonl"
        # 0600: the rows hold prompts and responses
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as f:
            for row in batch:
                f.write(json.dumps(row, default=_jsonable) + "\n")
        log.error("database unavailable at shutdown (%s): %d usage rows saved to %s",
                  type(error).__name__, len(batch), path)


def _jsonable(o: object) -> str:
    return o.isoformat() if isinstance(o, datetime) else str(o)
