"""HiddenStateExplorer: a recurrent model's hidden state over time, step by step.

Shows the hidden state as a heatmap (units x steps), the state at one step as bars, and the
model's running answer (its readout after each step) against the target. A Bokeh slider picks
the step (CustomJS, static book); live, a text box edits the input and the model reruns.

Shapes: ``T`` steps, ``D`` hidden units.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from bokeh.layouts import column
from bokeh.models import ColorBar, Div, LinearColorMapper, Slider, Span
from bokeh.palettes import RdBu11
from bokeh.plotting import figure

from memlib.validate import check_array
from widgets.base import Explorer, Prepared, check_text, custom_js


class HiddenStateExplorer(Explorer):
    """Explore ``hidden`` (T, D) with the readout (T,) and target (T,) of each step.

    >>> import numpy as np
    >>> data = HiddenStateExplorer.prepare(np.zeros((5, 3)), np.zeros(5), np.zeros(5), np.zeros(5))  # T = 5, D = 3
    >>> HiddenStateExplorer(data).data["hidden"].shape
    (5, 3)
    """

    @staticmethod
    def prepare(hidden: Any, inputs: Any, readout: Any, target: Any) -> Prepared:
        """Arrays for one sequence: ``hidden`` (T, D), ``inputs``, ``readout`` and ``target`` (T,)."""
        h = check_array("HiddenStateExplorer.prepare: hidden", hidden, 2, "(T, D): steps x hidden units")
        T = h.shape[0]
        if T == 0 or h.shape[1] == 0:
            raise ValueError(f"HiddenStateExplorer.prepare: expected hidden of shape (T>0, D>0), got {h.shape}")
        out = {"hidden": h}
        for name, value in (("inputs", inputs), ("readout", readout), ("target", target)):
            arr = check_array(f"HiddenStateExplorer.prepare: {name}", value, 1, f"({T},): one value per step")
            if arr.shape != (T,):
                raise ValueError(
                    f"HiddenStateExplorer.prepare: expected {name} of shape ({T},) to match hidden {h.shape}, "
                    f"got {arr.shape}"
                )
            out[name] = arr
        return out

    def __init__(self, data: Prepared, compute: Callable[[str], Prepared] | None = None, initial_input: str = ""):
        self.initial_input = initial_input
        self.settings = {"input": initial_input}  # the text whose run the figures show
        super().__init__(data, compute)

    def source_data(self, data: Prepared) -> dict[str, dict[str, Any]]:
        h = data["hidden"]
        T, D = h.shape
        steps = np.arange(1, T + 1)
        return {
            "hidden_grid": {"image": [h.T.copy()], "D": [D], "T": [T], "x": [0.5], "dw": [T], "dh": [D]},
            **self._at_step(data, T - 1),
            "running_answer": {
                "step": steps,
                "input": data["inputs"].round(3),
                "readout": data["readout"],
                "target": data["target"],
            },
        }

    @staticmethod
    def _at_step(data: Prepared, t: int) -> dict[str, dict[str, Any]]:
        """The sources that show step ``t`` (0-based); the page's JavaScript computes the same."""
        h = data["hidden"]
        return {
            "hidden_state_at_step": {"unit": np.arange(h.shape[1]), "value": h[t]},
            "answer_cursor": {"step": [t + 1], "readout": [data["readout"][t]]},
        }

    def _caption(self, t: int) -> str:
        d = self.data
        T = len(d["readout"])
        return (
            f"<b>step {t + 1} of {T}</b>: input {d['inputs'][t]:g}, running answer {d['readout'][t]:.2f}, "
            f"target {d['target'][t]:.2f}"
        )

    def build(self):
        s = self.sources
        T, D = self.data["hidden"].shape
        bound = max(float(np.abs(self.data["hidden"]).max()), 1e-6)
        self.mapper = LinearColorMapper(palette=list(reversed(RdBu11)), low=-bound, high=bound)

        heat = figure(
            height=230, width=650, title="Hidden state hₜ (rows: units, columns: steps)",
            x_axis_label="step t", y_axis_label="unit", tools="", toolbar_location=None,
        )
        heat.image(image="image", x="x", y=0, dw="dw", dh="dh", source=s["hidden_grid"], color_mapper=self.mapper)
        heat.add_layout(ColorBar(color_mapper=self.mapper, width=8), "right")
        self.span = Span(location=T, dimension="height", line_color="black", line_width=2)
        heat.add_layout(self.span)

        bars = figure(
            height=200, width=330, title="hₜ at the chosen step", x_axis_label="unit",
            y_range=(-1.05, 1.05), tools="", toolbar_location=None,
        )
        bars.vbar(x="unit", top="value", width=0.8, source=s["hidden_state_at_step"], color="#4c72b0")

        answer = figure(
            height=200, width=340, title="Running answer (readout of hₜ) vs target",
            x_axis_label="step t", tools="", toolbar_location=None,
        )
        answer.step(x="step", y="target", source=s["running_answer"], mode="center", color="#888888",
                    legend_label="target")
        answer.line(x="step", y="readout", source=s["running_answer"], color="#dd8452", line_width=2,
                    legend_label="model")
        answer.scatter(x="step", y="readout", source=s["answer_cursor"], size=9, color="black")
        answer.legend.location = "top_left"

        self.div = Div(text=self._caption(T - 1), width=650, name="step_caption")
        # Bokeh needs end > start: a 1-step input gets a 2-step slider, clamped in the callback.
        self.slider = Slider(start=1, end=max(T, 2), value=T, step=1, title="step", width=650, name="step_slider")
        self.slider.js_on_change("value", custom_js(
            "hidden_state", slider=self.slider, grid=s["hidden_grid"], state=s["hidden_state_at_step"],
            cursor=s["answer_cursor"], curve=s["running_answer"], span=self.span, div=self.div,
        ))
        from bokeh.layouts import row

        return column(self.slider, self.div, heat, row(bars, answer), name="hidden_state_explorer")

    def on_update(self, data: Prepared) -> None:
        T = data["hidden"].shape[0]
        bound = max(float(np.abs(data["hidden"]).max()), 1e-6)
        self.mapper.update(low=-bound, high=bound)
        self.slider.update(end=max(T, 2), value=T)
        self.span.location = T
        self.div.text = self._caption(T - 1)

    # Layer 3: live controls ------------------------------------------------------------------

    def request(self, value: Any) -> str:
        """The text ``compute`` receives: ``value`` itself, or ``{"input": text}`` from the text box."""
        text = value["input"] if isinstance(value, Mapping) and set(value) == {"input"} else value
        return check_text("input", text, self.max_text)

    def accept(self, request: str, data: Prepared) -> None:
        self.update(data)
        self.settings = {"input": request}

    def controls(self) -> list:
        import ipywidgets

        box = ipywidgets.Text(
            value=self.settings["input"], description="input", continuous_update=False,
            placeholder="type a sequence and press Enter", layout=ipywidgets.Layout(width="660px"),
        )
        return [self.bind("input", box)]
