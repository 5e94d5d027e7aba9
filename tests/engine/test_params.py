import pytest

from distillery.engine import GenerationRequest, SamplingParams


@pytest.mark.parametrize("kwargs, match", [
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": -5}, "max_tokens"),
    ({"temperature": -0.1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"n": 0}, "n must"),
    ({"repetition_penalty": 0}, "repetition_penalty"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"top_logprobs": 3}, "logprobs=True"),
    ({"stop": [""]}, "stop"),
    ({"seed": "abc"}, "seed"),
])
def test_bad_params_say_what_is_wrong(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kwargs)


def test_single_stop_string_becomes_list():
    assert SamplingParams(stop="\n").stop == ["\n"]


@pytest.mark.parametrize("prompt", ["", "   ", []])
def test_empty_prompt_is_rejected(prompt):
    with pytest.raises(ValueError, match="empty"):
        GenerationRequest(prompt)
