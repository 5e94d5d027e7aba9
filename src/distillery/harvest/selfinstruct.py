"""Self-instruct expansion (Wang et al. 2022; the Stanford Alpaca recipe).

Each request shows a few instructions sampled from the pool (seeds, plus kept machine ones)
and asks for more. A candidate is kept only if it passes Alpaca's filters:
  - 3 < words <= 150;
  - no keyword a text-only model cannot act on (image, file, draw, ...);
  - does not start with punctuation or a non-ASCII character;
  - ROUGE-L F against every instruction kept so far (seeds included) <= 0.7.
The model is reached through a `complete(prompt) -> str` callable, so any OpenAI-compatible
endpoint (or a test double) drives it.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from distillery.harvest.prompts import Prompt
from distillery.harvest.rouge import lcs_length, tokenize

log = logging.getLogger(__name__)

BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
             "map", "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart",
             "diagram")
_NUMBERED = re.compile(r"^\s*(\d+)\s*[.):]\s*(.+)$")


@dataclass
class SelfInstructConfig:
    n_target: int = 100          # new instructions wanted
    n_shots: int = 3             # seeds shown per request (Alpaca: 3)
    n_per_request: int = 10      # instructions asked for per request (Alpaca: up to 20)
    rouge_threshold: float = 0.7
    min_words: int = 4           # "more than 3 words"
    max_words: int = 150
    max_requests: int = 1000     # stops a model that never yields keepable text
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_target < 1:
            raise ValueError("n_target must be >= 1: how many new instructions to make")
        if not 1 <= self.n_shots <= 20:
            raise ValueError("n_shots must be in [1, 20] (Alpaca uses 3)")
        if not 0 < self.rouge_threshold <= 1:
            raise ValueError("rouge_threshold must be in (0, 1] (Alpaca uses 0.7)")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError("need 1 <= min_words <= max_words")


def build_request(examples: list[str], n_new: int) -> str:
    lines = [f"Write {n_new} diverse instructions (tasks) for an AI assistant. Vary the verbs "
             "and the topics; each must be answerable in text alone. Examples:"]
    lines += [f"{i}. {e}" for i, e in enumerate(examples, 1)]
    lines.append(f"Continue the numbered list from {len(examples) + 1}.")
    return "\n".join(lines)


def parse_instructions(text: str) -> list[str]:
    """Numbered lines ("4. ...") of a reply; unnumbered replies are read line by line."""
    numbered = [m.group(2).strip() for line in text.splitlines()
                if (m := _NUMBERED.match(line))]
    if numbered:
        return numbered
    return [line.strip(" -*\t") for line in text.splitlines() if line.strip(" -*\t")]


@dataclass
class _Pool:
    texts: list[str] = field(default_factory=list)
    tokens: list[list[str]] = field(default_factory=list)

    def add(self, text: str, toks: list[str]) -> None:
        self.texts.append(text)
        self.tokens.append(toks)


def rejection_reason(text: str, toks: list[str], pool: _Pool, cfg: SelfInstructConfig
                     ) -> str | None:
    """Why a candidate is dropped (None = keep). Cheap filters run before ROUGE-L."""
    words = text.split()
    if not cfg.min_words <= len(words) <= cfg.max_words:
        return "length"
    low = text.lower()
    if any(re.search(rf"\b{re.escape(k)}\b", low) for k in BLACKLIST):
        return "keyword"
    if not text[0].isascii() or not text[0].isalnum():
        return "start"
    for other in pool.tokens:
        # ROUGE-L F <= 2 min(|a|,|b|) / (|a|+|b|): skip pairs that cannot exceed the threshold.
        if 2 * min(len(toks), len(other)) / (len(toks) + len(other)) <= cfg.rouge_threshold:
            continue
        lcs = lcs_length(toks, other)
        if lcs and 2 * lcs / (len(toks) + len(other)) > cfg.rouge_threshold:
            return "rouge"
    return None


def self_instruct(seeds: list[str], complete: Callable[[str], str],
                  cfg: SelfInstructConfig | None = None) -> tuple[list[Prompt], dict]:
    """Grow `seeds` by cfg.n_target instructions; returns (new prompts, rejection counts)."""
    cfg = cfg or SelfInstructConfig()
    if len(seeds) < cfg.n_shots:
        raise ValueError(f"need at least n_shots={cfg.n_shots} seed instructions")
    rng = random.Random(cfg.seed)
    pool = _Pool()
    for s in seeds:
        pool.add(s, tokenize(s))
    new: list[Prompt] = []
    stats = {"requests": 0, "candidates": 0, "kept": 0, "length": 0, "keyword": 0, "start": 0,
             "rouge": 0}
    while len(new) < cfg.n_target and stats["requests"] < cfg.max_requests:
        # Alpaca mixes human seeds with machine ones; here 2/3 seeds, the rest generated.
        n_machine = min(len(new), cfg.n_shots // 3)
        shots = rng.sample(seeds, cfg.n_shots - n_machine)
        shots += rng.sample([p.text for p in new], n_machine)
        reply = complete(build_request(shots, cfg.n_per_request))
        stats["requests"] += 1
        for cand in parse_instructions(reply):
            stats["candidates"] += 1
            toks = tokenize(cand)
            reason = rejection_reason(cand, toks, pool, cfg)
            if reason:
                stats[reason] += 1
                continue
            pool.add(cand, toks)
            new.append(Prompt.user(cand, "self-instruct"))
            stats["kept"] += 1
            if len(new) >= cfg.n_target:
                break
        log.info("self-instruct: %d/%d kept after %d requests", len(new), cfg.n_target,
                 stats["requests"])
    return new, stats
