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
    click.echo(f"{label:<15} {r.key_id}  T={r.n_scored}  score={r.score:.1f}  z={r.z:.2f}  "
               f"p={r.p_value:.3g}")


def _echo_provider(pr) -> None:
    if pr.global_layer is not None:
        _echo_result("global layer", pr.global_layer)
    _echo_result("every position", pr.every_position)
    if pr.global_layer is not None:
        click.echo(f"provider key: p={pr.p_value:.3g} (Bonferroni over the two layouts; "
                   f"strongest: {pr.hypothesis})")


def _read_exactly(path: Path) -> str:
    """The text as written: no newline translation ("\r\n" -> "\n" would change the
    tokens, and so the scores); "-" is standard input."""
    if str(path) == "-":
        return click.get_text_stream("stdin").read()
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return f.read()


def _corpus_texts(path: Path) -> list[str]:
    """A directory (every file below it, sorted, as UTF-8 text) or a JSONL file (a string a
    row, or an object's "response" (harvest rows) or "text")."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        return [_read_exactly(f) for f in files]
    from distillery.harvest.dataset import iter_rows

    texts = []
    try:
        for i, row in enumerate(iter_rows(path), 1):
            text = row if isinstance(row, str) else (
                row.get("response", row.get("text")) if isinstance(row, dict) else None)
            if not isinstance(text, str):
                raise click.ClickException(f"{path}: row {i} has no \"response\" or \"text\" "
                                           "string: give one text a row")
            texts.append(text)
    except ValueError as e:
        raise click.ClickException(f"{path}: not JSONL ({e}): give a directory of text files "
                                   "or one JSON object a line") from None
    return texts


def _scheme_params(construction, hashing_key, seeding, context_width, gamma, vocab_size,
                   tokenizer) -> dict:
    params = {k: v for k, v in (("seeding", seeding), ("context_width", context_width),
                                ("gamma", gamma)) if v is not None}
    if construction == "transformers":
        params.update(construction="transformers", vocab_size=vocab_size or len(tokenizer))
        if hashing_key is not None:
            params["hashing_key"] = hashing_key
    elif hashing_key is not None or vocab_size is not None:
        raise click.BadParameter("--hashing-key and --vocab-size are for --construction "
                                 "transformers")
    return params


def _check_account(account: str, database: str) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from distillery import store

    try:
        names = store.list_account_names(database)
    except SQLAlchemyError as e:
        raise click.ClickException(f"cannot read accounts from {database} "
                                   f"({type(e).__name__}): is it the gateway's database?"
                                   ) from None
    if account not in names:
        known = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "") or "none"
        raise click.ClickException(f"unknown account {account!r} in {database} (known: {known})")


@watermark.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True,
                                        path_type=Path), required=False)
@click.option("--corpus", type=click.Path(exists=True, path_type=Path), default=None,
              help="test a collection as one: a directory of text files or a JSONL file; "
              "tuples are de-duplicated across all its documents (use it for families of "
              "near-identical texts, e.g. templated pages, under one key)")
@click.option("--scheme", "scheme_name", type=click.Choice(["kgw", "gumbel"]), default="kgw",
              show_default=True)
@click.option("--construction", type=click.Choice(["hash", "transformers"]), default="hash",
              show_default=True, help="KGW's green lists: ours, or transformers' "
              "WatermarkLogitsProcessor (text marked with a WatermarkingConfig)")
@click.option("--hashing-key", type=int, default=None, help="transformers' hashing_key "
              "(15485863 is its default) [default: derived from the key ring]")
@click.option("--seeding", type=click.Choice(["lefthash", "selfhash"]), default=None,
              help="KGW seeding [default: lefthash]")
@click.option("--context-width", type=int, default=None,
              help="tokens of context in a seed [default: 2; transformers: 1]")
@click.option("--gamma", type=float, default=None, help="KGW green fraction (transformers' "
              "greenlist_ratio) [default: 0.25]")
@click.option("--vocab-size", type=int, default=None, help="transformers: the model's "
              "config.vocab_size [default: the tokenizer's size]")
@click.option("--account", default=None, help="also test this account's key (attribution); "
              "with --database an unknown name is an error, without it the key is derived from "
              "the name, whether or not such an account exists")
@click.option("--all-accounts", is_flag=True, help="scan every account's key (Holm-adjusted)")
@click.option("--accounts", default=None, help="comma-separated account names for --all-accounts"
              " [default: every account in --database]")
@click.option("--database", default=None, help="the gateway's database, for --all-accounts and "
              "to check --account [default for --all-accounts: SQLite at "
              "$DISTILLERY_HOME/distillery.db]")
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
def detect(file, corpus, scheme_name, construction, hashing_key, seeding, context_width, gamma,
           vocab_size, account, all_accounts, accounts, database, accounts_file, prompt_file,
           model_name, key_path, no_dedup, as_json) -> None:
    """Test FILE (or a --corpus) for the watermark.

    \b
    Default: the provider key, two tests (gateway text: the global layer's positions; text
    marked without accounts: every position), p Bonferroni-corrected over the two.
    --account NAME: the provider key on the global layer, and NAME's key on the account layer.
    --all-accounts: which account's key (Holm over the keys).
    A p-value is per text, over the key's randomness; --corpus tests a collection as one.
    """
    from distillery.models import load_tokenizer
    from distillery.watermark import (
        KeyRing,
        detect_corpus_ids,
        detect_provider_corpus,
        make_scheme,
        make_schemes,
        scan_ids,
    )
    from distillery.watermark.detect import encode

    if (file is None) == (corpus is None):
        raise click.UsageError("give a FILE or --corpus DIR_OR_JSONL (one of them)")
    if account and all_accounts:
        raise click.BadParameter("give --account NAME or --all-accounts, not both")
    if corpus and all_accounts:
        raise click.BadParameter("--all-accounts scans one text: give a FILE")
    if hashing_key is not None and (account or all_accounts):
        raise click.BadParameter("--hashing-key is one public key: no --account with it")
    if construction == "transformers" and scheme_name != "kgw":
        raise click.BadParameter("--construction transformers is a KGW construction")
    if account and database:
        _check_account(account, database)
    tokenizer = load_tokenizer(model_name)
    params = _scheme_params(construction, hashing_key, seeding, context_width, gamma,
                            vocab_size, tokenizer)
    ring = None if hashing_key is not None else KeyRing.load(key_path)
    texts = _corpus_texts(corpus) if corpus else [_read_exactly(file)]
    docs = [encode(t, tokenizer) for t in texts]
    prompt_ids = encode(prompt_file.read(), tokenizer) if prompt_file else None
    dedup = not no_dedup
    try:
        if all_accounts:
            names = _accounts(accounts, accounts_file, database)
            res = scan_ids(docs[0], make_schemes(scheme_name, ring, names, **params),
                           prompt_ids, dedup)
            if as_json:
                click.echo(json.dumps(dataclasses.asdict(res)))
                return
            if res.provider is not None:
                _echo_provider(res.provider)
            click.echo(f"best account: {res.best_account} ({res.best_key_id}), "
                       f"Holm-adjusted p={res.adjusted_p:.3g} over {len(res.per_key)} keys")
            return
        scheme = make_scheme(scheme_name, ring, account, **params)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    head = f"corpus of {len(docs)} documents, tested as one" if corpus else None
    if account and scheme.layered:
        results = {la: detect_corpus_ids(docs, scheme, la, prompt_ids, dedup)
                   for la in ("global", "account")}
        if as_json:
            click.echo(json.dumps({la: dataclasses.asdict(r) for la, r in results.items()}))
            return
        if head:
            click.echo(head)
        for la, r in results.items():
            _echo_result(la, r)
        return
    provider = detect_provider_corpus(docs, scheme, prompt_ids, dedup)
    if as_json:
        click.echo(json.dumps({"provider": dataclasses.asdict(provider)}))
        return
    if head:
        click.echo(head)
    _echo_provider(provider)


COMMANDS = [watermark]
