"""Building blocks of the self-contained HTML reports (the closed loop's, a forensic verdict's):
matplotlib figures as inline SVG (text drawn as paths, so no font or file beside the page),
escaped tables, and an in-page check that marks each figure the browser actually drew (the
Chromium tests read those marks from the rendered DOM). Nothing is fetched from anywhere.
"""

from __future__ import annotations

import html
import io
import math


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def axes(width: float, height: float):
    return pyplot().subplots(figsize=(width, height))


def svg(fig) -> str:
    """The figure as an inline <svg> element (closed: the figure is drawn once)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    pyplot().close(fig)
    s = buf.getvalue()
    return s[s.index("<svg"):]


def fmt(v) -> str:
    """A cell: small p-values in scientific notation, large counts with separators."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}" if (abs(v) >= 1e-3 or v == 0) else f"{v:.2e}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    return str(v)


def table(head: list[str], rows: list[list]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def figure(name: str, svg_text: str, caption: str = "") -> str:
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure class="plot" id="plot-{html.escape(name)}">{svg_text}{cap}</figure>'


CSS = ("body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
       "table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
       "font-size:12px;text-align:left}th{background:#f3f3f3}figure{margin:1em 0}"
       "figcaption{font-size:12px;color:#444;max-width:800px}"
       ".headline{background:#f6f8fa;border-left:4px solid #7b2cbf;padding:.6em 1em}"
       "svg{max-width:100%;height:auto}")
# run in the browser: mark each plot that was laid out with a visible, non-empty drawing
CHECK = ("<script>addEventListener('load',()=>{let n=0;for(const f of document.querySelectorAll("
         "'figure.plot')){const s=f.querySelector('svg');const b=s&&s.getBoundingClientRect();"
         "const ok=!!b&&b.width>50&&b.height>50&&s.querySelectorAll('path,use').length>5;"
         "f.dataset.drawn=ok;n+=ok}document.body.dataset.plotsDrawn=n});</script>")


def page(title: str, body: str) -> str:
    """The whole document: body is HTML already escaped by its builder."""
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}"
            f"</title><style>{CSS}</style><body>{body}{CHECK}</body></html>")
