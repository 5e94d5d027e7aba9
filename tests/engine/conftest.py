import importlib.util

import pytest

# Every installed backend: the llama.cpp engine (the [llama] extra) runs the same tiny weights.
ENGINES = ["torch", *(["llama"] if importlib.util.find_spec("llama_cpp") else [])]


@pytest.fixture(scope="session", params=ENGINES)
def tiny_engine(request, tiny_engine):
    """The root fixture's torch engine, or the llama.cpp engine on its weights."""
    if request.param == "torch":
        return tiny_engine
    return request.getfixturevalue("tiny_llama_engine")
