import json
import time

import httpx
import pytest

from distillery.harvest import (
    HarvestConfig,
    Prompt,
    dataset_sha256,
    harvest,
    parse_retry_after,
    read_rows,
    to_parquet,
)
from distillery.harvest.testserver import echo_answer


def prompts(n, tag="q"):
    return [Prompt.user(f"{tag} number {i} please answer", "seed", "test") for i in range(n)]


def cfg(url, **kw):
    base = dict(base_url=url, model="fake", api_keys=["k0", "k1"], concurrency=4,
                backoff_base_s=0.01, progress=False)
    base.update(kw)
    return HarvestConfig(**base)


def test_harvests_every_prompt_once_with_logprobs_and_key_rotation(fake_server, tmp_path):
    url, state = fake_server
    out = tmp_path / "d.jsonl"
    rep = harvest(prompts(12), out, cfg(url, top_logprobs=3))
    assert (rep.written, rep.failed, rep.skipped) == (12, 0, 0)
    rows = read_rows(out)
    assert len({r["prompt_hash"] for r in rows}) == 12
    for r in rows:
        assert r["response"] == echo_answer(r["prompt"])
        assert r["endpoint"] == url and r["model"] == "fake" and r["strategy"] == "seed"
        assert len(r["logprobs"][0]["top"]) == 3
        assert r["usage"]["completion_tokens"] > 0
    assert {r["key_index"] for r in rows} == {0, 1}
    assert {rec.key for rec in state.records} == {"k0", "k1"}
    assert rep.completion_tokens == sum(r["usage"]["completion_tokens"] for r in rows)


def test_resume_skips_done_prompts_and_adds_no_duplicates(fake_server, tmp_path):
    url, state = fake_server
    out = tmp_path / "d.jsonl"
    harvest(prompts(10), out, cfg(url, limit=4))
    h4 = dataset_sha256(out)
    rep = harvest(prompts(10), out, cfg(url))
    assert (rep.skipped, rep.written) == (4, 6)
    rows = read_rows(out)
    assert len(rows) == len({r["prompt_hash"] for r in rows}) == 10
    assert len(state.records) == 10  # nothing asked twice
    assert dataset_sha256(out) != h4


def test_429_retry_after_is_honoured(fake_server, tmp_path):
    url, state = fake_server
    state.faults.rate_limit_every = 3
    state.faults.retry_after_s = 0.5
    rep = harvest(prompts(8), tmp_path / "d.jsonl", cfg(url, api_keys=["only"], concurrency=1))
    assert rep.written == 8 and rep.rate_limited >= 2
    recs = state.records
    for i, r in enumerate(recs):
        if r.status == 429:  # the one key must rest for Retry-After before its next request
            later = [x for x in recs[i + 1:] if x.key == r.key]
            assert later and later[0].t - r.t >= 0.45


def test_429_on_one_key_moves_traffic_to_the_others(fake_server, tmp_path):
    url, state = fake_server
    state.faults.rate_limit_every = 4
    state.faults.retry_after_s = 5.0  # long: finishing fast means other keys carried the load
    t0 = time.monotonic()
    rep = harvest(prompts(6), tmp_path / "d.jsonl",
                  cfg(url, api_keys=["a", "b", "c", "d"], concurrency=1))
    assert rep.written == 6 and rep.rate_limited >= 1
    assert time.monotonic() - t0 < 4


def test_server_errors_are_retried_and_give_up_is_reported(fake_server, tmp_path):
    url, state = fake_server
    state.faults.error_every = 2
    rep = harvest(prompts(6), tmp_path / "d.jsonl", cfg(url))
    assert rep.written == 6 and rep.retries >= 3
    state.faults.error_every = 1  # always failing: give up after max_retries
    rep = harvest(prompts(1, "x"), tmp_path / "e.jsonl", cfg(url, max_retries=2))
    assert (rep.written, rep.failed, rep.retries) == (0, 1, 3)


def test_timeouts_are_retried_then_reported(fake_server, tmp_path):
    url, state = fake_server
    state.faults.delay_s = 1.0
    rep = harvest(prompts(1, "slow"), tmp_path / "d.jsonl", cfg(url, timeout_s=0.2,
                                                                  max_retries=1))
    assert (rep.written, rep.failed, rep.retries) == (0, 1, 2)
    state.faults.delay_s = 0.0
    rep = harvest(prompts(1, "slow"), tmp_path / "d.jsonl", cfg(url, timeout_s=5))
    assert rep.written == 1


def test_bad_key_fails_without_retrying(fake_server, tmp_path):
    url, state = fake_server
    state.faults.valid_keys = {"good"}
    rep = harvest(prompts(2), tmp_path / "d.jsonl", cfg(url, api_keys=["bad"]))
    assert rep.failed == 2 and len(state.records) == 2


def test_client_side_rate_limit_spaces_requests(fake_server, tmp_path):
    url, state = fake_server
    harvest(prompts(4), tmp_path / "d.jsonl", cfg(url, api_keys=["k"], rpm_per_key=300))
    ts = [r.t for r in state.records]
    # 4 requests at 300/min leave the client 0.2 s apart: 0.6 s first to last; arrival jitter
    # on a loaded machine (the first request also opens the connection) shifts it a little
    assert ts[-1] - ts[0] >= 0.45


def test_torn_last_line_is_cut_and_the_run_resumes(fake_server, tmp_path):
    url, _ = fake_server
    out = tmp_path / "d.jsonl"
    harvest(prompts(5), out, cfg(url, limit=3))
    with out.open("a") as f:  # as if killed in the middle of a write
        f.write('{"prompt_hash": "torn')
    assert len(read_rows(out)) == 3
    rep = harvest(prompts(5), out, cfg(url))
    assert (rep.skipped, rep.written) == (3, 2)
    assert len(read_rows(out)) == 5 and out.read_text().endswith("}\n")


def test_dataset_loads_in_hf_datasets_as_jsonl_and_parquet(fake_server, tmp_path):
    from datasets import load_dataset

    url, _ = fake_server
    out = tmp_path / "d.jsonl"
    harvest(prompts(3), out, cfg(url, top_logprobs=2))
    harvest(prompts(2, "nolp"), out, cfg(url))  # rows without logprobs in the same file
    pq = to_parquet(out, tmp_path / "d.parquet")
    for kind, f in (("json", out), ("parquet", pq)):
        ds = load_dataset(kind, data_files=str(f), split="train")
        assert len(ds) == 5 and "response" in ds.column_names


def test_dataset_hash_ignores_row_order(tmp_path):
    rows = [{"prompt_hash": h, "response": h} for h in "cab"]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in rows))
    b.write_text("".join(json.dumps(r) + "\n" for r in sorted(rows, key=str)))
    assert dataset_sha256(a) == dataset_sha256(b)


def test_retry_after_parsing():
    assert parse_retry_after(httpx.Headers({"Retry-After": "2"})) == 2.0
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert parse_retry_after(httpx.Headers({})) is None
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < parse_retry_after(httpx.Headers({"Retry-After": date})) <= 31


def test_config_errors_say_what_to_do(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="--api-key"):
        HarvestConfig()
    with pytest.raises(ValueError, match="cap at 20"):
        HarvestConfig(api_keys=["k"], top_logprobs=50)
    monkeypatch.setenv("OPENAI_API_KEY", "a,b")
    assert HarvestConfig().api_keys == ["a", "b"]
    assert HarvestConfig().public()["api_keys"] == 2
