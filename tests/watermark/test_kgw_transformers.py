"""The `transformers` KGW construction against transformers' own processor and detector."""

import numpy as np
import pytest
import torch
from transformers import WatermarkDetector

from distillery.engine import GenerationRequest, SamplingParams
from distillery.watermark import TRANSFORMERS_DEFAULT_KEY, TransformersKGW, detect_ids, make_scheme

PROMPTS = [[1, 504, 3312, 88], [1, 9045, 17, 2211, 640], [1, 77, 78], [1, 30001, 12, 5]]
SEEDINGS = [("lefthash", 1), ("selfhash", 2)]
# selfhash tries 40 candidates per step with a 49k randperm each: keep its texts short
N_TOKENS = {"lefthash": 80, "selfhash": 50}


def _scheme(engine, seeding, width, **kw):
    return TransformersKGW(vocab_size=engine.model.config.vocab_size, seeding=seeding,
                           context_width=width, hashing_key=TRANSFORMERS_DEFAULT_KEY, **kw)


def _hf_generate(engine, prompt, scheme, **kw):
    out = engine.model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt),
                                dtype=torch.long), watermarking_config=scheme.watermarking_config(),
                                pad_token_id=engine.pad_id, **kw)
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize(("seeding", "width"), SEEDINGS)
def test_greedy_marked_output_equals_transformers_generate(tiny_engine, seeding, width):
    """Same logits, same green lists, same bias: the marked greedy tokens are identical."""
    scheme = _scheme(tiny_engine, seeding, width)
    changed = 0
    for prompt in PROMPTS[:2]:
        ours = tiny_engine.generate([GenerationRequest(
            prompt, scheme.apply(SamplingParams(max_tokens=20, temperature=0)))])[0]
        theirs = _hf_generate(tiny_engine, prompt, scheme, do_sample=False, max_new_tokens=20)
        assert ours.choices[0].token_ids == theirs[: len(ours.choices[0].token_ids)]
        plain = tiny_engine.generate([GenerationRequest(
            prompt, SamplingParams(max_tokens=30, temperature=0))])[0]
        changed += plain.choices[0].token_ids != ours.choices[0].token_ids
    assert changed, "the watermark changed no greedy output: the comparison proves nothing"


@pytest.mark.parametrize(("seeding", "width"), SEEDINGS)
def test_transformers_marked_text_is_detected_here(tiny_engine, seeding, width):
    """Counts equal transformers' WatermarkDetector exactly (de-duplication: see dedup_rows)."""
    scheme = _scheme(tiny_engine, seeding, width, delta=4.0)
    torch.manual_seed(0)
    n = N_TOKENS[seeding]
    for prompt in PROMPTS[:2]:
        ids = _hf_generate(tiny_engine, prompt, scheme, do_sample=True, max_new_tokens=n,
                           min_new_tokens=n)
        for dedup in (False, True):
            theirs = WatermarkDetector(tiny_engine.model.config, "cpu",
                                       scheme.watermarking_config(),
                                       ignore_repeated_ngrams=dedup)(torch.tensor([ids]),
                                                                     return_dict=True)
            ours = detect_ids(ids, scheme, dedup=dedup)
            if dedup and seeding == "selfhash":
                # we de-duplicate on the min-hash seed, stricter than transformers' n-grams
                assert ours.n_scored <= theirs.num_tokens_scored[0]
                continue
            assert ours.n_scored == theirs.num_tokens_scored[0]
            assert ours.score == theirs.num_green_tokens[0]
        assert ours.p_value < 1e-4


@pytest.mark.parametrize(("seeding", "width"), SEEDINGS)
def test_text_marked_here_is_detected_by_transformers(tiny_engine, ring, seeding, width):
    """An account-keyed transformers scheme: its WatermarkingConfig carries the derived key."""
    scheme = make_scheme("kgw", ring, account="alice", construction="transformers",
                         vocab_size=tiny_engine.model.config.vocab_size, seeding=seeding,
                         context_width=width, delta=4.0)
    assert scheme.hashing_key != TRANSFORMERS_DEFAULT_KEY
    n = N_TOKENS[seeding]
    reqs = [GenerationRequest(p, scheme.apply(SamplingParams(max_tokens=n, seed=i)))
            for i, p in enumerate(PROMPTS[:2])]
    detector = WatermarkDetector(tiny_engine.model.config, "cpu", scheme.watermarking_config())
    for r in tiny_engine.generate(reqs):
        ids = r.choices[0].token_ids
        assert len(ids) > n // 2
        theirs = detector(torch.tensor([ids]), return_dict=True)
        assert theirs.z_score[0] > 4
        ours = detect_ids(ids, scheme, dedup=False)
        assert ours.n_scored == theirs.num_tokens_scored[0]
        assert ours.z == pytest.approx(theirs.z_score[0])
        assert detect_ids(ids, scheme).p_value < 1e-4


def test_other_hashing_key_does_not_detect(tiny_engine, ring):
    marked = _scheme(tiny_engine, "lefthash", 1, delta=4.0)
    ids = _hf_generate(tiny_engine, PROMPTS[0], marked, do_sample=True, max_new_tokens=80)
    other = make_scheme("kgw", ring, account="bob", construction="transformers",
                        vocab_size=tiny_engine.model.config.vocab_size)
    assert detect_ids(ids, other).p_value > 1e-3


def test_construction_arguments_are_checked(tiny_engine, ring):
    with pytest.raises(ValueError, match="either key"):
        TransformersKGW(vocab_size=100)
    with pytest.raises(ValueError, match="seeding"):
        _scheme(tiny_engine, "middlehash", 1)
    with pytest.raises(ValueError, match="construction"):
        make_scheme("kgw", ring, construction="magic")
    with pytest.raises(ValueError, match="account"):
        _scheme(tiny_engine, "lefthash", 1).key_for("account")
    assert np.isfinite(detect_ids([5, 6], _scheme(tiny_engine, "lefthash", 1)).p_value)


@pytest.mark.parametrize("seeding", ["lefthash", "selfhash"])
@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_outcome_seed_is_the_seed_transformers_sets(seeding, width):
    """outcome_seeds (what de-duplication keys on) is the generator seed of transformers'
    set_seed, reduced to the 32 bits torch's CPU mt19937 reads; equal seeds, equal lists."""
    scheme = TransformersKGW(vocab_size=50_000, hashing_key=987_654_321, seeding=seeding,
                             context_width=width)
    proc = scheme.processor("cpu")
    tuples = np.random.default_rng(width).integers(0, 50_000, (30, scheme.window + 1))
    seeds = scheme.outcome_seeds(tuples)
    for row, seed in zip(tuples, seeds.tolist(), strict=True):
        seq = torch.tensor(row if seeding == "selfhash" else row[:-1])
        proc.set_seed(seq)
        assert proc.rng.initial_seed() & 0xFFFFFFFF == seed
        green = set(proc._get_greenlist_ids(seq).tolist())
        assert (row[-1] in green) == bool(scheme.score_tok(row[None, :-1], row[-1:],
                                                           [scheme.global_key])[0, 0])
    g = torch.Generator().manual_seed(5)
    a = torch.randperm(100, generator=g)
    assert torch.equal(a, torch.randperm(100, generator=g.manual_seed(5 + (1 << 32))))


@pytest.mark.parametrize("width", [2, 3, 4])
def test_lefthash_dedup_keys_on_the_last_token_only(width):
    """Windows that differ before their last token share one green list: scored once."""
    scheme = TransformersKGW(vocab_size=1000, hashing_key=12345, context_width=width)
    rng = np.random.default_rng(width)
    ids = np.concatenate([np.r_[rng.integers(10, 1000, width - 1), 3, 4] for _ in range(40)])
    r = detect_ids(ids, scheme)
    assert r.n_scored == len(set(zip(ids[width - 1:-1].tolist(), ids[width:].tolist(),
                                     strict=True)))
    assert detect_ids(ids, scheme, dedup=False).n_scored == len(ids) - width
