"""`distillery models ...`"""

from __future__ import annotations

import json

import click


@click.group()
def models() -> None:
    """The model registry and its cache."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="a JSON array of objects")
def list_cmd(as_json: bool) -> None:
    """Each registered model, whether it is installed and whether it is cached. A trained
    student's directory or a local Hugging Face directory also works as a model name."""
    from distillery.models import distillery_home, list_models

    if as_json:
        click.echo(json.dumps(list_models()))
        return
    click.echo(f"{'name':<24} {'installed':<10} {'cached':<7} description")
    for m in list_models():
        click.echo(
            f"{m['name']:<24} {'yes' if m['installed'] else 'no':<10} "
            f"{'yes' if m['cached'] else 'no':<7} {m['description']}"
        )
    click.echo(f"model cache: {distillery_home() / 'models'}")


@models.command("prepare")
@click.argument("names", nargs=-1)
def prepare(names: tuple[str, ...]) -> None:
    """Dequantise and cache models now (default: every installed one)."""
    from distillery.models import REGISTRY, list_models, load

    todo = names or [m["name"] for m in list_models() if m["installed"]]
    for name in todo:
        if name in REGISTRY and REGISTRY[name].source == "tiny-random":
            continue
        load(name)
        click.echo(f"{name}: cached")


COMMANDS = [models]
