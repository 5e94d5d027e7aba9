"""`distillery forensics check|plan`: thin over distillery.forensics."""

from __future__ import annotations

import json

import click

from distillery.cli import UserError


def _shared(f):
    opts = [
        click.option("--suspect", required=True,
                     help="a student directory (train's output_dir/student), a model name or "
                          "directory (open weights), or an OpenAI-compatible base URL (api)"),
        click.option("--mode", type=click.Choice(["auto", "open", "api"]), default="auto",
                     show_default=True, help="auto: a URL means api, anything else open"),
        click.option("--database", default=None,
                     help="the gateway's usage store: our texts, the prompts, the accounts"),
        click.option("--dataset", default=None,
                     help="instead of --database: a harvest-format JSONL of our texts"),
        click.option("--account", default=None,
                     help="test this account alone, on its own stored answers"),
        click.option("--all-accounts", is_flag=True,
                     help="test every account of --database (the default with a database)"),
        click.option("--cluster", "clusters", multiple=True, metavar="NAME=A,B,C",
                     help="pool these accounts under one null (repeatable)"),
        click.option("--budget-tokens", type=int, default=None,
                     help="planned scored tokens of the global layer [default: every text]"),
        click.option("--max-rows", type=int, default=None,
                     help="texts read (open) or prompts sent (api), at most"),
        click.option("--fresh", type=int, default=0, show_default=True,
                     help="open mode: read N fresh unmarked teacher answers to the stored "
                          "prompts (the exact test) instead of the stored, marked answers"),
        click.option("--unmarked-text", is_flag=True,
                     help="open mode: the --dataset answers were not marked by the tested keys "
                          "(e.g. fresh teacher answers): score their own tuples too, as "
                          "--fresh does (more power; on marked text this would be invalid)"),
        click.option("--statistic",
                     type=click.Choice(["argmax", "mass", "shift", "disagree"]),
                     default="argmax", show_default=True,
                     help="the suspect's top-1 token (exact, any text), the green mass of "
                     "its top-k distribution (more power; open mode needs --fresh N, api mode "
                     "reads --top-logprobs), or (open mode) the green mass of its shift from "
                     "its clean base (needs --fresh N and the base: a LoRA student, or "
                     "--reference), or (open mode) the top-1 token where it differs from the "
                     "base's (exact, any text; needs the base as shift does)"),
        click.option("--top-k", type=int, default=32, show_default=True,
                     help="open mode: tokens of the suspect's distribution the green mass reads"),
        click.option("--top-logprobs", type=int, default=None,
                     help="api mode: top logprobs asked per answer token, 0..20 [default: 20 "
                          "with --statistic mass, else 0]"),
        click.option("--skip-rows", type=int, default=0, show_default=True,
                     help="skip the rows a pilot (`forensics plan`) used"),
        click.option("--reference", default=None,
                     help="clean reference model [default: the suspect's base, else the "
                          "teacher's other shipped model]"),
        click.option("--teacher", default="smollm2-135m-instruct", show_default=True,
                     help="whose tokens carry the watermark"),
        click.option("--scheme", type=click.Choice(["kgw", "gumbel"]), default="kgw",
                     show_default=True, help="as served (`serve --watermark`)"),
        click.option("--context-width", type=int, default=None,
                     help="the served scheme's context width [default: the scheme's, 2]"),
        click.option("--gamma", type=float, default=None,
                     help="KGW green fraction as served [default: 0.25]"),
        click.option("--global-share", type=float, default=None,
                     help="share of positions in the global layer as served [default: 0.5]"),
        click.option("--accounts", default=None,
                     help="comma-separated account names to test [default: every account "
                          "in --database]"),
        click.option("--key-path", default=None, help="the key ring [default: "
                     "$DISTILLERY_WATERMARK_KEY, else $DISTILLERY_HOME/watermark.key]"),
        click.option("--controls", type=int, default=100, show_default=True,
                     help="keys that never served anyone, tested beside"),
        click.option("--alpha", type=float, default=1e-6, show_default=True,
                     help="family-wise level of the verdict"),
        click.option("--min-shift", type=float, default=0.005, show_default=True,
                     help="smallest green-rate shift a 'not detected' must rule out"),
        click.option("--api-key", default="none", show_default=True, help="for --mode api"),
        click.option("--model", "model", default=None, help="the endpoint's model name (api)"),
        click.option("--work-dir", default=None, help="api answers kept here (resumable) "
                     "[default: runs/forensics-api]"),
        click.option("--batch-size", type=int, default=8, show_default=True),
        click.option("--num-threads", type=int, default=None),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="the order texts and prompts are drawn in"),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _config(kw: dict):
    from distillery.forensics import ForensicsConfig

    clusters = {}
    for c in kw.pop("clusters"):
        name, _, members = c.partition("=")
        if not name or not members:
            raise click.BadParameter(f"{c!r}: use NAME=ACCOUNT,ACCOUNT", param_hint="--cluster")
        clusters[name] = tuple(m.strip() for m in members.split(",") if m.strip())
    kw.pop("all_accounts")
    kw["key_file"] = kw.pop("key_path")
    params = {k: kw.pop(k) for k in ("context_width", "gamma", "global_share")}
    if kw["scheme"] == "gumbel":
        params.pop("gamma")
    accounts = tuple(a.strip() for a in (kw.pop("accounts") or "").split(",") if a.strip())
    return ForensicsConfig(clusters=clusters, accounts=accounts,
                           scheme_params={k: v for k, v in params.items() if v is not None},
                           **kw)


def _p(x: float) -> str:
    return f"{x:.3g}"


def _echo(v) -> None:
    a = v.suspect_analysis
    g = a.global_result
    click.echo(f"verdict: {v.verdict.upper()}  (suspect {v.suspect}, {v.mode} mode, {v.scheme}, "
               f"alpha {v.alpha:g})")
    click.echo(f"global layer: p={_p(g.p_value)} (x2, alpha split: {_p(a.global_adjusted_p)})"
               f"  T={g.n_scored}  rate={g.rate:.4f}  z={g.z:.2f}  lower-tail p={_p(g.p_lower)}")
    u = v.usage
    click.echo(f"read: {u['rows']} texts/answers, {u['tokens']} suspect tokens, "
               f"{u['candidates']} candidates, {u['scored_global']} scored (global)"
               + (f", {u['queries']} queries" if "queries" in u else ""))
    if a.accounts:
        click.echo(f"accounts ({len(a.accounts)} tests, Holm x2): named "
                   f"{', '.join(a.named) or 'none'}")
        for r in a.accounts[:5]:
            click.echo(f"  {r.name:<24} adj p={_p(r.adjusted_p)}  p={_p(r.result.p_value)}  "
                       f"T={r.result.n_scored}  rate={r.result.rate:.4f}")
    for s in a.controls:
        click.echo(f"controls ({s.layer}, {s.n_keys} unused keys): min p={_p(s.min_p)}  "
                   f"median={_p(s.median_p)}  KS p={_p(s.ks_p)}")
    if v.reference_analysis is not None:
        r = v.reference_analysis
        click.echo(f"reference {v.reference}: global p={_p(r.global_result.p_value)} "
                   f"(T={r.global_result.n_scored})  accounts named: "
                   f"{', '.join(r.named) or 'none'}")
    pl = v.plan
    need = "n/a (no positive shift)" if pl.tokens_needed is None else f"{pl.tokens_needed:,.0f}"
    click.echo(f"planner: shift {pl.shift:+.4f} [{pl.shift_ci[0]:+.4f}, {pl.shift_ci[1]:+.4f}], "
               f"tokens for p<={pl.target_p:g}: {need}; 'not detected' needs >= "
               f"{pl.tokens_for_min_shift:,} (shift {pl.min_shift:g})")
    for n in v.notes:
        click.echo(f"note: {n}")


@click.group()
def forensics() -> None:
    """Was a suspect model trained on our outputs, and through which accounts?"""


@forensics.command()
@_shared
@click.option("--json", "as_json", is_flag=True, help="the whole verdict as JSON")
@click.option("--output", default=None, help="also write the verdict JSON here")
@click.option("--report", default=None, metavar="PATH.html",
              help="also write a self-contained HTML report of the verdict here")
def check(as_json, output, report, **kw) -> None:
    """Radioactivity test of a suspect: verdict, p-values, accounts named, controls."""
    from distillery.forensics.check import write_json
    from distillery.forensics.report import write_report
    from distillery.forensics.run import run_check

    v = run_check(_config(kw), progress=not as_json)
    if output:
        write_json(v, output)
    if as_json:
        click.echo(json.dumps(v.to_dict(), default=str))
    else:
        _echo(v)
    if report:  # last: a bad path must not lose the verdict just printed
        try:
            write_report(v, report)
        except OSError as e:
            raise UserError(f"--report {report}: {e.strerror or e} (no report written; the "
                            "verdict above is complete)") from None


@forensics.command()
@_shared
@click.option("--pilot-tokens", type=int, default=3000, show_default=True,
              help="scored tokens of the pilot")
@click.option("--target-p", type=float, default=1e-6, show_default=True)
@click.option("--keys", "n_keys", type=int, default=1, show_default=True,
              help="keys the planned test corrects for (Bonferroni)")
@click.option("--json", "as_json", is_flag=True)
def plan(pilot_tokens, target_p, n_keys, as_json, **kw) -> None:
    """A pilot, then the scored tokens (and texts or queries) a planned check needs."""
    from distillery.forensics import plan as make_plan
    from distillery.forensics.run import build_scheme, run_check

    kw["budget_tokens"] = pilot_tokens
    kw["controls"] = 0
    cfg = _config(kw)
    v = run_check(cfg, progress=not as_json)
    g = v.suspect_analysis.global_result
    rows = v.usage.get("rows_read", v.usage["rows"])
    pl = make_plan(build_scheme(cfg)[1], g, target_p=target_p, n_keys=n_keys,
                   min_shift=cfg.min_shift, rows_per_token=rows / g.n_scored if g.n_scored
                   else None)
    d = {**pl.to_dict(), "pilot_rows": rows, "next": f"--skip-rows {cfg.skip_rows + rows}"}
    if as_json:
        click.echo(json.dumps(d))
        return
    click.echo(f"pilot: {g.n_scored} scored tokens from {rows} rows: rate {pl.rate:.4f} "
               f"(null {pl.null_rate:g}), shift {pl.shift:+.4f} "
               f"[{pl.shift_ci[0]:+.4f}, {pl.shift_ci[1]:+.4f}]")
    need = pl.tokens_needed
    click.echo("needed for p <= {:g} at {} keys (power {:g}): {}".format(
        target_p, n_keys, pl.power, "no positive shift seen" if need is None else
        f"{need:,.0f} scored tokens (~{pl.rows_needed(need):,.0f} rows)"))
    click.echo(f"'not detected' requires >= {pl.tokens_for_min_shift:,} scored tokens "
               f"(shift {pl.min_shift:g})")
    click.echo(f"run the check on fresh rows: {d['next']}")


COMMANDS = [forensics]
