"""The open test's read speed beside the same model's training forward and its generation, on
the same texts in one process (issue 10: reading is one forward pass per batch of text, so it
should run at the speed of a training forward, not of generation).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/forensics_speed.py \
        --run-dir runs/gemma-kgw-share --model gemma-3-270m --rows 64

The texts: the first --rows answers of <run>/dataset.jsonl (our marked teacher answers to their
prompts, what `forensics check --mode open` reads from the usage store). After a warm-up,
each is measured once, in this order:

- read, argmax: `Reader.candidates` with the top-1 only (the open test's default);
- read, top 32: the same keeping the top 32 (forensics_power's mass and shift statistics);
- training forward: `answer_logits` over the same rows as training batches (distill.data,
  batch 8), no gradient;
- training step: the same with the cross-entropy's backward (no optimizer step);
- generation: the model answers the rows' prompts on the torch engine (one batch, --max-tokens
  new tokens, temperature 0.7): what an API-mode test or a harvest pays per token.

Tokens per second count non-padding tokens fed in (read, training) or tokens generated.
Writes <run>/forensics-speed-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

log = logging.getLogger("forensics_speed")
TEACHER = "smollm2-135m-instruct"


def timed(fn):
    t0 = time.perf_counter()
    tokens = fn()
    s = time.perf_counter() - t0
    return {"tokens": tokens, "s": s, "tokens_per_s": tokens / s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--model", default="gemma-3-270m", help="a model name or a student path")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=96, help="new tokens when generating")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    from distillery.distill.data import batches, collate, encode_rows
    from distillery.distill.forward import answer_logits
    from distillery.engine import SamplingParams, chat_request, load_engine
    from distillery.forensics.reading import Reader, TextRow
    from distillery.forensics.run import LAYER_PROBE
    from distillery.harvest import read_rows
    from distillery.models import load
    from distillery.models.loader import load_tokenizer
    from distillery.watermark import KeyRing, make_scheme

    run = Path(args.run_dir)
    rows = read_rows(run / "dataset.jsonl")[: args.rows]
    texts = [TextRow(tuple(r["messages"]), r["response"]) for r in rows]
    name = str(run / args.model) if (run / args.model).exists() else args.model
    m = load(name)
    model, tok = m.model, m.tokenizer
    scheme = make_scheme("kgw", KeyRing.generate(), account=LAYER_PROBE, context_width=1)
    ttok = load_tokenizer(TEACHER)
    out = {"model": args.model, "rows": len(rows), "threads": args.threads,
           "batch_size": args.batch_size}

    def read(top_k: int):
        reader = Reader(model, tok, ttok, scheme, batch_size=args.batch_size, top_k=top_k)
        return lambda: reader.candidates(texts).n_tokens

    examples = encode_rows(rows, tok, max_len=512)
    pad = tok.pad_token_id or 0
    train_batches = [collate([examples[i] for i in b], pad)
                     for b in batches(examples, args.batch_size, seed=0, epoch=0)]

    def forward(backward: bool):
        def go():
            n = 0
            for b in train_batches:
                with torch.set_grad_enabled(backward):
                    logits, targets, _ = answer_logits(model, b["input_ids"],
                                                       b["attention_mask"], b["labels"])
                    if backward:
                        torch.nn.functional.cross_entropy(logits.float(), targets).backward()
                        model.zero_grad(set_to_none=True)
                n += int(b["attention_mask"].sum())
            return n
        return go

    read_argmax = read(0)
    read_argmax()  # warm-up: first-call allocations and kernels
    out["read_argmax"] = timed(read_argmax)
    out["read_top32"] = timed(read(32))
    out["training_forward"] = timed(forward(False))
    for p in model.parameters():
        p.requires_grad_(True)
    out["training_step"] = timed(forward(True))
    model = m = None  # the engine loads its own copy

    engine = load_engine(name, "torch")
    reqs = [chat_request(engine.tokenizer, list(t.messages),
                         SamplingParams(max_tokens=args.max_tokens, temperature=0.7, top_p=0.95,
                                        seed=i)) for i, t in enumerate(texts)]
    out["generation"] = timed(lambda: sum(r.completion_tokens for r in engine.generate(reqs)))
    base = out["training_forward"]["tokens_per_s"]
    for k in ("read_argmax", "read_top32", "training_forward", "training_step", "generation"):
        out[k]["vs_training_forward"] = out[k]["tokens_per_s"] / base
        log.info("%-16s %7d tokens %6.1f s %7.1f tokens/s (x%.2f the training forward)", k,
                 out[k]["tokens"], out[k]["s"], out[k]["tokens_per_s"],
                 out[k]["vs_training_forward"])
    (run / f"forensics-speed-{Path(args.model).name}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
