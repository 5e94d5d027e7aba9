"""The closed loop's plots: matplotlib figures as inline SVG strings (distillery.reporting)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime

from distillery.reporting import axes, svg


def _t(created) -> float:
    return created.timestamp() if isinstance(created, datetime) else float(created)


def _legend(ax, **kw) -> None:
    """One legend entry per label (many lines share one)."""
    h, lab = ax.get_legend_handles_labels()
    uniq = dict(zip(lab, h, strict=True))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, **kw)


def account_label(name: str, x: dict) -> str:
    return f"{x['persona']} {name[-6:]}"


def plot_timeline(run, s: dict) -> str:
    accts = s["accounts"]
    order = sorted(accts, key=lambda a: (accts[a]["role"] != "attack", accts[a]["persona"], a))
    y = {a: i for i, a in enumerate(order)}
    rows = [r for r in run._usage(run.db) if r["name"] in y]
    t0 = min(_t(r["created_at"]) for r in rows)
    colours = {200: "#4c956c", 403: "#d62828", 429: "#f4a261"}
    fig, ax = axes(10, 0.22 * len(order) + 1.5)
    for code, col in colours.items():
        pts = [((_t(r["created_at"]) - t0) / 3600, y[r["name"]]) for r in rows
               if r["status_code"] == code]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.scatter(xs, ys, s=6, c=col, label={200: "served", 403: "refused (blocked)",
                                                 429: "rate-limited"}[code])
    ax.set_yticks(range(len(order)), [account_label(a, accts[a]) for a in order], fontsize=6)
    for t in ax.get_yticklabels():
        if accts[order[int(t.get_position()[1])]]["role"] == "attack":
            t.set_color("#d62828")
    ax.invert_yaxis()
    ax.set_xlabel("simulated time (hours)")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title("Requests per account (the extraction's accounts in red)")
    return svg(fig)


def plot_risk(run, s: dict) -> str:
    from distillery.audit import AuditConfig

    pol = AuditConfig(**run.cfg.audit)
    accts = s["accounts"]
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    marks = []
    for p in run._load("passes.json") or []:
        for e in p["scores"]:
            series[e["entity"]].append((p["requests"], -math.log10(max(e["p"], 1e-300))))
        marks += [(p["requests"], d) for d in p["decisions"]]
    fig, ax = axes(10, 4)
    for ent, pts in series.items():
        name = ent.removeprefix("account:")
        xs, ys = zip(*pts, strict=True)
        if ent.startswith("cluster:"):
            ax.plot(xs, ys, "--", c="#7b2cbf", lw=1.2, label="a cluster of accounts")
        elif accts.get(name, {}).get("role") == "attack":
            ax.plot(xs, ys, c="#d62828", lw=0.9, alpha=0.8, label="extraction account")
        else:
            ax.plot(xs, ys, c="#888", lw=0.7, alpha=0.7, label="benign account")
    for level, txt in ((pol.flag_fpr, "flag level"), (pol.block_fpr, "block level")):
        ax.axhline(-math.log10(level), c="k", ls=":", lw=0.8)
        ax.text(0, -math.log10(level), f" {txt} (p {level:g})", fontsize=7, va="bottom")
    sym = {"flag": "^", "throttle": "D", "block": "X", "alarm": "."}
    for x, d in marks:
        ax.scatter([x], [-math.log10(max(d["p"], 1e-300))], marker=sym.get(d["action"], "o"),
                   s=40, c="k", zorder=3, label=d["action"])
    _legend(ax, loc="upper left")
    ax.set_xlabel("requests of the timeline (an audit pass every "
                  f"{run.cfg.audit_every})")
    ax.set_ylabel("-log10 p (the window's combined score)")
    ax.set_title("Risk per account and cluster at each audit pass, with the policy's actions")
    return svg(fig)


def plot_leak(s: dict) -> str:
    fig, ax = axes(6, 3.5)
    names, vals, lo, hi = [], [], [], []
    for key, label in (("before_block", "before the block"), ("counterfactual",
                                                              "counterfactual (no audit)")):
        x = s["leak"][key]
        names.append(f"{label}\n{x['answers']} answers")
        if x["trained"]:
            g, (a, b) = x["gap_closed"], x["gap_closed_ci"]
            vals.append(g)
            lo.append(g - a)
            hi.append(b - g)
        else:
            vals.append(0.0)
            lo.append(0.0)
            hi.append(0.0)
    ax.bar(names, vals, yerr=[lo, hi], capsize=6, color=["#4c956c", "#d62828"])
    ax.axhline(0.1, c="k", ls=":", lw=0.8)
    ax.text(-0.4, 0.1, " 10% of the gap", fontsize=7, va="bottom")
    ax.set_ylabel("gap closed (bits per byte, 95% CI)")
    ax.set_title("Capability leaked: base -> teacher gap closed by the student")
    return svg(fig)


def plot_radioactivity(s: dict) -> str:
    fig, ax = axes(7, 4)
    cols = {"before-block": "#4c956c", "counterfactual": "#d62828"}
    alpha = None
    for which, f in s["forensics"].items():
        if not f or not f["trace"]:
            continue
        alpha = f["alpha"]
        xs, ps = zip(*f["trace"], strict=True)
        ax.plot(xs, ps, "o-", c=cols[which], ms=3, label=f"student ({which})")
        if f["reference_trace"]:
            xr, pr = zip(*f["reference_trace"], strict=True)
            ax.plot(xr, pr, "s:", c=cols[which], ms=3, alpha=0.6,
                    label=f"its clean base ({which})")
        ctl = f["control_p_values"].get("global") or []
        if ctl:
            ax.scatter([xs[-1] * 1.03] * len(ctl), ctl, s=5, c="#999", alpha=0.6,
                       label="100 control keys (final budget)")
    if alpha is not None:
        ax.axhline(alpha / 2, c="k", ls=":", lw=0.8)
        ax.text(ax.get_xlim()[0], alpha / 2, f" global level {alpha / 2:g}", fontsize=7,
                va="bottom")
    ax.set_yscale("log")
    ax.set_ylim(top=1.5)
    ax.set_xlabel("tokens (top-1) or windows (green mass) scored, global layer, de-duplicated")
    ax.set_ylabel("p-value (exact binomial, or Bernstein bound)")
    _legend(ax)
    ax.set_title("Radioactivity: p against tokens scored (the verdict reads the last point)")
    return svg(fig)
