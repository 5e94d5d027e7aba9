import math

import pytest
import torch

from distillery.engine import GenerationRequest, SamplingParams, chat_request, stream

PROMPTS = ["Hello there", "The capital of France is a city with a long history", "x", "1 2 3"]


def gen(engine, prompt, **kw):
    return engine.generate([GenerationRequest(prompt, SamplingParams(**kw))])[0]


def test_batched_greedy_equals_one_by_one(tiny_engine):
    reqs = [GenerationRequest(p, SamplingParams(max_tokens=24, temperature=0)) for p in PROMPTS]
    alone = [tiny_engine.generate([r])[0].choices[0].token_ids for r in reqs]
    batched = [r.choices[0].token_ids for r in tiny_engine.generate(reqs)]
    assert batched == alone


def test_rows_of_different_lengths_finish_independently(tiny_engine):
    reqs = [GenerationRequest(p, SamplingParams(max_tokens=m, temperature=0))
            for p, m in zip(PROMPTS, [3, 17, 1, 9], strict=True)]
    results = tiny_engine.generate(reqs)
    assert [len(r.choices[0].token_ids) for r in results] == [3, 17, 1, 9]
    alone = [tiny_engine.generate([r])[0].choices[0].token_ids for r in reqs]
    assert [r.choices[0].token_ids for r in results] == alone


def test_seed_makes_sampling_deterministic(tiny_engine):
    a = gen(tiny_engine, "Once upon", max_tokens=16, seed=7).choices[0].token_ids
    b = gen(tiny_engine, "Once upon", max_tokens=16, seed=7).choices[0].token_ids
    c = gen(tiny_engine, "Once upon", max_tokens=16, seed=8).choices[0].token_ids
    assert a == b and a != c


def test_seeded_output_does_not_depend_on_the_batch(tiny_engine):
    req = GenerationRequest("Once upon", SamplingParams(max_tokens=16, seed=11, top_p=0.9))
    alone = tiny_engine.generate([req])[0].choices[0].token_ids
    others = [GenerationRequest(p, SamplingParams(max_tokens=8)) for p in PROMPTS]
    together = tiny_engine.generate([*others, req])[-1].choices[0].token_ids
    assert together == alone


def test_n_choices_are_distinct_samples(tiny_engine):
    result = gen(tiny_engine, "Once upon", max_tokens=12, seed=1, n=3)
    assert [c.index for c in result.choices] == [0, 1, 2]
    assert len({tuple(c.token_ids) for c in result.choices}) == 3
    assert result.completion_tokens == 36


def test_max_tokens_gives_length_finish(tiny_engine):
    choice = gen(tiny_engine, "Hi", max_tokens=5, temperature=0).choices[0]
    assert choice.finish_reason == "length" and len(choice.token_ids) == 5


def test_stop_string_truncates_before_it(tiny_engine):
    full = gen(tiny_engine, "Hello there", max_tokens=30, temperature=0).choices[0].text
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert stop.strip(), "tiny model output too short for this test"
    choice = gen(tiny_engine, "Hello there", max_tokens=30, temperature=0, stop=[stop]).choices[0]
    assert choice.finish_reason == "stop"
    assert choice.text == full[: full.index(stop)]
    assert stop not in choice.text


def test_end_of_turn_token_stops(tiny_engine):
    eos = tiny_engine.tokenizer.eos_token_id

    def force_eos(input_ids, scores):
        out = torch.full_like(scores, -1e9)
        out[:, eos] = 0
        return out

    choice = gen(tiny_engine, "Hi", max_tokens=10, logits_processors=[force_eos]).choices[0]
    assert choice.finish_reason == "stop" and choice.token_ids == [eos] and choice.text == ""


def test_logits_processor_sees_left_padded_context(tiny_engine):
    seen = []

    def spy(input_ids, scores):
        seen.append(input_ids[:, -1].tolist())
        return scores

    prompts = ["a b c d e f", "z"]
    ids = [tiny_engine.encode(p) for p in prompts]
    tiny_engine.generate([GenerationRequest(p, SamplingParams(max_tokens=1, temperature=0,
                                                              logits_processors=[spy]))
                          for p in prompts])
    assert seen == [[ids[0][-1], ids[1][-1]]]  # one call for the batch, last tokens aligned


def test_processor_applies_only_to_its_own_rows(tiny_engine):
    target = 1234

    def force(input_ids, scores):
        out = torch.full_like(scores, -1e9)
        out[:, target] = 0
        return out

    reqs = [GenerationRequest("Hi", SamplingParams(max_tokens=4, temperature=0,
                                                   logits_processors=[force])),
            GenerationRequest("Hi", SamplingParams(max_tokens=4, temperature=0))]
    forced, free = tiny_engine.generate(reqs)
    assert forced.choices[0].token_ids == [target] * 4
    assert free.choices[0].token_ids != [target] * 4


def test_sampler_hook_replaces_sampling(tiny_engine):
    def always_42(input_ids, logits):
        assert logits.shape == (input_ids.shape[0], len(tiny_engine.tokenizer))
        return torch.full((input_ids.shape[0],), 42, dtype=torch.long)

    choice = gen(tiny_engine, "Hi", max_tokens=3, sampler=always_42).choices[0]
    assert choice.token_ids == [42, 42, 42]


def test_repetition_penalty_discourages_repeats(tiny_engine):
    plain = gen(tiny_engine, "x", max_tokens=20, temperature=0).choices[0].token_ids
    assert len(set(plain)) < len(plain), "pick a prompt where greedy repeats"
    penalised = gen(tiny_engine, "x", max_tokens=20, temperature=0,
                    repetition_penalty=1e4).choices[0].token_ids
    assert len(set(penalised)) == len(penalised)


def first_step_logits(engine, prompt):
    """The model's raw next-token logits, as a processor sees them (works on any backend)."""
    got = []

    def spy(input_ids, scores):
        got.append(scores[0].clone())
        return scores

    gen(engine, prompt, max_tokens=1, temperature=0, logits_processors=[spy])
    return got[0]


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_logprobs_are_of_the_distribution_sampled_from(tiny_engine, temperature):
    choice = gen(tiny_engine, "Hello", max_tokens=6, seed=3, temperature=temperature,
                 logprobs=True, top_logprobs=5).choices[0]
    assert len(choice.logprobs) == len(choice.token_ids) == 6
    expected = (first_step_logits(tiny_engine, "Hello") / temperature).log_softmax(-1)
    first = choice.logprobs[0]
    assert first.token_id == choice.token_ids[0]
    assert math.isclose(first.logprob, expected[first.token_id].item(), abs_tol=1e-4)
    top_v, top_i = expected.topk(5)
    assert [t[0] for t in first.top] == top_i.tolist()
    assert all(math.isclose(t[2], v, abs_tol=1e-4) for t, v in zip(first.top, top_v.tolist(),
                                                                   strict=True))


def test_logprobs_normalise_over_the_nucleus(tiny_engine):
    # at low temperature the 0.9-nucleus holds a handful of tokens (< 20): their probabilities,
    # renormalised over the nucleus, sum to 1 and everything outside it has logprob -inf
    choice = gen(tiny_engine, "Hello", max_tokens=8, seed=5, temperature=0.2, top_p=0.9,
                 logprobs=True, top_logprobs=20).choices[0]
    sizes = [sum(t[2] > float("-inf") for t in tok.top) for tok in choice.logprobs]
    assert max(sizes) > 1 and max(sizes) < 20
    for tok in choice.logprobs:
        probs = [math.exp(t[2]) for t in tok.top]
        assert probs == sorted(probs, reverse=True)
        assert math.isclose(sum(probs), 1.0, abs_tol=1e-4)
        assert tok.token_id in [t[0] for t in tok.top if t[2] > float("-inf")]


def test_greedy_picks_the_top_logprob(tiny_engine):
    choice = gen(tiny_engine, "Hello", max_tokens=5, temperature=0, logprobs=True,
                 top_logprobs=3).choices[0]
    assert all(t.token_id == t.top[0][0] for t in choice.logprobs)


def test_streaming_deltas_rebuild_the_text(tiny_engine):
    full = gen(tiny_engine, "Hello there", max_tokens=30, temperature=0).choices[0].text
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    req = GenerationRequest("Hello there", SamplingParams(max_tokens=30, temperature=0,
                                                          stop=[stop]))
    deltas = list(stream(tiny_engine, req))
    text = "".join(d.text for d in deltas)
    assert text == full[: full.index(stop)]
    assert deltas[-1].finish_reason == "stop"
    assert all(d.finish_reason is None for d in deltas[:-1])


def test_stream_propagates_errors(tiny_engine):
    req = GenerationRequest([10] * 5000, SamplingParams(max_tokens=10))
    with pytest.raises(ValueError, match="context"):
        list(stream(tiny_engine, req))


def test_chat_request_uses_the_template(tiny_engine):
    req = chat_request(tiny_engine.tokenizer, [{"role": "user", "content": "Hi"}],
                       SamplingParams(max_tokens=2))
    assert req.prompt.endswith("<|im_start|>assistant\n")
    assert tiny_engine.generate([req])[0].prompt_tokens == len(tiny_engine.encode(req.prompt))


def greedy(prompt, max_tokens):
    return GenerationRequest(prompt, SamplingParams(max_tokens=max_tokens, temperature=0))


def test_admitted_requests_join_the_running_batch(tiny_engine):
    """Continuous batching: requests admitted mid-decode (shorter and longer than the running
    sequence) give the same greedy tokens as when run alone."""
    first = [greedy("Hello there", 30), greedy("x", 6)]
    late = [greedy("a much longer prompt that is longer than the running sequence so far", 12),
            greedy("z", 20)]
    calls, got = [], {}

    def admit(free):
        calls.append(free)
        return late if len(calls) == 4 else []

    results = tiny_engine.generate(first, admit=admit, on_result=lambda i, r: got.setdefault(i, r))
    alone = [tiny_engine.generate([r])[0].choices[0].token_ids for r in first + late]
    assert [r.choices[0].token_ids for r in results] == alone[:2]
    assert sorted(got) == [0, 1, 2, 3]
    assert [got[i].choices[0].token_ids for i in range(4)] == alone


def test_results_are_reported_as_requests_finish(tiny_engine):
    order = []
    tiny_engine.generate([greedy("Hello", 12), greedy("x", 2), greedy("y", 5)],
                         on_result=lambda i, r: order.append(i))
    assert order == [1, 2, 0]


def test_an_admitted_request_that_cannot_run_fails_alone(tiny_engine):
    bad = GenerationRequest([10] * 5000, SamplingParams(max_tokens=10))
    got = {}
    batches = [[bad, greedy("z", 4)]]
    tiny_engine.generate([greedy("Hello", 8)], admit=lambda free: batches.pop() if batches else [],
                         on_result=lambda i, r: got.setdefault(i, r))
    assert isinstance(got[1], ValueError) and "context" in str(got[1])
    assert len(got[2].choices[0].token_ids) == 4 and len(got[0].choices[0].token_ids) == 8


def test_more_rows_than_the_batch_flow_in_as_rows_finish(tiny_engine):
    reqs = [greedy(p, m) for p, m in zip(PROMPTS, [3, 17, 1, 9], strict=True)]
    alone = [tiny_engine.generate([r])[0].choices[0].token_ids for r in reqs]
    tiny_engine.max_batch_size = 2
    try:
        assert [r.choices[0].token_ids for r in tiny_engine.generate(reqs)] == alone
    finally:
        tiny_engine.max_batch_size = 64


def test_cancelled_requests_stop_and_free_their_rows(tiny_engine):
    def reqs():
        return [GenerationRequest([1, 50 + i, 60 + i], SamplingParams(max_tokens=12,
                                                                      temperature=0))
                for i in range(3)]

    plain = tiny_engine.generate(reqs())
    steps = {"n": 0}

    def is_cancelled(i: int) -> bool:  # request 1 goes away after a few steps
        steps["n"] += i == 1
        return i == 1 and steps["n"] >= 3

    out = tiny_engine.generate(reqs(), is_cancelled=is_cancelled)
    cut = out[1].choices[0]
    assert cut.finish_reason == "abort" and 0 < len(cut.token_ids) < 12
    assert cut.token_ids == plain[1].choices[0].token_ids[: len(cut.token_ids)]
    for i in (0, 2):
        assert out[i].choices[0].token_ids == plain[i].choices[0].token_ids
    # a queued request cancelled before it starts never runs
    tiny_engine.max_batch_size = 1
    try:
        out = tiny_engine.generate(reqs(), is_cancelled=lambda i: i == 2)
    finally:
        tiny_engine.max_batch_size = 64
    assert out[2].choices[0].finish_reason == "abort" and out[2].choices[0].token_ids == []
    assert out[0].choices[0].token_ids == plain[0].choices[0].token_ids


def test_inverse_cdf_sampling_follows_the_distribution_and_skips_masked_tokens():
    from distillery.engine.sampling import sample

    logits = torch.tensor([[2.0, -torch.inf, 0.5, 1.0, -torch.inf, -1.0]]).repeat(20_000, 1)
    gens = [torch.Generator().manual_seed(i) for i in range(len(logits))]
    draws = sample(logits, gens)
    freq = torch.bincount(draws, minlength=6).double() / len(draws)
    p = logits[0].softmax(-1).double()
    assert freq[1] == 0 and freq[4] == 0
    sd = (p * (1 - p) / len(draws)).sqrt()
    assert torch.all((freq - p).abs() <= 5 * sd + 1e-12)
    again = sample(logits[:5], [torch.Generator().manual_seed(i) for i in range(5)])
    assert torch.equal(again, draws[:5])  # a row's draw depends only on its own generator
