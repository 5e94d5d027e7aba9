"""Distillation losses as pure functions (testable without a trainer).

Shapes: B batch, T sequence, V student vocabulary, K teacher top-k.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE = -100


def response_ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sequence-level KD (Kim & Rush 2016, eq. 10): cross-entropy on the teacher's answer.

    L = -(1/N) sum_{t in response} log p_S(y_t | y_<t, x), with N the number of response
    tokens. logits (B, T, V) predict position t+1 from t; labels (B, T) hold the token ids of
    the response (and its end token) and IGNORE on the prompt and on padding.
    """
    shift_logits = logits[:, :-1].reshape(-1, logits.size(-1)).float()  # (B(T-1), V)
    shift_labels = labels[:, 1:].reshape(-1)                           # (B(T-1),)
    if not (shift_labels != IGNORE).any():
        return shift_logits.sum() * 0.0
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE)


def topk_kl_loss(student_logits: torch.Tensor, teacher_ids: torch.Tensor,
                 teacher_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sparse KD on the teacher's top-k (renormalised top-k KL; cf. TRL GKD, DistillKit).

    With S the teacher's top-k support at a position, p_T(v) = exp(l_v) / sum_{u in S} exp(l_u)
    (the API's logprobs l renormalised on S) and q_S(v) = softmax of the student's logits
    restricted to S:
        KL(p_T || q_S) = sum_{v in S} p_T(v) (log p_T(v) - log q_S(v)),
    averaged over positions. student_logits (N, V) at the positions that predict each answer
    token; teacher_ids (N, K) student-vocabulary ids; teacher_logprobs (N, K); mask (N, K) is
    False where an alternative has no student id (dropped from S). Zero iff the two
    distributions agree on S; never negative.
    """
    valid = mask.any(-1)  # (N,)
    if not valid.any():
        return student_logits.sum() * 0.0
    s, ids, lp, m = student_logits[valid].float(), teacher_ids[valid], teacher_logprobs[valid], \
        mask[valid]
    neg = torch.finfo(s.dtype).min
    safe_ids = ids.clamp(min=0)
    s_on_support = s.gather(-1, safe_ids).masked_fill(~m, neg)           # (n, K)
    log_q = s_on_support.log_softmax(-1)
    log_p = lp.float().masked_fill(~m, neg).log_softmax(-1)               # renormalised
    p = log_p.exp() * m
    kl = (p * (log_p - log_q)).masked_fill(~m, 0.0).sum(-1)               # (n,)
    return kl.mean()


def bits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sequence bits of the labelled tokens: sum_t -log2 p(y_t). logits (B,T,V) -> (B,)."""
    lp = logits[:, :-1].float().log_softmax(-1)                           # (B, T-1, V)
    lab = labels[:, 1:]
    keep = lab != IGNORE
    tok = lp.gather(-1, lab.clamp(min=0)[..., None])[..., 0]               # (B, T-1)
    return -(tok * keep).sum(-1) / math.log(2)
