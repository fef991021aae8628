"""Displaying Bokeh figures and claim checks in a page, offline.

Static pages embed a figure as a ``<div>`` and ``<script>`` that use the BokehJS the rendered
book loads from its own files: nothing inline (OFFLINE.md: an inline BokehJS is ~4 MB per
output) and nothing from a CDN. Live notebooks load BokehJS once from the installed wheel.
"""

from __future__ import annotations

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
