"""Shared by the HTML reports' tests (the experiment's and the forensics check's)."""

from __future__ import annotations

import re


def assert_report_rendered(dom: str, sections, plots) -> None:
    """A rendered report (rendered_dom) has its sections, every plot marked as drawn by the
    page's own check, and nothing fetched from the web (self-contained)."""
    for sec in sections:
        assert f'<section id="{sec}">' in dom, sec
    for plot in plots:
        m = re.search(rf'<figure class="plot" id="plot-{plot}" data-drawn="(\w+)"', dom)
        assert m and m.group(1) == "true", plot
    assert f'data-plots-drawn="{len(plots)}"' in dom
    assert not re.search(r"""(src|href)=["']https?:""", dom)
