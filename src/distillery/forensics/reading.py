"""Open-weights test, "reading mode" (Sander et al. 2024, Sec. 4): our marked text through the
suspect, its top-1 next-token prediction at every answer position, as candidates.

Each text is fed the way a student was trained on it (distill/data.py): the prompt in the
suspect's chat format, then the answer. At teacher position t of the answer the candidate is
(teacher tokens t-w..t-1, the suspect's prediction after the context ending there); on our
marked text, all (w + 1)-grams of the text fed in (answer and prompt, in teacher tokens) are
excluded at test time, so a clean model that predicts what the text says next scores nothing.
Text that no tested key marked (fresh teacher answers) needs no exclusion (exclude_text=False):
nothing in it depends on a key, and the tuples it would drop are where a student that learned
the key's bias shows it most.

One forward pass per batch of texts: it runs at the model's forward speed, not at generation
speed, and computes the LM head only at the scored positions, a chunk at a time (Gemma's
262k-token head is most of its cost; distill/forward.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from transformers import PreTrainedTokenizerBase

from distillery.distill.data import answer_text
from distillery.distill.forward import next_token_argmax, next_token_topk
from distillery.forensics.evidence import Candidates, merge_duplicates
from distillery.forensics.tokens import TokenMap, boundaries, same_tokenizer, token_bytes
from distillery.models.chat import format_chat
from distillery.watermark.scheme import WatermarkScheme

log = logging.getLogger(__name__)

# A transform of the suspect's logits before the argmax, e.g. a thief's inference-time
# neutralisation (scrub.py): (logits (N, V), last two context tokens (N, 2)) -> (N, V).
LogitsHook = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TextRow:
    """One of our texts: the prompt as chat messages ([] for raw text) and the marked answer;
    or, in API mode, a suspect's answer to the prompt, with the logprobs it returned."""

    messages: tuple[dict, ...]
    response: str
    # one per generated token, as harvested (harvester.logprobs_to_rows): {"token", "logprob",
    # "top": [{"token", "logprob"}, ...]}; None when the endpoint was not asked for them
    logprobs: tuple[dict, ...] | None = None


def text_tuples(ids: np.ndarray, width: int) -> np.ndarray:
    """(n,) -> (n - width, width + 1) every (window, token) tuple of a text."""
    if len(ids) <= width:
        return np.zeros((0, width + 1), dtype=np.int64)
    return sliding_window_view(np.asarray(ids, dtype=np.int64), width + 1)


def _teacher_ids(tok: PreTrainedTokenizerBase, text: str) -> np.ndarray:
    return np.asarray(tok.encode(text, add_special_tokens=False), dtype=np.int64)


@dataclass
class _Prepared:
    input_ids: list[int]  # suspect: prompt + answer (truncated to max_len)
    want: np.ndarray  # suspect positions whose next-token prediction is read
    t_pos: np.ndarray  # the teacher answer positions those predictions are scored at
    teacher: np.ndarray  # teacher ids of the answer
    prompt_tuples: np.ndarray


class Reader:
    """Suspect model + tokenizers -> candidates for a list of our texts."""

    def __init__(self, model, tokenizer: PreTrainedTokenizerBase,
                 teacher_tokenizer: PreTrainedTokenizerBase, scheme: WatermarkScheme,
                 max_len: int = 512, batch_size: int = 8, logits_hook: LogitsHook | None = None,
                 top_k: int = 0, exclude_text: bool = True):
        """top_k > 0: also keep the suspect's k likeliest next tokens and their probabilities
        at each position (the green-mass statistic, evidence.mass_results). exclude_text:
        False only for text no tested key marked (see above)."""
        self.model, self.tok, self.ttok, self.scheme = model, tokenizer, teacher_tokenizer, scheme
        self.max_len, self.batch_size, self.logits_hook = max_len, batch_size, logits_hook
        self.top_k, self.exclude_text = top_k, exclude_text
        self.identity = same_tokenizer(tokenizer, teacher_tokenizer)
        if not self.identity:
            self.tmap = TokenMap(tokenizer, teacher_tokenizer)
            self.sbytes, self.tbytes = token_bytes(tokenizer), token_bytes(teacher_tokenizer)

    def _prepare(self, row: TextRow, lost: dict) -> _Prepared | None:
        w, start = self.scheme.window, self.scheme.start
        if row.messages:
            prompt = self.tok.encode(format_chat(self.tok, list(row.messages)))
            s_text = answer_text(self.tok, row.response)
            user = "\n".join(m["content"] for m in row.messages)
            prompt_tuples = text_tuples(_teacher_ids(self.ttok, user), w) if \
                self.exclude_text else np.zeros((0, w + 1), np.int64)
        else:
            prompt = [self.tok.bos_token_id] if self.tok.bos_token_id is not None else []
            s_text, prompt_tuples = row.response, np.zeros((0, w + 1), np.int64)
        teacher = _teacher_ids(self.ttok, row.response)
        answer = self.tok.encode(s_text, add_special_tokens=False)
        room = self.max_len - len(prompt)
        if room <= start or not prompt:
            lost["rows_too_long"] = lost.get("rows_too_long", 0) + 1
            return None
        P = len(prompt)
        if self.identity and s_text == row.response:
            t_pos = np.arange(start, min(len(teacher), room))
            want = P + t_pos - 1  # logits at j predict token j + 1
        else:
            t_pos, want = self._align(row.response, s_text, teacher, answer, room, lost)
            want = P + want - 1
        lost["positions_total"] = lost.get("positions_total", 0) + max(len(teacher) - start, 0)
        return _Prepared([*prompt, *answer[:room]], want, t_pos, teacher, prompt_tuples)

    def _align(self, response: str, s_text: str, teacher: np.ndarray, answer: list[int],
               room: int, lost: dict) -> tuple[np.ndarray, np.ndarray]:
        """Teacher positions t >= start where a suspect token starts at the same byte ->
        (t (k,), suspect answer index j (k,)) with j < room."""
        tb = boundaries(teacher, self.tbytes, response.encode())
        core = response.lstrip()
        prefix = s_text[: len(s_text) - len(core)] if s_text.endswith(core) else None
        sb = boundaries(answer, self.sbytes, s_text.encode())
        if tb is None or sb is None or prefix is None:
            lost["rows_unaligned"] = lost.get("rows_unaligned", 0) + 1
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        shift = len(prefix.encode()) - (len(response.encode()) - len(core.encode()))
        t = np.arange(self.scheme.start, len(teacher))
        target = tb[t] + shift  # byte where teacher token t starts, in the suspect's text
        j = np.searchsorted(sb[:-1], target)
        ok = (j < len(answer)) & (sb[np.minimum(j, len(answer) - 1)] == target) & (j < room)
        return t[ok], j[ok]

    @torch.no_grad()
    def _read(self, rows: Sequence[TextRow], progress: bool, lost: dict
              ) -> Iterator[tuple[int, _Prepared, np.ndarray, np.ndarray | None,
                                  np.ndarray | None]]:
        """Each row read, shortest first -> (its index in rows, its preparation, the top-1 at
        its scored positions in teacher ids, and with top_k the top-k ids and probabilities
        (else None)). lost gets what was lost, "rows_read" and "tokens_read"."""
        prepared = [(i, p) for i, r in enumerate(rows) if (p := self._prepare(r, lost))]
        prepared.sort(key=lambda ip: len(ip[1].input_ids))
        lost["rows_read"], lost["tokens_read"] = len(prepared), 0
        batches = range(0, len(prepared), self.batch_size)
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="reading", unit="batch")
        dev = next(self.model.parameters()).device
        for lo in batches:
            batch = prepared[lo: lo + self.batch_size]
            T = max(len(p.input_ids) for _, p in batch)
            pad = self.tok.pad_token_id or 0
            ids = torch.full((len(batch), T), pad, dtype=torch.long)
            att = torch.zeros((len(batch), T), dtype=torch.long)
            sel = torch.zeros((len(batch), T), dtype=torch.bool)
            for b, (_, p) in enumerate(batch):
                ids[b, : len(p.input_ids)] = torch.tensor(p.input_ids)
                att[b, : len(p.input_ids)] = 1
                sel[b, torch.from_numpy(p.want)] = True
            lost["tokens_read"] += int(att.sum())
            top_ids = top_p = None
            if self.top_k:
                probs, top = next_token_topk(self.model, ids.to(dev), att.to(dev), sel.to(dev),
                                             self.top_k, self.logits_hook)
                top_ids, top_p = top.cpu().numpy().astype(np.int64), probs.cpu().numpy()
                preds = top_ids[:, 0]
            else:
                preds = next_token_argmax(self.model, ids.to(dev), att.to(dev), sel.to(dev),
                                          self.logits_hook).cpu().numpy()
            k = 0
            for i, p in batch:  # row-major order of `sel`: each row's `want`, increasing
                rows_k = slice(k, k + len(p.want))
                k += len(p.want)
                pred = preds[rows_k].astype(np.int64)
                tokens = pred if self.identity else self.tmap(pred)
                if top_ids is None:
                    yield i, p, tokens, None, None
                    continue
                t = top_ids[rows_k]
                t = t if self.identity else self.tmap(t.ravel()).reshape(t.shape)
                yield i, p, tokens, t, top_p[rows_k]

    def candidates(self, rows: Sequence[TextRow], progress: bool = False) -> Candidates:
        w, start = self.scheme.window, self.scheme.start
        lost: dict = {}
        parts = []
        for _, p, tokens, top_ids, top_p in self._read(rows, progress, lost):
            c = self._row_candidates(p, tokens, w, start)
            if top_ids is not None:
                c.top_tokens, c.top_probs = merge_duplicates(top_ids, top_p)
            parts.append(c)
        out = Candidates.concat(parts, w)
        out.n_rows, out.n_tokens = lost.pop("rows_read"), lost.pop("tokens_read")
        out.info = {**lost, "positions_scored": len(out), "text_excluded": self.exclude_text}
        return out

    def top1(self, rows: Sequence[TextRow], progress: bool = False) -> list[np.ndarray]:
        """Per row, the model's top-1 next token at each teacher answer position t >= start,
        in teacher ids; -1 where it was not read (past max_len, unaligned, not mapped)."""
        start = self.scheme.start
        out: list[np.ndarray | None] = [None] * len(rows)
        for i, p, tokens, _, _ in self._read(rows, progress, {}):
            out[i] = np.full(max(len(p.teacher) - start, 0), -1, np.int64)
            out[i][p.t_pos - start] = tokens
        return [o if o is not None else  # a row _prepare dropped: none of it was read
                np.full(max(len(_teacher_ids(self.ttok, r.response)) - start, 0), -1, np.int64)
                for o, r in zip(out, rows, strict=True)]

    def _row_candidates(self, p: _Prepared, tokens: np.ndarray, w: int, start: int
                        ) -> Candidates:
        is_global = self.scheme.global_positions(p.teacher)  # (n - start,)
        windows = sliding_window_view(p.teacher, w)[p.t_pos - w] if len(p.t_pos) else \
            np.zeros((0, w), np.int64)
        seen = np.concatenate([text_tuples(p.teacher, w), p.prompt_tuples]) if \
            self.exclude_text else p.prompt_tuples  # (empty then)
        return Candidates(np.ascontiguousarray(windows, dtype=np.int64), tokens,
                          is_global[p.t_pos - start], np.zeros(len(tokens), bool), seen)
