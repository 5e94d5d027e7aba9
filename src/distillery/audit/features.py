"""Per-request features (computed once per usage row) and per-window features of an account.

A request becomes a `Row`: the text that is embedded (the last user message, or the
completion prompt) and the few numbers the scorers use. A usage row and a traffic request
give the same Row (`row_from_usage`, `row_from_request`), so calibration on a traffic file
and scoring of the usage store see one definition. A window is an account's (or a cluster's)
last rows in time order; `window_features` summarises it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np

from distillery.audit.traffic import Request

DEFAULT_MAX_TOKENS = 512  # the gateway's default for chat requests without max_tokens
# wording that asks the model to show its reasoning (REFERENCES, "Reported real campaigns")
COT = re.compile(r"step[- ]by[- ]step|show (all of )?your (work|reasoning)|explain (your|each|the)"
                 r" (reasoning|step)|think (it )?through|reason carefully|chain of thought",
                 re.IGNORECASE)


@dataclass(frozen=True)
class Row:
    t: float  # unix seconds
    text: str  # what is embedded
    turns: int  # user messages in the request (> 1: a conversation)
    system: bool
    cot: bool
    chars: int
    max_tokens: int
    n: int
    top_logprobs: int  # 0: no logprobs; logprobs without alternatives count as 1
    temperature: float
    completions: bool
    template: str  # hash of the first five words: template reuse across requests
    ua: str

    def as_dict(self) -> dict:
        return asdict(self)


def _make(t: float, prompt: object, max_tokens: int | None, n: int | None, logprobs: bool,
          top_logprobs: int | None, temperature: float | None, ua: str | None) -> Row:
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], dict):
        users = [m.get("content") or "" for m in prompt if m.get("role") == "user"]
        text, turns = (users[-1] if users else ""), len(users)
        system = any(m.get("role") == "system" for m in prompt)
        everything = " ".join(str(m.get("content") or "") for m in prompt)
        completions = False
    else:
        if isinstance(prompt, list):  # a batch of prompts: the first speaks for them
            prompt = prompt[0] if prompt and isinstance(prompt[0], str) else ""
        text, turns, system, completions = str(prompt or ""), 1, False, True
        everything = text
    head = " ".join(text.lower().split()[:5])
    return Row(t=t, text=text[:2000], turns=turns, system=system,
               cot=bool(COT.search(everything)), chars=len(text),
               max_tokens=int(max_tokens or DEFAULT_MAX_TOKENS), n=int(n or 1),
               top_logprobs=max(int(top_logprobs or 0), 1) if logprobs else 0,
               temperature=1.0 if temperature is None else float(temperature),
               completions=completions,
               template=hashlib.sha1(head.encode()).hexdigest()[:12], ua=(ua or "")[:64])


def row_from_usage(u: dict) -> Row:
    created = u["created_at"]
    t = created.timestamp() if isinstance(created, datetime) else float(created)
    return _make(t, u.get("prompt"), u.get("max_tokens"), u.get("n"), bool(u.get("logprobs")),
                 u.get("top_logprobs"), u.get("temperature"), u.get("user_agent"))


def row_from_request(r: Request) -> Row:
    p = r.params
    prompt = list(r.messages) if r.messages is not None else r.prompt
    return _make(r.t, prompt, p.get("max_tokens"), p.get("n"), bool(p.get("logprobs")),
                 p.get("top_logprobs"), p.get("temperature"), r.user_agent)


def row_from_dict(d: dict) -> Row:
    return Row(**d)


# (name, direction): +1 when larger is more suspicious, -1 when smaller is
BEHAVIOUR = (("single_turn", 1), ("cot", 1), ("log_max_tokens", 1), ("top_logprobs", 1),
             ("n", 1), ("diversity", 1), ("iat_cv", -1), ("log_rate", 1), ("system", -1))


def window_features(rows: list[Row], emb: np.ndarray) -> dict[str, float]:
    """Summary of a window: rows in time order, emb (W, d) their unit embeddings."""
    t = np.array([r.t for r in rows])
    iat = np.diff(t)
    span_h = max((t[-1] - t[0]) / 3600, 1 / 60) if len(t) > 1 else 1 / 60
    sims = emb @ emb.T  # (W, W) cosine similarities
    np.fill_diagonal(sims, -1.0)
    w = len(rows)
    templates: dict[str, int] = {}
    for r in rows:
        templates[r.template] = templates.get(r.template, 0) + 1
    return {
        "requests": float(w),
        "log_rate": float(np.log10(w / span_h)),
        "iat_cv": float(iat.std() / iat.mean()) if len(iat) > 1 and iat.mean() > 0 else 0.0,
        "diversity": float(1 - (sims.sum() + w) / max(w * (w - 1), 1)),  # mean pair distance
        "near_dup": float((sims.max(1) > 0.95).mean()) if w > 1 else 0.0,
        "template_reuse": float(sum(c for c in templates.values() if c > 1) / w),
        "single_turn": float(np.mean([r.turns <= 1 for r in rows])),
        "system": float(np.mean([r.system for r in rows])),
        "cot": float(np.mean([r.cot for r in rows])),
        "log_max_tokens": float(np.mean([np.log2(max(r.max_tokens, 1)) for r in rows])),
        "top_logprobs": float(np.mean([r.top_logprobs for r in rows])),
        "n": float(np.mean([r.n for r in rows])),
        "temperature_sd": float(np.std([r.temperature for r in rows])),
        "completions": float(np.mean([r.completions for r in rows])),
    }
