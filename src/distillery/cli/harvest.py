"""`distillery harvest ...`: ask an OpenAI-compatible endpoint, record the answers."""

from __future__ import annotations

import dataclasses
import json

import click

from distillery.cli import default, given
from distillery.harvest.config import HarvestConfig


def _d(name: str):
    return default(HarvestConfig, name)


@click.command()
@click.argument("prompt_file")
@click.option("-o", "--out", required=True, help="dataset JSONL (appended to; resumes)")
@click.option("--config", "config_path", default=None, help="TOML file with HarvestConfig keys "
              "(top level or a [harvest] table); flags override it")
@click.option("--base-url", default=_d("base_url"), show_default=True,
              help="…/v1 of any OpenAI-compatible server")
@click.option("--model", default=_d("model"), show_default=True, help="the model to ask")
@click.option("--api-key", "api_keys", multiple=True,
              help="repeatable: requests rotate over the keys  [default: $OPENAI_API_KEY]")
@click.option("--api-keys-file", default=None, help="a file with one key per line")
@click.option("--concurrency", type=int, default=_d("concurrency"), show_default=True,
              help="requests in flight")
@click.option("--rpm-per-key", type=float, default=_d("rpm_per_key"), show_default=True,
              help="client-side limit, requests/minute per key (0 = none)")
@click.option("--max-tokens", type=int, default=_d("max_tokens"), show_default=True,
              help="answer length limit")
@click.option("--temperature", type=float, default=_d("temperature"), show_default=True,
              help="sampling temperature sent with each request")
@click.option("--top-p", type=float, default=_d("top_p"), show_default=True,
              help="nucleus sampling sent with each request")
@click.option("--top-logprobs", type=int, default=_d("top_logprobs"), show_default=True,
              help="ask for the top-k logprobs of each answer token (<= 20): the teacher's "
              "bits for `evaluate`, and targets for top-k KD")
@click.option("--seed", type=int, default=None, help="sampling seed sent with each request")
@click.option("--max-retries", type=int, default=_d("max_retries"), show_default=True,
              help="per prompt, over 429 / 5xx / timeouts / connection errors")
@click.option("--timeout-s", type=float, default=_d("timeout_s"), show_default=True,
              help="per request")
@click.option("--limit", type=int, default=None, help="at most this many new prompts")
@click.option("--price-in-per-m", type=float, default=_d("price_in_per_m"), show_default=True,
              help="price per million prompt tokens, for the cost shown")
@click.option("--price-out-per-m", type=float, default=_d("price_out_per_m"),
              show_default=True, help="price per million answer tokens")
@click.option("--parquet", default=None, help="also write the dataset as Parquet here")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@click.option("--json", "as_json", is_flag=True, help="the summary as one JSON object")
@click.pass_context
def harvest(ctx, prompt_file, out, config_path, api_keys, api_keys_file, parquet, no_progress,
            as_json, **flags) -> None:
    """Send the prompts of PROMPT_FILE and append the answers to the dataset."""
    from pathlib import Path

    from distillery.harvest import harvest, iter_prompts, load_config, to_parquet

    keys = list(api_keys)
    if api_keys_file:
        keys += [k.strip() for k in Path(api_keys_file).read_text().splitlines() if k.strip()]
    cfg = load_config(HarvestConfig, config_path, section="harvest", api_keys=keys or None,
                      progress=False if no_progress else None, **given(ctx, flags))
    report = harvest(list(iter_prompts(prompt_file)), out, cfg)
    if parquet:
        to_parquet(out, parquet)
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(report), "tokens_per_s": report.tokens_per_s,
                               "out": str(out), "parquet": parquet}))
    else:
        click.echo(
            f"written {report.written}, skipped {report.skipped} (already there), failed "
            f"{report.failed}; {report.completion_tokens} answer tokens in {report.wall_s:.1f} s "
            f"({report.tokens_per_s:.1f} tok/s); retries {report.retries}, 429s "
            f"{report.rate_limited}; cost {report.cost:.4f}")
        if parquet:
            click.echo(f"parquet: {parquet}")
    if report.failed:
        raise SystemExit(1)


COMMANDS = [harvest]
