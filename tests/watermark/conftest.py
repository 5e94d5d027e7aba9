import pytest
import torch

from distillery.watermark import KeyRing


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    """These tests run many small (V,)-sized ops: on 2 shared cores one thread is faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tokenizer(tiny_engine):
    return tiny_engine.tokenizer


@pytest.fixture(scope="session")
def ring():
    return KeyRing({1: bytes(range(32))})
