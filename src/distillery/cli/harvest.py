"""`distillery harvest ...`: ask an OpenAI-compatible endpoint, record the answers."""

from __future__ import annotations

import click


@click.command()
@click.argument("prompt_file")
@click.option("-o", "--out", required=True, help="dataset JSONL (appended to; resumes)")
@click.option("--config", "config_path", default=None, help="TOML file with HarvestConfig keys")
@click.option("--base-url", default=None, help="…/v1 of any OpenAI-compatible server")
@click.option("--model", default=None)
@click.option("--api-key", "api_keys", multiple=True,
              help="repeatable: requests rotate over the keys (default $OPENAI_API_KEY)")
@click.option("--api-keys-file", default=None, help="a file with one key per line")
@click.option("--concurrency", type=int, default=None)
@click.option("--rpm-per-key", type=float, default=None, help="client-side limit per key")
@click.option("--max-tokens", type=int, default=None)
@click.option("--temperature", type=float, default=None)
@click.option("--top-p", type=float, default=None)
@click.option("--top-logprobs", type=int, default=None, help="ask for top-k logprobs (<= 20)")
@click.option("--seed", type=int, default=None)
@click.option("--max-retries", type=int, default=None)
@click.option("--timeout-s", type=float, default=None)
@click.option("--limit", type=int, default=None, help="at most this many new prompts")
@click.option("--price-in-per-m", type=float, default=None)
@click.option("--price-out-per-m", type=float, default=None)
@click.option("--parquet", default=None, help="also write the dataset as Parquet here")
@click.option("--no-progress", is_flag=True)
def harvest(prompt_file, out, config_path, api_keys, api_keys_file, parquet, no_progress,
            **flags) -> None:
    """Send the prompts of PROMPT_FILE and append the answers to the dataset."""
    from pathlib import Path

    from distillery.harvest import HarvestConfig, harvest, iter_prompts, load_config, to_parquet

    keys = list(api_keys)
    if api_keys_file:
        keys += [k.strip() for k in Path(api_keys_file).read_text().splitlines() if k.strip()]
    cfg = load_config(HarvestConfig, config_path, section="harvest", api_keys=keys or None,
                      progress=False if no_progress else None, **flags)
    report = harvest(list(iter_prompts(prompt_file)), out, cfg)
    click.echo(
        f"written {report.written}, skipped {report.skipped} (already there), failed "
        f"{report.failed}; {report.completion_tokens} answer tokens in {report.wall_s:.1f} s "
        f"({report.tokens_per_s:.1f} tok/s); retries {report.retries}, 429s "
        f"{report.rate_limited}; cost {report.cost:.4f}")
    if parquet:
        to_parquet(out, parquet)
        click.echo(f"parquet: {parquet}")
    if report.failed:
        raise SystemExit(1)


COMMANDS = [harvest]
