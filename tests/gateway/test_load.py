"""Load: 20 concurrent clients x 500 requests against a subprocess gateway with the fake
engine; every answered request has exactly one usage row, also across a SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import func, select

from distillery import store
from distillery.gateway.server import free_port

CLIENTS, REQUESTS = 20, 500


def spawn(tmp_path) -> tuple[subprocess.Popen, str, str, str]:
    url = f"sqlite:///{tmp_path}/load.db"
    key = store.provision(url, ["loader"])["loader"]
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "distillery"), "serve", "--model", "fake", "--watermark",
         "none", "--database", url, "--port", str(port), "--rpm", "100000000", "--tpm",
         "1000000000", "--max-queue", "1024"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/health").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    return proc, base, url, key


async def client_loop(base: str, key: str, n: int, answered: list[str], stop_on_error: bool):
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    try:
        for i in range(n):
            try:
                r = await client.chat.completions.create(
                    model="fake", messages=[{"role": "user", "content": f"question {i}"}],
                    max_tokens=4)
            except (openai.APIConnectionError, openai.APIStatusError):
                if stop_on_error:
                    return
                raise
            answered.append(r.id.removeprefix("chatcmpl-"))
    finally:
        await client.close()


def usage_ids(url: str) -> list[str]:
    db = store.make_engine(url)
    with db.connect() as c:
        ids = list(c.scalars(select(store.Usage.request_id)))
        assert c.scalar(select(func.count()).select_from(store.Usage)) == len(ids)
    db.dispose()
    return ids


def run_load(tmp_path, requests: int) -> None:
    proc, base, url, key = spawn(tmp_path)
    answered: list[str] = []

    async def main():
        await asyncio.gather(*[client_loop(base, key, requests, answered, False)
                               for _ in range(CLIENTS)])

    try:
        t0 = time.perf_counter()
        asyncio.run(main())
        elapsed = time.perf_counter() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert len(answered) == CLIENTS * requests
    rows = usage_ids(url)
    assert sorted(rows) == sorted(answered)  # exactly one row per served request
    print(f"{len(answered) / elapsed:.0f} requests/s through the openai client")


def test_20_clients_x_100_requests_one_row_each(tmp_path):
    run_load(tmp_path, 100)


@pytest.mark.slow  # the full size: 10,000 requests (~35 s alone, minutes when shared)
def test_20_clients_x_500_requests_one_row_each(tmp_path):
    run_load(tmp_path, REQUESTS)


def test_sigterm_mid_load_loses_no_answered_row(tmp_path):
    proc, base, url, key = spawn(tmp_path)
    answered: list[str] = []

    async def main():
        tasks = [asyncio.create_task(client_loop(base, key, REQUESTS, answered, True))
                 for _ in range(CLIENTS)]
        while len(answered) < 600:
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    # uvicorn re-raises the signal after its graceful shutdown: -SIGTERM is a clean exit
    assert proc.wait(60) in (0, -signal.SIGTERM), proc.stderr.read().decode()[-2000:]
    assert 600 <= len(answered) < CLIENTS * REQUESTS
    rows = set(usage_ids(url))
    missing = set(answered) - rows
    assert not missing, f"{len(missing)} answered requests have no usage row"
