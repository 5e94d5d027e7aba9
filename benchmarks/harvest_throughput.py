"""Is the harvester ever the bottleneck? Its request rate against the gateway's capacity.

The gateway (`distillery serve --model fake`: no model, so the gateway's own capacity is what
is measured) runs in its own process. From this process, side by side and alternating:
  - capacity: a bare asyncio + httpx loop posting the same requests at the same concurrency;
  - harvester: `distillery.harvest.harvest` (openai client, key rotation, retries, fsync'd
    dataset rows, progress off).
The ratio harvester/capacity near 1 means the harvester keeps the server saturated.

    .venv/bin/python benchmarks/harvest_throughput.py [--requests 400] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


async def bare(url: str, key: str, prompts: list[str], concurrency: int) -> float:
    q = list(prompts)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as c:
        async def worker():
            while q:
                p = q.pop()
                r = await c.post(f"{url}/chat/completions",
                                 headers={"Authorization": f"Bearer {key}"},
                                 json={"model": "fake", "max_tokens": 8,
                                       "messages": [{"role": "user", "content": p}]})
                r.raise_for_status()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(prompts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from distillery import store
    from distillery.harvest import HarvestConfig, Prompt, harvest
    from distillery.harvest.testserver import free_port

    tmp = Path(tempfile.mkdtemp())
    db = f"sqlite:///{tmp / 'gw.db'}"
    keys = list(store.provision(db, [f"bench-{i}" for i in range(4)]).values())
    port = free_port()
    gw = subprocess.Popen(
        [sys.executable, "-c", "from distillery.cli import main; main()", "serve", "--model",
         "fake", "--watermark", "none", "--database", db, "--port", str(port), "--rpm",
         "10000000", "--tpm", "1000000000"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        asyncio.run(bare(url, keys[0], ["warm up"] * 50, args.concurrency))
        caps, harv = [], []
        for r in range(args.rounds):
            ps = [f"round {r} prompt {i}: tell me something" for i in range(args.requests)]
            caps.append(asyncio.run(bare(url, keys[0], ps, args.concurrency)))
            cfg = HarvestConfig(base_url=url, model="fake", api_keys=keys,
                                concurrency=args.concurrency, max_tokens=8, progress=False)
            rep = harvest([Prompt.user(p + " (h)", "bench") for p in ps], tmp / f"d{r}.jsonl",
                          cfg)
            assert rep.written == args.requests, rep
            harv.append(rep.written / rep.wall_s)
        out = {"requests": args.requests, "concurrency": args.concurrency,
               "capacity_req_s": caps, "harvester_req_s": harv,
               "ratio_median": sorted(h / c for h, c in zip(harv, caps, strict=True))[
                   len(caps) // 2]}
        print(json.dumps(out, indent=2))
    finally:
        gw.terminate()
        gw.wait(30)


if __name__ == "__main__":
    main()
