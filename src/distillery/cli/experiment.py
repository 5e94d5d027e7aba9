"""`distillery experiment [CONFIG.toml]`: the closed loop, attack and defence in one run."""

from __future__ import annotations

import json
import time

import click


@click.command()
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--run-dir", default=None, help="where every stage's output goes "
              "[default: runs/experiment, or the config's run_dir]")
@click.option("--restart", is_flag=True, help="delete the run directory first (default: resume "
              "a killed run from its last finished stage)")
@click.option("--threads", type=int, default=None, help="torch threads")
@click.option("--json", "as_json", is_flag=True, help="print summary.json's headline")
def experiment(config, run_dir, restart, threads, as_json) -> None:
    """Serve the watermarked teacher with the audit on, drive benign accounts and an extraction
    through it, train students on what the extraction got before its block and on everything
    it asked for, evaluate them, run forensics on them, and write report.html and
    summary.json. `make demo` runs the default (small) configuration."""
    from distillery.experiment import ExperimentConfig, run_experiment
    from distillery.experiment.run import remove

    cfg = ExperimentConfig.from_toml(config, run_dir=run_dir, num_threads=threads)
    if restart:
        remove(cfg.run_dir)
    t0 = time.perf_counter()
    s = run_experiment(cfg, say=lambda m: click.echo(m, err=True))
    head = {k: s[k] for k in ("campaign", "benign", "leak")}
    head["forensics"] = {w: f and {k: f[k] for k in ("verdict", "global_p", "scored_tokens",
                                                     "named", "campaign_accounts_named")}
                         for w, f in s["forensics"].items()}
    if as_json:
        click.echo(json.dumps(head, indent=1, default=str))
    else:
        c, lb, lc = s["campaign"], s["leak"]["before_block"], s["leak"]["counterfactual"]
        click.echo(f"extraction: {c['served']} of {c['asked']} queries served, "
                   f"{c['accounts_blocked']}/{c['accounts']} accounts blocked; benign blocked: "
                   f"{len(s['benign']['blocked'])}/{s['benign']['accounts']}")
        for name, x in (("before the block", lb), ("counterfactual", lc)):
            if x["trained"]:
                click.echo(f"student {name}: {x['answers']} answers, gap closed "
                           f"{x['gap_closed']:.3f} {x['gap_closed_ci']}")
        for w, f in s["forensics"].items():
            if f:
                named = ", ".join(f["named"]) or "none"
                click.echo(f"forensics {w}: {f['verdict']} (global p {f['global_p']:.3g}, "
                           f"{f['scored_tokens']} tokens; named: {named})")
    click.echo(f"report: {cfg.run_dir}/report.html (summary.json beside it; "
               f"{time.perf_counter() - t0:.0f} s)")


COMMANDS = [experiment]
