"""Prompt strategies: shipped seed tasks, a topic-taxonomy sweep, chain-of-thought variants.

A prompt is a chat (list of messages) plus the strategy that made it. Prompts travel as JSONL
rows {"messages": [...], "strategy": "...", "category": "..."} so every strategy, and a
user's own file, feeds the harvester the same way. Self-instruct expansion lives in
`selfinstruct.py` (it needs a model).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from distillery.harvest.dataset import iter_jsonl

SEED_FILE = "seed_tasks.jsonl"


@dataclass(frozen=True)
class Prompt:
    messages: tuple[dict, ...]
    strategy: str
    category: str = ""

    @classmethod
    def user(cls, text: str, strategy: str, category: str = "", system: str | None = None
             ) -> Prompt:
        msgs = ([{"role": "system", "content": system}] if system else [])
        return cls(tuple([*msgs, {"role": "user", "content": text}]), strategy, category)

    @property
    def text(self) -> str:
        """The last user message (what ROUGE filters and reports look at)."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")

    @property
    def hash(self) -> str:
        return prompt_hash(list(self.messages))

    def to_json(self) -> dict:
        return {"messages": list(self.messages), "strategy": self.strategy,
                "category": self.category}


def prompt_hash(messages: list[dict]) -> str:
    """sha256 of the canonical JSON of the messages: the dataset's primary key."""
    canon = json.dumps([{"role": m["role"], "content": m["content"]} for m in messages],
                       sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def load_seed_tasks() -> list[dict]:
    """The shipped seed tasks: {"id", "category", "instruction"} rows (213, 17 categories)."""
    text = resources.files("distillery.data").joinpath(SEED_FILE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def seed_prompts(categories: Iterable[str] | None = None) -> list[Prompt]:
    cats = set(categories) if categories else None
    rows = load_seed_tasks()
    if cats is not None:
        unknown = cats - {r["category"] for r in rows}
        if unknown:
            valid = sorted({r["category"] for r in rows})
            raise ValueError(f"unknown categories {sorted(unknown)}: use some of {valid}")
    return [Prompt.user(r["instruction"], "seed", r["category"]) for r in rows
            if cats is None or r["category"] in cats]


# Domains -> subtopics, swept through question templates: broad, even coverage of the
# teacher's knowledge (what a campaign wants) in a form whose provenance is easy to label.
TAXONOMY: dict[str, list[str]] = {
    "science": ["photosynthesis", "gravity", "plate tectonics", "the immune system",
                "chemical bonds", "evolution by natural selection"],
    "mathematics": ["prime numbers", "probability", "linear equations", "geometry of triangles",
                    "percentages", "statistics averages"],
    "programming": ["recursion", "hash tables", "unit testing", "version control",
                    "sorting algorithms", "error handling"],
    "history": ["the printing press", "the industrial revolution", "ancient Rome",
                "the space race", "the silk road", "the invention of writing"],
    "health": ["sleep", "hydration", "strength training", "stress management",
               "balanced diets", "posture at a desk"],
    "finance": ["budgeting", "compound interest", "inflation", "index funds",
                "credit scores", "emergency savings"],
    "language": ["metaphors", "the passive voice", "persuasive writing", "punctuation",
                 "learning vocabulary", "writing clear emails"],
    "technology": ["how the internet works", "encryption", "cloud computing", "batteries",
                   "GPS", "machine learning"],
    "environment": ["recycling", "renewable energy", "biodiversity", "water conservation",
                    "climate change", "urban trees"],
    "society": ["voting systems", "public libraries", "remote work", "volunteering",
                "city planning", "online privacy"],
    "arts": ["impressionist painting", "film editing", "jazz improvisation", "poetry forms",
             "photography composition", "storytelling structure"],
    "everyday": ["cooking rice", "cleaning a kitchen", "planning a trip", "caring for houseplants",
                 "fixing a flat bicycle tyre", "organising a desk"],
}
TAXONOMY_TEMPLATES = [
    "Explain {topic} to a beginner.",
    "What are three common misconceptions about {topic}?",
    "Give a concrete example that illustrates {topic}.",
    "Write a short quiz question about {topic}, then answer it.",
    "Why does {topic} matter in everyday life?",
    "Compare {topic} with a related idea and explain the difference.",
    "What is the history behind {topic}, in a few sentences?",
    "List the key terms someone should know about {topic}, with a one-line definition each.",
    "What question about {topic} do experts still debate, and why?",
    "Summarise {topic} in exactly three bullet points.",
]


def taxonomy_prompts(templates: list[str] | None = None) -> list[Prompt]:
    """Every (domain, subtopic, template): 12 x 6 x 10 = 720 prompts with the defaults."""
    out = []
    for domain, topics in TAXONOMY.items():
        for topic in topics:
            for t in templates or TAXONOMY_TEMPLATES:
                out.append(Prompt.user(t.format(topic=topic), "taxonomy", domain))
    return out


# Chain-of-thought elicitation: the wording providers report in real extraction campaigns
# (REFERENCES.md, "Reported real campaigns"): make the teacher show its reasoning, which is
# the part a student gains most from.
COT_VARIANTS: dict[str, dict] = {
    "step-by-step": {"suffix": "\n\nReason step by step and show your work."},
    "final-line": {"suffix": "\n\nThink it through carefully, explain each step, then give the "
                             "final answer on its own line starting with 'Answer:'."},
    "explain-first": {"prefix": "Before answering, explain your reasoning in detail.\n\n"},
    "system": {"system": "You are a meticulous expert. Always reason step by step and show "
                         "all of your work before the final answer."},
}


def cot_prompts(base: Iterable[Prompt], variants: Iterable[str] | None = None,
                seed: int = 0, one_each: bool = False) -> list[Prompt]:
    """Wrap each base prompt in chain-of-thought variants (all, or one random each)."""
    names = list(variants) if variants else list(COT_VARIANTS)
    bad = [n for n in names if n not in COT_VARIANTS]
    if bad:
        raise ValueError(f"unknown chain-of-thought variants {bad}: use {list(COT_VARIANTS)}")
    rng = random.Random(seed)
    out = []
    for p in base:
        for name in [rng.choice(names)] if one_each else names:
            v = COT_VARIANTS[name]
            text = v.get("prefix", "") + p.text + v.get("suffix", "")
            out.append(Prompt.user(text, f"cot:{name}+{p.strategy}", p.category, v.get("system")))
    return out


@dataclass
class PromptFile:
    """Read and write prompt JSONL; de-duplicates by prompt hash, keeping the first."""

    path: Path
    prompts: list[Prompt] = field(default_factory=list)

    @staticmethod
    def write(path: str | Path, prompts: Iterable[Prompt]) -> int:
        seen, n = set(), 0
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for p in prompts:
                if p.hash in seen:
                    continue
                seen.add(p.hash)
                f.write(json.dumps(p.to_json(), ensure_ascii=False) + "\n")
                n += 1
        return n

    @staticmethod
    def read(path: str | Path) -> list[Prompt]:
        return list(iter_prompts(path))


def iter_prompts(path: str | Path) -> Iterator[Prompt]:
    """Rows with "messages", or with "prompt"/"instruction" (a single user turn)."""
    for i, row in iter_jsonl(path, "make one with `distillery prompts`"):
        strategy, cat = row.get("strategy", "file"), row.get("category", "")
        if "messages" in row:
            yield Prompt(tuple(row["messages"]), strategy, cat)
        elif text := row.get("prompt") or row.get("instruction"):
            yield Prompt.user(text, strategy, cat)
        else:
            raise ValueError(f"{path}:{i}: a prompt row needs 'messages' or 'prompt'")
