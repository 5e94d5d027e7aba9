"""`distillery audit ...`: simulate traffic, replay it, calibrate, run passes, decide."""

from __future__ import annotations

import json

import click

database_option = click.option("--database", default=None,
                               help="SQLAlchemy URL [default: SQLite at $DISTILLERY_HOME]")


def _engine(database: str | None):
    from distillery import store

    store.migrate(database)
    return store.make_engine(database)


@click.group()
def audit() -> None:
    """Find the accounts that are distilling, from the usage store, and act on it."""


@audit.command("simulate")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--seed", default=0, type=int)
@click.option("--scale", default=1.0, type=float, help="requests per account x this")
@click.option("--benign-only", is_flag=True, help="calibration traffic: benign personas only, "
              "with histories long enough for every window size")
def simulate_cmd(out, seed, scale, benign_only) -> None:
    """Write simulated traffic to OUT and its labels beside it (OUT.labels.jsonl)."""
    from distillery.audit.simulate import CALIBRATION_MIX, SimConfig, simulate
    from distillery.audit.traffic import labels_path, write_traffic

    cfg = SimConfig(seed=seed, scale=scale, **({"mix": CALIBRATION_MIX} if benign_only else {}))
    reqs, labels = simulate(cfg)
    n = write_traffic(out, reqs, labels)
    click.echo(f"{n} requests of {len(labels)} accounts -> {out} (labels: {labels_path(out)})")


@audit.command("calibrate")
@click.argument("traffic", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--embedder", type=click.Choice(["minilm", "hashing"]), default="minilm")
def calibrate_cmd(traffic, out, embedder) -> None:
    """Thresholds from BENIGN traffic only (a traffic file you vouch for)."""
    from distillery.audit.offline import calibrate_traffic
    from distillery.audit.traffic import iter_traffic

    cal = calibrate_traffic(iter_traffic(traffic), embedder)
    cal.save(out)
    click.echo(f"calibration ({embedder}; null windows per size {cal.n_null}) -> {out}")


@audit.command("replay")
@click.argument("traffic", type=click.Path(exists=True, dir_okay=False))
@click.option("--base-url", required=True, help="the gateway's /v1 URL")
@database_option
@click.option("--model", default=None, help="[default: the gateway's first model]")
@click.option("--concurrency", default=16, type=int)
def replay_cmd(traffic, base_url, database, model, concurrency) -> None:
    """Send TRAFFIC through a gateway (accounts and keys provisioned in --database)."""
    from distillery.audit.replay import provision, replay
    from distillery.audit.traffic import iter_traffic

    reqs = list(iter_traffic(traffic))
    keys = provision(database, {r.account for r in reqs})
    res = replay(reqs, base_url, keys, model, concurrency)
    click.echo(f"sent {res.sent}: " + ", ".join(f"{k}: {v}" for k, v in
                                               sorted(res.statuses.items())))


@audit.command("run")
@database_option
@click.option("--calibration", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option("--config", "config_file", default=None,
              type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="score and rank; record no decision")
@click.option("--all", "rescore_all", is_flag=True, help="rescore every account, not only "
              "those with new rows")
@click.option("--json", "as_json", is_flag=True)
@click.option("--report", default=None, type=click.Path(dir_okay=False), help="HTML report")
@click.option("--top", default=20, type=int)
def run_cmd(database, calibration, config_file, dry_run, rescore_all, as_json, report,
            top) -> None:
    """One audit pass: ranked accounts and clusters with their evidence."""
    from distillery.audit import AuditConfig, Auditor, Calibration
    from distillery.audit.report import as_dicts, write_html

    cfg = AuditConfig.from_toml(config_file, calibration=calibration)
    if cfg.calibration is None:
        raise ValueError("no calibration: pass --calibration (make one with `distillery audit "
                         "calibrate`)")
    res = Auditor(_engine(database), Calibration.load(cfg.calibration), cfg).run(
        dry_run=dry_run, rescore_all=rescore_all)
    ranked = as_dicts(res)[:top]
    if report:
        write_html(report, res)
    if as_json:
        click.echo(json.dumps({"rows_read": res.rows_read, "cursor": res.cursor,
                               "ranked": ranked, "decisions": len(res.decisions)},
                              default=str, indent=1))
        return
    click.echo(f"{res.rows_read} new rows; {len(res.scores)} windows scored; "
               f"{len(res.clusters)} clusters; {len(res.decisions)} decisions")
    for r in ranked:
        click.echo(f"  p={r['p_value']:<9.4g} {r['entity']:<40} n={r['window_size']:<4} "
                   f"mmd_p={r['p_values']['mmd']:.3g} prada_p={r['p_values']['prada']:.3g} "
                   f"novelty_p={r['p_values']['novelty']:.3g} "
                   f"behaviour_p={r['p_values']['behaviour']:.3g}")


@audit.command("decisions")
@database_option
@click.option("--account", default=None)
@click.option("--limit", default=50, type=int)
@click.option("--json", "as_json", is_flag=True)
def decisions_cmd(database, account, limit, as_json) -> None:
    """Policy actions and overrides, newest first, with their evidence."""
    from distillery.audit.decisions import list_decisions

    ds = list_decisions(_engine(database), account, limit)
    if as_json:
        click.echo(json.dumps([d.__dict__ for d in ds], default=str, indent=1))
        return
    for d in ds:
        p = f"p={d.p_value:.3g}" if d.p_value is not None else ""
        click.echo(f"{d.created_at:%Y-%m-%d %H:%M:%S}  {d.account:<28} {d.action:<9} "
                   f"{d.status_before}->{d.status_after:<10} {d.actor:<8} strikes={d.strikes} "
                   f"{p}  {d.entity}")


@audit.command("override")
@click.argument("account")
@click.option("--status", required=True,
              type=click.Choice(["active", "flagged", "throttled", "blocked"]))
@click.option("--reason", default=None)
@database_option
def override_cmd(account, status, reason, database) -> None:
    """Set ACCOUNT's status by hand; its strikes start afresh."""
    from distillery.audit.decisions import override

    d = override(_engine(database), account, status, reason)
    click.echo(f"{d.account}: {d.status_before} -> {d.status_after} (operator)")


COMMANDS = [audit]
