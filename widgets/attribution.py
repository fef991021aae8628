"""AttributionExplorer: which tokens or time steps an attribution method credits, per method, target and example.

Shows, for the chosen example, method and target, the attribution of every token (or time step) as bars coloured
on a diverging scale centred at 0 (red credits the target, blue counts against it), with the input beside it: a
text's tokens coloured by their attribution (a saliency text view), or a time series drawn as lines over the same
steps. A heatmap below puts every method side by side for that example and target, each row scaled to its own
largest |attribution|, so that the methods' shapes can be compared whatever their units. The caption gives the
prediction, the label, the model's output for the target, the sum of the attributions (for Integrated Gradients
and DeepLift: the output minus the baseline's output, up to the convergence delta) and the most positive and most
negative step.

Static (Bokeh + CustomJS, no kernel): method, target and example selectors drive one CustomJS over precomputed
attributions. Live (ipywidgets): a text box (text) or a sequence picker (time series), and a ``recompute``
callable the page passes in (inputs -> dict of method -> attributions), so the explorer never holds a model; a
callback that fails or returns bad arrays leaves the figures as they were and says why in the status line.

Shapes: ``M`` methods, ``E`` examples, ``C`` targets (classes or outputs explained), ``T`` tokens or time steps,
``F`` features per step of a time series.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import (
    ColorBar,
    CustomJSTickFormatter,
    Div,
    FixedTicker,
    HoverTool,
    LinearColorMapper,
    Range1d,
    Select,
)
from bokeh.palettes import Category10_10, RdBu11, interp_palette
from bokeh.plotting import figure

from memlib.validate import check_array, check_int
from widgets.base import Explorer, Prepared, Refused, check_text, custom_js, fixed, load_js

WIDTH = 660  # fits the book's output column (688 px in a 1280 px window)
MAX_TOKENS = 64  # a bar per token with its label still fits 660 px
MAX_STEPS = 1024  # time series: bars get thin, but the shape stays readable
MAX_FEATURES = 10  # lines in the input panel (one colour each)
# Blue (against the target) through white (0) to red (for it): Bokeh's RdBu11 runs from dark blue to dark red.
PALETTE = interp_palette(RdBu11, 256)
SERIES_COLORS = Category10_10


# Python mirrors of the page's JavaScript (the tests run both and compare) --------------------------------------


def fmt(x: float, digits: int) -> str:
    """``x`` with ``digits`` decimals as the page writes it: ``(x + 0).toFixed(digits)`` in JavaScript (ties
    away from zero; ``-0.0`` as ``0``, ``-0.0001`` as ``-0.00``).

    >>> fmt(0.125, 2), fmt(-0.0001, 2), f"{0.125:.2f}"
    ('0.13', '-0.00', '0.12')
    """
    return fixed(float(x) + 0.0, digits)


def digits_for(scale: float) -> int:
    """Decimals that show three significant digits of numbers up to ``scale`` (0 to 8).

    >>> digits_for(0.5), digits_for(12.0), digits_for(250.0)
    (3, 1, 0)
    """
    return min(8, max(0, 2 - math.floor(math.log10(scale))))


def color_of(value: float, scale: float) -> str:
    """The palette colour of ``value`` on a scale from ``-scale`` (blue) through 0 (white) to ``scale`` (red).

    >>> color_of(1.0, scale=1.0), color_of(-1.0, scale=1.0)  # the ends: dark red, dark blue
    ('#67001f', '#053061')
    """
    return PALETTE[min(255, max(0, math.floor((value / scale + 1) / 2 * 256)))]


def saliency_html(tokens: Sequence[str], values: Sequence[float], scale: float, digits: int) -> str:
    """The tokens as coloured chips, each titled with its attribution (the page's JavaScript writes the same).

    >>> html = saliency_html(["good", "film"], [0.5, -0.25], scale=1.0, digits=2)
    >>> html.count("<span"), 'title="-0.25"' in html
    (2, True)
    """
    chips = []
    for tok, v in zip(tokens, values, strict=True):
        fg = "#fff" if abs(v / scale) > 0.55 else "#000"
        chips.append(f'<span title="{fmt(v, digits)}" style="background:{color_of(v, scale)};color:{fg};'
                     f'padding:1px 4px;margin:2px 1px;border-radius:3px;display:inline-block">{html.escape(tok)}'
                     "</span>")
    return '<div style="line-height:1.9;font-size:95%">' + " ".join(chips) + "</div>"


# The page's JavaScript ---------------------------------------------------------------------------------------




def _labels(name: str, value: Any, E: int) -> list[str]:
    """Predictions or labels: E strings (numbers are written with ``str``); None gives E empty strings."""
    if value is None:
        return [""] * E
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray):
        raise TypeError(f"AttributionExplorer.prepare: expected {name} as a list of {E} strings or numbers, got "
                        f"{type(value).__name__}")
    items = list(value)
    if len(items) != E:
        raise ValueError(f"AttributionExplorer.prepare: expected {E} {name} (one per example), got {len(items)}")
    return [str(v.item() if isinstance(v, np.generic) else v) for v in items]


def _is_token_lists(inputs: Any) -> bool:
    if isinstance(inputs, str) or not isinstance(inputs, Sequence) or len(inputs) == 0:
        return False
    return all(isinstance(x, Sequence | np.ndarray) and not isinstance(x, str) and len(x) > 0
               and all(isinstance(t, str | np.str_) for t in x) for x in inputs)


class AttributionExplorer(Explorer):
    """Explore attributions (M methods x E examples x C targets x T steps) of text or time-series inputs.

    ``recompute`` (live layer, optional) takes the reader's input: the token list (``tokenize`` of the text box,
    text) or one sequence (T, F) or (T,) (the picker's, time series); it returns a dict of method -> attributions
    (C, T) or (T,) for that input, or a pair ``(that dict, prediction)``. The explorer then shows that one input.

    >>> data = AttributionExplorer.prepare({"saliency": np.array([[0.5, -0.25]])}, [["good", "film"]])  # (E, T)
    >>> AttributionExplorer(data).settings
    {'method': 'saliency', 'target': 'output', 'example': 0, 'text': 'good film'}
    """

    live_needs = "recompute function"

    def __init__(
        self,
        data: Prepared,
        recompute: Callable[[Any], Any] | None = None,
        *,
        method: str | None = None,
        target: str | None = None,
        example: int = 0,
        text: str = "",
        tokenize: Callable[[str], list[str]] = str.split,
        candidates: Any = None,
    ):
        methods, targets = [str(m) for m in data["methods"]], [str(t) for t in data["targets"]]
        method = methods[0] if method is None else method
        target = targets[0] if target is None else target
        if method not in methods:
            raise ValueError(f"AttributionExplorer: expected method in {methods}, got {method!r}")
        if target not in targets:
            raise ValueError(f"AttributionExplorer: expected target in {targets}, got {target!r}")
        E = data["attributions"].shape[1]
        check_int("AttributionExplorer", "example", example, low=0, high=E - 1,
                  expected=f"example an integer in [0, {E})")
        self.kind = str(data["kind"])
        self.targets = targets  # the live layer keeps the page's targets
        self.settings: dict[str, Any] = {"method": method, "target": target, "example": int(example)}
        self.user_recompute = recompute
        self.tokenize = tokenize
        if self.kind == "text":
            self.text = text or " ".join(str(t) for t in data["tokens"][0])
            self.settings["text"] = self.text  # the live text box's: the text the figures show
            self.candidates = None
        else:
            cand = data["series"] if candidates is None else candidates
            arr = check_array("AttributionExplorer: candidates", cand, np.ndim(cand), "(N, T) or (N, T, F)")
            if arr.ndim == 2:
                arr = arr[:, :, None]
            if arr.ndim != 3 or arr.shape[0] == 0:
                raise ValueError(f"AttributionExplorer: expected candidates of shape (N>0, T) or (N>0, T, F), got "
                                 f"{arr.shape}")
            self.candidates = arr
            self.settings["sequence"] = 0  # the live picker's: the candidate the figures show (None: another)
        self._built = False
        super().__init__(data, self._live_prepare if recompute is not None else None)

    # Layer 1: prepare -------------------------------------------------------------------------------------

    @staticmethod
    def prepare(
        attributions: Mapping[str, Any],
        inputs: Any,
        targets: Sequence[str] | None = None,
        *,
        predictions: Sequence[Any] | None = None,
        labels: Sequence[Any] | None = None,
        outputs: Any = None,
    ) -> Prepared:
        """Validate attributions and their inputs; return plain arrays.

        ``attributions``: method name -> (E, C, T) or (E, T) numbers (E examples, C targets, T tokens or steps);
        every method of one shape. An object with a ``per_step`` field (memlib.interpret's ``Attribution``) is
        read through it. ``inputs``: E token lists of T strings each (text), or numbers (E, T) or (E, T, F)
        (time series). ``targets``: C names (default ``"output"`` for C = 1, else ``"target 0"``...).
        ``predictions`` and ``labels``: E strings or numbers. ``outputs``: the model's output for each target,
        (E, C) (or (E,) for C = 1).

        Returns ``attributions`` (M, E, C, T), ``methods`` (M,), ``targets`` (C,), ``kind`` ("text" or
        "series"), ``tokens`` (E, T) or ``series`` (E, T, F), ``predictions`` and ``labels`` (E,) strings, and
        ``outputs`` (E, C) when given.
        """
        where = "AttributionExplorer.prepare"
        if not isinstance(attributions, Mapping):
            raise TypeError(f"{where}: expected attributions as a dict of method name -> array, got "
                            f"{type(attributions).__name__}")
        if len(attributions) == 0:
            raise ValueError(f"{where}: expected at least one method in attributions, got an empty dict")
        arrays, shape, first = [], None, None
        for name, value in attributions.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"{where}: expected method names as non-empty strings, got {name!r}")
            if hasattr(value, "per_step"):
                value = value.per_step
            ndim = np.ndim(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
            arr = check_array(f"{where}: attributions[{name!r}]", value, 3 if ndim == 3 else 2,
                              "(E, C, T) or (E, T): examples x targets x steps")
            if arr.ndim == 2:
                arr = arr[:, None, :]
            if shape is None:
                shape, first = arr.shape, name
            elif arr.shape != shape:
                raise ValueError(f"{where}: expected every method's attributions of shape (E, C, T) = {shape} (as "
                                 f"{first!r}), got {arr.shape} for {name!r}")
            arrays.append(arr)
        E, C, T = shape
        if min(shape) == 0:
            raise ValueError(f"{where}: expected attributions of shape (E>0, C>0, T>0), got {shape}")
        out: Prepared = {"attributions": np.stack(arrays), "methods": np.array(list(attributions), dtype=str)}

        if targets is None:
            targets = ["output"] if C == 1 else [f"target {c}" for c in range(C)]
        if isinstance(targets, str) or not isinstance(targets, Sequence | np.ndarray):
            raise TypeError(f"{where}: expected targets as a list of {C} names, got {type(targets).__name__}")
        targets = [str(t) for t in targets]
        if len(targets) != C or len(set(targets)) != C:
            raise ValueError(f"{where}: expected {C} distinct target names (attributions' C), got {targets}")
        out["targets"] = np.array(targets, dtype=str)

        if _is_token_lists(inputs):
            if len(inputs) != E:
                raise ValueError(f"{where}: expected {E} token lists (one per example), got {len(inputs)}")
            for e, toks in enumerate(inputs):
                if len(toks) != T:
                    raise ValueError(f"{where}: expected {T} tokens in example {e} (attributions' T), got "
                                     f"{len(toks)}")
            if T > MAX_TOKENS:
                raise ValueError(f"{where}: expected at most {MAX_TOKENS} tokens, got T = {T}: shorten the texts")
            out["kind"] = np.array("text")
            out["tokens"] = np.array([[str(t) for t in toks] for toks in inputs], dtype=str)
        else:
            if isinstance(inputs, str) or (isinstance(inputs, Sequence) and len(inputs) > 0
                                           and any(isinstance(x, str) for x in inputs)):
                raise TypeError(f"{where}: expected inputs as E token lists (text) or numbers (E, T) or (E, T, F) "
                                f"(time series), got {type(inputs).__name__} holding strings")
            ndim = np.ndim(inputs.detach().cpu().numpy() if hasattr(inputs, "detach") else inputs)
            x = check_array(f"{where}: inputs", inputs, 3 if ndim == 3 else 2,
                            "E token lists, or (E, T) or (E, T, F) numbers")
            if x.ndim == 2:
                x = x[:, :, None]
            if x.shape[:2] != (E, T):
                raise ValueError(f"{where}: expected inputs of shape (E, T) or (E, T, F) with E = {E} and T = {T} "
                                 f"(attributions' E and T), got {x.shape if ndim == 3 else x.shape[:2]}")
            if not 0 < x.shape[2] <= MAX_FEATURES:
                raise ValueError(f"{where}: expected 1 to {MAX_FEATURES} features per step, got F = {x.shape[2]}")
            if T > MAX_STEPS:
                raise ValueError(f"{where}: expected at most {MAX_STEPS} steps, got T = {T}")
            out["kind"] = np.array("series")
            out["series"] = x
        out["predictions"] = np.array(_labels("predictions", predictions, E), dtype=str)
        out["labels"] = np.array(_labels("labels", labels, E), dtype=str)
        if outputs is not None:
            o = check_array(f"{where}: outputs", outputs, np.ndim(outputs) if np.ndim(outputs) in (1, 2) else 2,
                            f"({E}, {C}): examples x targets")
            if o.ndim == 1 and C == 1:
                o = o[:, None]
            if o.shape != (E, C):
                raise ValueError(f"{where}: expected outputs of shape ({E}, {C}) (examples x targets), got {o.shape}")
            out["outputs"] = o
        return out

    # Layer 2: the static Bokeh layout ----------------------------------------------------------------------

    def _selection(self, data: Prepared) -> tuple[int, int, int]:
        """(method, target, example) indices shown now, falling back to the first where a name went away."""
        methods, targets = [str(m) for m in data["methods"]], [str(t) for t in data["targets"]]
        E = data["attributions"].shape[1]
        if self._built:
            method, target, example = self.method_select.value, self.target_select.value, self.example_select.value
        else:
            method, target, example = self.settings["method"], self.settings["target"], self.settings["example"]
        m = methods.index(method) if method in methods else 0
        c = targets.index(target) if target in targets else 0
        e = min(max(int(example), 0), E - 1)
        return m, c, e

    @staticmethod
    def view(data: Prepared, m: int, c: int, e: int) -> dict[str, Any]:
        """What the page shows for method ``m``, target ``c``, example ``e`` (the CustomJS computes the same).

        Values are read as the page holds them (float32) so that Python and JavaScript agree to the last digit.
        """
        A = data["attributions"].astype(np.float32).astype(np.float64)  # (M, E, C, T)
        M, E, C, T = A.shape
        vals = [float(v) for v in A[m, e, c]]
        scale = max(abs(v) for v in vals) or 1.0
        dg = digits_for(scale)
        text = data["kind"] == "text"
        tokens = [str(t) for t in data["tokens"][e]] if text else [f"step {t}" for t in range(T)]
        cells: dict[str, list] = {"x": [], "y": [], "value": [], "raw": [], "method": []}
        for mi in range(M):
            r = [float(v) for v in A[mi, e, c]]
            s = max(abs(v) for v in r) or 1.0
            for t in range(T):
                cells["x"].append(t)
                cells["y"].append(mi)
                cells["value"].append(r[t] / s)
                cells["raw"].append(r[t])
                cells["method"].append(str(data["methods"][mi]))
        total, hi, lo = 0.0, 0, 0
        for t in range(T):  # in order, as the JavaScript adds
            total += vals[t]
            hi = t if vals[t] > vals[hi] else hi
            lo = t if vals[t] < vals[lo] else lo
        return {"values": vals, "scale": scale, "digits": dg, "tokens": tokens, "cells": cells,
                "text": saliency_html(tokens, vals, scale, dg) if text else "",
                "caption": AttributionExplorer.caption(data, m, c, e, vals, total, hi, lo, dg)}

    @staticmethod
    def caption(data: Prepared, m: int, c: int, e: int, vals: list[float], total: float, hi: int, lo: int,
                dg: int) -> str:
        E = data["attributions"].shape[1]
        text = data["kind"] == "text"
        esc = html.escape

        def name(t: int) -> str:
            return f"&quot;{esc(str(data['tokens'][e][t]))}&quot;" if text else f"step {t}"

        def signed(x: float) -> str:
            return ("+" if x > 0 else "") + fmt(x, dg)

        cap = (f"<b>example {e + 1} of {E}</b>, {esc(str(data['methods'][m]))}, target "
               f"<b>{esc(str(data['targets'][c]))}</b>")
        said = []
        if data["predictions"][e] != "":
            said.append(f"prediction <b>{esc(str(data['predictions'][e]))}</b>")
        if data["labels"][e] != "":
            said.append(f"label {esc(str(data['labels'][e]))}")
        if "outputs" in data:
            said.append(f"output {fmt(data['outputs'][e, c].astype(np.float32), dg)}")
        if said:
            cap += ": " + ", ".join(said)
        return (f"{cap}. Sum of attributions {fmt(total, dg)}; most positive {name(hi)} ({signed(vals[hi])}), "
                f"most negative {name(lo)} ({signed(vals[lo])}).")

    def source_data(self, data: Prepared) -> dict[str, dict[str, Any]]:
        M, E, C, T = data["attributions"].shape
        m, c, e = self._selection(data)
        view = self.view(data, m, c, e)
        text = data["kind"] == "text"
        F = 0 if text else data["series"].shape[2]
        store = {"method": [mi for mi in range(M) for _ in range(E) for _ in range(C)],
                 "example": [ei for _ in range(M) for ei in range(E) for _ in range(C)],
                 "target": [ci for _ in range(M) for _ in range(E) for ci in range(C)],
                 "values": [data["attributions"][mi, ei, ci].astype(np.float32)
                            for mi in range(M) for ei in range(E) for ci in range(C)]}
        inputs: dict[str, list] = {"example": list(range(E)), "prediction": [str(p) for p in data["predictions"]],
                                   "label": [str(lb) for lb in data["labels"]],
                                   "output": [data["outputs"][ei].astype(np.float32) if "outputs" in data
                                              else np.zeros(0, np.float32) for ei in range(E)]}
        if text:
            inputs["tokens"] = [[str(t) for t in data["tokens"][ei]] for ei in range(E)]
            series = {"xs": [], "ys": [], "color": []}
        else:
            inputs["series"] = [data["series"][ei].ravel().astype(np.float32) for ei in range(E)]
            x = data["series"][e].astype(np.float32).astype(np.float64)
            series = {"xs": [list(range(T)) for _ in range(F)], "ys": [list(x[:, f]) for f in range(F)],
                      "color": [SERIES_COLORS[f % len(SERIES_COLORS)] for f in range(F)]}
        return {
            "attribution_meta": {"kind": [str(data["kind"])], "E": [E], "C": [C], "T": [T], "F": [F],
                                 "methods": [[str(s) for s in data["methods"]]],
                                 "targets": [[str(s) for s in data["targets"]]]},
            "attribution_store": store,
            "attribution_inputs": inputs,
            "attribution_bars": {"x": list(range(T)), "value": view["values"], "token": view["tokens"]},
            "attribution_cells": view["cells"],
            "attribution_series": series,
        }

    @staticmethod
    def _example_options(data: Prepared) -> list[tuple[str, str]]:
        E = data["attributions"].shape[1]
        out = []
        for e in range(E):
            if data["kind"] == "text":
                words = " ".join(str(t) for t in data["tokens"][e])
                head = words if len(words) <= 28 else words[:27] + "\u2026"
            else:
                head = "sequence"
            label = f" ({data['labels'][e]})" if data["labels"][e] != "" else ""
            out.append((str(e), f"{e + 1}: {head}{label}"))
        return out

    def build(self):
        data, s = self.data, self.sources
        M, E, C, T = data["attributions"].shape
        m, c, e = self._selection(data)
        view = self.view(data, m, c, e)
        text = self.kind == "text"
        third = WIDTH // 3 - 6
        self.method_select = Select(title="method", value=str(data["methods"][m]),
                                    options=[str(x) for x in data["methods"]], width=third,
                                    name="attribution_method_select")
        self.target_select = Select(title="target", value=str(data["targets"][c]),
                                    options=[str(x) for x in data["targets"]], width=third,
                                    name="attribution_target_select")
        self.example_select = Select(title="example", value=str(e), options=self._example_options(data),
                                     width=third, name="attribution_example_select")
        self.caption_div = Div(text=view["caption"], width=WIDTH, name="attribution_caption")
        self.text_div = Div(text=view["text"], width=WIDTH, visible=text, name="attribution_text")

        self.x_range = Range1d(-0.5, T - 0.5)
        self.series_fig = figure(width=WIDTH, height=180, title="input", x_range=self.x_range, tools="",
                                 toolbar_location=None, visible=not text, name="attribution_series_figure")
        self.series_fig.multi_line(xs="xs", ys="ys", line_color="color", line_width=1.5, source=s["attribution_series"])
        self.series_fig.xaxis.visible = False

        self.mapper = LinearColorMapper(palette=PALETTE, low=-view["scale"], high=view["scale"])
        self.bars_fig = figure(width=WIDTH, height=230 if text else 170, x_range=self.x_range, tools="",
                               toolbar_location=None, title="attribution per " + ("token" if text else "step"),
                               name="attribution_bars_figure")
        self.bars_fig.vbar(x="x", top="value", width=0.8, source=s["attribution_bars"], line_color=None,
                           fill_color={"field": "value", "transform": self.mapper})
        self.bars_fig.add_tools(HoverTool(tooltips=[("", "@token"), ("attribution", "@value{0.0000}")]))
        self.bars_fig.add_layout(ColorBar(color_mapper=self.mapper, width=8), "right")
        self.bars_fig.xgrid.visible = False

        self.cell_mapper = LinearColorMapper(palette=PALETTE, low=-1, high=1)
        self.cells_fig = figure(width=WIDTH, height=50 + 24 * M, x_range=self.x_range,
                                y_range=Range1d(M - 0.5, -0.5), tools="", toolbar_location=None,
                                title="every method, each row scaled to its largest |attribution|",
                                name="attribution_methods_figure")
        self.cells_fig.rect(x="x", y="y", width=1, height=1, source=s["attribution_cells"], line_color=None,
                            fill_color={"field": "value", "transform": self.cell_mapper})
        self.cells_fig.add_tools(HoverTool(tooltips=[("method", "@method"), ("attribution", "@raw{0.0000}")]))
        self.cells_fig.add_layout(ColorBar(color_mapper=self.cell_mapper, width=8), "right")
        for fig in (self.bars_fig, self.cells_fig, self.series_fig):
            fig.title.text_font_size = "9pt"
        self._axes(data)

        self.callback = custom_js(
            "attribution", meta=s["attribution_meta"], store=s["attribution_store"], inputs=s["attribution_inputs"],
            bars=s["attribution_bars"], cells=s["attribution_cells"], series=s["attribution_series"],
            method=self.method_select, target=self.target_select, example=self.example_select,
            mapper=self.mapper, text=self.text_div, caption=self.caption_div,
            PALETTE=list(PALETTE), SERIES=list(SERIES_COLORS),
        )
        for widget in (self.method_select, self.target_select, self.example_select):
            widget.js_on_change("value", self.callback)
        self._built = True
        note = Div(text=("Red: the token or step pushes the chosen target's output up; blue: down; white: 0. The "
                         "bars share one scale, centred at 0, set by the largest |attribution| shown."),
                   width=WIDTH, styles={"font-size": "85%", "color": "#555"}, name="attribution_note")
        return column(row(self.method_select, self.target_select, self.example_select), self.caption_div,
                      self.text_div, self.series_fig, self.bars_fig, self.cells_fig, note,
                      name="attribution_explorer")

    def _axes(self, data: Prepared) -> None:
        """Ticks and ranges for ``data``'s sizes: token labels under the bars (text), method names (heatmap)."""
        M, E, C, T = data["attributions"].shape
        text = data["kind"] == "text"
        self.x_range.update(start=-0.5, end=T - 0.5)
        if text:
            self.bars_fig.xaxis.ticker = FixedTicker(ticks=list(range(T)))
            self.bars_fig.xaxis.formatter = CustomJSTickFormatter(args=dict(bars=self.sources["attribution_bars"]),
                                                                  code=load_js("attribution_token_tick"))
            self.bars_fig.xaxis.major_label_orientation = 0 if T <= 10 else math.pi / 3
            self.cells_fig.xaxis.visible = False
        else:
            self.bars_fig.xaxis.axis_label = "time step"
            self.cells_fig.xaxis.visible = False
        self.cells_fig.y_range.update(start=M - 0.5, end=-0.5)
        self.cells_fig.height = 50 + 24 * M
        self.cells_fig.yaxis.ticker = FixedTicker(ticks=list(range(M)))
        self.cells_fig.yaxis.major_label_overrides = {mi: str(x) for mi, x in enumerate(data["methods"])}

    def on_update(self, data: Prepared) -> None:
        m, c, e = self._selection(data)
        view = self.view(data, m, c, e)
        self.method_select.update(options=[str(x) for x in data["methods"]], value=str(data["methods"][m]))
        self.target_select.update(options=[str(x) for x in data["targets"]], value=str(data["targets"][c]))
        self.example_select.update(options=self._example_options(data), value=str(e))
        self.mapper.update(low=-view["scale"], high=view["scale"])
        self.caption_div.text = view["caption"]
        self.text_div.text = view["text"]
        self._axes(data)

    def update(self, data: Prepared) -> None:
        """Replace the data; it must be of the kind (text or time series) the explorer was built with."""
        if str(data["kind"]) != self.kind:
            raise ValueError(f"AttributionExplorer: expected {self.kind} data (the kind this explorer was built "
                             f"with), got {data['kind']} data")
        super().update(data)

    # Layer 3: live controls ----------------------------------------------------------------------------------

    def request(self, value: Any) -> dict[str, Any]:
        """The input for the page's ``recompute``, checked before it runs: ``{"text": str}`` (the text box), a str
        or a token list (text); ``{"sequence": n}`` (the picker: candidate n) or one sequence (T, F) or (T,) (time
        series). Returns the setting to show (``text``, or ``sequence``: None for a sequence given as numbers) and
        ``input``: the tokens or the (T, F) numbers."""
        key = "text" if self.kind == "text" else "sequence"
        if isinstance(value, Mapping):
            if set(value) != {key}:
                raise ValueError(f"expected the setting {key!r} for {self.kind} data, got {sorted(value)}")
            value = value[key]
            if key == "sequence":
                n = len(self.candidates)
                check_int("", "sequence", value, low=0, high=n - 1,
                          expected=f"sequence an index in [0, {n}) (the candidates)")
                return {"sequence": int(value), "input": self.candidates[value]}
        if self.kind == "text":
            if isinstance(value, str):
                text = check_text("text", value, self.max_text)
                tokens = list(self.tokenize(text))
            else:
                tokens = list(value)
                text = " ".join(map(str, tokens))
            if not tokens:
                raise ValueError("expected at least one token, got an empty text")
            if len(tokens) > MAX_TOKENS:  # prepare would refuse the bars: the model is not run
                raise Refused(f"expected at most {MAX_TOKENS} tokens in text (no more bars fit, so the model is not "
                              f"run), got {len(tokens)}")
            return {"text": text, "input": tokens}
        x = check_array("sequence", value, np.ndim(value) if np.ndim(value) in (1, 2) else 2, "(T, F) or (T,)")
        x = x.reshape(x.shape[0], -1)  # (T, F)
        if not 0 < x.shape[0] <= MAX_STEPS or not 0 < x.shape[1] <= MAX_FEATURES:
            raise Refused(f"expected sequence of 1 to {MAX_STEPS} steps of 1 to {MAX_FEATURES} features (what the "
                          f"figures draw, so the model is not run beyond it), got shape {x.shape}")
        return {"sequence": None, "input": x}

    def _live_prepare(self, request: Mapping[str, Any]) -> Prepared:
        """The page's ``recompute`` on ``request["input"]``, made into prepared data for that one example."""
        inputs: Any = [request["input"]] if self.kind == "text" else request["input"][None]
        result = self.user_recompute(inputs[0])
        prediction = None
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Mapping):
            result, prediction = result
        if not isinstance(result, Mapping):
            raise ValueError(f"expected recompute to return a dict of method -> attributions (C, T) or (T,), got "
                             f"{type(result).__name__}")
        batched = {}
        for name, a in result.items():
            if hasattr(a, "per_step"):
                a = a.per_step
            if hasattr(a, "detach"):
                a = a.detach().cpu().numpy()
            batched[name] = np.asarray(a)[None] if np.ndim(a) in (1, 2) else a
        return self.prepare(batched, inputs, self.targets,
                            predictions=None if prediction is None else [prediction])

    def accept(self, request: Mapping[str, Any], data: Prepared) -> None:
        self.update(data)
        key = "text" if self.kind == "text" else "sequence"
        self.settings = {**self.settings, key: request[key]}

    def controls(self) -> list:
        """A text box (text) or a sequence picker (time series); each change calls ``recompute``."""
        import ipywidgets

        if self.kind == "text":
            box = ipywidgets.Text(value=self.settings["text"], description="text", continuous_update=False,
                                  layout=ipywidgets.Layout(width=f"{WIDTH}px"),
                                  placeholder="type a sentence and press Enter")
            return [self.bind("text", box)]
        picker = ipywidgets.Dropdown(options=[(f"sequence {n + 1}", n) for n in range(len(self.candidates))],
                                     value=self.settings["sequence"], description="sequence")
        return [self.bind("sequence", picker)]
