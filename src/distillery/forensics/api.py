"""Closed-model test ("API mode", Sander et al. 2024): prompt the suspect, score its answers.

Candidates are every (window, token) of an answer in teacher tokens, from the first position
with a full context; a candidate whose window is a w-gram of that answer's own prompt is
excluded (a clean model repeating its prompt, which may itself be our marked text, is not
marked; switching this off makes a clean model fail calibration: tests/forensics). The test
de-duplicates across all answers per key (evidence.py).

The budget is fixed before the test: `queries` prompts at most, and optionally a number of
scored tuples of the tested layer. Queries go in rounds, and the run stops after the round in
which that count is reached: the count depends on the suspect's tokens alone, never on a key's
outcomes, so stopping on it keeps the p-value exact (no optional stopping on the p-value).
The harvester does the querying: concurrent, retried, and resumable in `work_dir`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from transformers import PreTrainedTokenizerBase

from distillery.forensics.evidence import Candidates
from distillery.forensics.reading import TextRow
from distillery.stats import rows_in
from distillery.watermark.scheme import WatermarkScheme

log = logging.getLogger(__name__)


def answer_candidates(rows: Sequence[TextRow], teacher_tokenizer: PreTrainedTokenizerBase,
                      scheme: WatermarkScheme, exclude_prompt: bool = True) -> Candidates:
    """The suspect's answers (row.response) to prompts (row.messages) -> candidates."""
    w, start = scheme.window, scheme.start
    parts = []
    n_tokens = 0
    for r in rows:
        ids = np.asarray(teacher_tokenizer.encode(r.response, add_special_tokens=False),
                         dtype=np.int64)
        n_tokens += len(ids)
        if len(ids) <= start:
            continue
        windows = np.ascontiguousarray(sliding_window_view(ids, w)[start - w: len(ids) - w])
        excluded = np.zeros(len(windows), dtype=bool)
        if exclude_prompt and r.messages:
            prompt = "\n".join(m["content"] for m in r.messages)
            p_ids = np.asarray(teacher_tokenizer.encode(prompt, add_special_tokens=False),
                               dtype=np.int64)
            if len(p_ids) >= w:
                excluded = rows_in(windows, sliding_window_view(p_ids, w))
        parts.append(Candidates(windows, ids[start:], scheme.global_positions(ids), excluded,
                                np.zeros((0, w + 1), np.int64)))
    out = Candidates.concat(parts, w)
    out.n_rows, out.n_tokens = len(rows), n_tokens
    out.info = {"prompt_windows_excluded": int(out.excluded.sum())}
    return out


def query_endpoint(prompts: Sequence[TextRow], base_url: str, api_key: str, model: str,
                   work_dir: str | Path, max_tokens: int = 128, temperature: float = 0.7,
                   top_p: float = 0.95, concurrency: int = 8, progress: bool = False
                   ) -> list[TextRow]:
    """Answers of an OpenAI-compatible endpoint to the prompts, through the harvester (kept in
    work_dir/answers.jsonl, so an interrupted check resumes)."""
    from distillery.harvest import HarvestConfig, Prompt, harvest, read_rows

    out = Path(work_dir) / "answers.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = HarvestConfig(base_url=base_url, model=model, api_keys=[api_key],
                        concurrency=concurrency, max_tokens=max_tokens,
                        temperature=temperature, top_p=top_p, progress=progress)
    ps = [Prompt(tuple(r.messages), "forensics") for r in prompts]
    rep = harvest(ps, out, cfg)
    if rep.failed:
        log.warning("%d of %d queries failed after retries", rep.failed, len(ps))
    by_hash = {r["prompt_hash"]: r for r in read_rows(out)}
    return [TextRow(tuple(p.messages), by_hash[p.hash]["response"]) for p in ps
            if p.hash in by_hash]


def generate_locally(prompts: Sequence[TextRow], model: str, max_tokens: int = 128,
                     temperature: float = 0.7, top_p: float = 0.95, seed: int = 0
                     ) -> list[TextRow]:
    """A local model's answers to the prompts (the clean reference of an API-mode check)."""
    from distillery.engine import SamplingParams, TorchEngine, chat_request

    engine = TorchEngine.from_name(model)
    reqs = [chat_request(engine.tokenizer, list(p.messages),
                         SamplingParams(max_tokens=max_tokens, temperature=temperature,
                                        top_p=top_p, seed=seed + i))
            for i, p in enumerate(prompts)]
    results = engine.generate(reqs)
    return [TextRow(tuple(p.messages), r.choices[0].text)
            for p, r in zip(prompts, results, strict=True)]


def budgeted(ask: Callable[[Sequence[TextRow]], list[TextRow]], prompts: Sequence[TextRow],
             count: Callable[[list[TextRow]], int], budget_tokens: int | None,
             round_size: int = 100) -> list[TextRow]:
    """Ask the prompts in rounds until `count` (scored tuples of the answers so far) reaches
    budget_tokens, or the prompts run out; None: ask them all."""
    if budget_tokens is None:
        return ask(prompts)
    answers: list[TextRow] = []
    for lo in range(0, len(prompts), round_size):
        answers += ask(prompts[lo: lo + round_size])
        if count(answers) >= budget_tokens:
            break
    return answers
