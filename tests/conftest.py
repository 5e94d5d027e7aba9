import secrets

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_engine():
    """A 2-layer random Llama with SmolLM2's real tokenizer (cached after the first parse)."""
    from distillery.engine import TorchEngine

    return TorchEngine.from_name("tiny-random")


PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_url():
    """A throwaway schema on the real PostgreSQL server (127.0.0.1:5432), dropped afterwards.

    No skip when the server is down: the PostgreSQL path is tested against the real server.
    """
    from sqlalchemy import text

    from distillery import store

    schema = f"distillery_test_{secrets.token_hex(4)}"
    admin = store.make_engine(PG)
    with admin.begin() as c:
        c.execute(text(f"create schema {schema}"))
    yield f"{PG}?options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(text(f"drop schema {schema} cascade"))
    admin.dispose()
