"""Gateway overhead against calling the engine in-process, with the fake instant engine.

    .venv/bin/python benchmarks/gateway_overhead.py [--database URL] [--requests 2000]

The gateway runs in a subprocess (`distillery serve --model fake`, usage logging on); the
client is httpx (keep-alive). Added latency = round trip through the gateway minus the
in-process engine call (median). Throughput: 16 concurrent clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from distillery import store
from distillery.engine import GenerationRequest, SamplingParams
from distillery.gateway.fake import FakeEngine
from distillery.gateway.server import free_port

BODY = {"model": "fake", "messages": [{"role": "user", "content": "what is a fox"}],
        "max_tokens": 8}


def in_process(n: int) -> np.ndarray:
    engine = FakeEngine()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        prompt = engine.tokenizer.apply_chat_template(BODY["messages"])
        engine.generate([GenerationRequest(prompt, SamplingParams(max_tokens=8))])
        out.append(time.perf_counter() - t)
    return np.array(out)


def start(url: str, model: str = "fake", *extra: str) -> tuple[subprocess.Popen, str, str]:
    """A `distillery serve` subprocess with a fresh account; (process, base URL, API key)."""
    store.migrate(url)
    db = store.make_engine(url)
    store.create_account(db, f"bench-{os.getpid()}-{time.time_ns()}")
    key = store.create_key(db, store.list_accounts(db)[-1].name).secret
    db.dispose()
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "distillery"), "serve", "--model", model, *extra,
         "--watermark", "none", "--database", url, "--port", str(port), "--rpm", "1000000000",
         "--tpm", "1000000000", "--max-queue", "4096"], stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(base + "/health").status_code == 200:
                return proc, base, key
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("gateway did not start")


def sequential(base: str, key: str, n: int) -> np.ndarray:
    h = {"Authorization": f"Bearer {key}"}
    out = []
    with httpx.Client(base_url=base, headers=h) as c:
        for _ in range(50):
            c.post("/v1/chat/completions", json=BODY)
        for _ in range(n):
            t = time.perf_counter()
            r = c.post("/v1/chat/completions", json=BODY)
            out.append(time.perf_counter() - t)
            assert r.status_code == 200
    return np.array(out)


async def concurrent(base: str, key: str, n: int, clients: int = 16) -> tuple[float, np.ndarray]:
    h = {"Authorization": f"Bearer {key}"}
    lat: list[float] = []
    left = [n]

    async def worker(c: httpx.AsyncClient):
        while left[0] > 0:
            left[0] -= 1
            t = time.perf_counter()
            r = await c.post("/v1/chat/completions", json=BODY)
            lat.append(time.perf_counter() - t)
            assert r.status_code == 200

    cs = [httpx.AsyncClient(base_url=base, headers=h) for _ in range(clients)]
    t0 = time.perf_counter()
    await asyncio.gather(*[worker(c) for c in cs])
    wall = time.perf_counter() - t0
    for c in cs:
        await c.aclose()
    return n / wall, np.array(lat)


def ms(x: float) -> float:
    return round(x * 1000, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database", default=None)
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args()
    url = args.database or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    base_lat = in_process(args.requests)
    proc, base, key = start(url)
    try:
        seq = sequential(base, key, args.requests)
        rps, conc = asyncio.run(concurrent(base, key, args.requests * 2))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    med = float(np.median(base_lat))
    added = seq - med
    res = {"database": url.split(":")[0], "requests": args.requests,
           "in_process_p50_ms": ms(med), "in_process_p99_ms": ms(np.quantile(base_lat, .99)),
           "added_p50_ms": ms(np.median(added)), "added_p99_ms": ms(np.quantile(added, .99)),
           "sequential_rps": round(len(seq) / seq.sum(), 1),
           "concurrent16_rps": round(rps, 1), "concurrent16_p50_ms": ms(np.median(conc)),
           "concurrent16_p99_ms": ms(np.quantile(conc, .99)),
           "load_avg_1m": round(os.getloadavg()[0], 2)}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
