"""Batched usage writes off the request path.

The gateway calls `record(row)` (a dict of `usage` columns) before it sends the last byte of
a response; a background thread drains the queue into the database in batches (one
executemany per batch). `close()` writes everything still queued: the gateway calls it at
shutdown (uvicorn's graceful shutdown on SIGTERM waits for in-flight responses, then runs the
lifespan's shutdown), so no answered request goes unrecorded.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, insert

from distillery.store.models import Usage

log = logging.getLogger(__name__)

_STOP = object()


class UsageWriter:
    def __init__(self, engine: Engine, batch_size: int = 500, interval_s: float = 0.05,
                 fallback_dir: Path | None = None):
        self.engine = engine
        self.batch_size = batch_size
        self.interval_s = interval_s  # longest a row waits for companions before a write
        self.fallback_dir = fallback_dir
        self._q: queue.Queue = queue.Queue()
        self._pending = 0  # rows queued or being written
        self._cv = threading.Condition()
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
        self._thread.start()

    def record(self, row: dict) -> None:
        with self._cv:
            self._pending += 1
        self._q.put(row)

    @property
    def backlog(self) -> int:
        return self._pending

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every row recorded so far is in the database."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def close(self, timeout: float = 60.0) -> None:
        self._q.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("usage writer did not finish in %.0f s; %d rows pending", timeout,
                      self._pending)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._q.get()
            if item is _STOP:
                stopping = True
                batch = []
            else:
                batch = [item]
            deadline = time.monotonic() + self.interval_s
            while len(batch) < self.batch_size:
                try:
                    item = self._q.get(timeout=max(0.0, deadline - time.monotonic())
                                       if not stopping else 0)
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    continue
                batch.append(item)
            if batch:
                self._write(batch, final=stopping)
            if stopping:  # drain what arrived together with the stop
                rest = []
                while True:
                    try:
                        item = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if item is not _STOP:
                        rest.append(item)
                for i in range(0, len(rest), self.batch_size):
                    self._write(rest[i : i + self.batch_size], final=True)

    def _write(self, batch: list[dict], final: bool) -> None:
        delay = 0.1
        for attempt in range(1, 1_000_000):
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(Usage.__table__), batch)
                break
            except Exception as e:  # keep the rows; a database hiccup must not lose them
                if final and attempt >= 3:
                    self._spill(batch, e)
                    break
                log.warning("usage write of %d rows failed (%s); retrying in %.1f s",
                            len(batch), type(e).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.written += len(batch)
        with self._cv:
            self._pending -= len(batch)
            self._cv.notify_all()

    def _spill(self, batch: list[dict], error: Exception) -> None:
        """Last resort at shutdown with the database down: rows to a JSONL file, not lost."""
        from distillery.models.registry import distillery_home

        d = self.fallback_dir or distillery_home()
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"usage-unwritten-{int(time.time())}.jsonl"
        with open(path, "a") as f:
            for row in batch:
                f.write(json.dumps(row, default=_jsonable) + "\n")
        log.error("database unavailable at shutdown (%s): %d usage rows saved to %s",
                  type(error).__name__, len(batch), path)


def _jsonable(o: object) -> str:
    return o.isoformat() if isinstance(o, datetime) else str(o)
