"""Harvested rows -> student training examples (chat format, response-only labels, top-k).

Each example is: the prompt in the student's own chat format (`format_chat`), then the
teacher's answer and the student's end token. Labels cover the answer and the end token only,
set by span (never by token id: SmolLM2's pad id is its end-of-turn id, so masking by id would
also mask the real end and the student would never learn to stop).

When the student shares the teacher's tokenizer and the row carries top-k logprobs, the teacher
tokens are mapped to student ids and kept for the sparse KD loss.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from distillery.distill.losses import IGNORE
from distillery.models.chat import format_chat, uses_plain_template

log = logging.getLogger(__name__)


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    # sparse KD targets: (position of the label, student ids (K,), teacher logprobs (K,))
    topk: list[tuple[int, list[int], list[float]]] | None = None


def split_rows(rows: list[dict], heldout_fraction: float) -> tuple[list[dict], list[dict]]:
    """Deterministic train / held-out split by prompt hash (the same split in every stage)."""
    cut = int(heldout_fraction * 10_000)
    held = [r for r in rows if int(r["prompt_hash"][:8], 16) % 10_000 < cut]
    train = [r for r in rows if int(r["prompt_hash"][:8], 16) % 10_000 >= cut]
    return train, held


def end_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that ends the student's answer: <|im_end|> for SmolLM2, <eos> for Gemma."""
    return tokenizer.eos_token_id


def answer_text(tokenizer: PreTrainedTokenizerBase, response: str) -> str:
    """The plain template renders "Assistant: {answer}": the answer follows a space."""
    return " " + response.lstrip() if uses_plain_template(tokenizer) else response


class VocabMap:
    """Teacher token text (as an OpenAI-compatible API returns it) -> student token id."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        seen: dict[str, int] = {}
        dup: set[str] = set()
        for i, t in enumerate(texts):
            if "\ufffd" in t:  # partial UTF-8 byte tokens decode ambiguously: unusable
                continue
            if t in seen:
                dup.add(t)
            else:
                seen[t] = i
        self.ids = {t: i for t, i in seen.items() if t not in dup}

    def get(self, token: str) -> int | None:
        if token.startswith("token_id:"):  # vLLM's return_tokens_as_token_ids
            return int(token.split(":", 1)[1])
        return self.ids.get(token)


def encode_row(row: dict, tokenizer: PreTrainedTokenizerBase, max_len: int,
               vocab: VocabMap | None = None) -> Example | None:
    """One harvested row -> Example (None if the prompt alone does not fit max_len)."""
    prompt_ids = tokenizer.encode(format_chat(tokenizer, row["messages"]))
    resp_ids = tokenizer.encode(answer_text(tokenizer, row["response"]), add_special_tokens=False)
    target = [*resp_ids, end_token_id(tokenizer)]
    if len(prompt_ids) + 8 > max_len:
        return None
    target = target[: max_len - len(prompt_ids)]
    ids = prompt_ids + target
    labels = [IGNORE] * len(prompt_ids) + target
    topk = None
    if vocab is not None and row.get("logprobs"):
        topk = _align_topk(row["logprobs"], resp_ids, len(prompt_ids), len(target), vocab)
    return Example(ids, labels, topk)


def _align_topk(logprobs: list[dict], resp_ids: list[int], offset: int, n_target: int,
                vocab: VocabMap) -> list[tuple[int, list[int], list[float]]] | None:
    """Teacher positions aligned to the student's labels, or None when tokenizations differ."""
    chosen = [vocab.get(t["token"]) for t in logprobs[: len(resp_ids)]]
    if chosen != resp_ids:
        return None
    out = []
    for i, t in enumerate(logprobs[:n_target]):
        alts = [(vocab.get(a["token"]), a["logprob"]) for a in t.get("top", [])]
        alts = [(j, lp) for j, lp in alts if j is not None]
        if alts:
            out.append((offset + i, [j for j, _ in alts], [lp for _, lp in alts]))
    return out or None


def encode_rows(rows: list[dict], tokenizer: PreTrainedTokenizerBase, max_len: int,
                use_topk: bool = False) -> list[Example]:
    vocab = VocabMap(tokenizer) if use_topk else None
    out = [e for r in rows if (e := encode_row(r, tokenizer, max_len, vocab)) is not None]
    if len(out) < len(rows):
        log.warning("%d rows dropped: prompt longer than max_len=%d", len(rows) - len(out),
                    max_len)
    if use_topk:
        n = sum(e.topk is not None for e in out)
        log.info("top-k KD targets for %d of %d examples", n, len(out))
        if n == 0:
            raise ValueError("no row's top-k logprobs align with the student's tokenizer: "
                             "sparse KD needs a student sharing the teacher's tokenizer and a "
                             "dataset harvested with --top-logprobs; use kd_weight = 0")
    return out


def collate(batch: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors; padding is masked by attention and IGNORE labels, not by id."""
    T = max(len(e.input_ids) for e in batch)
    B = len(batch)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    attn = torch.zeros((B, T), dtype=torch.long)
    labels = torch.full((B, T), IGNORE, dtype=torch.long)
    for b, e in enumerate(batch):
        n = len(e.input_ids)
        ids[b, :n] = torch.tensor(e.input_ids)
        attn[b, :n] = 1
        labels[b, :n] = torch.tensor(e.labels)
    out = {"input_ids": ids, "attention_mask": attn, "labels": labels}
    rows = [(b, pos, j, lp) for b, e in enumerate(batch) for pos, j, lp in (e.topk or [])]
    if rows:
        K = max(len(j) for *_, j, _ in rows)
        n = len(rows)
        tid = torch.zeros((n, K), dtype=torch.long)
        tlp = torch.zeros((n, K))
        mask = torch.zeros((n, K), dtype=torch.bool)
        for r, (_, _, j, lp) in enumerate(rows):
            tid[r, : len(j)] = torch.tensor(j)
            tlp[r, : len(lp)] = torch.tensor(lp)
            mask[r, : len(j)] = True
        # the logit that predicts label position p sits at p - 1
        out["kd_b"] = torch.tensor([b for b, *_ in rows])
        out["kd_t"] = torch.tensor([pos - 1 for _, pos, *_ in rows])
        out["kd_ids"], out["kd_lp"], out["kd_mask"] = tid, tlp, mask
    return out


def batches(examples: list[Example], batch_size: int, seed: int, epoch: int,
            group: int = 16) -> list[list[int]]:
    """The batches of one epoch (indices), a pure function of (seed, epoch): resumable.

    Grouped by length (as transformers' `group_by_length`): the shuffled examples are cut into
    groups of `group` batches, each group is sorted by length before it is cut into batches,
    and the batches are shuffled, so a batch pads little and the order stays random.
    group=1 is a plain shuffle.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(examples)))
    rng.shuffle(order)
    span = batch_size * max(1, group)
    out = []
    for g in range(0, len(order), span):
        chunk = sorted(order[g : g + span], key=lambda i: len(examples[i].input_ids))
        out += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    if group > 1:
        rng.shuffle(out)
    return out
