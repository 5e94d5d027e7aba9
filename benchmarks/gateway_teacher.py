"""Real teacher through the gateway: tokens/s at 1, 4 and 16 concurrent clients, with
continuous batching and without it (--no-batching: one request per engine call).

    .venv/bin/python benchmarks/gateway_teacher.py [--clients 1,4,16] [--requests-per-client 2]

The API cannot ban the end token, so answers may end before --max-tokens: the figure is
completion tokens (from `usage`) per second of wall time, over all clients. Sampling: T=0.7,
top-p 0.95, usage logging on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time

import openai

sys.path.insert(0, os.path.dirname(__file__))
from gateway_overhead import start  # noqa: E402

PROMPTS = ["Explain photosynthesis in detail.", "Write a short story about a lighthouse keeper.",
           "Describe how a compiler works.", "What are the causes of inflation?"]


async def load(base: str, key: str, clients: int, per_client: int, max_tokens: int) -> dict:
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=3600)
    tokens, latencies = 0, []

    async def worker(w: int) -> None:
        nonlocal tokens
        for i in range(per_client):
            t = time.perf_counter()
            r = await client.chat.completions.create(
                model="smollm2-135m-instruct", max_tokens=max_tokens, temperature=0.7,
                top_p=0.95, seed=w * 100 + i,
                messages=[{"role": "user", "content": PROMPTS[(w + i) % len(PROMPTS)]}])
            latencies.append(time.perf_counter() - t)
            tokens += r.usage.completion_tokens

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(clients)))
    wall = time.perf_counter() - t0
    await client.close()
    return {"tokens": tokens, "wall_s": round(wall, 1), "tok_s": round(tokens / wall, 1),
            "p50_latency_s": round(sorted(latencies)[len(latencies) // 2], 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests-per-client", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    for mode, extra in [("continuous batching", ()), ("no batching", ("--no-batching",))]:
        proc, base, key = start(f"sqlite:///{tempfile.mkdtemp()}/bench.db",
                                "smollm2-135m-instruct", *extra)
        try:
            for c in [int(x) for x in args.clients.split(",")]:
                res = asyncio.run(load(base, key, c, args.requests_per_client, args.max_tokens))
                res.update(mode=mode, clients=c, load_avg_1m=round(os.getloadavg()[0], 1))
                print(json.dumps(res), flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)


if __name__ == "__main__":
    main()
