"""The hash constructions: generation and detection agree, layers, distortion-freeness."""

import numpy as np
import pytest
import torch
from scipy import stats as sps

from distillery.engine import GenerationRequest, SamplingParams
from distillery.watermark import KGW, Gumbel, detect_ids, make_scheme, prf

V = 5000


def _row_key(scheme, seq):
    """Which key marks the next position of a (T,) sequence, per the layer split."""
    is_global, seeds = scheme.row_layers_t(seq[None])
    assert int(seeds[0]) == prf.as_int64(scheme.seed(scheme.key_for(
        "global" if is_global[0] else "account")))
    return scheme.global_key if is_global[0] else scheme.account_key


@pytest.mark.parametrize("seeding", ["lefthash", "selfhash"])
@pytest.mark.parametrize("width", [1, 3])
def test_generation_side_green_lists_equal_detection_side(ring, seeding, width):
    scheme = make_scheme("kgw", ring, account="alice", seeding=seeding, context_width=width)
    seqs = torch.randint(0, V, (16, 9), generator=torch.Generator().manual_seed(width))
    green = scheme.green_mask_t(seqs, V).numpy()  # (16, V)
    for i in range(16):
        w = seqs[i, 9 - scheme.window:].numpy()
        key = _row_key(scheme, seqs[i])
        detect_side = scheme.score_tok(np.tile(w, (V, 1)), np.arange(V), [key])
        assert np.array_equal(detect_side[0].astype(bool), green[i])
    assert abs(green.mean() - 0.25) < 0.01


def test_gumbel_uniforms_equal_detection_side(ring):
    scheme = make_scheme("gumbel", ring, account="alice", context_width=2)
    seqs = torch.randint(0, V, (8, 5), generator=torch.Generator().manual_seed(0))
    r = scheme.uniforms_t(seqs, V).numpy()
    for i in range(8):
        scores = scheme.score_tok(np.tile(seqs[i, 3:].numpy(), (V, 1)), np.arange(V),
                                  [_row_key(scheme, seqs[i])])[0]
        assert np.allclose(scores, -np.log1p(-r[i]), rtol=1e-12)


@pytest.mark.parametrize("scale", [0.01, 1.0, 4.0, 30.0])  # flat .. peaked
@pytest.mark.parametrize("vocab", [40, V])
def test_gumbel_sampler_equals_the_full_race(ring, scale, vocab):
    from distillery.engine.sampling import top_p_mask

    scheme = make_scheme("gumbel", ring, account="alice", context_width=2)
    g = torch.Generator().manual_seed(int(scale * 100) + vocab)
    for trial in range(20):
        ids = torch.randint(0, vocab, (16, 6), generator=g)
        logits = torch.randn(16, vocab, generator=g) * scale
        if trial % 3 == 1:  # -inf on a random half of the vocabulary
            logits[:, torch.randperm(vocab, generator=g)[: vocab // 2]] = -torch.inf
        elif trial % 3 == 2:  # a real top-p nucleus (inside the raced tokens when peaked)
            logits = top_p_mask(logits, torch.full((16, 1), 0.9))
        full = (scheme.uniforms_t(ids, vocab).log() / logits.double().softmax(-1)).argmax(-1)
        assert torch.equal(scheme(ids, logits), full)


def test_layer_split_follows_global_share(ring):
    ids = np.random.default_rng(0).integers(0, V, 20000)
    assert abs(make_scheme("kgw", ring, account="a").global_positions(ids).mean() - 0.5) < 0.02
    share = make_scheme("kgw", ring, account="a", global_share=0.8).global_positions(ids)
    assert abs(share.mean() - 0.8) < 0.02
    assert make_scheme("kgw", ring).global_positions(ids).all()  # no account key: one layer


@pytest.mark.parametrize("name", ["kgw", "gumbel"])
def test_marked_output_is_detected_with_its_own_keys_only(tiny_engine, ring, name):
    alice = make_scheme(name, ring, account="alice")
    bob = make_scheme(name, ring, account="bob")
    reqs = [GenerationRequest([1, 400 + i, 900 + i, 31], alice.apply(
        SamplingParams(max_tokens=120, seed=i, top_p=0.95))) for i in range(3)]
    for r in tiny_engine.generate(reqs):
        ids = r.choices[0].token_ids
        assert detect_ids(ids, alice, "global").p_value < 1e-6
        assert detect_ids(ids, alice, "account").p_value < 1e-6
        assert detect_ids(ids, bob, "account").p_value > 1e-3
        # the global layer is the provider's: bob's scheme shares it
        assert detect_ids(ids, bob, "global").p_value < 1e-6


def test_gumbel_sampling_is_distortion_free(ring):
    """Over contexts, the Gumbel-max choice follows p exactly (chi-square goodness of fit)."""
    p = torch.tensor([0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.02, 0.0])
    logits = p.log()[None].expand(4000, -1)
    scheme = make_scheme("gumbel", ring)
    ctx = torch.randint(0, 50000, (4000, 3), generator=torch.Generator().manual_seed(0))
    picks = scheme(ctx, logits).numpy()
    counts = np.bincount(picks, minlength=8)
    assert counts[7] == 0  # a masked (p = 0) token is never emitted
    assert sps.chisquare(counts[:7], 4000 * p[:7].numpy()).pvalue > 1e-3
    assert np.array_equal(scheme(ctx, logits).numpy(), picks)  # deterministic given context


def test_kgw_adds_delta_to_green_logits_only(ring):
    scheme = make_scheme("kgw", ring, delta=3.0)
    ids = torch.randint(0, V, (2, 4))
    out = scheme(ids, torch.zeros(2, V))
    assert set(out.unique().tolist()) == {0.0, 3.0}
    assert torch.equal(out == 3.0, scheme.green_mask_t(ids, V))


def test_apply_adds_processor_or_sampler(ring):
    kgw, gumbel = make_scheme("kgw", ring), make_scheme("gumbel", ring)
    assert kgw.apply(SamplingParams()).logits_processors == [kgw]
    assert gumbel.apply(SamplingParams()).sampler is gumbel
    with pytest.raises(ValueError, match="cannot stack"):
        gumbel.apply(SamplingParams(sampler=make_scheme("gumbel", ring, account="x")))


def test_bad_parameters_say_what_to_use(ring):
    with pytest.raises(ValueError, match="kgw, gumbel"):
        make_scheme("aaronson", ring)
    with pytest.raises(ValueError, match="gamma"):
        make_scheme("kgw", ring, gamma=1.5)
    with pytest.raises(ValueError, match="context_width"):
        make_scheme("gumbel", ring, context_width=0)
    with pytest.raises(ValueError, match="bad parameters"):
        make_scheme("gumbel", ring, delta=2.0)
    with pytest.raises(ValueError, match="account key"):
        KGW(ring.global_key(), ring.global_key())
    assert isinstance(make_scheme("gumbel", ring, account="a"), Gumbel)


def test_key_ids_are_public_and_complete(ring):
    ids = make_scheme("kgw", ring, account="alice").key_ids
    assert ids == {"scheme": "kgw", "global": ring.global_key().key_id,
                   "account": ring.account_key("alice").key_id}


@pytest.mark.parametrize("seeding", ["lefthash", "selfhash"])
@pytest.mark.parametrize("vocab", [50, 20000])  # one chunk; several, the last one partial
def test_kgw_processor_adds_delta_exactly_on_the_green_list(ring, seeding, vocab):
    scheme = make_scheme("kgw", ring, account="alice", seeding=seeding)
    assert scheme.CHUNK_ELEMENTS // 7 < 20000  # several chunks at 20,000
    g = torch.Generator().manual_seed(vocab)
    ids = torch.randint(0, vocab, (7, 12), generator=g)
    x = torch.randn(7, vocab, generator=g)
    assert torch.equal(scheme(ids, x), x + scheme.delta * scheme.green_mask_t(ids, vocab))


@pytest.mark.parametrize("seeding", ["lefthash", "selfhash"])
@pytest.mark.parametrize("account", ["alice", None])
def test_kgw_bias_at_given_tokens_is_what_the_processor_adds_there(ring, seeding, account):
    """The engine's sparse step asks the bias of a few candidates per row (bias_at)."""
    scheme = make_scheme("kgw", ring, account=account, seeding=seeding)
    vocab = 3000
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, vocab, (6, 9), generator=g)
    x = torch.randn(6, vocab, generator=g)
    cand = torch.randint(0, vocab, (6, 40), generator=g)
    bias = scheme.bias_at(ids, vocab, cand)
    assert torch.equal(x.gather(1, cand) + bias, scheme(ids, x).gather(1, cand))
    assert set(bias.unique().tolist()) == {0.0, scheme.max_bias}


@pytest.mark.parametrize("share", [0.5, 1.0])
@pytest.mark.parametrize("window", [0, 1, 2, 3])
def test_keyed_context_numpy_path_equals_the_torch_path(ring, share, window):
    from distillery.watermark import prf

    scheme = make_scheme("kgw", ring, account="alice", global_share=share)
    ids = torch.randint(0, V, (9, 7), generator=torch.Generator().manual_seed(window))
    torch_path = prf.keyed_t(prf.window_hash_t(ids[:, 7 - window:]), scheme.row_layers_t(ids)[1])
    assert torch.equal(scheme.keyed_context_t(ids, window), torch_path)
    g, s = scheme.row_layers_np(ids.numpy())
    tg, ts = scheme.row_layers_t(ids)
    assert np.array_equal(g, tg.numpy()) and np.array_equal(s.view(np.int64), ts.numpy())
