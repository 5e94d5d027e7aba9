"""Serving speed side by side: the llama.cpp engine and the torch engine behind the gateway
(KGW watermark on), and bare llama-cpp-python (no gateway, no watermark) as the anchor.

    .venv/bin/python benchmarks/engine_serving.py [--clients 1,4,16] [--max-tokens 64]
        [--requests 8] [--rounds 2] [--configs llama,torch,bare] [--model smollm2-135m-instruct]

Every configuration runs in its own process on --threads threads (OMP_NUM_THREADS too), so
its peak RSS (VmHWM) is its own; configurations are interleaved round after round, so load from
other processes hits them alike, and the median per configuration is reported.
- llama, torch: `distillery serve --engine X --watermark kgw` (SQLite usage log), queried by
  `clients` concurrent official `openai` async clients, --requests requests in all per level.
- bare: llama-cpp-python's `Llama.create_completion` on the gateway's prompt text, in one
  process, the same clients as threads; `Llama` decodes one sequence at a time, so they
  queue on a lock (what a CPU user of the binding gets). Its latency includes that wait, like
  the gateway's.
Sampling T = 0.7, top-p 0.95, seeded. The API cannot ban the end token, so answers may end
before --max-tokens: tokens/s is completion tokens (from `usage`) over wall time; p50 is the
median request latency.
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
import threading
import time
from pathlib import Path

PROMPTS = ["Explain photosynthesis in detail.", "Write a short story about a lighthouse keeper.",
           "Describe how a compiler works.", "What are the causes of inflation?",
           "Give advice to a new programmer.", "Summarise the history of the Roman Empire.",
           "How do vaccines train the immune system?", "Plan a three-day trip to Kyoto."]


def plan(clients: int, total: int) -> list[list[int]]:
    """Request numbers of each client: total requests (at least one per client)."""
    per = max(1, total // clients)
    return [[c * per + i for i in range(per)] for c in range(clients)]


def request_kw(i: int, max_tokens: int, model: str) -> dict:
    return dict(model=model, max_tokens=max_tokens, temperature=0.7, top_p=0.95, seed=i,
                messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- bare llama-cpp-python (child process) ---------------------------------------------------
def bare(model: str, clients: list[int], total: int, max_tokens: int, threads: int) -> None:
    import llama_cpp.llama_cpp as llama_cpp  # the module `Llama` takes its defaults from
    from llama_cpp import Llama

    from distillery.models.chat import default_stop, format_chat
    from distillery.models.loader import gguf_file, load_tokenizer

    defaults = llama_cpp.llama_model_default_params

    def plain_buffers():  # as LlamaCppEngine: the repacked/AMX buffers segfault here
        p = defaults()
        p.use_extra_bufts = False
        return p

    llama_cpp.llama_model_default_params = plain_buffers

    llm = Llama(model_path=str(gguf_file(model)), n_ctx=2048, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    lock = threading.Lock()
    tok = load_tokenizer(model)

    def one(i: int) -> tuple[int, float]:
        """The gateway's prompt text (our chat template, or the plain one of a base model,
        with its stop), not the GGUF's own template: a base Gemma ends at once on that."""
        t = time.perf_counter()
        kw = request_kw(i, max_tokens, model)
        prompt = format_chat(tok, kw.pop("messages"))
        kw.pop("model")
        with lock:
            out = llm.create_completion(prompt, stop=default_stop(tok) or None, **kw)
        return out["usage"]["completion_tokens"], time.perf_counter() - t

    one(0)  # warm-up
    for c in clients:
        results: list[tuple[int, float]] = []

        def worker(ids: list[int], results=results) -> None:
            for i in ids:
                results.append(one(i))

        ts = [threading.Thread(target=worker, args=(ids,)) for ids in plan(c, total)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wall = time.perf_counter() - t0
        print(json.dumps(measure(c, sum(n for n, _ in results), wall, [s for _, s in results])),
              flush=True)
    print(json.dumps({"peak_rss_mb": peak_rss_mb(os.getpid())}), flush=True)


def measure(clients: int, tokens: int, wall: float, latencies: list[float]) -> dict:
    return {"clients": clients, "tokens": tokens, "tok_s": tokens / wall,
            "p50_s": statistics.median(latencies), "load_avg_1m": os.getloadavg()[0]}


# -- the gateway -----------------------------------------------------------------------------
def serve(engine: str, model: str, threads: int, tmp: Path) -> tuple[subprocess.Popen, str, str]:
    import httpx

    from distillery import store
    from distillery.gateway.server import free_port
    from distillery.watermark import KeyRing

    db = f"sqlite:///{tmp}/{engine}-{time.time_ns()}.db"
    key = store.provision(db, ["bench"])["bench"]
    ring = tmp / "watermark.key"
    if not ring.exists():
        KeyRing.generate(ring)
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from distillery.cli import main; main()", "serve",
         "--model", model, "--engine", engine, "--watermark", "kgw", "--watermark-key",
         str(ring), "--database", db, "--port", str(port), "--rpm", str(10**6),
         "--tpm", str(10**9)], env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(3000):
        try:
            if httpx.get(base + "/health").status_code == 200:
                return proc, base, key
        except httpx.TransportError:
            if proc.poll() is not None:
                raise RuntimeError(f"distillery serve --engine {engine} exited") from None
        time.sleep(0.1)
    raise RuntimeError(f"distillery serve --engine {engine} did not start")


async def through_gateway(base: str, key: str, model: str, clients: int, total: int,
                          max_tokens: int) -> dict:
    import openai

    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0,
                                timeout=3600)
    tokens, latencies = 0, []

    async def worker(ids: list[int]) -> None:
        nonlocal tokens
        for i in ids:
            t = time.perf_counter()
            r = await client.chat.completions.create(**request_kw(i, max_tokens, model))
            latencies.append(time.perf_counter() - t)
            tokens += r.usage.completion_tokens

    await worker([0])  # warm-up
    tokens, latencies = 0, []
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(ids) for ids in plan(clients, total)))
    wall = time.perf_counter() - t0
    await client.close()
    return measure(clients, tokens, wall, latencies)


def run_config(config: str, args, tmp: Path) -> list[dict]:
    clients = [int(c) for c in args.clients.split(",")]
    if config == "bare":
        out = subprocess.run(
            [sys.executable, __file__, "--bare", "--model", args.model, "--clients",
             args.clients, "--requests", str(args.requests), "--max-tokens",
             str(args.max_tokens), "--threads", str(args.threads)],
            env={**os.environ, "OMP_NUM_THREADS": str(args.threads)}, capture_output=True,
            text=True, check=True)
        lines = [json.loads(x) for x in out.stdout.strip().splitlines()]
        rss = lines[-1]["peak_rss_mb"]
        return [{**x, "peak_rss_mb": rss} for x in lines[:-1]]
    proc, base, key = serve(config, args.model, args.threads, tmp)
    try:
        res = [asyncio.run(through_gateway(base, key, args.model, c, args.requests,
                                           args.max_tokens)) for c in clients]
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    return [{**x, "peak_rss_mb": rss} for x in res]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="llama,torch,bare")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=8, help="requests per level, all clients")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare:
        bare(args.model, [int(c) for c in args.clients.split(",")], args.requests,
             args.max_tokens, args.threads)
        return
    configs = args.configs.split(",")
    runs: dict[tuple[str, int], list[dict]] = {}
    tmp = Path(tempfile.mkdtemp())
    for r in range(args.rounds):
        for config in configs:
            for res in run_config(config, args, tmp):
                runs.setdefault((config, res["clients"]), []).append(res)
                print(f"round {r} {config:<5} clients {res['clients']:>2}: "
                      f"{res['tok_s']:6.1f} tok/s, p50 {res['p50_s']:5.2f} s, "
                      f"{res['tokens']} tokens, RSS {res['peak_rss_mb']:.0f} MB, "
                      f"load {res['load_avg_1m']:.1f}", file=sys.stderr, flush=True)
    names = {"llama": "llama.cpp engine + gateway + KGW", "torch": "torch fp32 engine + gateway "
             "+ KGW", "bare": "bare llama-cpp-python"}
    print(f"\n{args.model}, {args.threads} threads, max_tokens {args.max_tokens}, "
          f"{args.requests} requests per level, median of {args.rounds} rounds\n")
    print("| clients | configuration | tokens/s | vs bare | p50 latency (s) | peak RSS (MB) "
          "| load avg |")
    print("|---|---|---|---|---|---|---|")
    for c in [int(x) for x in args.clients.split(",")]:
        base = runs.get(("bare", c))
        base_tps = statistics.median(x["tok_s"] for x in base) if base else None
        for config in configs:
            xs = runs[(config, c)]
            tps = statistics.median(x["tok_s"] for x in xs)
            ratio = f"{tps / base_tps:.2f}x" if base_tps else "-"
            print(f"| {c} | {names[config]} | {tps:.1f} | {ratio} | "
                  f"{statistics.median(x['p50_s'] for x in xs):.2f} | "
                  f"{max(x['peak_rss_mb'] for x in xs):.0f} | "
                  f"{min(x['load_avg_1m'] for x in xs):.1f}-"
                  f"{max(x['load_avg_1m'] for x in xs):.1f} |")


if __name__ == "__main__":
    main()
