"""The closed loop's headline figures (summary.json) and its report (one self-contained HTML
file: the inline SVG plots of plots.py, no script or font fetched from anywhere).

Every number comes from the run's own files: the usage store, the audit passes, the
evaluation and the forensic verdicts. The simulator's labels (who attacked) are the
experimenter's ground truth: the report uses them to score the defence, never the defence.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict

from distillery.experiment.plots import (
    account_label,
    plot_leak,
    plot_radioactivity,
    plot_risk,
    plot_timeline,
)
from distillery.reporting import figure, fmt, page, table

PLOTS = ("timeline", "risk", "leak", "radioactivity")
SECTIONS = ("setup", "timeline", "audit", "leak", "forensics", "benign", "timings")


def _accounts(run) -> dict[str, dict]:
    labels = run.labels()
    rows = run._usage(run.db)
    replay = run._load("replay.json")
    out: dict[str, dict] = {}
    by = defaultdict(list)
    for r in rows:
        by[r["name"]].append(r)
    for name, lab in labels.items():
        rs = by.get(name, [])
        st = Counter(r["status_code"] for r in rs)
        first_403 = next((i for i, r in enumerate(rs) if r["status_code"] == 403), None)
        out[name] = {"persona": lab.persona, "role": lab.role, "asked": len(rs),
                     "served": st[200], "refused_403": st[403], "limited_429": st[429],
                     "tokens_served": sum(r["completion_tokens"] or 0 for r in rs
                                          if r["status_code"] == 200),
                     "served_before_block": (sum(r["status_code"] == 200 for r in rs[:first_403])
                                             if first_403 is not None else None),
                     "final_status": replay["final_status"].get(name, "active")}
    for p in run._load("passes.json") or []:
        for d in p["decisions"]:
            a = out.get(d["account"])
            if a is not None and f"first_{d['action']}" not in a:
                a[f"first_{d['action']}"] = {"after_requests": p["requests"], "t": p["t"],
                                             "entity": d["entity"], "p": d["p"]}
    return out


def _rate(g: dict) -> float | None:
    """Green rate: green tokens per token (top-1), green mass per unit of mass (green mass);
    gamma under H0 either way."""
    if g.get("mass") is not None:
        return g["score"] / g["mass"] if g["mass"] else None
    return g["score"] / g["n_scored"] if g["n_scored"] else None


def _forensics(v: dict | None, attackers: set[str]) -> dict | None:
    if v is None:
        return None
    a, g = v["suspect_analysis"], v["suspect_analysis"]["global_result"]
    ref = v.get("reference_analysis")
    named = [x["name"] for x in a["accounts"] if x["named"]]
    named_accounts = {m for x in a["accounts"] if x["named"] for m in x["members"]}
    best = {x["name"]: x for x in a["accounts"]}
    return {
        "verdict": v["verdict"], "alpha": v["alpha"], "statistic": v.get("statistic"),
        "global_p": g["p_value"], "global_adjusted_p": a["global_adjusted_p"],
        "scored_tokens": g["n_scored"],
        "green_rate": _rate(g),
        "reference": v["reference"],
        "reference_p": ref["global_result"]["p_value"] if ref else None,
        "reference_green_rate": _rate(ref["global_result"]) if ref else None,
        "p_below_reference": v["usage"].get("p_below_reference"),
        "named": named,
        "campaign_accounts_named": sorted(named_accounts & attackers),
        "wrong_accounts_named": sorted(named_accounts - attackers),
        "campaign_best_adjusted_p": min((best[n]["adjusted_p"] for n in attackers if n in best),
                                        default=None),
        "clusters": {x["name"]: x["adjusted_p"] for x in a["accounts"]
                     if x["name"].startswith("cluster:")},
        "accounts_tested": sum(not x["name"].startswith("cluster:") for x in a["accounts"]),
        "controls": [{"layer": c["layer"], "n_keys": c["n_keys"], "ks_p": c["ks_p"],
                      "min_p": c["min_p"], "median_p": c["median_p"]} for c in a["controls"]],
        "control_p_values": {c["layer"]: c["p_values"] for c in a["controls"]},
        "plan": {k: v["plan"][k] for k in ("shift", "shift_ci", "tokens_needed",
                                           "tokens_needed_ci", "tokens_for_min_shift")},
        "trace": v["usage"].get("trace"), "reference_trace": v["usage"].get("reference_trace"),
        "texts_read": v["usage"].get("rows_read"), "elapsed_s": v["elapsed_s"],
        "notes": v["notes"]}


def summarise(run) -> dict:
    accts = _accounts(run)
    attackers = {a for a, x in accts.items() if x["role"] == "attack"}
    atk = [accts[a] for a in sorted(attackers)]
    ben = {a: x for a, x in accts.items() if x["role"] == "benign"}
    ev = run._load("evaluation.json") or {}
    students = {w: run._load(f"student-{w}.json") for w in ("before-block", "counterfactual")}

    def leak(which: str) -> dict | None:
        e = ev.get(which)
        if e is None:
            return {"trained": False, "answers": students[which]["rows"]}
        b = e["bpb"]
        return {"trained": True, "answers": students[which]["rows"],
                "steps": students[which]["steps"], "gap_closed": b["gap_closed"],
                "gap_closed_ci": b["gap_closed_ci"], "bpb_student": b["student"],
                "bpb_student_ci": b["student_ci"], "bpb_base": b["base"],
                "bpb_teacher": b["teacher"], "eval_prompts": e["n_prompts"]}

    blocked = [x for x in atk if x["final_status"] == "blocked"]
    return {
        "run_dir": str(run.dir), "config": run.cfg.to_dict(),
        "campaign": {
            "accounts": len(atk), "personas": sorted({x["persona"] for x in atk}),
            "asked": sum(x["asked"] for x in atk),
            "served": sum(x["served"] for x in atk),
            "tokens_served": sum(x["tokens_served"] for x in atk),
            "refused_403": sum(x["refused_403"] for x in atk),
            "accounts_blocked": len(blocked), "all_blocked": len(blocked) == len(atk),
            # answers served to the extraction before each account's block, summed: what the
            # thief got (None when some account was never blocked)
            "queries_to_block": (sum(x["served_before_block"] for x in atk)
                                 if len(blocked) == len(atk) else None),
            "first_flag_after_requests": min((x["first_flag"]["after_requests"] for x in atk
                                              if "first_flag" in x), default=None),
            "last_block_after_requests": max((x["first_block"]["after_requests"] for x in atk
                                              if "first_block" in x), default=None)},
        "benign": {"accounts": len(ben), "requests": sum(x["asked"] for x in ben.values()),
                   "final_status": dict(Counter(x["final_status"] for x in ben.values())),
                   "blocked": sorted(a for a, x in ben.items() if x["final_status"] == "blocked"),
                   "throttled": sorted(a for a, x in ben.items()
                                       if x["final_status"] == "throttled"),
                   "flagged": sorted(a for a, x in ben.items() if x["final_status"] == "flagged")},
        "leak": {"before_block": leak("before-block"), "counterfactual": leak("counterfactual")},
        "forensics": {w: _forensics(run._load(f"forensics-{w}.json"), attackers)
                      for w in ("before-block", "counterfactual")},
        "accounts": accts}


def write_report(run, s: dict, path) -> None:
    c, camp, ben = s["config"], s["campaign"], s["benign"]
    lb, lc = s["leak"]["before_block"], s["leak"]["counterfactual"]
    fb = s["forensics"]["before-block"]

    def gap(x):
        if not x["trained"]:
            return "no student (nothing served)"
        lo, hi = x["gap_closed_ci"]
        return f"{fmt(x['gap_closed'])} [{fmt(lo)}, {fmt(hi)}]"

    head = (f"The extraction ({camp['accounts']} accounts, {', '.join(camp['personas'])}) "
            f"asked {camp['asked']} queries; the audit flagged it after "
            f"{fmt(camp['first_flag_after_requests'])} "
            f"requests of the timeline and blocked {camp['accounts_blocked']} of its "
            f"{camp['accounts']} accounts; it was served {camp['served']} answers "
            f"({camp['tokens_served']} tokens). A student trained on them closed {gap(lb)} of the "
            f"gap, against {gap(lc)} for everything it asked. Forensics on that student: "
            f"{fb['verdict'] if fb else 'no student'}"
            + (f" (global p {fmt(fb['global_p'])} at {fb['scored_tokens']} tokens scored)"
               if fb else "") + f". Benign accounts blocked: {len(ben['blocked'])} of "
            f"{ben['accounts']}.")
    sec = {}
    sec["setup"] = table(["setting", "value"], [
        [k, c[k]] for k in ("teacher", "watermark", "student", "generation_cap", "embedder",
                            "audit_every", "epochs", "eval_prompts", "forensics_texts",
                            "forensics_statistic", "seed")]
        + [["benign personas", ", ".join(f"{k} {a}x{n}" for k, (a, n) in c["benign"].items())],
           ["extraction", ", ".join(f"{k} {a}x{n}" for k, (a, n) in c["attack"].items())]])
    sec["timeline"] = figure("timeline", plot_timeline(run, s))
    accts = s["accounts"]
    atk_rows = [[account_label(a, x), x["asked"], x["served"], x["served_before_block"],
                 x["refused_403"],
                 (x.get("first_flag") or {}).get("after_requests"),
                 (x.get("first_throttle") or {}).get("after_requests"),
                 (x.get("first_block") or {}).get("after_requests"), x["final_status"]]
                for a, x in sorted(accts.items()) if x["role"] == "attack"]
    sec["audit"] = figure("risk", plot_risk(run, s)) + table(
        ["extraction account", "asked", "served", "served before block", "refused",
         "flagged at", "throttled at", "blocked at (requests of the timeline)", "final"],
        atk_rows)
    sec["leak"] = figure("leak", plot_leak(s)) + table(
        ["student", "answers", "steps", "bits per byte [95% CI]", "base", "teacher",
         "gap closed [95% CI]"],
        [[n, x["answers"], x.get("steps"),
          f"{fmt(x.get('bpb_student'))} {fmt(x.get('bpb_student_ci'))}",
          x.get("bpb_base"), x.get("bpb_teacher"), gap(x)]
         for n, x in (("before the block", lb), ("counterfactual", lc))])
    rows, ctl_rows = [], []
    for which, f in s["forensics"].items():
        if not f:
            rows.append([which, "no student"] + [None] * 8)
            continue
        rows.append([which, f["verdict"], f["global_p"], f["global_adjusted_p"],
                     f["scored_tokens"], f["green_rate"], f["reference_green_rate"],
                     ", ".join(f["named"]) or "none", f["campaign_best_adjusted_p"],
                     f["plan"]["tokens_needed"]])
        ctl_rows += [[which, x["layer"], x["n_keys"], x["min_p"], x["median_p"], x["ks_p"]]
                     for x in f["controls"]]
    sec["forensics"] = figure("radioactivity", plot_radioactivity(s)) + table(
        ["student", "verdict", "global p", "adjusted", "windows scored", "green rate",
         "clean base's", "named", "best extraction account (adjusted p)",
         "tokens needed (planner)"], rows) + "<p>Controls: keys that never served anyone, " \
        "tested on the same candidates (uniform p-values expected: KS p not small). Green " \
        "rate: green tokens per token scored (argmax), green mass per unit of mass (mass), " \
        "or gamma plus the green excess per unit of mass the student moved from its clean " \
        "base (shift; the base is then inside the statistic, not a separate row; disagree: " \
        "green tokens per token scored where the student's top-1 differs from its base's)." \
        "</p>" + \
        table(["student", "layer", "keys", "min p", "median p", "KS p vs uniform"], ctl_rows) + \
        "".join(f"<p><i>{html.escape(n)}</i></p>" for f in s["forensics"].values() if f
                for n in f["notes"])
    sec["benign"] = table(["benign account", "asked", "served", "final status", "flagged at"], [
        [account_label(a, x), x["asked"], x["served"], x["final_status"],
         (x.get("first_flag") or {}).get("after_requests")]
        for a, x in sorted(accts.items()) if x["role"] == "benign"])
    sec["timings"] = table(["stage", "seconds"], [[k, v] for k, v in s["timings_s"].items()])
    titles = {"setup": "Setup", "timeline": "Timeline", "audit": "The audit and its policy",
              "leak": "Capability leaked before the block", "forensics":
              "Forensics: was the student trained on our outputs, through which accounts?",
              "benign": "The benign accounts' fate", "timings": "Stage timings"}
    body = "".join(f'<section id="{k}"><h2>{titles[k]}</h2>{sec[k]}</section>' for k in SECTIONS)
    doc = page("distillery: closed loop",
               f"<h1>Closed loop: attack and defence</h1>"
               f'<p class="headline">{html.escape(head)}</p>{body}'
               f"<p>Run directory: {html.escape(s['run_dir'])}; every figure above comes from "
               f"its files (summary.json holds them).</p>")
    path.write_text(doc)
