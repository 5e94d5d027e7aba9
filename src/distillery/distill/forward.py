"""Forward passes that compute logits only where a loss reads them.

A student's LM head is most of its cost: Gemma-3-270M has 170M of its 270M parameters in a
262k-token embedding, so the (B, T, V) logits of a batch cost more than the transformer body
and hold gigabytes. Training and evaluation only read the positions that predict an answer
token (labels != IGNORE): the body runs on the whole batch, the head only on those rows.
`answer_logits` equals `model(...).logits` at those positions (tested), for plain and
LoRA-wrapped (peft) models; a model whose head it cannot find falls back to the full forward.
"""

from __future__ import annotations

import torch

from distillery.distill.losses import IGNORE


def _body_and_head(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = getattr(base, getattr(base, "base_model_prefix", ""), None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if body is None or head is None or getattr(base.config, "logit_scale", None):
        return base, None, None
    return base, body, head


def _hook_context(input_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T, 2): the tokens at t-1 and t, what a logits hook sees at position t."""
    return torch.stack([torch.roll(input_ids, 1, dims=1), input_ids], dim=-1)


def answer_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  labels: torch.Tensor, logits_hook=None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (logits (N, V), targets (N,), keep (B, T-1)): logits at every position t whose
    next token labels[:, t+1] is labelled, in row-major order of keep. logits_hook(logits,
    context (N, 2): the tokens at t-1 and t) rewrites them as a served model would (a
    neutraliser, forensics/scrub.py)."""
    keep = labels[:, 1:] != IGNORE
    select = torch.nn.functional.pad(keep, (0, 1), value=False)  # position t predicts t+1
    (logits,) = _head_chunks(model, input_ids, attention_mask, select, logits_hook, chunk=None)
    return logits, labels[:, 1:][keep], keep


def _head_chunks(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 select: torch.Tensor, logits_hook=None, chunk: int | None = 1024,
                 capped: bool = True):
    """The logits (n, V) at the selected positions (row-major), a chunk at a time: (N, V)
    logits of a long batch under a 262k-token vocabulary would hold gigabytes (chunk=None:
    all in one, for a loss that needs them together). capped=False skips Gemma's final
    soft-capping (monotone: an argmax does not need it)."""
    base, body, head = _body_and_head(model)
    ctx = _hook_context(input_ids)[select]  # (N, 2)
    if body is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[select]
        yield logits_hook(logits, ctx) if logits_hook else logits
        return
    hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[select]
    cap = getattr(base.config, "final_logit_softcapping", None) if capped else None
    n = len(hidden)
    step = chunk or max(n, 1)
    for lo in range(0, max(n, 1), step):  # at least once: no selected position yields (0, V)
        logits = head(hidden[lo: lo + step])
        if cap:
            logits = torch.tanh(logits / cap) * cap
        if logits_hook is not None:
            logits = logits_hook(logits, ctx[lo: lo + step])
        yield logits


def next_token_argmax(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      select: torch.Tensor, logits_hook=None, chunk: int = 1024) -> torch.Tensor:
    """(B, T) -> (N,) the model's top-1 next token at each selected position (row-major).
    logits_hook(logits (n, V), context (n, 2): the last two tokens up to each position) may
    transform the logits first."""
    out = [lg.argmax(-1) for lg in _head_chunks(model, input_ids, attention_mask, select,
                                                 logits_hook, chunk, capped=False)]
    return torch.cat(out)


def next_token_topk(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    select: torch.Tensor, k: int, logits_hook=None, chunk: int = 1024
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) -> (probabilities (N, k), token ids (N, k)): the model's k likeliest next tokens
    at each selected position, most likely first (column 0 is the argmax)."""
    probs, ids = [], []
    for lg in _head_chunks(model, input_ids, attention_mask, select, logits_hook, chunk):
        p, i = lg.float().softmax(-1).topk(k, dim=-1)
        probs.append(p)
        ids.append(i)
    return torch.cat(probs), torch.cat(ids)
