import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from distillery.distill.losses import IGNORE, bits, response_ce_loss, topk_kl_loss


def test_zero_loss_for_identical_distributions():
    torch.manual_seed(0)
    V, N, K = 50, 6, 5
    logits = torch.randn(N, V)
    top_lp, top_ids = logits.log_softmax(-1).topk(K, dim=-1)
    mask = torch.ones(N, K, dtype=torch.bool)
    assert topk_kl_loss(logits, top_ids, top_lp, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_topk_kl_renormalises_the_teacher_support():
    # Teacher top-2 logprobs log(0.3), log(0.1) renormalise to (0.75, 0.25) on the support.
    s = torch.full((1, 4), -30.0)
    s[0, 1], s[0, 2] = math.log(0.75), math.log(0.25)
    ids = torch.tensor([[1, 2]])
    lp = torch.tensor([[math.log(0.3), math.log(0.1)]])
    m = torch.ones(1, 2, dtype=torch.bool)
    assert topk_kl_loss(s, ids, lp, m).item() == pytest.approx(0.0, abs=1e-6)
    s2 = s.clone()
    s2[0, 1], s2[0, 2] = s[0, 2], s[0, 1]
    expect = 0.75 * math.log(0.75 / 0.25) + 0.25 * math.log(0.25 / 0.75)
    assert topk_kl_loss(s2, ids, lp, m).item() == pytest.approx(expect, rel=1e-5)


def test_topk_kl_ignores_masked_alternatives_and_empty_rows():
    s = torch.randn(2, 10, requires_grad=True)
    ids = torch.tensor([[1, 2, 0], [3, 4, 5]])
    lp = torch.tensor([[-0.1, -2.0, 99.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    full = topk_kl_loss(s, ids, lp, mask)
    only = topk_kl_loss(s[:1], ids[:1, :2], lp[:1, :2], mask[:1, :2])
    assert full.item() == pytest.approx(only.item(), rel=1e-6)
    full.backward()
    assert s.grad is not None and torch.all(s.grad[1] == 0)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_topk_kl_is_never_negative(seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(4, 20, generator=g)
    lp = torch.randn(4, 5, generator=g).log_softmax(-1)
    ids = torch.stack([torch.randperm(20, generator=g)[:5] for _ in range(4)])
    assert topk_kl_loss(s, ids, lp, torch.ones(4, 5, dtype=torch.bool)).item() >= -1e-6


def test_response_ce_counts_only_labelled_tokens():
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 7)
    labels = torch.tensor([[IGNORE, IGNORE, 3, 4, IGNORE]])
    lp = logits.log_softmax(-1)
    expect = -(lp[0, 1, 3] + lp[0, 2, 4]) / 2  # position t predicts t + 1
    assert response_ce_loss(logits, labels).item() == pytest.approx(expect.item(), rel=1e-5)
    assert bits(logits, labels).item() == pytest.approx(2 * expect.item() / math.log(2), rel=1e-5)
    none = torch.full_like(labels, IGNORE)
    assert response_ce_loss(logits, none).item() == 0.0
