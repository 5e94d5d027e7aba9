"""The harvested dataset: append-only JSONL keyed by prompt hash, resumable, hashable.

Row: {prompt_hash, prompt, messages, response, finish_reason, logprobs, model, endpoint,
key_index, usage, created_at, strategy, category}. `logprobs` is null or a list, one entry per
answer token: {"token", "logprob", "top": [{"token", "logprob"}, ...]}.

Crash safety: each completed row is one write of one line followed by fsync, so a killed run
loses at most the row being written. On open, a torn last line (no trailing newline and not
valid JSON) is cut off; a complete last row that only lacks its newline (a file edited by
hand) is kept and given one. The hashes already present are skipped by the harvester: resume
with no loss and no duplicates.

`iter_jsonl` is the one JSONL reader of the project (datasets and prompt files alike).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

FIELDS = ("prompt_hash", "prompt", "messages", "response", "finish_reason", "logprobs",
          "model", "endpoint", "key_index", "usage", "created_at", "strategy", "category")


def canonical_line(row: dict) -> str:
    return json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _parse(line: str) -> dict | None:
    """A JSON object, or None when the text is not one."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) else None


def iter_jsonl(path: str | Path, missing_hint: str = "") -> Iterator[tuple[int, dict]]:
    """(line number, row) for each JSON object line of path; blank lines are skipped.

    The one rule for a damaged file: a last line without its newline that is not valid JSON is
    a torn write (a killed writer) and is skipped with a warning; a complete last row without
    its newline is a row. Any other line that is not a JSON object is an error naming the file
    and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}" + (f": {missing_hint}" if missing_hint
                                                         else ""))
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = _parse(line)
            if row is not None:
                yield i, row
            elif not line.endswith("\n"):
                log.warning("%s:%d: torn last line (an interrupted write) ignored", path, i)
            else:
                raise ValueError(f"{path}:{i}: not a JSON object: {line[:60].strip()!r}")


def read_rows(path: str | Path) -> list[dict]:
    return list(iter_rows(path))


def iter_rows(path: str | Path) -> Iterator[dict]:
    """The dataset's rows (a torn last line from a killed writer is ignored)."""
    for _, row in iter_jsonl(path, "run `distillery harvest` first"):
        yield row


def dataset_sha256(path: str | Path) -> str:
    """sha256 of the rows in canonical order (sorted by prompt hash, canonical JSON lines).

    Independent of completion order (concurrent harvesting and resumption interleave rows),
    so two copies of one dataset hash alike however they were written.
    """
    rows = sorted(read_rows(path), key=lambda r: r["prompt_hash"])
    h = hashlib.sha256()
    for r in rows:
        h.update(canonical_line(r).encode())
        h.update(b"\n")
    return h.hexdigest()


class DatasetWriter:
    """Append-only writer; `done` holds the prompt hashes already harvested."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        self.done: set[str] = set()
        if self.path.exists():
            self.done = {r["prompt_hash"] for r in iter_rows(self.path)}
        self._f = self.path.open("a", encoding="utf-8")

    def _repair_tail(self) -> None:
        """Make the file end in a newline so appends start on a fresh line: a torn last line
        (a run killed mid-write: not valid JSON) is cut, a complete one gets its newline."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as f:
            data = f.read()
            if data.endswith(b"\n"):
                return
            start = data.rfind(b"\n") + 1
            if _parse(data[start:].decode("utf-8", errors="replace")) is None:
                f.truncate(start)
            else:
                f.write(b"\n")

    def append(self, row: dict) -> bool:
        """Write one row durably; False (nothing written) if its prompt is already there."""
        if row["prompt_hash"] in self.done:
            return False
        self._f.write(canonical_line(row) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self.done.add(row["prompt_hash"])
        return True

    async def append_async(self, row: dict) -> bool:
        """append() with the fsync in a thread, so the event loop keeps serving requests.

        The line is written and flushed at once (one write call: a concurrent append cannot
        interleave with it); the row counts as harvested only once fsync returns.
        """
        import asyncio

        if row["prompt_hash"] in self.done:
            return False
        self.done.add(row["prompt_hash"])
        self._f.write(canonical_line(row) + "\n")
        self._f.flush()
        await asyncio.to_thread(os.fsync, self._f.fileno())
        return True

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def to_parquet(jsonl: str | Path, out: str | Path) -> Path:
    """The same rows as Parquet (through 🤗 datasets, so `load_dataset` reads either)."""
    from datasets import Dataset

    rows = read_rows(jsonl)
    for r in rows:  # one schema for rows with and without logprobs
        r.setdefault("logprobs", None)
    Dataset.from_list(rows).to_parquet(str(out))
    return Path(out)
