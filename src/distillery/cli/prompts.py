"""`distillery prompts ...`: build prompt files for harvesting."""

from __future__ import annotations

import click


@click.group()
def prompts() -> None:
    """Prompt strategies: seed tasks, self-instruct, taxonomy sweep, chain-of-thought."""


def _write(out: str, items) -> None:
    from distillery.harvest import PromptFile

    n = PromptFile.write(out, items)
    click.echo(f"wrote {n} prompts to {out}")


@prompts.command("seeds")
@click.option("-o", "--out", required=True, help="output JSONL")
@click.option("--category", "categories", multiple=True, help="only these (repeatable)")
def seeds_cmd(out: str, categories: tuple[str, ...]) -> None:
    """The shipped seed tasks (213 instructions, 17 categories)."""
    from distillery.harvest import seed_prompts

    _write(out, seed_prompts(categories or None))


@prompts.command("taxonomy")
@click.option("-o", "--out", required=True)
def taxonomy_cmd(out: str) -> None:
    """A sweep of question templates over a topic taxonomy (12 domains x 6 topics x 5)."""
    from distillery.harvest import taxonomy_prompts

    _write(out, taxonomy_prompts())


@prompts.command("cot")
@click.argument("source")
@click.option("-o", "--out", required=True)
@click.option("--variant", "variants", multiple=True,
              help="step-by-step, final-line, explain-first, system (default: all)")
@click.option("--one-each", is_flag=True, help="one random variant per prompt, not all")
@click.option("--seed", default=0, show_default=True)
def cot_cmd(source: str, out: str, variants: tuple[str, ...], one_each: bool, seed: int) -> None:
    """Chain-of-thought elicitation variants of SOURCE ('seeds', 'taxonomy' or a JSONL file)."""
    from distillery.harvest import cot_prompts, iter_prompts, seed_prompts, taxonomy_prompts

    base = {"seeds": seed_prompts, "taxonomy": taxonomy_prompts}.get(source)
    items = base() if base else list(iter_prompts(source))
    _write(out, cot_prompts(items, variants or None, seed=seed, one_each=one_each))


@prompts.command("self-instruct")
@click.option("-o", "--out", required=True)
@click.option("--base-url", required=True, help="any OpenAI-compatible endpoint (…/v1)")
@click.option("--model", default="smollm2-135m-instruct", show_default=True)
@click.option("--api-key", default=None, envvar="OPENAI_API_KEY")
@click.option("-n", "--n-target", default=100, show_default=True)
@click.option("--n-shots", default=3, show_default=True)
@click.option("--temperature", default=1.0, show_default=True)
@click.option("--max-tokens", default=512, show_default=True)
@click.option("--max-requests", default=1000, show_default=True,
              help="stop after this many requests even if n_target is not reached")
@click.option("--seed", default=0, show_default=True)
@click.option("--include-seeds", is_flag=True, help="write the seed tasks too")
def self_instruct_cmd(out, base_url, model, api_key, n_target, n_shots, temperature, max_tokens,
                      max_requests, seed, include_seeds) -> None:
    """Self-instruct expansion of the seed tasks (Alpaca's filters, ROUGE-L <= 0.7)."""
    import openai

    from distillery.harvest import SelfInstructConfig, seed_prompts, self_instruct

    cfg = SelfInstructConfig(n_target=n_target, n_shots=n_shots, seed=seed,
                             max_requests=max_requests)
    if not api_key:
        raise ValueError("no API key: pass --api-key or set OPENAI_API_KEY")
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=5)

    def complete(prompt: str) -> str:
        r = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}],
            temperature=temperature, top_p=1.0, max_tokens=max_tokens)
        return r.choices[0].message.content or ""

    seeds = seed_prompts()
    new, stats = self_instruct([p.text for p in seeds], complete, cfg)
    _write(out, [*seeds, *new] if include_seeds else new)
    click.echo(" ".join(f"{k}={v}" for k, v in stats.items()))


COMMANDS = [prompts]
