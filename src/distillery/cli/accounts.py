"""`distillery accounts ...` and `distillery keys ...`: the gateway's customers."""

from __future__ import annotations

import click

database_option = click.option("--database", default=None,
                               help="SQLAlchemy URL [default: SQLite at $DISTILLERY_HOME]")


def _engine(database: str | None):
    from distillery import store

    store.migrate(database)
    return store.make_engine(database)


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
def accounts_list(database) -> None:
    from distillery import store

    for a in store.list_accounts(_engine(database)):
        reason = f"  ({a.status_reason})" if a.status_reason else ""
        click.echo(f"{a.id:>6}  {a.name:<32} {a.status:<10} {a.created_at:%Y-%m-%d}{reason}")


@accounts.command("status")
@click.argument("name")
@click.argument("status", required=False,
                type=click.Choice(["active", "flagged", "throttled", "blocked"]))
@click.option("--reason", default=None)
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
@click.option("--account", required=True)
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
@click.option("--account", default=None)
@database_option
def keys_list(account, database) -> None:
    from distillery import store

    for k in store.list_keys(_engine(database), account):
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
