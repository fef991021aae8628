"""Displaying Bokeh figures and claim checks in a page, offline.

Static pages embed a figure as a ``<div>`` and ``<script>`` that use the BokehJS the rendered
book loads from its own files: nothing inline (OFFLINE.md: an inline BokehJS is ~4 MB per
output) and nothing from a CDN. Live notebooks load BokehJS once from the installed wheel.
"""

from __future__ import annotations

import html

from bokeh.embed import components
from bokeh.models import LayoutDOM

_BOKEH_LOADED = False


def load_bokeh_inline() -> None:
    """Load BokehJS into a live notebook from the installed wheel (no CDN), once per kernel."""
    global _BOKEH_LOADED
    if not _BOKEH_LOADED:
        from bokeh.io import output_notebook
        from bokeh.resources import INLINE

        output_notebook(INLINE, hide_banner=True)
        _BOKEH_LOADED = True


def bokeh_html(obj: LayoutDOM) -> str:
    """``obj`` as a ``<div>`` plus ``<script>`` that render it with the page's BokehJS.

    >>> from bokeh.models import Div
    >>> html = bokeh_html(Div(text="hello"))
    >>> html.startswith("<div"), "<script" in html
    (True, True)
    """
    script, div = components(obj)
    return div + script


def show_bokeh(obj: LayoutDOM, live: bool = False) -> None:
    """Show a Bokeh figure or layout: embedded for the static book, or through BokehJS in a live notebook.

    >>> from bokeh.models import Div
    >>> show_bokeh(Div(text="hello"))  # outside a notebook, IPython shows the object's repr
    <IPython.core.display.HTML object>
    """
    from IPython.display import HTML, display

    if live:
        from bokeh.io import show

        load_bokeh_inline()
        show(obj)
    else:
        display(HTML(bokeh_html(obj)))


_VERDICT_STYLE = {
    "holds": ("#1b7837", "#e9f5ec", "Holds"),
    "partly": ("#b35806", "#fdf0e2", "Holds in part"),
    "fails": ("#b2182b", "#fbe9eb", "Does not hold"),
}


def claim_check_html(claim: str, finding: str, verdict: str) -> str:
    """A boxed "Claim check": the article's ``claim``, what this page measured, and a ``verdict``.

    ``verdict`` is one of ``"holds"``, ``"partly"``, ``"fails"``; ``finding`` may hold simple HTML.

    >>> box = claim_check_html("LSTMs have four times an RNN's parameters.", "4.0x at every size", "holds")
    >>> 'class="claim-check"' in box, "Holds." in box
    (True, True)
    """
    if verdict not in _VERDICT_STYLE:
        raise ValueError(f"claim_check: expected verdict in {sorted(_VERDICT_STYLE)}, got {verdict!r}")
    line, fill, label = _VERDICT_STYLE[verdict]
    return (
        f'<div class="claim-check" style="border-left:4px solid {line};background:{fill};'
        f'padding:0.6em 1em;margin:1em 0;border-radius:4px">'
        f'<p style="margin:0 0 0.4em 0"><b>Claim check.</b> <i>{html.escape(claim)}</i></p>'
        f'<p style="margin:0"><b style="color:{line}">{label}.</b> {finding}</p></div>'
    )


def claim_check(claim: str, finding: str, verdict: str) -> None:
    """Display :func:`claim_check_html` in the page.

    >>> claim_check("LSTMs have four times an RNN's parameters.", "4.0x at every size", "holds")
    <IPython.core.display.HTML object>
    """
    from IPython.display import HTML, display

    display(HTML(claim_check_html(claim, finding, verdict)))
