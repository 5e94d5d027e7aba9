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

The green mass (evidence.py) from the endpoint's top logprobs (`top_logprobs` N <= 20): the
distribution at generation step j predicts the text from the byte where the suspect's token j
starts, so it is scored at the teacher position t whose token starts at that byte, with the
window of the teacher tokens before t (as reading.py aligns two tokenizers); each of its top
strings maps to the first teacher token of its text, with probability exp(logprob) (the top N
hold less than 1; the formulas allow it). On the teacher's own tokenizer this is the identity.
The windows come from the suspect's own answer, independent of the key under H0: no unmarked
teacher text is needed. Lost on the way: steps that start inside a teacher token; a string
that is a prefix of a longer teacher token maps to the shorter one; the rest of an answer from
the first token string that does not spell it (a partial UTF-8 character, returned as U+FFFD or
as escaped bytes; the end-of-turn token); top strings holding U+FFFD (their bytes are unknown)
map to nothing. None of it touches validity: what is scored is a function of the answer alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from transformers import PreTrainedTokenizerBase

from distillery.forensics.evidence import Candidates, disagreement_candidates, merge_duplicates
from distillery.forensics.reading import TextRow
from distillery.forensics.tokens import boundaries, first_ids, token_bytes
from distillery.stats import rows_in
from distillery.watermark.scheme import WatermarkScheme

log = logging.getLogger(__name__)


def token_offsets(response: str, tokens: Sequence[str]) -> np.ndarray:
    """(k,) byte offset in `response` where each generated token starts, for the leading
    tokens whose strings spell it; the first that does not (or is empty) ends the alignment."""
    out, pos, byte = [], 0, 0
    for s in tokens:
        if not s or not response.startswith(s, pos):
            break
        out.append(byte)
        pos, byte = pos + len(s), byte + len(s.encode())
    return np.asarray(out, dtype=np.int64)


def aligned_steps(response: str, tokens: Sequence[str], teacher: np.ndarray,
                  teacher_table: list[bytes], start: int) -> tuple[np.ndarray, np.ndarray]:
    """Teacher positions t >= start whose token starts at the byte where generated token j
    starts -> (t (m,), j (m,))."""
    tb = boundaries(teacher, teacher_table, response.encode())
    sb = token_offsets(response, tokens)
    if tb is None or not len(sb):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    t = np.arange(start, len(teacher))
    j = np.searchsorted(sb, tb[t])
    ok = (j < len(sb)) & (sb[np.minimum(j, len(sb) - 1)] == tb[t])
    return t[ok], j[ok]


class FirstTeacherIds:
    """Token string -> the first teacher token of its text (-1: "", or U+FFFD: a partial
    UTF-8 sequence whose bytes are unknown), cached: answers repeat their strings."""

    def __init__(self, teacher: PreTrainedTokenizerBase):
        self.teacher, self.known = teacher, {}

    def __call__(self, strings: Sequence[str]) -> list[int]:
        todo = list({s for s in strings if s not in self.known})
        self.known.update(zip(todo, first_ids(self.teacher, [
            "" if "\ufffd" in s else s for s in todo]), strict=True))
        return [self.known[s] for s in strings]


def top_distributions(row: TextRow, teacher: np.ndarray, start: int, k: int,
                      teacher_table: list[bytes], to_teacher: FirstTeacherIds
                      ) -> tuple[np.ndarray, np.ndarray]:
    """-> (n - start, k) teacher ids and probabilities of the suspect's top-k at each teacher
    position of its answer, merged per teacher token (-1 and 0 where no step aligns)."""
    tokens = np.full((len(teacher) - start, k), -1, dtype=np.int64)
    probs = np.zeros((len(teacher) - start, k))
    steps = row.logprobs or ()
    t, j = aligned_steps(row.response, [s["token"] for s in steps], teacher, teacher_table,
                         start)
    for ti, ji in zip(t - start, j, strict=True):
        top = steps[ji]["top"][:k]
        tokens[ti, : len(top)] = to_teacher([a["token"] for a in top])
        probs[ti, : len(top)] = np.exp([a["logprob"] for a in top])
    return merge_duplicates(tokens, probs)


def answer_candidates(rows: Sequence[TextRow], teacher_tokenizer: PreTrainedTokenizerBase,
                      scheme: WatermarkScheme, exclude_prompt: bool = True) -> Candidates:
    """The suspect's answers (row.response) to prompts (row.messages) -> candidates; with
    their top logprobs (row.logprobs), also the top-k distributions (top_tokens, top_probs)."""
    w, start = scheme.window, scheme.start
    k = max((len(s["top"]) for r in rows for s in r.logprobs or ()), default=0)
    to_teacher, table = (FirstTeacherIds(teacher_tokenizer), token_bytes(teacher_tokenizer)) \
        if k else (None, None)
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
        c = Candidates(windows, ids[start:], scheme.global_positions(ids), excluded,
                       np.zeros((0, w + 1), np.int64))
        if k:
            c.top_tokens, c.top_probs = top_distributions(r, ids, start, k, table, to_teacher)
        parts.append(c)
    out = Candidates.concat(parts, w)
    out.n_rows, out.n_tokens = len(rows), n_tokens
    out.info = {"prompt_windows_excluded": int(out.excluded.sum())}
    if out.top_probs is not None:
        out.info["positions_with_top_logprobs"] = int((out.top_probs != 0).any(axis=1).sum())
    return out


def disagreeing(c: Candidates, clean_top1: Sequence[np.ndarray]) -> Candidates:
    """API-mode "disagree": the suspect's generated tokens (answer_candidates) only where a
    clean model's top-1 on the same answer (Reader.top1, rows in the same order) differs.

    The clean model is the teacher's own weights, which hold no key (the watermark is added
    while sampling): under H0 neither the suspect's answers nor that model's predictions
    depend on a key, so which positions are kept does not either, and the argmax's exact test
    holds on what is left. Where the suspect wrote what the unmarked teacher would have put
    first, the watermark's bias did not choose the token; what is kept are the positions
    where a student that learned the bias departs from the teacher."""
    ref = np.concatenate(list(clean_top1)) if len(clean_top1) else np.zeros(0, np.int64)
    if len(ref) != len(c):
        raise ValueError(f"the clean model's predictions ({len(ref)} positions) do not line up "
                         f"with the suspect's answers ({len(c)})")
    reference = Candidates(c.windows, ref, c.is_global, np.zeros(len(c), bool),
                           np.zeros((0, c.windows.shape[1] + 1), np.int64))
    return disagreement_candidates(c, reference)


def query_endpoint(prompts: Sequence[TextRow], base_url: str, api_key: str, model: str,
                   work_dir: str | Path, max_tokens: int = 128, temperature: float = 0.7,
                   top_p: float = 0.95, concurrency: int = 8, progress: bool = False,
                   top_logprobs: int = 0) -> list[TextRow]:
    """Answers of an OpenAI-compatible endpoint to the prompts, through the harvester (kept in
    work_dir/answers.jsonl, so an interrupted check resumes); top_logprobs > 0: each with the
    logprobs of its tokens and of their top_logprobs likeliest alternatives."""
    from distillery.harvest import HarvestConfig, Prompt, harvest, read_rows

    out = Path(work_dir) / "answers.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = HarvestConfig(base_url=base_url, model=model, api_keys=[api_key],
                        concurrency=concurrency, max_tokens=max_tokens,
                        temperature=temperature, top_p=top_p, progress=progress,
                        top_logprobs=top_logprobs)
    ps = [Prompt(tuple(r.messages), "forensics") for r in prompts]
    rep = harvest(ps, out, cfg)
    if rep.failed:
        log.warning("%d of %d queries failed after retries", rep.failed, len(ps))
    by_hash = {r["prompt_hash"]: r for r in read_rows(out)}
    return [TextRow(tuple(p.messages), by_hash[p.hash]["response"],
                    tuple(by_hash[p.hash]["logprobs"] or ()) if top_logprobs else None)
            for p in ps if p.hash in by_hash]


def generate_locally(prompts: Sequence[TextRow], model: str, max_tokens: int = 128,
                     temperature: float = 0.7, top_p: float = 0.95, seed: int = 0,
                     top_logprobs: int = 0, engine: str = "auto") -> list[TextRow]:
    """A local model's answers to the prompts (fresh unmarked teacher text; the clean reference
    of an API-mode check), with logprobs in the harvester's format when top_logprobs > 0. On
    the engine the gateway would serve it with (llama.cpp where installed and the model ships
    a GGUF, else torch), or the one named (engine.load_engine)."""
    from distillery.engine import SamplingParams, chat_request, load_engine

    engine = load_engine(model, engine)
    reqs = [chat_request(engine.tokenizer, list(p.messages),
                         SamplingParams(max_tokens=max_tokens, temperature=temperature,
                                        top_p=top_p, seed=seed + i,
                                        logprobs=top_logprobs > 0, top_logprobs=top_logprobs))
            for i, p in enumerate(prompts)]
    results = engine.generate(reqs)
    return [TextRow(tuple(p.messages), r.choices[0].text, _as_harvested(r.choices[0].logprobs))
            for p, r in zip(prompts, results, strict=True)]


def _as_harvested(logprobs) -> tuple[dict, ...] | None:
    """The engine's TokenLogprobs -> harvester rows (harvester.logprobs_to_rows)."""
    if logprobs is None:
        return None
    return tuple({"token": t.token, "logprob": t.logprob,
                  "top": [{"token": s, "logprob": v} for _i, s, v in t.top]} for t in logprobs)


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
