"""run_check(config): load the key ring, our texts, the suspect and its clean reference, read
or query, and return the verdict (check.py). The CLI (`distillery forensics check`) and the
closed loop call this."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import torch

from distillery.forensics.api import (
    answer_candidates,
    budgeted,
    disagreeing,
    generate_locally,
    query_endpoint,
)
from distillery.forensics.check import Verdict, read_in_budget, verdict_for
from distillery.forensics.config import ForensicsConfig
from distillery.forensics.evidence import PAIRED, Candidates, mass_count, scored_count
from distillery.forensics.reading import Reader, TextRow
from distillery.forensics.sources import account_names, dataset_rows, shuffled, usage_rows

log = logging.getLogger(__name__)
LAYER_PROBE = "forensics-layer-probe"  # any account key gives the scheme its two layers
OTHER_SHIPPED = {"smollm2-135m-instruct": "gemma-3-270m", "gemma-3-270m": "smollm2-135m-instruct"}


def build_scheme(cfg: ForensicsConfig):
    from distillery.watermark import KeyRing, make_scheme

    ring = KeyRing.load(cfg.key_file)
    scheme = make_scheme(cfg.scheme, ring, account=LAYER_PROBE, **cfg.scheme_params)
    if cfg.account is not None:
        names = [cfg.account]
    elif cfg.accounts:
        names = list(cfg.accounts)
    elif cfg.database is not None:
        names = account_names(cfg.database)
    else:
        names = []
    return ring, scheme, {n: ring.account_key(n) for n in names}


def load_rows(cfg: ForensicsConfig) -> list[TextRow]:
    rows = (dataset_rows(cfg.dataset) if cfg.dataset is not None
            else usage_rows(cfg.database, cfg.account))
    rows = shuffled(rows, cfg.seed)[cfg.skip_rows:]
    rows = rows[: cfg.max_rows] if cfg.max_rows else rows
    if not rows:
        raise ValueError("no texts to test: the usage store / dataset has no stored answers "
                         "(after --skip-rows)")
    return rows


def load_suspect(path: str):
    """-> (model, tokenizer, base name or None, is_lora)."""
    from distillery.models import load

    if (Path(path) / "student.json").is_file():
        from distillery.distill.trainer import load_student

        model, tok, base = load_student(path)
        return model, tok, base, hasattr(model, "disable_adapter")
    m = load(path)
    return m.model, m.tokenizer, None, False


def reference_model(cfg: ForensicsConfig, model, tok, base: str | None, is_lora: bool):
    """The clean reference for an open suspect -> (name, model, tokenizer, context factory):
    a LoRA student's own weights with the adapter off (its untouched base, for free), else
    --reference, else the teacher's other shipped model; (None, None, None, _) if none."""
    from distillery.models import load

    name = cfg.reference or base or OTHER_SHIPPED.get(cfg.teacher)
    if name is None:
        return None, None, None, contextlib.nullcontext
    if is_lora and cfg.reference is None:
        return f"{base} (the suspect's base)", model, tok, model.disable_adapter
    loaded = load(name)
    return name, loaded.model, loaded.tokenizer, contextlib.nullcontext


def clean_teacher(cfg: ForensicsConfig, ttok, scheme) -> Reader:
    """API-mode disagree's clean model: the teacher's own weights (no key is in them), reading
    the answers (api.disagreeing)."""
    from distillery.models import load

    m = load(cfg.teacher)
    return Reader(m.model, m.tokenizer, ttok, scheme, cfg.max_len, cfg.batch_size,
                  exclude_text=False)


def run_check(cfg: ForensicsConfig, progress: bool = True) -> Verdict:
    from distillery.models import load_tokenizer

    t0 = time.perf_counter()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    _, scheme, accounts = build_scheme(cfg)
    rows = load_rows(cfg)
    ttok = load_tokenizer(cfg.teacher)
    notes = []
    if cfg.mode == "open" and cfg.fresh:
        rows = generate_locally(rows[: cfg.fresh], cfg.teacher, cfg.max_tokens, cfg.temperature,
                                seed=cfg.seed)
    elif cfg.mode == "open" and cfg.dataset is None:
        notes.append("read the stored answers, marked by the tested keys: conservative (their "
                     "tuples are excluded, and those were likelier green; on SmolLM2 answers a "
                     "clean Gemma-3-270M, which predicts them well, scores 0.14 against gamma "
                     "0.25); --fresh N reads unmarked teacher answers instead, the exact test")
    if cfg.mode == "open":
        model, tok, base, is_lora = load_suspect(cfg.suspect)
        top_k = cfg.top_k if cfg.statistic in ("mass", "shift") else 0

        def read(m, t, rs) -> Candidates:
            return Reader(m, t, ttok, scheme, cfg.max_len, cfg.batch_size, top_k=top_k,
                          exclude_text=not (cfg.fresh or cfg.unmarked_text)
                          ).candidates(rs, progress)

        ref_name, ref_model, ref_tok, ref_ctx = reference_model(cfg, model, tok, base, is_lora)
        if cfg.statistic in PAIRED:  # both models on each chunk: the budget sees the pair
            if ref_model is None:
                raise ValueError(f"the {cfg.statistic} statistic needs the suspect's clean base: "
                                 "give --reference (a model with the suspect's tokenizer)")
            pair = PAIRED[cfg.statistic]

            def read_pair(rs) -> Candidates:
                s = read(model, tok, rs)
                with ref_ctx():
                    return pair(s, read(ref_model, ref_tok, rs))

            c = read_in_budget(read_pair, rows, scheme, cfg.budget_tokens,
                               statistic=cfg.statistic)
            ref_c = None
        else:
            c = read_in_budget(lambda rs: read(model, tok, rs), rows, scheme, cfg.budget_tokens,
                               statistic=cfg.statistic)
            used = rows[: c.info["rows_read"]]
            ref_c = None
            if ref_model is not None:
                with ref_ctx():
                    ref_c = read_in_budget(lambda rs: read(ref_model, ref_tok, rs), used,
                                           scheme, None, statistic=cfg.statistic)
    else:
        model_name = cfg.model or cfg.teacher
        work = cfg.work_dir or str(Path("runs") / "forensics-api")

        def ask(ps):
            return query_endpoint(ps, cfg.suspect, cfg.api_key, model_name, work,
                                  cfg.max_tokens, cfg.temperature, concurrency=cfg.concurrency,
                                  progress=progress, top_logprobs=cfg.top_logprobs)

        def count(answers) -> int:  # disagree: the tuples before the clean teacher's filter
            c = answer_candidates(answers, ttok, scheme)
            if cfg.statistic == "mass":
                return mass_count(c, "global")
            return scored_count(c, scheme, "global", scheme.global_key)

        answers = budgeted(ask, rows, count, cfg.budget_tokens, round_size=4 * cfg.concurrency)
        judge = clean_teacher(cfg, ttok, scheme) if cfg.statistic == "disagree" else None

        def candidates(rs) -> Candidates:
            c = answer_candidates(rs, ttok, scheme)
            return c if judge is None else disagreeing(c, judge.top1(rs, progress))

        c = candidates(answers)
        c.info["queries"] = len(answers)
        missing = sum(not a.logprobs for a in answers) if cfg.top_logprobs else 0
        if missing:
            note = (f"{missing} of {len(answers)} answers carry no logprobs: the endpoint did "
                    f"not return them, or {work}/answers.jsonl kept answers of a run without "
                    "--top-logprobs (use a fresh --work-dir)")
            if missing == len(answers) and cfg.statistic == "mass":
                raise ValueError(note)
            notes.append(note)
        ref_name = cfg.reference or OTHER_SHIPPED.get(cfg.teacher)
        ref_c = None
        if ref_name is not None:
            ref_rows = generate_locally(answers, ref_name, cfg.max_tokens, cfg.temperature,
                                        top_logprobs=cfg.top_logprobs)
            ref_c = candidates(ref_rows)
    v = verdict_for(c, scheme, accounts, mode=cfg.mode, suspect=cfg.suspect,
                    clusters=cfg.clusters, n_controls=cfg.controls, alpha=cfg.alpha,
                    tamper_alpha=cfg.tamper_alpha, min_shift=cfg.min_shift,
                    reference=ref_name, reference_candidates=ref_c, statistic=cfg.statistic)
    v.elapsed_s = time.perf_counter() - t0
    v.notes = notes + v.notes
    return v
