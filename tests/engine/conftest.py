import pytest

# Both backends on the same tiny weights: `make install` builds the llama.cpp engine (the
# [llama] extra); without it the llama variants fail loudly, they never drop out.
ENGINES = ["torch", "llama"]


@pytest.fixture(scope="session", params=ENGINES)
def tiny_engine(request):
    return request.getfixturevalue(f"tiny_{request.param}_engine")
