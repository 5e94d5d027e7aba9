"""Prompts and answers of the closed loop as harvest-format rows (harvest/dataset.py), so
`train`, its manifest and forensics read them like any harvest."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


def messages(prompt) -> list[dict]:
    from distillery.forensics.sources import as_messages

    return list(as_messages(prompt))


def request_prompt(r):
    return list(r.messages) if r.messages is not None else r.prompt


def prompt_key(prompt) -> str:
    """The dataset's key of a prompt (harvest.prompts.prompt_hash), from a usage row's or a
    traffic request's prompt."""
    from distillery.harvest.prompts import prompt_hash

    return prompt_hash(messages(prompt))


def harvest_row(chat: list[dict], response: str, created_at, model: str, account: str | None,
                prompt_tokens: int = 0, completion_tokens: int = 0) -> dict:
    """A harvest-format row (harvest/dataset.py), so `train` and its manifest read it."""
    from distillery.harvest.prompts import prompt_hash

    when = created_at.isoformat() if isinstance(created_at, datetime) else str(created_at)
    return {"prompt_hash": prompt_hash(chat), "prompt": None, "messages": chat,
            "response": response, "finish_reason": None, "logprobs": None, "model": model,
            "endpoint": "chat", "key_index": account, "created_at": when,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
            "strategy": "experiment", "category": None}


def usage_rows(usage: list[dict]) -> list[dict]:
    """Served answers as harvest rows (one per choice), de-duplicated by prompt."""
    out = []
    for u in usage:
        if u["status_code"] != 200 or not u["responses"]:
            continue
        out += [harvest_row(messages(u["prompt"]), text, u["created_at"], u["model"], u["name"],
                            u["prompt_tokens"], u["completion_tokens"])
                for text in u["responses"] if text and text.strip()]
    return dedup(out)


def dedup(rows: list[dict]) -> list[dict]:
    """The first row of each prompt."""
    seen, out = set(), []
    for r in rows:
        if r["prompt_hash"] not in seen:
            seen.add(r["prompt_hash"])
            out.append(r)
    return out


def write_rows(path: Path, rows: list[dict]) -> None:
    from distillery.harvest.dataset import canonical_line

    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(canonical_line(r) + "\n" for r in rows))
    tmp.replace(path)
