"""How many answered requests lose their usage row when the gateway is SIGKILLed under load.

A real `distillery serve --model fake` process (SQLite usage store) is loaded by concurrent
clients; mid-run it gets SIGKILL. Every 200 response the clients received carries the
server's request id (x-request-id); the rows in the database are compared with them. The
writer drains its queue every `usage_interval_s`, so the loss should be at most that much
traffic: rows lost / throughput, in ms, is the figure to compare with the interval.

    python benchmarks/gateway_sigkill.py --runs 5 --concurrency 32 --interval 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from distillery import store
from distillery.gateway.server import free_port

BODY = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "hi"}],
                   "max_tokens": 4}).encode()


async def load(base: str, key: str, concurrency: int, answered: list[tuple[float, str]],
               stop: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def worker(c: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                r = await c.post("/v1/chat/completions", content=BODY, headers=headers)
            except httpx.HTTPError:
                return  # the server is gone
            if r.status_code == 200:
                answered.append((time.monotonic(), r.headers["x-request-id"]))

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as c:
        await asyncio.gather(*[worker(c) for _ in range(concurrency)])


def run_once(tmp: Path, concurrency: int, interval: float, warm_s: float) -> dict:
    url = f"sqlite:///{tmp}/usage.db"
    store.migrate(url)
    db = store.make_engine(url)
    store.create_account(db, "load")
    key = store.create_key(db, "load").secret
    port = free_port()
    cfg = tmp / "serve.toml"
    cfg.write_text(f"usage_interval_s = {interval}\nrpm_limit = 100000000\n"
                   f"tpm_limit = 1000000000\nlog_level = \"warning\"\n")
    proc = subprocess.Popen([sys.executable, "-c", "from distillery.cli import main; main()",
                             "serve", "--model", "fake",
                             "--watermark", "none", "--database", url, "--port", str(port),
                             "--config", str(cfg)], stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(base + "/health").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.1)

    answered: list[tuple[float, str]] = []

    async def main() -> float:
        stop = asyncio.Event()
        task = asyncio.ensure_future(load(base, key, concurrency, answered, stop))
        await asyncio.sleep(warm_s)
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        stop.set()
        await task
        return killed

    killed = asyncio.run(main())
    proc.wait()
    with db.connect() as c:
        rows = set(c.scalars(select(store.Usage.request_id)))
    db.dispose()
    ids = [rid for _, rid in answered]
    lost = [rid for rid in ids if rid not in rows]
    done = [t for t, _ in answered if t <= killed]
    rps = len(done) / warm_s
    return {"answered": len(ids), "rows": len(rows), "lost": len(lost), "rps": round(rps),
            "lost_ms": round(1000 * len(lost) / rps, 1) if rps else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--interval", type=float, default=0.05, help="usage_interval_s")
    ap.add_argument("--warm", type=float, default=3.0, help="seconds of load before the kill")
    args = ap.parse_args()
    results = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            r = run_once(Path(d), args.concurrency, args.interval, args.warm)
        results.append(r)
        print(f"run {i + 1}: {r}", flush=True)
    lost_ms = [r["lost_ms"] for r in results]
    print(f"interval {args.interval * 1000:.0f} ms; rows lost per kill: "
          f"{[r['lost'] for r in results]}; as traffic time: median "
          f"{statistics.median(lost_ms)} ms, max {max(lost_ms)} ms")


if __name__ == "__main__":
    main()
