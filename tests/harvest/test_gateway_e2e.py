"""The harvester against the real gateway (`distillery serve`) on loopback, tiny model."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from distillery import store
from distillery.gateway import ServeConfig, start_in_thread
from distillery.harvest import HarvestConfig, Prompt, PromptFile, harvest, read_rows


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("gw")
    db = f"sqlite:///{d / 'gw.db'}"
    store.migrate(db)
    cfg = ServeConfig(model="tiny-random", watermark="none", database=db, port=0,
                      rpm_limit=100_000, tpm_limit=100_000_000, log_level="warning")
    server = start_in_thread(cfg)
    eng = store.make_engine(db)

    def new_key(account: str, **kw) -> str:
        store.create_account(eng, account)
        return store.create_key(eng, account, **kw).secret

    yield server.base_url + "/v1", new_key
    server.stop()


def prompts(n, tag):
    return [Prompt.user(f"{tag} {i}: say something", "seed") for i in range(n)]


def test_killed_mid_run_and_resumed_with_no_loss_and_no_duplicates(gateway, tmp_path):
    url, new_key = gateway
    keys = [new_key("camp-a"), new_key("camp-b")]
    pf, out = tmp_path / "p.jsonl", tmp_path / "d.jsonl"
    PromptFile.write(pf, prompts(40, "kill"))

    def cmd(concurrency: int) -> list[str]:
        return [sys.executable, "-c", "from distillery.cli import main; main()", "harvest",
                str(pf), "-o", str(out), "--base-url", url, "--model", "tiny-random",
                "--api-key", keys[0], "--api-key", keys[1], "--concurrency", str(concurrency),
                "--max-tokens", "6", "--top-logprobs", "3", "--no-progress"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd(1), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 5:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(read_rows(out))
    assert 5 <= n_before < 40, "the run was not killed mid-way"
    done = subprocess.run(cmd(8), env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = read_rows(out)
    hashes = [r["prompt_hash"] for r in rows]
    assert len(hashes) == len(set(hashes)) == 40
    assert set(hashes) == {p.hash for p in prompts(40, "kill")}
    assert f"skipped {n_before}" in done.stdout
    assert all(r["logprobs"] and len(r["logprobs"][0]["top"]) == 3 for r in rows)
    assert {r["key_index"] for r in rows} == {0, 1}


def test_gateway_429_answers_are_honoured(gateway, tmp_path):
    url, new_key = gateway
    key = new_key("limited", rpm_limit=60)  # a bucket of 60, refilled at one per second
    cfg = HarvestConfig(base_url=url, model="tiny-random", api_keys=[key], concurrency=8,
                        max_tokens=2, progress=False)
    t0 = time.monotonic()
    rep = harvest(prompts(66, "rl"), tmp_path / "d.jsonl", cfg)
    assert rep.written == 66 and rep.failed == 0
    assert rep.rate_limited >= 1
    assert time.monotonic() - t0 >= 1.0  # waited out at least one Retry-After
