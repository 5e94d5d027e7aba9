"""Traffic files: one JSON object a line, one request each, in time order.

    {"t": 1767225600.0,            # simulated time, unix seconds (UTC)
     "account": "dev-003",         # the account the request is sent as
     "key": "default",             # which of the account's keys (a label, not a secret)
     "endpoint": "chat",           # "chat" (/v1/chat/completions) | "completions"
     "messages": [{"role": "user", "content": "..."}],   # chat
     "prompt": "...",              # completions (instead of messages)
     "params": {"max_tokens": 256, "temperature": 0.7, "top_p": 1.0, "n": 1, "seed": 7,
                "logprobs": true, "top_logprobs": 5, "stop": ["\n\n"]},  # all optional
     "user_agent": "my-app/1.2"}   # optional: sent as the User-Agent header

Labels never travel in the traffic: the simulator writes them beside it, to
`<name>.labels.jsonl`, one object per account:
    {"account": "dev-003", "persona": "developer", "role": "benign", "campaign": null}

`distillery audit replay FILE` sends a file through a gateway; the gateway records `t` as the
row's created_at when it runs with the simulated clock (`serve --simulated-clock`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ENDPOINTS = ("chat", "completions")
PARAMS = ("max_tokens", "temperature", "top_p", "n", "seed", "logprobs", "top_logprobs", "stop")


@dataclass(frozen=True)
class Request:
    t: float
    account: str
    endpoint: str = "chat"
    messages: tuple[dict, ...] | None = None
    prompt: str | None = None
    params: dict = field(default_factory=dict)
    key: str = "default"
    user_agent: str | None = None

    def __post_init__(self) -> None:
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}, got {self.endpoint!r}")
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a request has either messages (chat) or prompt (completions)")
        unknown = set(self.params) - set(PARAMS)
        if unknown:
            raise ValueError(f"unknown params {sorted(unknown)}; valid: {', '.join(PARAMS)}")

    def to_json(self) -> dict:
        d: dict = {"t": round(self.t, 3), "account": self.account, "key": self.key,
                   "endpoint": self.endpoint}
        if self.messages is not None:
            d["messages"] = list(self.messages)
        else:
            d["prompt"] = self.prompt
        if self.params:
            d["params"] = self.params
        if self.user_agent:
            d["user_agent"] = self.user_agent
        return d

    @classmethod
    def from_json(cls, d: dict) -> Request:
        msgs = d.get("messages")
        return cls(t=float(d["t"]), account=str(d["account"]), endpoint=d.get("endpoint", "chat"),
                   messages=tuple(msgs) if msgs is not None else None, prompt=d.get("prompt"),
                   params=dict(d.get("params") or {}), key=str(d.get("key", "default")),
                   user_agent=d.get("user_agent"))


@dataclass(frozen=True)
class Label:
    account: str
    persona: str
    role: str  # "benign" | "attack"
    campaign: str | None = None


def labels_path(traffic: str | Path) -> Path:
    p = Path(traffic)
    return p.with_name(p.name.removesuffix(".jsonl") + ".labels.jsonl")


def write_traffic(path: str | Path, requests: Iterable[Request], labels: Iterable[Label]) -> int:
    n = 0
    with open(path, "w") as f:
        for r in requests:
            f.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
            n += 1
    with open(labels_path(path), "w") as f:
        for lab in labels:
            f.write(json.dumps(lab.__dict__) + "\n")
    return n


def iter_traffic(path: str | Path) -> Iterator[Request]:
    """Requests of a traffic file; a bad line raises ValueError naming it."""
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield Request.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{i}: not a traffic request ({e}); see "
                                 "distillery.audit.traffic for the format") from None


def read_labels(traffic: str | Path) -> dict[str, Label]:
    out = {}
    with open(labels_path(traffic)) as f:
        for line in f:
            if line.strip():
                lab = Label(**json.loads(line))
                out[lab.account] = lab
    return out
