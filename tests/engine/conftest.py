import importlib.util

import pytest

# Every installed backend: the llama.cpp engine (the [llama] extra) runs the same tiny weights.
ENGINES = ["torch", *(["llama"] if importlib.util.find_spec("llama_cpp") else [])]
collect_ignore = [] if "llama" in ENGINES else ["test_llama_engine.py"]


@pytest.fixture(scope="session", params=ENGINES)
def tiny_engine(request):
    return request.getfixturevalue(f"tiny_{request.param}_engine")
