"""The engines' sparse sampling step (sampling.pick_sparse) picks what the dense one would.

Each case draws logits, runs the step both ways from generators in the same state, and
compares the tokens; it also counts the rows the sparse step decided (left to the dense step
are only the rows whose nucleus may reach past the candidates), so a sparse step that gives up
everywhere fails too.
"""

import pytest
import torch

from distillery.engine import SamplingParams
from distillery.engine.batch import Row
from distillery.engine.sampling import pick, pick_dense, pick_sparse
from distillery.watermark import KeyRing, make_scheme


class Tok:  # what pick needs of a tokenizer: the text of a logprob's token
    @staticmethod
    def decode(ids):
        return str(ids)


def rows_for(params: list[SamplingParams], seed: int) -> list[Row]:
    return [Row(0, i, [1], p, torch.Generator().manual_seed(seed * 1000 + i))
            for i, p in enumerate(params)]


def both(params, seqs, logits, seed):
    sparse = pick(rows_for(params, seed), seqs, logits, None, Tok)
    dense = pick_dense(rows_for(params, seed), seqs, logits, Tok)
    decided = int((pick_sparse(rows_for(params, seed), seqs, logits) >= 0).sum())
    return sparse, dense, decided


def peaked(b: int, V: int, g: torch.Generator, spread: float) -> torch.Tensor:
    """Logits like a language model's: a few strong candidates over a long tail."""
    x = torch.randn(b, V, generator=g) * 2
    x[:, :40] += torch.rand(b, 40, generator=g) * spread
    return x[:, torch.randperm(V, generator=g)]


@pytest.mark.parametrize("seeding", ["lefthash", "selfhash"])
@pytest.mark.parametrize("V", [1000, 49152])
def test_sparse_and_dense_steps_pick_the_same_tokens(seeding, V):
    ring = KeyRing({1: b"k" * 32})
    schemes = [make_scheme("kgw", ring, a, seeding=seeding, delta=d)
               for a, d in (("alice", 2.0), ("bob", 4.0))]
    g = torch.Generator().manual_seed(V)
    same = decided = total = 0
    for case in range(60):
        b = 12
        params = []
        for i in range(b):
            p = SamplingParams(temperature=[0, 0.7, 1.0, 1.3][i % 4],
                               top_p=[0.8, 0.95, 0.99][i % 3])
            if i % 5:
                schemes[i % 2].apply(p)
            params.append(p)
        seqs = torch.randint(0, V, (b, 6), generator=g)
        logits = peaked(b, V, g, spread=[4.0, 12.0, 25.0][case % 3])
        sparse, dense, n = both(params, seqs, logits, case)
        same += int((sparse == dense).sum())
        decided += n
        total += b
    assert same == total
    assert decided > 0.3 * total  # measured 0.62 and 0.42: the flattest third goes dense


def test_rows_the_sparse_step_cannot_decide_go_dense():
    """top-p 1, logprobs, a Gumbel sampler, a processor without bias_at, and a flat
    distribution whose nucleus is wider than the candidates: all decided densely, and the
    generators still advance by one draw per step."""
    ring = KeyRing({1: b"k" * 32})
    V = 2000
    g = torch.Generator().manual_seed(1)
    gumbel = make_scheme("gumbel", ring, "alice")
    params = [SamplingParams(temperature=0.7, top_p=1.0),
              SamplingParams(temperature=0.7, top_p=0.9, logprobs=True, top_logprobs=2),
              gumbel.apply(SamplingParams(temperature=0.7, top_p=0.9)),
              SamplingParams(temperature=0.7, top_p=0.9,
                             logits_processors=[lambda ids, x: x * 1.0]),
              SamplingParams(temperature=1.0, top_p=0.99)]
    seqs = torch.randint(0, V, (5, 6), generator=g)
    logits = torch.randn(5, V, generator=g) * 0.1  # flat: the nucleus holds ~1,980 tokens
    logits[:4, :10] += 20
    assert (pick_sparse(rows_for(params, 0), seqs, logits) < 0).all()
    rows = rows_for(params, 0)
    pick(rows, seqs, logits, None, Tok)
    ref = rows_for(params, 0)
    pick_dense(ref, seqs, logits, Tok)
    for r, s in zip(rows, ref, strict=True):
        assert torch.equal(r.generator.get_state(), s.generator.get_state())


def test_the_sparse_step_draws_once_per_row():
    ring = KeyRing({1: b"k" * 32})
    kgw = make_scheme("kgw", ring, "alice")
    V = 5000
    g = torch.Generator().manual_seed(2)
    params = [kgw.apply(SamplingParams(temperature=0.7, top_p=0.95)) for _ in range(4)]
    seqs = torch.randint(0, V, (4, 6), generator=g)
    logits = peaked(4, V, g, spread=20.0)
    rows, ref = rows_for(params, 3), rows_for(params, 3)
    assert (pick_sparse(rows, seqs, logits) >= 0).all()
    pick_dense(ref, seqs, logits, Tok)
    for r, s in zip(rows, ref, strict=True):
        assert torch.equal(r.generator.get_state(), s.generator.get_state())


def test_greedy_ties_take_the_first_index_as_argmax_does():
    V = 3000
    logits = torch.zeros(1, V)
    logits[0, [700, 50, 2000]] = 9.0
    p = [SamplingParams(temperature=0)]
    sparse, dense, decided = both(p, torch.zeros(1, 4, dtype=torch.long), logits, 0)
    assert decided == 1 and int(sparse) == int(dense) == 50
