"""`distillery watermark keygen|detect`: thin over distillery.watermark."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click


@click.group()
def watermark() -> None:
    """Watermark keys and text detection."""


@watermark.command()
@click.option("--path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="key file (default: $DISTILLERY_HOME/watermark.key)")
@click.option("--rotate", is_flag=True, help="add a new master version (old ones stay)")
def keygen(path: Path | None, rotate: bool) -> None:
    """Create the secret master key (mode 0600), or rotate it. Prints only public key ids."""
    from distillery.watermark import KeyRing, default_key_path

    target = path or default_key_path()
    if rotate:
        ring = KeyRing.load(target).rotated()
        ring.save(target, overwrite=True)
    else:
        if target.exists():
            raise click.ClickException(f"{target} exists: use --rotate to add a new version")
        ring = KeyRing.generate()
        ring.save(target)
    click.echo(f"wrote {target} (mode 0600), current version {ring.current}")
    click.echo(f"global key id: {ring.global_key().key_id}")


def _accounts(accounts: str | None, accounts_file: Path | None, database: str | None
              ) -> list[str]:
    """The names given, else every account in the gateway's database."""
    names = [a.strip() for a in (accounts or "").split(",") if a.strip()]
    if accounts_file:
        names += [ln.strip() for ln in accounts_file.read_text().splitlines() if ln.strip()]
    if not names:
        from sqlalchemy.exc import SQLAlchemyError

        from distillery import store

        where = database or store.default_url()
        try:
            names = store.list_account_names(database)
        except SQLAlchemyError as e:
            raise click.ClickException(
                f"cannot read accounts from {where} ({type(e).__name__}: is it the gateway's "
                "database?): give --database URL, or the names with --accounts a,b,c") from None
        if not names:
            raise click.ClickException(f"no accounts in {where}: give --accounts a,b,c")
    return list(dict.fromkeys(names))


def _echo_result(label: str, r) -> None:
    click.echo(f"{label:<10} {r.key_id}  T={r.n_scored}  score={r.score:.1f}  z={r.z:.2f}  "
               f"p={r.p_value:.3g}")


@watermark.command()
@click.argument("file", type=click.File("r"))
@click.option("--scheme", "scheme_name", type=click.Choice(["kgw", "gumbel"]), default="kgw",
              show_default=True)
@click.option("--account", default=None, help="also test this account's key (attribution)")
@click.option("--all-accounts", is_flag=True, help="scan every account's key (Holm-adjusted)")
@click.option("--accounts", default=None, help="comma-separated account names for --all-accounts"
              " [default: every account in --database]")
@click.option("--database", default=None, help="the gateway's database, for --all-accounts "
              "[default: SQLite at $DISTILLERY_HOME/distillery.db]")
@click.option("--accounts-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="one account name a line, for --all-accounts")
@click.option("--prompt-file", type=click.File("r"), default=None,
              help="do not score tuples that occur in this prompt")
@click.option("--model", "model_name", default="smollm2-135m-instruct", show_default=True,
              help="whose tokenizer to read the text with")
@click.option("--key-path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--no-dedup", is_flag=True, help="score repeated (window, token) tuples again "
              "(invalidates the p-value on repetitive text; for comparison only)")
@click.option("--json", "as_json", is_flag=True)
def detect(file, scheme_name, account, all_accounts, accounts, database, accounts_file,
           prompt_file, model_name, key_path, no_dedup, as_json) -> None:
    """Test FILE for the watermark: the provider key, one account's, or all accounts'."""
    from distillery.models import load_tokenizer
    from distillery.watermark import KeyRing, make_scheme, make_schemes
    from distillery.watermark import detect as detect_text
    from distillery.watermark import scan as scan_text

    if account and all_accounts:
        raise click.BadParameter("give --account NAME or --all-accounts, not both")
    ring = KeyRing.load(key_path)
    tokenizer = load_tokenizer(model_name)
    text = file.read()
    prompt = prompt_file.read() if prompt_file else None
    dedup = not no_dedup
    if all_accounts:
        schemes = make_schemes(scheme_name, ring, _accounts(accounts, accounts_file, database))
        res = scan_text(text, tokenizer, schemes, prompt, dedup)
        if as_json:
            click.echo(json.dumps(dataclasses.asdict(res)))
            return
        _echo_result("global", res.global_result)
        click.echo(f"best account: {res.best_account} ({res.best_key_id}), "
                   f"Holm-adjusted p={res.adjusted_p:.3g} over {len(res.per_key)} keys")
        return
    scheme = make_scheme(scheme_name, ring, account)
    layers = ["global", "account"] if account else ["global"]
    results = {la: detect_text(text, tokenizer, scheme, la, prompt, dedup) for la in layers}
    if as_json:
        click.echo(json.dumps({la: dataclasses.asdict(r) for la, r in results.items()}))
        return
    for la, r in results.items():
        _echo_result(la, r)


COMMANDS = [watermark]
