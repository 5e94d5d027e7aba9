"""`distillery ...`: a thin click CLI over the library.

Each module of this package contributes its commands through a module-level COMMANDS list,
so a stage adds its commands by adding a module. Heavy imports (torch, transformers) happen
inside the commands, keeping `distillery --help` fast.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import pkgutil
import sys

import click


class UserError(click.ClickException):
    """Shown as one readable line, exit status 1."""

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def default(cls, name: str):
    """A config dataclass field's default: the flag shows it in --help (show_default)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def given(ctx: click.Context, flags: dict) -> dict:
    """The flags given on the command line: a --config file's values apply unless a flag
    overrides them, so flags left at their (shown) default do not count."""
    from click.core import ParameterSource

    return {k: v for k, v in flags.items()
            if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT}


def one_line(e: BaseException) -> str:
    """The error on one line: its lines joined (not cut: the cause is often on the second, as
    in "connection failed:\n  Is the server running?"), plus the first line of its chained
    cause when that says something the message does not (the rest of a cause is detail,
    such as the SQL of a database error)."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    text = " ".join(str(msg).split()) or type(e).__name__
    cause = e.__cause__
    if cause is not None:
        why = " ".join(str(cause).strip().split("\n")[0].split())
        if why and why not in text:
            text += f" ({type(cause).__name__}: {why})"
    return text if len(text) <= 400 else text[:399] + "…"


class DistilleryGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ValueError, OSError, RuntimeError, KeyError) as e:
            # click's own control flow (Exit for --help, Abort) subclasses RuntimeError
            if isinstance(e, click.ClickException | click.exceptions.Exit | click.Abort):
                raise
            raise UserError(one_line(e)) from e


@click.group(cls=DistilleryGroup)
@click.option("-v", "--verbose", count=True, help="-v info, -vv debug logging")
@click.version_option(package_name="distillery")
def main(verbose: int) -> None:
    """distillery: LLM distillation through an API, and catching it."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


for _mod in pkgutil.iter_modules(__path__):
    for _cmd in importlib.import_module(f"{__name__}.{_mod.name}").COMMANDS:
        main.add_command(_cmd)
