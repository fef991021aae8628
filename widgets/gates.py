"""GateExplorer: every gate of an LSTM or GRU over time, and how long a unit holds what it saw.

Shows the input sequence, one heatmap (units x steps) per gate and state, and the *retention*
of each unit: the fraction of its state at a marked step ``m`` that survives to step ``t``,

- LSTM (``c_t = f_t * c_{t-1} + i_t * g_t``): ``r_t = prod_{s=m+1..t} f_s``,
- GRU in PyTorch's form (``h_t = (1 - z_t) * n_t + z_t * h_{t-1}``): ``r_t = prod_{s=m+1..t} z_s``,

with each unit's half-life: the steps after ``m`` until ``r_t <= 1/2``. Raising the forget-gate
bias (the update gate's, for a GRU) pushes ``f_t`` towards 1 and the half-life up: the forget
gate's role, made visible (Gers et al. 2000, "Learning to Forget", section 2).

Static (Bokeh + CustomJS, no kernel): a variant selector (several traces of one input, e.g. two
forget biases or LSTM vs GRU), a time slider and a unit slider. Live (ipywidgets): choose or edit
the input, change the forget bias, switch LSTM/GRU; a ``compute(settings)`` the chapter supplies
reruns the model and the same figures redraw.

Shapes: ``V`` variants, ``T`` steps, ``H`` units (the first ``max_units`` of the layer), ``I`` input
channels. Steps are shown 1..T; ``marked`` is a 0-based index into the sequence, shown as step m+1.
"""

from __future__ import annotations

import html
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import (
    BoxAnnotation,
    CDSView,
    ColorBar,
    CustomJS,
    DataRange1d,
    Div,
    FactorRange,
    GroupFilter,
    LinearColorMapper,
    Range1d,
    Select,
    Slider,
    Span,
)
from bokeh.palettes import Category10_4, Greys256, RdBu11, Viridis256, interp_palette
from bokeh.plotting import figure

from memlib.validate import check_array, check_int, fail
from widgets.base import Explorer, Prepared, check_number, check_text, custom_js, merge_settings

KIND_GATES = {
    "lstm": ("forget_gate", "input_gate", "output_gate", "candidate", "cell", "hidden"),
    "gru": ("update_gate", "reset_gate", "candidate", "hidden"),
}
ALL_GATES = ("forget_gate", "input_gate", "output_gate", "update_gate", "reset_gate", "candidate", "cell", "hidden")
SIGMOID_GATES = {"forget_gate", "input_gate", "output_gate", "update_gate", "reset_gate"}
KEEP_GATE = {"lstm": "forget_gate", "gru": "update_gate"}  # the gate whose product is the retention
SYMBOL = {  # the equations' letters, per kind: the GRU's candidate is n_t, the LSTM's g_t
    "lstm": {"forget_gate": "f", "input_gate": "i", "output_gate": "o", "candidate": "g", "cell": "c", "hidden": "h"},
    "gru": {"update_gate": "z", "reset_gate": "r", "candidate": "n", "hidden": "h"},
}
TITLE = {
    "lstm": {
        "forget_gate": "forget gate fₜ", "input_gate": "input gate iₜ", "output_gate": "output gate oₜ",
        "candidate": "candidate gₜ", "cell": "cell state cₜ", "hidden": "hidden state hₜ",
    },
    "gru": {
        "update_gate": "update gate zₜ (1 = keep)", "reset_gate": "reset gate rₜ", "candidate": "candidate nₜ",
        "hidden": "hidden state hₜ",
    },
}
COLOR = {
    "forget_gate": "#1b9e77", "update_gate": "#1b9e77", "input_gate": "#d95f02", "reset_gate": "#d95f02",
    "output_gate": "#7570b3", "candidate": "#e7298a", "cell": "#66a61e", "hidden": "#444444",
}
VARIANT_KEYS = {"kind", "inputs", "gates", "labels", "marked", "channels"}
MAX_LINE_CHANNELS = 4  # up to this many input channels are drawn as lines; more as an image (e.g. one-hot text)
DEFAULT_INPUTS = {  # the text box's starting text per input kind; the chapter's compute decides what it means
    "adding problem": "length=40 seed=0",
    "sine wave": "length=60 period=12",
    "sentence": "the cat that the dog chased sat on the mat",
}
MAX_STEPS = 200  # prepare's default: the heatmaps stay readable and the page small
# What parse_settings accepts for the settings of DEFAULT_INPUTS: (low, high, integer, why), checked where they are
# typed so that a bad one is named, not the NaN it would make in a gate downstream. A length's upper end is the
# chapter's to check (its compute says which lengths its task takes, before it runs anything).
SETTING_LIMITS: dict[str, tuple[float, float, bool, str]] = {
    "length": (1, math.inf, True, "steps"),
    "seed": (0, 2**31 - 1, True, "a random seed"),
    "period": (2, 1e6, False, "steps per cycle: a sine sampled once a step needs at least 2"),
}
WIDTH = 660  # fits the book's output column (688 px in a 1280 px window)



class GateExplorer(Explorer):
    """Explore the gates of one or more LSTM/GRU traces (variants) of one input sequence.

    ``compute(settings)`` (live layer) takes the controls' values as a dict with keys
    ``"input_kind"`` (one of ``inputs``' keys), ``"input_text"``, ``"forget_bias"`` (float) and
    ``"kind"`` (``"lstm"`` or ``"gru"``), and returns :meth:`prepare`'s output. ``inputs`` maps each
    input kind to its starting text (what the text means is the compute's business); ``forget_bias``
    and ``kind`` are the controls' starting values and ``bias_range`` the bias slider's ends. For a
    GRU, the compute should add the bias to the update gate z (the GRU's keep gate).

    >>> half = np.full((4, 2), 0.5)  # (T, H): every gate at 0.5
    >>> gates = {name: half for name in ("input_gate", "forget_gate", "output_gate", "candidate", "cell", "hidden")}
    >>> data = GateExplorer.prepare({"LSTM": {"kind": "lstm", "inputs": np.zeros(4), "gates": gates}})
    >>> data["half_life"]  # (V, H): a forget gate of 0.5 halves the state in one step
    array([[1., 1.]])
    >>> GateExplorer(data).settings["kind"]
    'lstm'
    """

    def __init__(
        self,
        data: Prepared,
        compute: Callable[[dict[str, Any]], Prepared] | None = None,
        *,
        inputs: Mapping[str, str] = DEFAULT_INPUTS,
        forget_bias: float = 0.0,
        kind: str = "lstm",
        bias_range: tuple[float, float] = (-4.0, 6.0),
    ):
        if not inputs:
            raise ValueError("GateExplorer: expected at least one input kind in inputs, got none")
        if kind not in KIND_GATES:
            raise ValueError(f"GateExplorer: expected kind 'lstm' or 'gru', got {kind!r}")
        self.texts = dict(inputs)  # the latest text of each input kind
        first = next(iter(self.texts))
        self.settings = {"input_kind": first, "input_text": self.texts[first], "forget_bias": float(forget_bias),
                         "kind": kind}
        self.bias_range = bias_range
        check_number("forget_bias", forget_bias, *bias_range)
        self._built = False
        super().__init__(data, compute)

    # Layer 1: prepare ------------------------------------------------------------------------

    @staticmethod
    def prepare(variants: Mapping[str, Mapping[str, Any]], max_units: int = 16, max_steps: int = MAX_STEPS) -> Prepared:
        """Validate named variants and compute each unit's retention and half-life.

        ``variants`` maps a name (shown in the selector) to a dict with ``kind`` (``"lstm"`` or
        ``"gru"``), ``inputs`` ((T,) or (T, I)), ``gates`` (name -> (T, H): for the LSTM
        ``input_gate, forget_gate, output_gate, candidate, cell, hidden``, for the GRU
        ``reset_gate, update_gate, candidate, hidden``) and optionally ``labels`` (T strings, e.g.
        the tokens of a sentence), ``marked`` (the 0-based step whose state the retention follows;
        default 0) and ``channels`` (I names for the input channels). :meth:`from_trace` builds one.
        Variants share T, H and I. Only the first ``max_units`` units are kept.

        Returns arrays with a leading variant axis: ``names``, ``kinds``, ``marked`` (V,);
        ``inputs`` (V, T, I); ``labels`` (V, T); ``channels`` (V, I); one (V, T, H) array per gate
        name in ``ALL_GATES`` (NaN where a variant's kind has no such gate); ``retention`` (V, T, H)
        (NaN before the mark); ``half_life`` (V, H) in steps (inf where r_t stays above 1/2).
        """
        where = "GateExplorer.prepare"
        if not isinstance(variants, Mapping):
            raise TypeError(
                f"{where}: expected a mapping of variant name -> variant dict, got {type(variants).__name__}"
            )
        if not variants:
            raise ValueError(f"{where}: expected at least one variant, got none")
        for name, value in (("max_units", max_units), ("max_steps", max_steps)):
            check_int(where, name, value, low=1, expected=f"{name} an integer >= 1")
        one = [_prepare_variant(f"{where}: variant {name!r}", v, max_units, max_steps) for name, v in variants.items()]
        shape = {(p["T"], p["H"], p["I"]) for p in one}
        if len(shape) > 1:
            first = next(iter(variants))
            T, H, n_in = one[0]["T"], one[0]["H"], one[0]["I"]
            for name, p in zip(variants, one, strict=True):
                if (p["T"], p["H"], p["I"]) != (T, H, n_in):
                    raise ValueError(
                        f"{where}: variant {name!r}: expected T={T} steps, H={H} units and I={n_in} input channels "
                        f"like variant {first!r}, got T={p['T']}, H={p['H']}, I={p['I']}"
                    )
        T, H = one[0]["T"], one[0]["H"]
        out: Prepared = {
            "names": np.array([str(name) for name in variants]),
            "kinds": np.array([p["kind"] for p in one]),
            "marked": np.array([p["marked"] for p in one], dtype=np.int64),
            "inputs": np.stack([p["inputs"] for p in one]),
            "labels": np.array([p["labels"] for p in one], dtype=str).reshape(len(one), T),
            "channels": np.array([p["channels"] for p in one], dtype=str).reshape(len(one), -1),
        }
        for gate in ALL_GATES:
            out[gate] = np.stack([p["gates"].get(gate, np.full((T, H), np.nan)) for p in one])
        out["retention"] = np.stack([p["retention"] for p in one])
        out["half_life"] = np.stack([p["half_life"] for p in one])
        return out

    @staticmethod
    def from_trace(
        trace: Any,
        kind: str,
        inputs: Any,
        layer: int = 0,
        sample: int = 0,
        marked: int | None = None,
        labels: Sequence[str] | None = None,
        channels: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """One variant for :meth:`prepare`, read from a ``memlib.trace()`` of a ``memlib.LSTM``/``GRU``.

        Takes ``{kind}.{gate}.l{layer}`` for every gate (``tr.stack`` gives (T, B, H)) at batch
        row ``sample``; ``inputs`` are that sample's inputs, (T,) or (T, I).
        """
        where = "GateExplorer.from_trace"
        if kind not in KIND_GATES:
            raise ValueError(f"{where}: expected kind 'lstm' or 'gru', got {kind!r}")
        gates = {}
        for gate in KIND_GATES[kind]:
            name = f"{kind}.{gate}.l{layer}"
            if name not in trace:
                raise ValueError(
                    f"{where}: expected {name!r} in the trace (run a memlib.{kind.upper()} with at least "
                    f"{layer + 1} layer(s) inside `with memlib.trace() as tr:`), got names {trace.names()}"
                )
            stacked = trace.stack(name)  # (T, B, H)
            if not -stacked.shape[1] <= sample < stacked.shape[1]:
                raise ValueError(f"{where}: expected sample in [0, {stacked.shape[1]}) (the batch), got {sample}")
            gates[gate] = stacked[:, sample]  # (T, H)
        return {"kind": kind, "inputs": inputs, "gates": gates, "marked": marked, "labels": labels,
                "channels": channels}

    @staticmethod
    def parse_settings(
        text: str, defaults: Mapping[str, float], limits: Mapping[str, tuple[float, float, bool, str]] | None = None
    ) -> dict[str, float]:
        """``"length=40 seed=0"`` -> ``{"length": 40.0, "seed": 0.0}`` over ``defaults``; a helper for a compute.

        Only the keys of ``defaults`` are allowed; anything else is a ValueError that shows the form. A typed value
        must be a finite number and, for a key of ``limits`` (default :data:`SETTING_LIMITS`: ``length``, ``seed``,
        ``period``), within its ``(low, high)`` and whole where it says ``integer``; the error names the key.
        """
        limits = SETTING_LIMITS if limits is None else limits
        out = dict(defaults)
        form = " ".join(f"{k}={v:g}" for k, v in defaults.items())
        for item in re.split(r"[\s,;]+", text.strip()):
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not sep or key not in defaults:
                raise ValueError(f"expected settings like {form!r} (keys {sorted(defaults)}), got {item!r}")
            try:
                out[key] = float(value)
            except ValueError:
                raise ValueError(f"expected a number for {key}, got {value!r}") from None
            if not np.isfinite(out[key]):
                raise ValueError(f"expected a finite number for {key}, got {value!r}")
            if key in limits:
                low, high, integer, why = limits[key]
                if not low <= out[key] <= high or (integer and not out[key].is_integer()):
                    what = "an integer" if integer else "a number"
                    raise ValueError(f"expected {key} {what} in [{low:g}, {high:g}] ({why}), got {value!r}")
        return out

    # Layer 2: the static Bokeh layout --------------------------------------------------------

    def _selection(self, data: Prepared) -> tuple[int, int, int]:
        """(variant index, 0-based step, unit) shown now, clamped to ``data``'s sizes."""
        names = list(data["names"])
        _, T, H = data["retention"].shape
        if not self._built:
            return 0, T - 1, 0
        v = names.index(self.select.value) if self.select.value in names else 0
        return v, min(max(self.time_slider.value, 1), T) - 1, min(max(self.unit_slider.value, 0), H - 1)

    def source_data(self, data: Prepared) -> dict[str, dict[str, Any]]:
        V, T, H = data["retention"].shape
        n_in = data["inputs"].shape[2]  # I
        names = [str(n) for n in data["names"]]
        store: dict[str, Any] = {
            "variant": names, "kind": [str(k) for k in data["kinds"]], "T": [T] * V, "H": [H] * V,
            "marked": [int(m) for m in data["marked"]],
            "half_life": [hl.astype(np.float32) for hl in data["half_life"]],
            "median_half_life": [float(np.median(hl)) for hl in data["half_life"]],
            "x": [0.5] * V, "y": [-0.5] * V, "dw": [T] * V, "dh": [H] * V, "input_dh": [n_in] * V,
        }
        placeholder = np.zeros((1, 1), np.float32)  # a gate this variant's kind lacks: its figure is hidden
        for gate in (*ALL_GATES, "retention"):
            store[gate] = [
                placeholder if np.isnan(a).all() and gate != "retention" else a.T.astype(np.float32)  # (H, T)
                for a in data[gate]
            ]
        # more channels than lines can show (one-hot text): an image, rows = channels
        store["input_image"] = [x.T.astype(np.float32) if n_in > MAX_LINE_CHANNELS else placeholder
                                for x in data["inputs"]]
        lines = n_in <= MAX_LINE_CHANNELS
        store["input_lines"] = [x.T.astype(np.float32) if lines else placeholder for x in data["inputs"]]  # (I, T)
        store["line_channels"] = [[str(c) for c in chans] if lines else [] for chans in data["channels"]]
        top = self._input_top(data)
        labels: dict[str, list] = {"variant": [], "step": [], "label": [], "y": []}
        for name, labs in zip(names, data["labels"], strict=True):
            for k, lab in enumerate(labs):
                if lab:
                    labels["variant"].append(name)
                    labels["step"].append(k + 1)
                    labels["label"].append(str(lab))
                    labels["y"].append(top)
        return {"gate_variants": store, "gate_labels": labels,
                **self._view(data, *self._selection(data))}

    @staticmethod
    def _input_top(data: Prepared) -> float:
        """The y where step labels sit in the input panel: above the lines, or above the image's rows."""
        x = data["inputs"]
        if x.shape[2] > MAX_LINE_CHANNELS:
            return x.shape[2] - 0.5 + 0.1 * x.shape[2]
        lo, hi = float(x.min()), float(x.max())
        return hi + 0.15 * max(hi - lo, 1e-6)

    @staticmethod
    def _view(data: Prepared, v: int, t: int, u: int) -> dict[str, dict[str, Any]]:
        """The sources that depend on the chosen variant, step and unit (the CustomJS computes the same)."""
        kind = str(data["kinds"][v])
        gates = KIND_GATES[kind]
        T = data["retention"].shape[1]
        steps = np.arange(1, T + 1)
        rows = [data[g][v, :, u].astype(np.float32) for g in gates]
        r = data["retention"][v, :, u].astype(np.float32)
        lines = data["inputs"].shape[2] <= MAX_LINE_CHANNELS
        channels = [str(c) for c in data["channels"][v]] if lines else []
        return {
            "gate_inputs": {"xs": [steps] * len(channels), "ys": [data["inputs"][v, :, c].astype(np.float32)
                                                                  for c in range(len(channels))],
                            "channel": channels, "color": list(Category10_4[: len(channels)])},
            "gates_at_time": {"gate": [SYMBOL[kind][g] for g in gates], "name": [TITLE[kind][g] for g in gates],
                              "value": [float(x[t]) for x in rows], "color": [COLOR[g] for g in gates]},
            "unit_over_time": {"xs": [steps] * len(gates), "ys": rows, "gate": [TITLE[kind][g] for g in gates],
                               "color": [COLOR[g] for g in gates]},
            "retention_of_unit": {"step": steps, "retention": r},
            "retention_cursor": {"step": [t + 1], "retention": [float(r[t])]},
        }

    def _caption(self, data: Prepared, v: int, t: int, u: int) -> str:
        kind = str(data["kinds"][v])
        T, H = data["retention"].shape[1:]
        m = int(data["marked"][v])
        label = str(data["labels"][v, t])
        token = f' "{label}"' if label else ""
        values = ", ".join(f"{SYMBOL[kind][g]} {data[g][v, t, u]:.2f}" for g in KIND_GATES[kind])
        kept = "(before the mark)" if t < m else f"{data['retention'][v, t, u]:.2f}"
        hl = data["half_life"][v]

        def fmt(h: float) -> str:
            return f"{h:g} step{'' if h == 1 else 's'}" if np.isfinite(h) else f"over {T - 1 - m} steps (not reached)"

        return (
            f"<b>{html.escape(str(data['names'][v]))}</b>: step {t + 1} of {T}{html.escape(token)}, unit {u}: "
            f"{values}<br>Kept at step {t + 1} of what unit {u} held at the marked step {m + 1}: {kept} "
            f"(rₜ = ∏ {SYMBOL[kind][KEEP_GATE[kind]]}ₛ over the steps since the mark). "
            f"Half-life of unit {u}: {fmt(hl[u])}; "
            f"median over {H} units: {fmt(float(np.median(hl)))}."
        )

    def _heatmap(self, title: str, column_name: str, mapper: LinearColorMapper):
        """A (units x steps) map of the store's ``column_name`` for the chosen variant, with the cursors."""
        fig = figure(width=WIDTH // 2, height=140, title=title,
                     x_range=self.x_range, y_range=self.unit_range, tools="", toolbar_location=None,
                     min_border_left=30, min_border_right=4)
        fig.image(image=column_name, x="x", y="y", dw="dw", dh="dh", source=self.sources["gate_variants"],
                  view=CDSView(filter=self.filter), color_mapper=mapper)
        fig.add_layout(ColorBar(color_mapper=mapper, width=8, padding=3), "right")
        fig.yaxis.ticker.min_interval = 1  # units are whole numbers
        self._cursors(fig)
        return fig

    def _cursors(self, fig, unit_box: bool = True) -> None:
        """The chosen step (solid), the marked step (dashed) and the chosen unit (a box) on ``fig``."""
        fig.xaxis.ticker.min_interval = 1  # steps are whole numbers
        time_span = Span(location=self._t + 1, dimension="height", line_color="black", line_width=1.5)
        mark_span = Span(location=self._m + 1, dimension="height", line_color="#b2182b", line_dash="dashed",
                         line_width=1.5)
        fig.add_layout(time_span)
        fig.add_layout(mark_span)
        self.time_spans.append(time_span)
        self.mark_spans.append(mark_span)
        if unit_box:
            box = BoxAnnotation(bottom=self._u - 0.5, top=self._u + 0.5, fill_alpha=0, line_color="black",
                                line_alpha=0.9, line_width=1)
            fig.add_layout(box)
            self.unit_boxes.append(box)

    def build(self):
        data = self.data
        v, t, u = self._selection(data)
        self._t, self._u, self._m = t, u, int(data["marked"][v])
        T, H = data["retention"].shape[1:]
        kind = str(data["kinds"][v])
        self.time_spans: list[Span] = []
        self.mark_spans: list[Span] = []
        self.unit_boxes: list[BoxAnnotation] = []
        self.filter = GroupFilter(column_name="variant", group=str(data["names"][v]))
        self.x_range = Range1d(0.5, T + 0.5)
        self.unit_range = Range1d(-0.5, H - 0.5)
        self._controls(data, v, t, u)
        self._input_figure()
        self.blocks = self._gate_blocks(kind)
        retention = self._retention_figures()
        lines = self._unit_figures(data, v, u, kind)
        callback = self._callback()
        for widget in (self.select, self.time_slider, self.unit_slider):
            widget.js_on_change("value", callback)
        self._built = True
        self._apply_ranges(data)
        note = Div(text="Maps: rows are units, columns are steps. Solid line: chosen step; dashed red: marked step; "
                        "box: chosen unit.", width=WIDTH, styles={"font-size": "85%", "color": "#555"})
        return column(
            row(self.select, self.time_slider, self.unit_slider), self.caption, self.input_fig, note,
            self.blocks["lstm"], self.blocks["gru"], row(*retention), row(lines, self.bars), name="gate_explorer",
        )

    def _controls(self, data: Prepared, v: int, t: int, u: int) -> None:
        """The variant selector, the step and unit sliders, and the caption under them."""
        V, T, H = data["retention"].shape
        self.select = Select(title="variant", options=[str(n) for n in data["names"]], value=str(data["names"][v]),
                             width=200, name="gate_variant_select", visible=V > 1)
        # Bokeh needs end > start: a 1-step input gets a 2-step slider (and 1 unit a 2-unit one), clamped in JS.
        # a wide right margin keeps the two sliders from reading as one range slider: (top, right, bottom, left)
        self.time_slider = Slider(start=1, end=max(T, 2), value=t + 1, step=1, title="step", width=200,
                                  margin=(5, 35, 5, 5), name="gate_time_slider")
        self.unit_slider = Slider(start=0, end=max(H - 1, 1), value=u, step=1, title="unit", width=200,
                                  name="gate_unit_select")
        self.caption = Div(text=self._caption(data, v, t, u), width=WIDTH, name="gate_caption")

    def _input_figure(self) -> None:
        """The input: lines (few channels) or an image (many), step labels (tokens) on top."""
        s = self.sources
        self.input_fig = figure(width=WIDTH, height=170, title="input xₜ", x_range=self.x_range,
                                y_range=Range1d(0, 1), tools="", toolbar_location=None, min_border_left=30)
        self.input_fig.multi_line(xs="xs", ys="ys", color="color", legend_field="channel", line_width=1.5,
                                  source=s["gate_inputs"])
        self.input_mapper = LinearColorMapper(palette=list(reversed(Greys256)))
        self.input_image = self.input_fig.image(
            image="input_image", x="x", y="y", dw="dw", dh="input_dh", source=s["gate_variants"],
            view=CDSView(filter=self.filter), color_mapper=self.input_mapper,
        )
        self.input_fig.text(x="step", y="y", text="label", source=s["gate_labels"], text_font_size="9pt",
                            text_align="center", text_baseline="middle",
                            view=CDSView(filter=self.filter))
        self.input_fig.add_layout(self.input_fig.legend[0], "above")
        self.input_fig.legend.orientation = "horizontal"
        self.input_fig.legend.update(padding=2, margin=0, label_text_font_size="8pt")
        self.input_fig.yaxis.ticker.desired_num_ticks = 4
        self._cursors(self.input_fig, unit_box=False)

    def _gate_blocks(self, kind: str) -> dict[str, Any]:
        """One block of heatmaps per kind (LSTM, GRU), the chosen variant's kind visible."""
        self.gate_mapper = LinearColorMapper(palette=Viridis256, low=0, high=1, nan_color=(0, 0, 0, 0))
        diverging = list(reversed(interp_palette(RdBu11, 256)))
        self.tanh_mapper = LinearColorMapper(palette=diverging, low=-1, high=1)
        self.cell_mapper = LinearColorMapper(palette=diverging)

        # one colour scale per kind of value: gates in [0, 1], tanh outputs in [-1, 1], the cell state unbounded
        mappers = {"candidate": self.tanh_mapper, "hidden": self.tanh_mapper, "cell": self.cell_mapper}
        blocks = {}
        for k, gates in KIND_GATES.items():
            figs = [self._heatmap(TITLE[k][g], g, mappers.get(g, self.gate_mapper)) for g in gates]
            blocks[k] = column(*[row(*figs[i:i + 2]) for i in range(0, len(figs), 2)], visible=kind == k,
                               name=f"{k}_gate_heatmaps")
        return blocks

    def _retention_figures(self) -> tuple[Any, Any]:
        """The retention of every unit (a heatmap) and of the chosen unit (a line, the chosen step marked)."""
        s = self.sources
        ret_heat = self._heatmap("retention rₜ (kept since the mark)", "retention", self.gate_mapper)
        ret_line = figure(width=WIDTH // 2, height=140, title="retention of the chosen unit", x_range=self.x_range,
                          y_range=(-0.03, 1.05), tools="", toolbar_location=None, min_border_left=30)
        ret_line.line(x="step", y="retention", source=s["retention_of_unit"], line_width=2,
                      color=COLOR["forget_gate"])
        ret_line.scatter(x="step", y="retention", source=s["retention_cursor"], size=8, color="black")
        ret_line.add_layout(Span(location=0.5, dimension="width", line_color="#888888", line_dash="dotted"))
        self._cursors(ret_line, unit_box=False)
        return ret_heat, ret_line

    def _unit_figures(self, data: Prepared, v: int, u: int, kind: str):
        """The chosen unit's gates over time (returned) and at the chosen step (``self.bars``)."""
        s = self.sources
        lines = figure(width=470, height=210, title="every gate of the chosen unit over time", x_range=self.x_range,
                       y_range=DataRange1d(), tools="", toolbar_location=None, min_border_left=30)
        lines.multi_line(xs="xs", ys="ys", color="color", legend_field="gate", line_width=1.5,
                         source=s["unit_over_time"])
        lines.add_layout(lines.legend[0], "right")
        lines.legend.label_text_font_size = "8pt"
        lines.legend.spacing = 0
        self._cursors(lines, unit_box=False)

        self.bars_range = FactorRange(factors=[SYMBOL[kind][g] for g in KIND_GATES[kind]])
        self.bars = figure(width=WIDTH - 470, height=210, title="gates at the chosen step", x_range=self.bars_range,
                           y_range=Range1d(*self._bar_bounds(data, v, u)), tools="", toolbar_location=None)
        self.bars.vbar(x="gate", top="value", width=0.8, color="color", source=s["gates_at_time"])
        self.bars.add_layout(Span(location=0, dimension="width", line_color="#888888"))
        return lines

    def _callback(self) -> CustomJS:
        """The page's JavaScript (widgets/js/gates.js) over the store, the controls and the figures built above."""
        s = self.sources
        return custom_js(
            "gates",
            store=s["gate_variants"], select=self.select, time=self.time_slider, unit=self.unit_slider,
            filter=self.filter, lstm_block=self.blocks["lstm"], gru_block=self.blocks["gru"], caption=self.caption,
            bars_range=self.bars_range, bars_y=self.bars.y_range, mark_spans=self.mark_spans,
            time_spans=self.time_spans, unit_boxes=self.unit_boxes, inputs=s["gate_inputs"],
            bars=s["gates_at_time"], lines=s["unit_over_time"], retention=s["retention_of_unit"],
            cursor=s["retention_cursor"], labels=s["gate_labels"],
            GATES=KIND_GATES, SYMBOL=SYMBOL, TITLE=TITLE, COLOR=COLOR,
            KEEP={k: SYMBOL[k][g] for k, g in KEEP_GATE.items()}, CHANNEL_COLOR=list(Category10_4),
        )

    @staticmethod
    def _bar_bounds(data: Prepared, v: int, u: int) -> tuple[float, float]:
        """The bars' y range: [-1, 1] unless the unit's cell state goes beyond it."""
        rows = [np.abs(data[g][v, :, u]).max() for g in KIND_GATES[str(data["kinds"][v])]]
        bound = 1.05 * max(1.0, *rows)
        return -bound, bound

    def _apply_ranges(self, data: Prepared) -> None:
        """Colour scales of the cell state and the input, and the input panel's y range."""
        cell = data["cell"]
        bound = max(float(np.nanmax(np.abs(cell))), 1e-6) if not np.isnan(cell).all() else 1.0
        self.cell_mapper.update(low=-bound, high=bound)
        x = data["inputs"]
        n_in = x.shape[2]  # I
        image = n_in > MAX_LINE_CHANNELS
        self.input_image.visible = image
        self.input_fig.legend.visible = not image
        self.input_mapper.update(low=float(x.min()), high=max(float(x.max()), float(x.min()) + 1e-6))
        has_labels = bool((data["labels"] != "").any())
        top = self._input_top(data)
        if image:
            self.input_fig.y_range.update(start=-0.5, end=top + 0.6 if has_labels else n_in - 0.5)
        else:
            lo, hi = float(x.min()), float(x.max())
            pad = 0.08 * max(hi - lo, 1e-6)
            self.input_fig.y_range.update(start=lo - pad, end=top + pad if has_labels else hi + pad)

    def on_update(self, data: Prepared) -> None:
        v, t, u = self._selection(data)
        V, T, H = data["retention"].shape
        kind = str(data["kinds"][v])
        name = str(data["names"][v])
        self.select.update(options=[str(n) for n in data["names"]], value=name, visible=V > 1)
        self.filter.group = name
        for k, block in self.blocks.items():
            block.visible = k == kind
        self.bars_range.factors = [SYMBOL[kind][g] for g in KIND_GATES[kind]]
        self.x_range.update(start=0.5, end=T + 0.5)
        self.unit_range.update(start=-0.5, end=H - 0.5)
        self.time_slider.update(end=max(T, 2), value=t + 1)
        self.unit_slider.update(end=max(H - 1, 1), value=u)
        for span in self.time_spans:
            span.location = t + 1
        for span in self.mark_spans:
            span.location = int(data["marked"][v]) + 1
        for box in self.unit_boxes:
            box.update(bottom=u - 0.5, top=u + 0.5)
        self._apply_ranges(data)
        lo, hi = self._bar_bounds(data, v, u)
        self.bars.y_range.update(start=lo, end=hi)
        self.caption.text = self._caption(data, v, t, u)

    # Layer 3: live controls ------------------------------------------------------------------

    def request(self, value: Any) -> dict[str, Any]:
        """The settings ``compute`` receives: ``settings`` with the changed ones in ``value`` (a dict). A new input
        kind brings back its latest text, unless ``value`` gives one."""
        s = merge_settings(self.settings, value, self.settings)
        if "input_kind" in value and "input_text" not in value and s["input_kind"] in self.texts:
            s["input_text"] = self.texts[s["input_kind"]]
        if s["input_kind"] not in self.texts:
            raise ValueError(f"expected input_kind one of {list(self.texts)}, got {s['input_kind']!r}")
        if s["kind"] not in KIND_GATES:
            raise ValueError(f"expected kind 'lstm' or 'gru', got {s['kind']!r}")
        s["forget_bias"] = check_number("forget_bias", s["forget_bias"], *self.bias_range)
        check_text("input_text", s["input_text"], self.max_text)
        return s

    def accept(self, request: dict[str, Any], data: Prepared) -> None:
        super().accept(request, data)
        self.texts[request["input_kind"]] = request["input_text"]  # the kind's latest text comes back with it

    def controls(self) -> list:
        """Input kind, its text, the forget-gate bias and LSTM/GRU; each change reruns ``compute``."""
        import ipywidgets

        s = self.settings
        wide = ipywidgets.Layout(width="660px")
        choose = ipywidgets.Dropdown(options=list(self.texts), value=s["input_kind"], description="input")
        text = ipywidgets.Text(value=s["input_text"], description="edit", continuous_update=False, layout=wide,
                               placeholder="edit the input and press Enter")
        bias = ipywidgets.FloatSlider(value=s["forget_bias"], min=self.bias_range[0], max=self.bias_range[1],
                                      step=0.5, description="forget bias", continuous_update=False,
                                      style={"description_width": "initial"})
        kind = ipywidgets.ToggleButtons(options=[("LSTM", "lstm"), ("GRU", "gru")], value=s["kind"],
                                        description="model")
        return [self.bind(key, widget) for key, widget in (("input_kind", choose), ("input_text", text),
                                                            ("forget_bias", bias), ("kind", kind))]


def _prepare_variant(where: str, variant: Any, max_units: int, max_steps: int) -> dict[str, Any]:
    """One variant's arrays (H cut to ``max_units``), retention and half-life; errors name ``where``."""
    if not isinstance(variant, Mapping):
        raise TypeError(f"{where}: expected a dict with keys {sorted(VARIANT_KEYS)}, got {type(variant).__name__}")
    unknown = set(variant) - VARIANT_KEYS
    if unknown or not {"kind", "inputs", "gates"} <= set(variant):
        raise ValueError(
            f"{where}: expected keys kind, inputs, gates (and optionally labels, marked, channels), "
            f"got {sorted(variant)}"
        )
    kind = variant["kind"]
    if kind not in KIND_GATES:
        raise ValueError(f"{where}: expected kind 'lstm' or 'gru', got {kind!r}")
    given = variant["gates"]
    if not isinstance(given, Mapping):
        raise TypeError(f"{where}: expected gates as a dict of name -> (T, H) array, got {type(given).__name__}")
    expected = KIND_GATES[kind]
    if set(given) != set(expected):
        missing, extra = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
        raise ValueError(
            f"{where}: expected {kind} gates {sorted(expected)}, got {sorted(given)}"
            + (f" (missing {missing})" if missing else "") + (f" (unexpected {extra})" if extra else "")
        )
    raw_inputs = variant["inputs"]
    try:
        raw = np.asarray(raw_inputs.detach().cpu().float() if hasattr(raw_inputs, "detach") else raw_inputs,
                         dtype=np.float64)
    except (TypeError, ValueError):
        raw = None  # not numbers: check_array below says what it expected
    if raw is not None and not np.isfinite(raw).all():  # checked before the gates, whose NaN it would cause
        raise ValueError(f"{where} inputs: expected finite values, got {int((~np.isfinite(raw)).sum())} NaN/inf "
                         f"entries (check the settings that made the input)")
    gates: dict[str, np.ndarray] = {}
    first = expected[0]
    for gate in expected:
        arr = check_array(f"{where} gate {gate!r}", given[gate], 2, "(T, H): steps x units")
        if gate == first and (arr.shape[0] == 0 or arr.shape[1] == 0):
            raise ValueError(f"{where} gate {gate!r}: expected shape (T>0, H>0), got {arr.shape}")
        if gate != first and arr.shape != gates[first].shape:
            raise ValueError(
                f"{where}: expected every gate of shape (T, H) = {gates[first].shape} like {first!r}, "
                f"got {gate!r} {arr.shape}"
            )
        if gate in SIGMOID_GATES and (arr.min() < -1e-6 or arr.max() > 1 + 1e-6):
            raise ValueError(
                f"{where} gate {gate!r}: expected values in [0, 1] (a sigmoid's output), "
                f"got values in [{arr.min():.3g}, {arr.max():.3g}]"
            )
        gates[gate] = arr
    T, H_all = gates[expected[0]].shape
    if T > max_steps:
        raise ValueError(f"{where}: expected at most max_steps={max_steps} steps, got {T}: shorten the input")
    H = min(H_all, max_units)
    gates = {g: a[:, :H] for g, a in gates.items()}

    nd = raw_inputs.ndim if hasattr(raw_inputs, "ndim") else np.ndim(raw_inputs)
    x = check_array(f"{where} inputs", raw_inputs, 1 if nd == 1 else 2, f"({T},) or ({T}, I): one row per step")
    x = x.reshape(x.shape[0], -1)  # (T, I)
    if x.shape[0] != T or x.shape[1] == 0:
        raise ValueError(f"{where}: expected inputs of shape ({T},) or ({T}, I) to match the gates, got {x.shape}")
    n_in = x.shape[1]  # I

    labels = variant.get("labels")
    labels = [""] * T if labels is None else [str(lab) for lab in labels]
    if len(labels) != T:
        raise ValueError(f"{where}: expected {T} labels (one per step), got {len(labels)}")
    channels = variant.get("channels")
    if channels is None:
        channels = ["x"] if n_in == 1 else [f"x[{c}]" for c in range(n_in)]
    channels = [str(c) for c in channels]
    if len(channels) != n_in:
        raise ValueError(f"{where}: expected {n_in} channel names (one per input channel), got {len(channels)}")

    marked = variant.get("marked")
    if marked is None:
        marked = 0
    else:
        try:  # any integer index, a 0-d integer tensor too; never a bool
            index = None if isinstance(marked, bool) else operator.index(marked)
        except TypeError:
            index = None
        if index is None:
            fail(where, f"marked an integer step index in [0, {T})", repr(marked), TypeError)
        marked = check_int(where, "marked", index, low=0, high=T - 1, got=str(index),
                           expected=f"marked in [0, {T}) (a step of the sequence)")

    retention, half_life = retention_and_half_life(gates[KEEP_GATE[kind]], marked)
    return {"kind": kind, "T": T, "H": H, "I": n_in, "inputs": x, "labels": labels, "channels": channels,
            "marked": marked, "gates": gates, "retention": retention, "half_life": half_life}


def retention_and_half_life(keep: np.ndarray, marked: int) -> tuple[np.ndarray, np.ndarray]:
    """Retention ``r`` (T, H) of the state at step ``marked`` and each unit's half-life (H,) in steps.

    ``keep`` (T, H) is the forget gate f (LSTM) or update gate z (GRU). ``r_m = 1`` and
    ``r_t = prod_{s=m+1..t} keep_s`` after it; NaN before it. The half-life is the first ``k >= 1``
    with ``r_{m+k} <= 1/2``, inf if the sequence ends first.

    >>> keep = np.array([[1.0], [0.5], [0.5], [1.0]])  # (T, H) = (4, 1): a forget gate
    >>> r, half = retention_and_half_life(keep, marked=0)
    >>> r.ravel(), half
    (array([1.  , 0.5 , 0.25, 0.25]), array([1.]))
    """
    T, H = keep.shape
    r = np.full((T, H), np.nan)
    # r_t = prod_{s=m+1..t} f_s  (r_m = 1: all of the marked state is there)
    r[marked:] = np.cumprod(np.vstack([np.ones((1, H)), keep[marked + 1:]]), axis=0)
    half_life = np.full(H, np.inf)
    after = r[marked + 1:] <= 0.5  # (T-m-1, H)
    reached = after.any(axis=0)
    if reached.any():  # argmax of an empty sequence (the mark on the last step) is an error
        half_life[reached] = after.argmax(axis=0)[reached] + 1
    return r, half_life
