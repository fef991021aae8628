"""The three layers every explorer shares (DESIGN.md section 3).

1. ``prepare``: a pure function from a trace's tensors (or plain numbers) to NumPy arrays;
   it validates its input and says what it expected.
2. ``layout``: a Bokeh layout whose Bokeh widgets drive ``CustomJS`` over the prepared
   arrays. It needs no kernel, so it works in the static rendered book.
3. ``live``: ipywidgets controls that recompute with memlib (through a ``compute`` callable
   the chapter supplies) and push new arrays into the same Bokeh data sources.

``show(live)`` picks what a page displays: the static layout (the rendered book) or the
layout plus live controls (JupyterLab, Voila).

One failure path for every live explorer (:meth:`Explorer.recompute`): a change is turned into the
compute's request and validated (:meth:`Explorer.request`), its cost is checked against stated
limits before any work (:meth:`Explorer.check_cost`), the compute runs and the figures take its
data (:meth:`Explorer.accept`). Whatever fails on the way, of whatever type, the status line says
so in one plain line ("Not updated: ..."), the figures keep their last good data and every live
control goes back to the setting the figures show. After a good change the controls show what the
figures show too (:meth:`Explorer.show_settings`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from importlib.resources import files
from typing import Any

import numpy as np
from bokeh.models import ColumnDataSource, CustomJS, LayoutDOM

from memlib import validate
from widgets.display import bokeh_html, load_bokeh_inline

Prepared = dict[str, np.ndarray]
MAX_MESSAGE = 300  # characters of an error on the status line: one line, whatever the error says


class Refused(ValueError):
    """A live change refused before any work: it would exceed a stated memory or time limit.

    >>> isinstance(Refused("expected at most 40 steps, got 400"), ValueError)  # caught like any bad input
    True
    """


def fixed(x: float, digits: int) -> str:
    """``x`` with ``digits`` decimals, ties rounded up as JavaScript's ``toFixed`` does (Python's format rounds
    ties to even: 6.25 -> "6.2" where the page writes "6.3").

    >>> fixed(6.25, 1), f"{6.25:.1f}"
    ('6.3', '6.2')
    """
    return str(Decimal(float(x)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


@cache
def load_js(*names: str) -> str:
    """The JavaScript of ``widgets/js/<name>.js`` for each name, joined in order (a library file before its user).

    The files ship with the package; what a callback needs from Python (constants included) comes through its
    ``args``, never by editing this text.
    """
    folder = files("widgets") / "js"
    return "\n".join((folder / f"{name}.js").read_text(encoding="utf-8") for name in names)


def custom_js(*names: str, **args: Any) -> CustomJS:
    """A ``CustomJS`` running :func:`load_js` ``(*names)`` with ``args`` (Bokeh models, numbers, lists, dicts).

    >>> from bokeh.models import ColumnDataSource
    >>> cb = custom_js("addressing", source=ColumnDataSource({"x": [1]}))
    >>> sorted(cb.args), "function" in cb.code
    (['source'], True)
    """
    return CustomJS(args=args, code=load_js(*names))


def describe(err: BaseException) -> str:
    """``err`` as one plain line for the status line, never a traceback.

    A ValueError or TypeError says what was expected (this project's messages name the parameter and the value):
    its message is the line. Any other error is unexpected (out of memory, a kernel that cannot run here): the line
    names its type before its message. Whitespace is collapsed and the line cut to ``MAX_MESSAGE`` characters.

    >>> describe(ValueError("GRU: expected hidden_size as a positive integer, got 0"))
    'GRU: expected hidden_size as a positive integer, got 0'
    >>> describe(MemoryError("CUDA out of memory"))
    'MemoryError: CUDA out of memory'
    """
    text = " ".join(str(err).split())
    if not isinstance(err, ValueError | TypeError):
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    elif not text:
        text = type(err).__name__
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "\u2026"


def status_html(message: str) -> str:
    """``message`` as the text of the status line's HTML widget (``&`` and ``<`` escaped).

    >>> status_html("a < b & c")
    'a &lt; b &amp; c'
    """
    return message.replace("&", "&amp;").replace("<", "&lt;")


def check_text(name: str, value: Any, max_chars: int) -> str:
    """A live text box's value: a str of at most ``max_chars`` characters; longer is :class:`Refused` before any
    work. :func:`memlib.validate.check_text` for a live control: no ``where`` (the status line names the change).

    >>> check_text("input", "0110", 10)
    '0110'
    """
    return validate.check_text("", name, value, max_chars, why="longer input is not run", too_long=Refused)


def check_number(name: str, value: Any, low: float, high: float) -> float:
    """A live slider's value: :func:`memlib.validate.check_number` (a finite number in [low, high]) for a live
    control, whose message needs no ``where``.

    >>> check_number("temperature", 2, 0.25, 4.0)
    2.0
    """
    return validate.check_number("", name, value, low, high)


def merge_settings(settings: Mapping[str, Any], value: Any, keys: Iterable[str]) -> dict[str, Any]:
    """``settings`` with the changed ones in ``value``, a dict whose keys must be among ``keys``.

    >>> merge_settings({"length": 8, "seed": 0}, {"seed": 3}, ["length", "seed"])
    {'length': 8, 'seed': 3}
    >>> merge_settings({"length": 8}, {"size": 3}, ["length"])
    Traceback (most recent call last):
    ...
    ValueError: expected settings among ['length'], got ['size']
    """
    keys = list(keys)
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a dict of settings among {keys}, got {type(value).__name__}")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise ValueError(f"expected settings among {keys}, got {unknown}")
    return {**settings, **value}


class Explorer(ABC):
    """Base of every explorer: holds prepared data, its Bokeh sources, and optional live controls.

    Subclasses implement ``prepare`` (pure), ``source_data`` (prepared arrays -> the ``data``
    of each named ColumnDataSource) and ``build`` (figures and Bokeh widgets over
    ``self.sources``). ``compute``, if given, maps the live control's value to prepared data.

    Live explorers keep ``settings``: the values of their live controls for the data the figures
    show now. Controls made with :meth:`bind` show them, and go back to them after a refused change.

    >>> from bokeh.models import Div
    >>> class Steps(Explorer):  # the smallest explorer: one source, one Div
    ...     @staticmethod
    ...     def prepare(n):
    ...         if n < 1:
    ...             raise ValueError(f"expected n >= 1, got {n}")
    ...         return {"x": np.arange(n, dtype=float)}
    ...     def source_data(self, data):
    ...         return {"steps": {"x": data["x"]}}
    ...     def build(self):
    ...         return Div(text="steps")
    >>> steps = Steps(Steps.prepare(3), compute=Steps.prepare)
    >>> steps.recompute(5), steps.sources["steps"].data["x"].tolist()
    (True, [0.0, 1.0, 2.0, 3.0, 4.0])
    >>> steps.recompute(0), steps.last_error, len(steps.data["x"])  # refused: the figures keep their data
    (False, 'Not updated: expected n >= 1, got 0', 5)
    """

    max_text: int = 2000  # characters a live text box takes: a longer paste is refused before any work
    live_needs = "compute function"  # what the constructor needs to go live, for the error that says so

    def __init__(self, data: Prepared, compute: Callable[[Any], Prepared] | None = None):
        self.data = data
        self.compute = compute
        self.sources: dict[str, ColumnDataSource] = {
            name: ColumnDataSource(cols, name=name) for name, cols in self.source_data(data).items()
        }
        self._layout: LayoutDOM | None = None
        self._status = None
        self.last_error: str | None = None  # why the last recompute was refused, if it was
        self._bound: list[tuple[str, Any, Callable[[Any], Any]]] = []  # (setting, ipywidget, setting -> its value)
        self._snapping = False  # True while show_settings moves the controls: their observers do nothing

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
        columns = self.source_data(data)  # everything computed before anything moves
        self.data = data
        for name, cols in columns.items():
            self.sources[name].data = cols
        self.on_update(data)

    # Layer 3: live controls -------------------------------------------------------------

    def controls(self) -> list:
        """ipywidgets that change the input; subclasses with a ``compute`` override this."""
        return []

    def request(self, value: Any) -> Any:
        """What ``compute`` receives for a change ``value``, validated before any work; by default ``value``.

        Explorers whose controls are settings take a dict of the changed ones, merge it into ``settings`` and
        check each value here, with messages that name the setting ("expected length as ..., got ...").
        """
        return value

    def check_cost(self, request: Any) -> None:  # noqa: B027 (optional hook)
        """Raise :class:`Refused` where the work for ``request`` would exceed a stated limit; by default nothing."""

    def accept(self, request: Any, data: Prepared) -> None:
        """Show ``data``, computed for ``request``: the figures, then ``settings`` for the controls."""
        self.update(data)
        if isinstance(request, Mapping):
            self.settings = {key: request.get(key, old) for key, old in self.settings.items()}

    def recompute(self, value: Any) -> bool:
        """Run ``compute`` for a change and redraw; on any failure keep the figures, say why, put the controls back.

        ``value``: what the explorer's :meth:`request` takes (a dict of changed settings for most). Returns True
        when the figures show the change. Every exception is caught here, the one failure path of every explorer:
        the status line says "Not updated: " and :func:`describe`'s line, the figures keep their last good data,
        and the live controls go back to the settings the figures show.
        """
        if self.compute is None:
            raise RuntimeError(f"{type(self).__name__}: no {self.live_needs} was given, so it cannot go live")
        _ = self.layout  # built for the current data and settings before either changes
        saved = self._save()
        try:
            request = self.request(value)
            self.check_cost(request)
            self.accept(request, self.compute(request))
        except Exception as err:  # noqa: BLE001 (every failure is reported on the status line; none escapes)
            message = f"Not updated: {describe(err)}"
            try:
                self._restore(saved)
            except Exception as again:  # noqa: BLE001
                message += f" (and the figures could not be put back: {describe(again)})"
            self._set_status(message)
            self.show_settings()
            return False
        self._set_status("")
        self.show_settings()
        return True

    def _save(self) -> dict[str, Any]:
        """What :meth:`_restore` needs to put the figures back as they are now."""
        return {"data": self.data, "settings": dict(getattr(self, "settings", {}))}

    def _restore(self, saved: Mapping[str, Any]) -> None:
        moved = saved["data"] is not self.data
        self.settings = dict(saved["settings"])
        if moved:  # the sources took the new data before the failure: give them the last good data again
            self.update(saved["data"])

    def bind(self, key: str, widget: Any, shown: Callable[[Any], Any] = lambda value: value) -> Any:
        """Let ``widget`` show ``settings[key]`` (through ``shown``) and recompute with ``{key: new}`` when the
        reader changes it. Returns ``widget``."""
        self._bound.append((key, widget, shown))

        def changed(change):
            if not self._snapping:
                self.recompute({key: change["new"]})

        widget.observe(changed, names="value")
        return widget

    def show_settings(self) -> None:
        """Put every bound control on the setting the figures show, without recomputing."""
        self._snapping = True
        try:
            for key, widget, shown in self._bound:
                value = shown(self.settings[key])
                if widget.value != value:
                    widget.value = value
        finally:
            self._snapping = False

    def _set_status(self, message: str) -> None:
        self.last_error = message or None
        if self._status is not None:
            self._status.value = status_html(message)

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

