import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_engine():
    """A 2-layer random Llama with SmolLM2's real tokenizer (cached after the first parse)."""
    from distillery.engine import TorchEngine

    return TorchEngine.from_name("tiny-random")
