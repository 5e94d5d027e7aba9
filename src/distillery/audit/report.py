"""A pass's ranked entities as plain dicts (JSON) or one self-contained HTML table."""

from __future__ import annotations

import html
from pathlib import Path

from distillery.audit.passes import PassResult

SHOWN = ("single_turn", "cot", "log_max_tokens", "top_logprobs", "n", "diversity", "iat_cv",
         "log_rate", "template_reuse")


def as_dicts(res: PassResult) -> list[dict]:
    return [{"entity": e.entity, "accounts": list(e.accounts), "p_value": e.score.p_value,
             "stats": e.score.stats, "p_values": e.score.p_values,
             "features": {k: e.score.features[k] for k in SHOWN},
             "window_size": e.score.size, "window_start": e.window_start.isoformat(),
             "window_end": e.window_end.isoformat()} for e in res.ranked()]


def write_html(path: str | Path, res: PassResult) -> None:
    head = ["entity", "accounts", "p (combined)", "p mmd", "p prada", "p novelty", "p behaviour",
            "window",
            *SHOWN]
    lines = []
    for d in as_dicts(res):
        cells = [d["entity"], str(len(d["accounts"])), f"{d['p_value']:.4g}",
                 *(f"{d['p_values'][k]:.3g}" for k in ("mmd", "prada", "novelty", "behaviour")),
                 f"{d['window_size']} ({d['window_start'][:16]} .. {d['window_end'][:16]})",
                 *(f"{d['features'][k]:.3g}" for k in SHOWN)]
        lines.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    Path(path).write_text(
        "<!doctype html><meta charset=utf-8><title>distillery audit</title><style>"
        "body{font:13px sans-serif}td,th{border:1px solid #ccc;padding:2px 6px}"
        "table{border-collapse:collapse}</style>"
        f"<h1>Audit pass</h1><p>{res.rows_read} new rows, {len(res.scores)} windows, "
        f"{len(res.clusters)} clusters, {len(res.decisions)} decisions</p>"
        f"<table><tr>{th}</tr>{''.join(lines)}</table>")
