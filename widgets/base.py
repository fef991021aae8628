"""The three layers every explorer shares (DESIGN.md section 3).

1. ``prepare``: a pure function from a trace's tensors (or plain numbers) to NumPy arrays;
   it validates its input and says what it expected.
2. ``layout``: a Bokeh layout whose Bokeh widgets drive ``CustomJS`` over the prepared
   arrays. It needs no kernel, so it works in the static rendered book.
3. ``live``: ipywidgets controls that recompute with memlib (through a ``compute`` callable
   the chapter supplies) and push new arrays into the same Bokeh data sources.

``show(live)`` picks what a page displays: the static layout (the rendered book) or the
layout plus live controls (JupyterLab, Voila).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from bokeh.models import ColumnDataSource, LayoutDOM

from widgets.display import bokeh_html, load_bokeh_inline

Prepared = dict[str, np.ndarray]


def as_array(name: str, value: Any, ndim: int, expected: str) -> np.ndarray:
    """``value`` as a float64 NumPy array of ``ndim`` dimensions, or a ValueError naming ``expected``."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected numbers of shape {expected}, got {type(value).__name__}") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected shape {expected}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, got {int((~np.isfinite(arr)).sum())} NaN/inf entries")
    return arr


class Explorer(ABC):
    """Base of every explorer: holds prepared data, its Bokeh sources, and optional live controls.

    Subclasses implement ``prepare`` (pure), ``source_data`` (prepared arrays -> the ``data``
    of each named ColumnDataSource) and ``build`` (figures and Bokeh widgets over
    ``self.sources``). ``compute``, if given, maps the live control's value to prepared data.
    """

    def __init__(self, data: Prepared, compute: Callable[[Any], Prepared] | None = None):
        self.data = data
        self.compute = compute
        self.sources: dict[str, ColumnDataSource] = {
            name: ColumnDataSource(cols, name=name) for name, cols in self.source_data(data).items()
        }
        self._layout: LayoutDOM | None = None
        self._status = None
        self.last_error: str | None = None  # why the last recompute was refused, if it was

    @staticmethod
    @abstractmethod
    def prepare(*args: Any, **kwargs: Any) -> Prepared:
        """Validate raw inputs and return plain arrays."""

    @abstractmethod
    def source_data(self, data: Prepared) -> Mapping[str, dict[str, Any]]:
        """The ``data`` dict of every named ColumnDataSource for these prepared arrays."""

    @abstractmethod
    def build(self) -> LayoutDOM:
        """Figures and Bokeh widgets (with CustomJS) over ``self.sources``."""

    def on_update(self, data: Prepared) -> None:  # noqa: B027 (optional hook)
        """Adjust anything beyond the sources (slider ranges, titles) after new data arrives."""

    @property
    def layout(self) -> LayoutDOM:
        if self._layout is None:
            self._layout = self.build()
        return self._layout

    def update(self, data: Prepared) -> None:
        """Replace the data behind every figure (used by the live layer)."""
        _ = self.layout  # on_update adjusts widgets of the layout: make sure it exists
        self.data = data
        for name, cols in self.source_data(data).items():
            self.sources[name].data = cols
        self.on_update(data)

    # Layer 3: live controls -------------------------------------------------------------

    def controls(self) -> list:
        """ipywidgets that change the input; subclasses with a ``compute`` override this."""
        return []

    def recompute(self, value: Any) -> bool:
        """Run ``compute(value)`` and update the figures; on bad input keep the figures and say why."""
        if self.compute is None:
            raise RuntimeError(f"{type(self).__name__}: no compute function was given, so it cannot go live")
        try:
            data = self.compute(value)
        except (TypeError, ValueError) as err:
            self._set_status(f"Not updated: {err}")
            return False
        self.update(data)
        self._set_status("")
        return True

    def _set_status(self, message: str) -> None:
        self.last_error = message or None
        if self._status is not None:
            self._status.value = message

    def status_widget(self):
        import ipywidgets

        if self._status is None:
            self._status = ipywidgets.HTML(value="", layout=ipywidgets.Layout(min_height="1.5em"))
        return self._status

    # Display ------------------------------------------------------------------------------

    def static_html(self) -> str:
        """The layout as a ``<div>`` and ``<script>`` that use the page's BokehJS (no inline copy)."""
        return bokeh_html(self.layout)

    def live_widget(self):
        """An ipywidgets box: controls, a status line, and the Bokeh layout as a live widget."""
        import ipywidgets
        from jupyter_bokeh import BokehModel

        return ipywidgets.VBox([*self.controls(), self.status_widget(), BokehModel(self.layout)])

    def show(self, live: bool = False) -> None:
        """Display the static layout, or (``live=True``) the layout with its live controls."""
        from IPython.display import HTML, display

        if live:
            load_bokeh_inline()
            display(self.live_widget())
        else:
            display(HTML(self.static_html()))

