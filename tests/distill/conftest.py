import pytest
import torch

from distillery.harvest import HarvestConfig, Prompt, harvest
from distillery.harvest.dataset import DatasetWriter
from distillery.harvest.testserver import ServerState, echo_answer, make_app, serve_in_thread

# 2 shared cores: more than one torch thread per process oversubscribes them (10x slower).
torch.set_num_threads(1)

TOPICS = ["sea", "sky", "code", "bread", "music", "rain", "maths", "trees", "stars", "trains"]


def echo_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        p = Prompt.user(f"Tell me about {TOPICS[i % 10]} {i}", "seed", "test")
        rows.append({"prompt_hash": p.hash, "prompt": p.text, "messages": list(p.messages),
                     "response": echo_answer(p.text), "finish_reason": "stop", "logprobs": None,
                     "model": "fake", "endpoint": "http://fake/v1", "key_index": i % 2,
                     "usage": {"prompt_tokens": 5, "completion_tokens": 9},
                     "created_at": f"2026-11-28T00:00:{i % 60:02d}+00:00",
                     "strategy": "seed", "category": "test"})
    return rows


@pytest.fixture(name="echo_rows")
def echo_rows_fixture():
    return echo_rows


@pytest.fixture(scope="session")
def echo_dataset(tmp_path_factory):
    """60 rows of a deterministic, learnable 'teacher' (no server needed)."""
    path = tmp_path_factory.mktemp("echo") / "d.jsonl"
    with DatasetWriter(path) as w:
        for r in echo_rows(60):
            w.append(r)
    return path


@pytest.fixture(scope="session")
def engine_dataset(tmp_path_factory):
    """24 answers of the tiny-random teacher, harvested with top-5 logprobs through the
    engine-backed OpenAI-compatible test server (real tokens, so top-k KD can align)."""
    from distillery.engine import TorchEngine

    torch.manual_seed(0)
    engine = TorchEngine.from_name("tiny-random")
    path = tmp_path_factory.mktemp("engine") / "d.jsonl"
    with serve_in_thread(make_app(ServerState(), engine=engine)) as url:
        cfg = HarvestConfig(base_url=url, model="tiny-random", api_keys=["k"], concurrency=8,
                            max_tokens=12, temperature=1.0, top_p=1.0, top_logprobs=5,
                            seed=0, progress=False)  # seeded: the same rows however batched
        rep = harvest([Prompt.user(f"Question {i} about {TOPICS[i % 10]}", "seed")
                       for i in range(24)], path, cfg)
    assert rep.written == 24
    return path
