"""The slow tier: the real shipped models (make test-slow)."""

import pytest

from distillery.engine import SamplingParams, TorchEngine, chat_request
from distillery.models import load, loader, resolve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def teacher():
    return TorchEngine.from_name("smollm2-135m-instruct")


def test_teacher_answers_and_ends_at_end_of_turn_or_length(teacher):
    req = chat_request(teacher.tokenizer,
                       [{"role": "user", "content": "Explain photosynthesis in two sentences."}],
                       SamplingParams(max_tokens=96, temperature=0.7, top_p=0.95,
                                      repetition_penalty=1.1, seed=0, n=4))
    for choice in teacher.generate([req])[0].choices:
        assert choice.text.strip()
        if choice.finish_reason == "stop":
            assert choice.token_ids[-1] in teacher.end_ids
            assert teacher.tokenizer.convert_ids_to_tokens(choice.token_ids[-1]) == "<|im_end|>"
        else:
            assert choice.finish_reason == "length" and len(choice.token_ids) == 96
    assert "photosynth" in teacher.generate([req])[0].choices[0].text.lower()


def test_cached_reload_does_not_dequantise(monkeypatch):
    load("smollm2-135m-instruct")  # make sure the cache exists
    monkeypatch.setattr(loader, "dequantize_gguf", lambda spec: pytest.fail("dequantised again"))
    loaded = load("smollm2-135m-instruct")
    assert loader.is_cached(resolve("smollm2-135m-instruct"))
    assert loaded.model.config.model_type == "llama"


def test_gemma_base_model_continues_with_plain_template():
    engine = TorchEngine.from_name("gemma-3-270m")
    assert engine.tokenizer.convert_ids_to_tokens(engine.encode("Hi")[0]) == "<bos>"
    req = chat_request(engine.tokenizer, [{"role": "user", "content": "Name three colours."}],
                       SamplingParams(max_tokens=32, temperature=0))
    assert req.params.stop == ["\nUser:"]
    choice = engine.generate([req])[0].choices[0]
    assert choice.text.strip() and "\nUser:" not in choice.text
