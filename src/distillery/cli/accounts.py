"""`distillery accounts ...` and `distillery keys ...`: the gateway's customers."""

from __future__ import annotations

import dataclasses
import json

import click

from distillery.cli.info import database_option
from distillery.cli.info import open_database as _engine

json_option = click.option("--json", "as_json", is_flag=True, help="a JSON array of objects")


def _json(rows) -> str:
    return json.dumps([{**dataclasses.asdict(r), "created_at": r.created_at.isoformat()}
                       for r in rows])


@click.group()
def accounts() -> None:
    """Create and list accounts; set their status (active, flagged, throttled, blocked)."""


@accounts.command("create")
@click.argument("name")
@database_option
def accounts_create(name, database) -> None:
    from distillery import store

    a = store.create_account(_engine(database), name)
    click.echo(f"created account {a.name} (id {a.id}, {a.status})")


@accounts.command("list")
@database_option
@json_option
def accounts_list(database, as_json) -> None:
    from distillery import store

    rows = store.list_accounts(_engine(database))
    if as_json:
        click.echo(_json(rows))
        return
    for a in rows:
        reason = f"  ({a.status_reason})" if a.status_reason else ""
        click.echo(f"{a.id:>6}  {a.name:<32} {a.status:<10} {a.created_at:%Y-%m-%d}{reason}")


@accounts.command("status")
@click.argument("name")
@click.argument("status", required=False,
                type=click.Choice(["active", "flagged", "throttled", "blocked"]))
@click.option("--reason", default=None, help="why (shown beside the status)")
@database_option
def accounts_status(name, status, reason, database) -> None:
    """Show NAME's status, or set it to STATUS."""
    from distillery import store

    engine = _engine(database)
    a = store.set_status(engine, name, status, reason) if status else store.get_account(
        engine, name)
    click.echo(f"{a.name}: {a.status}" + (f" ({a.status_reason})" if a.status_reason else ""))


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (stored only as hashes)."""


@keys.command("create")
@click.option("--account", required=True, help="the account the key belongs to")
@click.option("--name", default=None, help="a label for the key")
@click.option("--rpm", "rpm_limit", type=int, default=None, help="requests/min for this key")
@click.option("--tpm", "tpm_limit", type=int, default=None, help="tokens/min for this key")
@database_option
def keys_create(account, name, rpm_limit, tpm_limit, database) -> None:
    """Print a new key once: it cannot be shown again."""
    from distillery import store

    new = store.create_key(_engine(database), account, name, rpm_limit, tpm_limit)
    click.echo(f"key id {new.info.id} for account {account} (store the key now; it is not "
               "kept):", err=True)
    click.echo(new.secret)


@keys.command("list")
@click.option("--account", default=None, help="only this account's keys")
@database_option
@json_option
def keys_list(account, database, as_json) -> None:
    from distillery import store

    rows = store.list_keys(_engine(database), account)
    if as_json:
        click.echo(_json(rows))
        return
    for k in rows:
        state = "revoked" if k.revoked else "live"
        limits = f"rpm={k.rpm_limit or '-'} tpm={k.tpm_limit or '-'}"
        click.echo(f"{k.id}  {k.prefix}...  {k.account:<24} {state:<8} {limits}  "
                   f"{k.created_at:%Y-%m-%d}  {k.name or ''}")


@keys.command("revoke")
@click.argument("key_id")
@database_option
def keys_revoke(key_id, database) -> None:
    from distillery import store

    k = store.revoke_key(_engine(database), key_id)
    click.echo(f"revoked {k.id} ({k.account})")


COMMANDS = [accounts, keys]
