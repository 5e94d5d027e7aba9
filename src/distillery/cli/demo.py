"""`distillery demo`: the main job on the embedded defaults.

Today: load the teacher (dequantised and cached on first use) and answer a handful of prompts
in one batch. Later stages grow this into the closed loop: gateway, harvest, student, forensics.
"""

from __future__ import annotations

import time

import click

DEMO_PROMPTS = [
    "Explain photosynthesis in two sentences.",
    "Write a haiku about the sea.",
    "What is 12 times 7? Answer briefly.",
    "Give three tips for writing clear code.",
]


@click.command()
@click.option("--model", "model_name", default="smollm2-135m-instruct", show_default=True)
@click.option("--max-tokens", default=96, show_default=True, type=int)
def demo(model_name: str, max_tokens: int) -> None:
    """Load the teacher and answer a handful of prompts in one batch."""
    from distillery.engine import SamplingParams, TorchEngine, chat_request

    t0 = time.perf_counter()
    engine = TorchEngine.from_name(model_name)
    click.echo(f"loaded {model_name} in {time.perf_counter() - t0:.1f} s")
    requests = [
        chat_request(engine.tokenizer, [{"role": "user", "content": p}],
                     SamplingParams(max_tokens=max_tokens, temperature=0.7, top_p=0.95,
                                    repetition_penalty=1.1, seed=i))
        for i, p in enumerate(DEMO_PROMPTS)
    ]
    t0 = time.perf_counter()
    results = engine.generate(requests)
    dt = time.perf_counter() - t0
    for prompt, result in zip(DEMO_PROMPTS, results, strict=True):
        click.echo(f"\n> {prompt}\n{result.choices[0].text.strip()}")
    n = sum(r.completion_tokens for r in results)
    click.echo(f"\n{n} tokens in {dt:.1f} s ({n / dt:.1f} tokens/s, batch of {len(requests)})")


COMMANDS = [demo]
