"""Where a check's texts come from: the usage store (what the gateway answered, per account),
or a harvest-format JSONL (rows with `messages` and `response`)."""

from __future__ import annotations

import random
from pathlib import Path

from sqlalchemy import select

from distillery.forensics.reading import TextRow


def as_messages(prompt: object) -> tuple[dict, ...]:
    """A usage row's prompt as chat messages: a chat request's own, a completions prompt as
    one user turn, nothing when only its hash was kept."""
    if isinstance(prompt, list):
        return tuple({"role": m["role"], "content": m["content"]} for m in prompt)
    if isinstance(prompt, str):  # a completions request: the prompt as one user turn
        return ({"role": "user", "content": prompt},)
    return ()


def usage_rows(database: str, account: str | None = None, limit: int | None = None
               ) -> list[TextRow]:
    """Every stored answer (each choice of each 200 response), of one account or all, in
    time order. Rows kept as hashes only (the gateway's hash-only mode) cannot be read."""
    from distillery.store import make_engine
    from distillery.store.models import Account, Usage

    engine = make_engine(database)
    q = (select(Usage.prompt, Usage.responses).where(Usage.status_code == 200)
         .where(Usage.responses.is_not(None)).order_by(Usage.created_at, Usage.id))
    with engine.connect() as c:
        if account is not None:
            acc = c.execute(select(Account.id).where(Account.name == account)).scalar()
            if acc is None:
                known = sorted(c.execute(select(Account.name)).scalars())
                raise ValueError(f"unknown account {account!r} in {database} "
                                 f"(known: {', '.join(known[:20]) or 'none'})")
            q = q.where(Usage.account_id == acc)
        out = []
        for prompt, responses in c.execute(q):
            out += [TextRow(as_messages(prompt), r) for r in responses or [] if r and r.strip()]
            if limit is not None and len(out) >= limit:
                break
    engine.dispose()
    return out[:limit] if limit is not None else out


def dataset_rows(path: str | Path, limit: int | None = None) -> list[TextRow]:
    from distillery.harvest import read_rows

    rows = [TextRow(tuple(r.get("messages") or ()), r["response"]) for r in read_rows(path)
            if r.get("response", "").strip()]
    return rows[:limit] if limit is not None else rows


def account_names(database: str) -> list[str]:
    from distillery.store import make_engine
    from distillery.store.models import Account

    engine = make_engine(database)
    with engine.connect() as c:
        names = sorted(c.execute(select(Account.name)).scalars())
    engine.dispose()
    return names


def shuffled(rows: list[TextRow], seed: int) -> list[TextRow]:
    """A fixed, seeded order: a budget then takes a sample chosen before any scoring."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows
