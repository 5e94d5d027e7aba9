"""`distillery info`: where things live (home, database, key ring, model cache, environment),
and the database option every command that opens the gateway's database shares."""

from __future__ import annotations

import json
import os

import click

from distillery.cli import UserError

# Every environment variable distillery reads (README, "Where things live").
ENVIRONMENT = {
    "DISTILLERY_HOME": "home: the database, the watermark key and the model cache "
                       "[~/.cache/distillery]",
    "DISTILLERY_WATERMARK_KEY": "the key ring itself (a JSON value); overrides the key file",
    "DISTILLERY_ADMIN_TOKEN": "bearer token of the gateway's /admin routes (unset: off)",
    "DISTILLERY_METRICS_TOKEN": "bearer token of /metrics and /openapi.json",
    "OPENAI_API_KEY": "harvest and self-instruct: API key(s), comma-separated",
    "OMP_NUM_THREADS": "torch threads (1 is faster on a busy machine)",
}
SECRET = {"DISTILLERY_WATERMARK_KEY", "DISTILLERY_ADMIN_TOKEN", "DISTILLERY_METRICS_TOKEN",
          "OPENAI_API_KEY"}

database_option = click.option(
    "--database", default=None,
    help="SQLAlchemy URL [default: SQLite at $DISTILLERY_HOME/distillery.db]")


def shown_url(url: str) -> str:
    """The URL with any password masked (it goes to the terminal and to logs)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def open_database(url: str | None):
    """The gateway's database, migrated to the newest schema; one readable line if it cannot
    be opened (bad URL, unknown driver, server down, wrong credentials)."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from distillery import store

    where = shown_url(url or store.default_url())
    try:
        store.migrate(url)
        return store.make_engine(url)
    except (SQLAlchemyError, CommandError, OSError) as e:
        cause = " ".join(str(getattr(e, "orig", None) or e).split())
        raise UserError(f"cannot open the database {where}: {cause}") from None


def locations() -> dict:
    from distillery import store
    from distillery.models import distillery_home
    from distillery.watermark import default_key_path

    key_file = default_key_path()
    key_env = bool(os.environ.get("DISTILLERY_WATERMARK_KEY"))
    return {
        "home": str(distillery_home()),
        "database": shown_url(store.default_url()),
        "watermark_key": "$DISTILLERY_WATERMARK_KEY" if key_env else str(key_file),
        "watermark_key_exists": key_env or key_file.is_file(),
        "model_cache": str(distillery_home() / "models"),
        "environment": {k: ("(set, not shown)" if k in SECRET else os.environ[k])
                        if os.environ.get(k) else None for k in ENVIRONMENT},
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
def info(as_json: bool) -> None:
    """Where things live: home, database, watermark key, model cache, environment."""
    loc = locations()
    if as_json:
        click.echo(json.dumps(loc))
        return
    key = loc["watermark_key"] + ("" if loc["watermark_key_exists"] else
                                  "  (missing: `distillery watermark keygen`)")
    click.echo(f"home           {loc['home']}")
    click.echo(f"database       {loc['database']}  (--database overrides)")
    click.echo(f"watermark key  {key}")
    click.echo(f"model cache    {loc['model_cache']}")
    click.echo("environment:")
    for k, what in ENVIRONMENT.items():
        click.echo(f"  {k:<25} {loc['environment'][k] or '(unset)':<20} {what}")


COMMANDS = [info]
