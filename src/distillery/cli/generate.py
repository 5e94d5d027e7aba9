"""`distillery generate ...`"""

from __future__ import annotations

import click


def sampling_options(f):
    """The sampling flags shared by every command that generates."""
    for opt in reversed([
        click.option("--max-tokens", default=256, show_default=True, type=int),
        click.option("--temperature", default=0.7, show_default=True, type=float,
                     help="0 = greedy"),
        click.option("--top-p", default=0.95, show_default=True, type=float),
        click.option("--repetition-penalty", default=1.1, show_default=True, type=float,
                     help="SmolLM2 loops at low temperature without one"),
        click.option("--stop", multiple=True, help="stop string (repeatable)"),
        click.option("--seed", type=int, default=None),
    ]):
        f = opt(f)
    return f


@click.command()
@click.argument("prompts", nargs=-1, required=True)
@click.option("--model", "model_name", default="smollm2-135m-instruct", show_default=True,
              help="registered name or local Hugging Face directory")
@click.option("--raw", is_flag=True, help="continue the text as is, without the chat template")
@click.option("--system", default=None, help="system message")
@click.option("--dtype", default="float32", show_default=True)
@click.option("--stream/--no-stream", default=True, show_default=True,
              help="print tokens as they come (one prompt only)")
@click.option("--watermark", "watermark_name", type=click.Choice(["kgw", "gumbel"]),
              default=None, help="mark the output (key ring: DISTILLERY_WATERMARK_KEY or "
              "`distillery watermark keygen`)")
@click.option("--account", default=None, help="with --watermark: the account whose key marks it")
@sampling_options
def generate(prompts, model_name, raw, system, dtype, stream, watermark_name, account,
             max_tokens, temperature, top_p, repetition_penalty, stop, seed) -> None:
    """Answer PROMPTS with a model (several prompts run as one batch)."""
    from distillery.engine import GenerationRequest, SamplingParams, TorchEngine, chat_request
    from distillery.engine import stream as stream_deltas

    if any(not p.strip() for p in prompts):
        raise click.BadParameter("a prompt is empty", param_hint="PROMPTS")

    if account and not watermark_name:
        raise click.BadParameter("--account needs --watermark kgw|gumbel", param_hint="--account")
    scheme = None
    if watermark_name:
        from distillery.watermark import KeyRing, make_scheme

        scheme = make_scheme(watermark_name, KeyRing.load(), account)
        click.echo(f"watermark: {scheme.key_ids}", err=True)  # public ids only

    def params() -> SamplingParams:
        p = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                           repetition_penalty=repetition_penalty, stop=list(stop), seed=seed)
        return scheme.apply(p) if scheme else p

    params()  # validate before the slow model load
    engine = TorchEngine.from_name(model_name, dtype=dtype)
    requests = []
    for p in prompts:
        if raw:
            requests.append(GenerationRequest(p, params()))
        else:
            messages = ([{"role": "system", "content": system}] if system else [])
            requests.append(chat_request(engine.tokenizer, [*messages,
                                         {"role": "user", "content": p}], params()))
    if stream and len(requests) == 1:
        for delta in stream_deltas(engine, requests[0]):
            click.echo(delta.text, nl=False)
        click.echo()
        return
    for i, result in enumerate(engine.generate(requests)):
        if len(requests) > 1:
            click.echo(f"--- {i + 1}: {prompts[i]}")
        click.echo(result.choices[0].text)


COMMANDS = [generate]
