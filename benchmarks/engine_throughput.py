"""Teacher generation throughput: our TorchEngine (fp32, bf16) vs llama.cpp on the same GGUF.

Each configuration runs in its own subprocess so its peak RSS is its own. Every request
generates exactly --new-tokens tokens (end-of-turn banned) with sampling (T=0.7, top-p 0.95).
Configurations are interleaved over --rounds rounds so that load from other processes on a
shared machine hits them alike; the median tokens/s per configuration is reported, with the
ratio to llama.cpp at the same batch size.

llama-cpp-python's high-level API decodes one sequence at a time, so its "batch N" is N
requests run back to back (what a CPU user of the binding gets); its batch-1 speed is the
fair comparison for single-stream latency.

  python benchmarks/engine_throughput.py                       # all configurations
  python benchmarks/engine_throughput.py --configs torch-fp32 --batches 1,4
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

PROMPTS = [
    "Explain photosynthesis in detail.",
    "Write a short story about a lighthouse keeper.",
    "Describe how a compiler works.",
    "What are the causes of inflation?",
    "Give advice to a new programmer.",
    "Summarise the history of the Roman Empire.",
    "How do vaccines train the immune system?",
    "Plan a three-day trip to Kyoto.",
]


def run_torch(dtype: str, batch: int, new_tokens: int, threads: int) -> dict:
    import torch

    from distillery.engine import SamplingParams, TorchEngine, chat_request

    torch.set_num_threads(threads)
    engine = TorchEngine.from_name("smollm2-135m-instruct", dtype=dtype)
    end = torch.tensor(sorted(engine.end_ids))

    def ban_end(input_ids, scores):  # exactly new_tokens per request
        scores[:, end] = float("-inf")
        return scores

    def requests(n):
        return [chat_request(engine.tokenizer, [{"role": "user", "content": PROMPTS[i % 8]}],
                             SamplingParams(max_tokens=new_tokens, temperature=0.7, top_p=0.95,
                                            seed=i, logits_processors=[ban_end]))
                for i in range(n)]

    engine.generate(requests(1)[:1])  # warm-up
    t0 = time.perf_counter()
    results = engine.generate(requests(batch))
    dt = time.perf_counter() - t0
    tokens = sum(r.completion_tokens for r in results)
    return {"tokens": tokens, "seconds": dt}


def run_llama_cpp(batch: int, new_tokens: int, threads: int) -> dict:
    from llama_cpp import Llama

    from distillery.models import resolve
    from distillery.models.registry import gguf_path

    llm = Llama(model_path=str(gguf_path(resolve("smollm2-135m-instruct"))), n_ctx=1024,
                n_threads=threads, n_threads_batch=threads, verbose=False, seed=0)
    bias = {llm.token_eos(): -1e9}

    def one(i):
        out = llm.create_chat_completion(
            messages=[{"role": "user", "content": PROMPTS[i % 8]}], max_tokens=new_tokens,
            temperature=0.7, top_p=0.95, logit_bias=bias, seed=i)
        return out["usage"]["completion_tokens"]

    one(0)  # warm-up
    t0 = time.perf_counter()
    tokens = sum(one(i) for i in range(batch))
    return {"tokens": tokens, "seconds": time.perf_counter() - t0}


def child(config: str, batch: int, new_tokens: int, threads: int) -> None:
    if config == "llama-cpp":
        out = run_llama_cpp(batch, new_tokens, threads)
    else:
        out = run_torch(config.split("-")[1], batch, new_tokens, threads)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="torch-fp32,torch-bf16,llama-cpp")
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", nargs=2, metavar=("CONFIG", "BATCH"))
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.new_tokens, args.threads)
        return
    configs, batches = args.configs.split(","), [int(b) for b in args.batches.split(",")]
    if "llama-cpp" in configs and importlib.util.find_spec("llama_cpp") is None:
        print("llama-cpp-python is not installed (pip install llama-cpp-python==0.3.36, a ~9 min "
              "build here): measuring without it", file=sys.stderr)
        configs.remove("llama-cpp")
    runs: dict[tuple[str, int], list[dict]] = {}
    for r in range(args.rounds):
        for b in batches:
            for c in configs:
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", c, str(b), "--new-tokens",
                     str(args.new_tokens), "--threads", str(args.threads)],
                    capture_output=True, text=True, check=True)
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                res["tok_s"] = res["tokens"] / res["seconds"]
                runs.setdefault((c, b), []).append(res)
                print(f"round {r} {c:<11} batch {b:>2}: {res['tok_s']:7.1f} tok/s "
                      f"({res['tokens']} tokens, peak RSS {res['peak_rss_mb']:.0f} MB)",
                      file=sys.stderr, flush=True)
    print(f"\n{platform.processor() or platform.machine()}, {args.threads} threads, "
          f"{args.new_tokens} new tokens, median of {args.rounds} rounds\n")
    print("| engine | batch | tokens/s | vs llama.cpp | peak RSS (MB) |")
    print("|---|---|---|---|---|")
    for b in batches:
        base = runs.get(("llama-cpp", b))
        base_tps = statistics.median(x["tok_s"] for x in base) if base else None
        for c in configs:
            tps = statistics.median(x["tok_s"] for x in runs[(c, b)])
            rss = max(x["peak_rss_mb"] for x in runs[(c, b)])
            ratio = f"{tps / base_tps:.2f}x" if base_tps else "-"
            print(f"| {c} | {b} | {tps:.1f} | {ratio} | {rss:.0f} |")


if __name__ == "__main__":
    main()
