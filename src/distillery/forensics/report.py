"""One verdict as a self-contained HTML page, for the other side's statisticians: what was
decided and what it means, every test behind it (global layer, attribution family, control
keys, clean reference), the planner's budget, the p-value trace and what was read or lost.

Nothing here decides: the page reads a Verdict (check.py) and explains it. Its figures are
inline SVG (distillery.reporting), so the file can be mailed as is.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from distillery.forensics.check import Verdict
from distillery.reporting import axes, figure, fmt, page, svg, table
from distillery.stats import P_FLOOR

PLOTS = ("controls-qq", "trace")
SECTIONS = ("verdict", "statistic", "global", "attribution", "controls", "reference", "planner",
            "trace", "usage", "notes")
MEANING = {
    "detected": "The global test rejected at alpha / 2: the suspect's choices agree with our "
                "provider key's green lists more often than chance allows, so it learned from "
                "text we served, through whichever accounts.",
    "detected (account layer)": "The global test did not reject, but at least one account or "
                                "cluster key did (Holm-adjusted): the suspect learned from text "
                                "served to the accounts named below.",
    "tampering suspected": "The suspect scores significantly below its clean reference (below "
                           "chance when there is none): key-aware scrubbing pushes green tokens "
                           "down, which a clean model does not.",
    "inconclusive": "Nothing rejected, but fewer tokens were scored than a 'not detected' "
                    "needs (planner): absence of evidence, not evidence of absence.",
    "not detected": "Nothing rejected, on enough scored tokens to rule out the smallest "
                    "green-rate shift of interest with the planned power.",
}
STATISTIC = {
    "argmax": "argmax: the suspect's top-1 token at each position of our text, as (context "
              "window, token) tuples, de-duplicated; the green count has an exact binomial "
              "tail Binomial(T, gamma) under H0 (KGW; Gumbel: the summed scores' exact Gamma "
              "tail). H0: the suspect never learned from text marked with the key.",
    "mass": "mass: the green mass of the suspect's top-k next-token distribution at each "
            "de-duplicated window; its rate (green mass per unit of mass) is gamma under H0, "
            "and p is a Bernstein bound (conservative at any T). H0: the suspect never learned "
            "from text marked with the key.",
    "shift": "shift: the green mass of the suspect's distribution minus its clean base's at "
             "each de-duplicated window (what training moved); its rate (the green share of "
             "the moved mass) is gamma under H0, and p is a Bernstein bound with a "
             "data-dependent bound on one window's term (conservative at any T). H0: neither "
             "model learned from text marked with the key.",
    "disagree": "disagree: the suspect's token (open mode: its top-1 on our text; API mode: "
                "the token it generated), scored only at the positions where it differs from a "
                "clean model's top-1 (open mode: the suspect's base, what training changed; API "
                "mode: the teacher's own unmarked weights on the suspect's answer), as "
                "(window, token) tuples, de-duplicated; exact binomial tail Binomial(T, gamma) "
                "under H0 (Gumbel: exact Gamma tail). H0: neither model learned from text "
                "marked with the key.",
}
TOP = 10  # attribution rows shown (every named one too)


def _p(x: float) -> float:
    return max(x, P_FLOOR)  # a log axis cannot show 0


def plot_controls(v: Verdict) -> str:
    """QQ plot: a valid test puts the control keys' p-values on the diagonal (or above it,
    where the reported p is conservative); the suspect's global p is marked against them."""
    fig, ax = axes(6, 4.5)
    for s, c in zip(v.suspect_analysis.controls, ("#1d3557", "#e76f51"), strict=False):
        n = len(s.p_values)
        ax.plot((np.arange(n) + 1) / (n + 1), sorted(map(_p, s.p_values)), "o", ms=3, c=c,
                label=f"{s.n_keys} control keys, {s.layer} layer")
    lo = 1 / (max(s.n_keys for s in v.suspect_analysis.controls) + 1)
    ax.plot([lo, 1], [lo, 1], "k:", lw=0.8, label="uniform (a valid null)")
    g = v.suspect_analysis.global_result.p_value
    ax.axhline(_p(g), c="#d62828", lw=1.2, label=f"the suspect's global p = {fmt(g)}")
    ax.set(xscale="log", yscale="log", xlabel="uniform quantile i / (n + 1)",
           ylabel="sorted p-value", title="Control keys (never served anyone): QQ plot")
    ax.legend(fontsize=7, loc="lower right")
    return svg(fig)


def plot_trace(v: Verdict) -> str:
    fig, ax = axes(7, 4)
    for key, c, label in (("trace", "#d62828", "suspect"),
                          ("reference_trace", "#888", f"clean reference ({v.reference})")):
        tr = v.usage.get(key)
        if tr:
            xs, ps = zip(*tr, strict=True)
            ax.plot(xs, [_p(p) for p in ps], "o-", c=c, ms=3, lw=1, label=label)
            ax.plot(xs[-1], _p(ps[-1]), "*", c=c, ms=14, label=f"{label}: the test (final point)")
    ax.axhline(v.alpha / 2, c="k", ls=":", lw=0.8, label=f"global level alpha/2 = {v.alpha / 2:g}")
    ax.set(yscale="log", xlabel="scored tuples or windows (global layer, de-duplicated)",
           ylabel="global p-value", title="p against scored tokens, after each chunk of texts")
    ax.legend(fontsize=7)
    return svg(fig)


def _sections(v: Verdict) -> dict[str, str]:
    a, g, pl = v.suspect_analysis, v.suspect_analysis.global_result, v.plan
    n_clusters = sum(r.name.startswith("cluster:") for r in a.accounts)
    shown = [r for i, r in enumerate(a.accounts) if i < TOP or r.named]
    ref = v.reference_analysis
    if ref is not None:
        rg = ref.global_result
        reference = table(["reference", "scored", "rate", "global p", "adjusted p",
                           "accounts named", "p (suspect below it: tampering)"],
                          [[v.reference, rg.n_scored, rg.rate, rg.p_value, ref.global_adjusted_p,
                            ", ".join(ref.named) or "none", v.usage.get("p_below_reference")]])
    elif v.statistic == "shift":
        reference = (f"<p>The clean base ({html.escape(str(v.reference))}) is inside the "
                     "statistic: its green mass is subtracted position by position.</p>")
    elif v.statistic == "disagree":
        reference = (f"<p>The clean base ({html.escape(str(v.reference))}) is inside the "
                     "statistic: only positions where its top-1 differs from the suspect's "
                     "are scored.</p>")
    else:
        reference = "<p>No clean reference was read.</p>"
    trace = ("<p>No trace was recorded for this verdict (API mode records none).</p>"
             if not v.usage.get("trace") else figure(
                 "trace", plot_trace(v), "Only the final point, at the planned budget, is the "
                 "test and gives the verdict. The earlier points show how the evidence grew; "
                 "the trajectory's minimum is not a p-value (stopping when p happens to dip "
                 "is optional stopping, which invalidates it)."))
    return {
        "verdict": (f'<p class="headline"><b>{html.escape(v.verdict.upper())}</b>: '
                    f"{html.escape(MEANING[v.verdict])}</p>" + table(
                        ["suspect", "mode", "scheme", "statistic", "alpha (family-wise)"],
                        [[v.suspect, v.mode, v.scheme, v.statistic, v.alpha]])
                    + "<p>Error control: the global test at alpha / 2; the attribution family "
                    "(every account key and cluster) at alpha / 2 with Holm's step-down.</p>"),
        "statistic": f"<p>{html.escape(STATISTIC[v.statistic])}</p>",
        "global": table(["scored (T)", "score", "mass scored", "rate", "null rate", "z", "p",
                         "adjusted p (x2)", "lower-tail p"],
                        [[g.n_scored, g.score, g.mass, g.rate, pl.null_rate, g.z, g.p_value,
                          a.global_adjusted_p, g.p_lower]]),
        "attribution": (f"<p>{len(a.accounts)} tests in the family ({len(a.accounts) - n_clusters}"
                        f" account keys, {n_clusters} clusters); named: "
                        f"{html.escape(', '.join(a.named) or 'none')}.</p>" + table(
                            ["account or cluster", "members", "scored", "rate", "p",
                             "adjusted p (Holm x2)", "named"],
                            [[r.name, ", ".join(r.members) if r.name.startswith("cluster:")
                              else "", r.result.n_scored, r.result.rate, r.result.p_value,
                              r.adjusted_p, "yes" if r.named else "no"] for r in shown])),
        "controls": (table(["layer", "keys", "min p", "median p", "share p <= 0.01",
                            "KS p vs uniform"],
                           [[s.layer, s.n_keys, s.min_p, s.median_p, s.frac_below_01, s.ks_p]
                            for s in a.controls])
                     + (figure("controls-qq", plot_controls(v), "Keys that never served anyone, "
                               "on the same candidates: their p-values must follow the uniform "
                               "diagonal (or lie above it: a conservative p). KS uses randomized "
                               "(argmax) or normal (mass) p-values, exact under H0.")
                        if a.controls else "<p>No control keys were tested.</p>")),
        "reference": reference,
        "planner": "<p>This check's own scored tuples as a pilot: the shift of the rate over "
                   "its null, the tokens a test at the global level needs to detect it, and the "
                   "tokens below which a negative result is 'inconclusive', never 'not "
                   "detected' (those that rule out the smallest shift of interest).</p>" + table(
                       ["shift [95% CI]", "tokens needed for p <= target [CI]", "rows needed",
                        "smallest shift of interest", "'not detected' needs (scored)", "scored"],
                       [[f"{pl.shift:+.4f} [{pl.shift_ci[0]:+.4f}, {pl.shift_ci[1]:+.4f}]",
                         f"{fmt(pl.tokens_needed)} {fmt(pl.tokens_needed_ci)} at "
                         f"{pl.target_p:g}, power {pl.power:g}",
                         pl.rows_needed(pl.tokens_needed), pl.min_shift,
                         pl.tokens_for_min_shift, g.n_scored]]),
        "trace": trace,
        "usage": table(["read or lost", "value"],
                       [[k, x] for k, x in v.usage.items() if not k.endswith("trace")]
                       + [["elapsed (s)", v.elapsed_s]]),
        "notes": "".join(f"<p>{html.escape(n)}</p>" for n in v.notes) or "<p>None.</p>",
    }


TITLES = dict(zip(SECTIONS, (
    "Verdict", "The statistic", "Global layer: trained on our outputs?", "Attribution: "
    "through which accounts?", "Controls", "Clean reference", "Planner", "Trace",
    "What was read, and lost on the way", "Notes"), strict=True))


def write_report(v: Verdict, path: str | Path) -> None:
    sec = _sections(v)
    body = "".join(f'<section id="{k}"><h2>{TITLES[k]}</h2>{sec[k]}</section>' for k in SECTIONS)
    Path(path).write_text(page(f"distillery forensics: {v.suspect}",
                               f"<h1>Forensic check of {html.escape(v.suspect)}</h1>{body}"))
