"""Teacher-relative evaluation of a student on held-out prompts.

Metrics, each for the student, its base (before training) and the teacher:
  - bits per byte of the teacher's answers: sum_t -log2 p(y_t | y_<t, x) over the answer's
    tokens / UTF-8 bytes of the answer. Per byte, not per token, so models with different
    tokenizers compare (the end-of-turn token is left out for the same reason).
  - ROUGE-L F of the model's own greedy answer against the teacher's answer.
  - gap closed = (student - base) / (teacher - base): 0 = no better than before training,
    1 = as good as the teacher. The teacher's bpb comes from local teacher weights when given,
    else from the harvested logprobs (which are of the teacher's *sampling* distribution, after
    temperature and top-p: a lower, optimistic ceiling). The teacher's ROUGE-L is its own
    greedy answer against its harvested one, or 1.0 without teacher weights.
Confidence intervals: percentile bootstrap over held-out prompts (Efron & Tibshirani 1993,
ch. 13), resampling prompts jointly for all three models so the gap's CI keeps their pairing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from distillery.distill.config import EvalConfig
from distillery.distill.data import answer_text, split_rows
from distillery.distill.forward import answer_logits
from distillery.distill.losses import IGNORE
from distillery.harvest.dataset import read_rows
from distillery.harvest.rouge import rouge_l
from distillery.models.chat import format_chat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    student: float
    base: float
    teacher: float
    gap_closed: float
    student_ci: tuple[float, float]
    gap_closed_ci: tuple[float, float]


@dataclass(frozen=True)
class EvalResult:
    n_prompts: int
    bpb: Metric
    rouge_l: Metric | None
    wall_s: float
    n_rouge_prompts: int = 0
    # per held-out prompt: prompt_hash, bytes, bits_{student,base,teacher} (None where the
    # answer did not fit max_len) and, with ROUGE-L, rouge_{student,base,teacher} (its first
    # n_rouge_prompts prompts)
    per_prompt: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def gap_closed(student: float, base: float, teacher: float) -> float:
    """(student - base) / (teacher - base); NaN when teacher and base coincide."""
    d = teacher - base
    return (student - base) / d if d else float("nan")


def _bar(total: int, desc: str | None) -> tqdm:
    """A progress bar when desc is given (the CLI); a silent one otherwise."""
    return tqdm(total=total, desc=desc, unit="answer", dynamic_ncols=True, leave=False,
                disable=desc is None)


@torch.no_grad()
def answer_bits(model, tokenizer, rows: list[dict], max_len: int, batch_size: int = 8,
                progress: str | None = None, logits_hook=None) -> list[float | None]:
    """Bits of each row's answer under model (None when prompt + answer exceed max_len),
    through logits_hook if given (forward.answer_logits)."""
    dev = next(model.parameters()).device
    seqs: list[tuple[list[int], int] | None] = []
    for r in rows:
        p = tokenizer.encode(format_chat(tokenizer, r["messages"]))
        a = tokenizer.encode(answer_text(tokenizer, r["response"]), add_special_tokens=False)
        seqs.append((p + a, len(p)) if len(p) + len(a) <= max_len and a else None)
    out: list[float | None] = [None] * len(rows)
    todo = [i for i, s in enumerate(seqs) if s is not None]
    bar = _bar(len(todo), progress)
    for k in range(0, len(todo), batch_size):
        idx = todo[k : k + batch_size]
        T = max(len(seqs[i][0]) for i in idx)
        ids = torch.full((len(idx), T), tokenizer.pad_token_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        labels = torch.full_like(ids, IGNORE)
        for b, i in enumerate(idx):
            s, n_prompt = seqs[i]
            ids[b, : len(s)] = torch.tensor(s)
            attn[b, : len(s)] = 1
            labels[b, n_prompt : len(s)] = torch.tensor(s[n_prompt:])
        logits, targets, keep = answer_logits(model, ids.to(dev), attn.to(dev), labels.to(dev),
                                              logits_hook)
        tok_lp = logits.float().log_softmax(-1).gather(-1, targets[:, None])[:, 0]
        per_row = torch.zeros(len(idx), device=dev).index_add_(0, keep.nonzero()[:, 0], -tok_lp)
        for b, v in zip(idx, (per_row / math.log(2)).tolist(), strict=True):
            out[b] = v
        bar.update(len(idx))
    bar.close()
    return out


def logprob_bits(row: dict) -> float | None:
    """Teacher bits of its answer from harvested logprobs (tokens covering the answer)."""
    lps = row.get("logprobs")
    if not lps:
        return None
    total, covered = 0.0, 0
    for t in lps:
        if covered >= len(row["response"]):
            break
        total += -t["logprob"] / math.log(2)
        covered += len(t["token"])
    return total


def greedy_answers(model, tokenizer, rows: list[dict], max_new_tokens: int, batch_size: int,
                   progress: str | None = None) -> list[str]:
    from distillery.engine import SamplingParams, TorchEngine, chat_request
    from distillery.models import LoadedModel, ModelSpec

    spec = ModelSpec(name="student", source="local", description="model under evaluation")
    engine = TorchEngine(LoadedModel(spec, model, tokenizer),
                         max_batch_size=batch_size)
    reqs = [chat_request(tokenizer, r["messages"],
                         SamplingParams(max_tokens=max_new_tokens, temperature=0,
                                        repetition_penalty=1.1)) for r in rows]
    bar = _bar(len(reqs), progress)
    out = []
    for k in range(0, len(reqs), batch_size):  # batch by batch, so the bar moves
        out += [res.choices[0].text.strip() for res in engine.generate(reqs[k:k + batch_size])]
        bar.update(len(reqs[k:k + batch_size]))
    bar.close()
    return out


def _ci(values: np.ndarray, conf: float) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if not len(v):
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(v, [50 * (1 - conf), 50 * (1 + conf)])
    return (float(lo), float(hi))


def bootstrap_metric(s: np.ndarray, b: np.ndarray, t: np.ndarray, denom: np.ndarray | None,
                     n_boot: int, conf: float, seed: int) -> Metric:
    """Per-prompt values -> Metric. With denom (bytes) the statistic is a ratio of sums
    (bits per byte of the pooled text); without, a mean (ROUGE-L)."""
    def stat(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        if denom is None:
            return x[idx].mean(-1)
        return x[idx].sum(-1) / denom[idx].sum(-1)

    n = len(s)
    full = np.arange(n)[None]
    S, B, T = (float(stat(x, full)[0]) for x in (s, b, t))
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    bs, bb, bt = stat(s, idx), stat(b, idx), stat(t, idx)
    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = (bs - bb) / (bt - bb)
    return Metric(S, B, T, gap_closed(S, B, T), _ci(bs, conf), _ci(gaps, conf))


def check_inputs(cfg: EvalConfig, held: list[dict], reference: EvalResult | None) -> None:
    """What evaluation needs, checked before minutes of loading and scoring: enough held-out
    rows, a student directory, model names that resolve, and a source of teacher bits."""
    from distillery.models import resolve
    from distillery.models.registry import STUDENT_FILE

    if len(held) < 2:
        raise ValueError(f"only {len(held)} held-out rows in {cfg.dataset}: harvest more, or "
                         "raise heldout_fraction (it must match training)")
    if not (Path(cfg.student) / STUDENT_FILE).is_file():
        raise FileNotFoundError(f"{cfg.student} is not a student directory (no student.json): "
                                "point at <output_dir>/student from `distillery train`")
    for name in (cfg.student, cfg.base, cfg.teacher):
        if name is not None:
            resolve(name)
    if reference is None and cfg.teacher is None and not any(r.get("logprobs") for r in held):
        raise ValueError(f"no teacher bits: the answers in {cfg.dataset} carry no logprobs; "
                         "pass --teacher NAME (local teacher weights) or harvest with "
                         "--top-logprobs 5")


def evaluate(cfg: EvalConfig, reference: EvalResult | None = None, progress: bool = False,
             logits_hook=None) -> EvalResult:
    """Student, base and teacher on the held-out prompts. With `reference` (an earlier
    evaluation of another student of the same base on the same held-out prompts, e.g. an
    earlier snapshot of one run), the base's and the teacher's per-prompt values are taken
    from it and only the student is run. progress: a bar per stage. logits_hook: the
    student's bits as served through it (a neutraliser: what scrubbing costs; bits per byte
    only, ROUGE-L's greedy answers do not take it)."""
    from distillery.distill.trainer import load_student
    from distillery.models import load

    if logits_hook is not None and cfg.rouge:  # before any model is loaded
        raise ValueError("a logits hook applies to bits per byte only: set rouge=False")
    t0 = time.perf_counter()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    _, held = split_rows(read_rows(cfg.dataset), cfg.heldout_fraction)
    held = [r for r in held if r["response"].strip()][: cfg.max_examples]
    check_inputs(cfg, held, reference)

    def bar(what: str) -> str | None:
        return what if progress else None

    model, tok, base_name = load_student(cfg.student)
    is_lora = hasattr(model, "disable_adapter")
    base_model = None  # a full fine-tune's base: loaded once, only if needed

    @contextlib.contextmanager
    def as_base():
        nonlocal base_model
        if is_lora:
            with model.disable_adapter():
                yield model
        else:
            base_model = base_model or load(cfg.base or base_name).model
            yield base_model

    pp = reference.per_prompt if reference is not None else None
    if pp is not None:  # the reference's prompts, in its order
        index = {r["prompt_hash"]: i for i, r in enumerate(held)}
        if any(h not in index for h in pp["prompt_hash"]):
            raise ValueError("the reference evaluation used other held-out prompts: give the "
                             "same dataset, heldout_fraction and max_examples")
        held = [held[index[h]] for h in pp["prompt_hash"]]
    n_rouge = len(held[: cfg.rouge_max_examples]) if cfg.rouge else 0
    reuse_rouge = pp is not None and len(pp.get("rouge_base", [])) >= n_rouge
    s_bits = answer_bits(model, tok, held, cfg.max_len, cfg.batch_size, bar("bits: student"),
                         logits_hook)
    teacher = load(cfg.teacher) if cfg.teacher and not reuse_rouge else None  # else unused
    if pp is not None:
        b_bits, t_bits = pp["bits_base"], pp["bits_teacher"]
    else:
        with as_base() as m:
            b_bits = answer_bits(m, tok, held, cfg.max_len, cfg.batch_size, bar("bits: base"))
        if teacher is not None:
            t_bits = answer_bits(teacher.model, teacher.tokenizer, held, cfg.max_len,
                                 cfg.batch_size, bar("bits: teacher"))
        else:
            t_bits = [logprob_bits(r) for r in held]  # check_inputs: some rows have them
    keep = [i for i in range(len(held)) if None not in (s_bits[i], b_bits[i], t_bits[i])]
    if len(keep) < 2:
        raise ValueError("fewer than 2 held-out answers fit max_len for every model: "
                         "raise max_len")
    held = [held[i] for i in keep]
    nbytes = np.array([len(r["response"].encode()) for r in held], dtype=float)
    arr = [np.array([v[i] for i in keep]) for v in (s_bits, b_bits, t_bits)]
    bpb = bootstrap_metric(*arr, nbytes, cfg.bootstrap, cfg.confidence, cfg.seed)
    # every held-out prompt, None where an answer did not fit max_len: a later evaluation
    # with this as its reference lines its prompts up with these lists by position
    per_prompt = {"prompt_hash": [r["prompt_hash"] for r in held], "bytes": nbytes.tolist(),
                  **{f"bits_{k}": list(v) for k, v in zip(("student", "base", "teacher"),
                                                         (s_bits, b_bits, t_bits), strict=True)}}
    rouge = None
    if cfg.rouge:
        held = held[:n_rouge]
        refs = [r["response"] for r in held]

        def scores(m, t, who: str) -> list[float]:
            answers = greedy_answers(m, t, held, cfg.max_new_tokens, cfg.batch_size,
                                     bar(f"answers: {who}"))
            return [rouge_l(a, r) for a, r in zip(answers, refs, strict=True)]

        s_r = scores(model, tok, "student")
        if reuse_rouge:
            b_r, t_r = pp["rouge_base"][:n_rouge], pp["rouge_teacher"][:n_rouge]
        else:
            with as_base() as m:
                b_r = scores(m, tok, "base")
            t_r = (scores(teacher.model, teacher.tokenizer, "teacher") if teacher
                   else [1.0] * len(held))
        per_prompt.update(rouge_student=s_r, rouge_base=b_r, rouge_teacher=t_r)
        rouge = bootstrap_metric(np.array(s_r), np.array(b_r), np.array(t_r), None,
                                 cfg.bootstrap, cfg.confidence, cfg.seed)
    return EvalResult(len(nbytes), bpb, rouge, time.perf_counter() - t0,
                      len(held) if rouge else 0, per_prompt)


def write_eval(path: str | Path, result: EvalResult, cfg: EvalConfig) -> None:
    Path(path).write_text(json.dumps({"config": asdict(cfg), **result.to_dict()}, indent=2))
