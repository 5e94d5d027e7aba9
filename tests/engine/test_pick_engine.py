import importlib.util

import pytest

from distillery.engine import pick_engine
from distillery.gateway import ServeConfig

INSTALLED = importlib.util.find_spec("llama_cpp") is not None


def test_auto_picks_llama_cpp_for_a_gguf_model_when_installed():
    assert pick_engine("tiny-random") == ("llama" if INSTALLED else "torch")
    assert pick_engine("smollm2-135m-instruct", "torch") == "torch"


def test_llama_is_refused_where_it_cannot_run(tmp_path):
    (tmp_path / "config.json").write_text("{}")  # a local Hugging Face directory: no GGUF
    assert pick_engine(str(tmp_path)) == "torch"
    why = "ships no GGUF" if INSTALLED else "needs llama-cpp-python"
    with pytest.raises(ValueError, match=why):
        pick_engine(str(tmp_path), "llama")
    with pytest.raises(ValueError, match="engine must be one of"):
        pick_engine("tiny-random", "vllm")
    with pytest.raises(ValueError, match="engine must be one of"):
        ServeConfig(engine="vllm")
