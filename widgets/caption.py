"""CaptionExplorer: where an attentive captioner looks for each word it writes (Xu et al. 2015, figure 3).

Shows one scene of handwritten digits with the decoder's attention weights over its 3 x 3 regions laid on top,
for the word chosen below the image. Two Bokeh sliders pick the scene and the word (CustomJS, static book); live,
a seed slider draws new test scenes and the trained captioner writes their captions again.

Shapes: ``S`` scenes, ``L`` caption length, ``G`` regions (``grid**2``), ``P`` pixels a side (``8 * grid``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import Div, LabelSet, LinearColorMapper, Slider
from bokeh.palettes import Greys256
from bokeh.plotting import figure

from memlib.validate import check_int, fail
from widgets.base import Explorer, Prepared, custom_js

END = 10  # the captions' <end> token (memlib.tasks.captions.END)
CELL = 8  # pixels a side of one region


def _array(name: str, value: Any, dims: int, shape: str, kind: str = "f") -> np.ndarray:
    where = "CaptionExplorer.prepare"
    try:
        arr = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
    except (TypeError, ValueError) as error:
        fail(where, f"{name} as an array {shape}", f"{type(value).__name__} ({error})", TypeError)
    if arr.ndim != dims or arr.dtype.kind not in ("f", "i", "u", "b"):
        fail(where, f"{name} as a numeric array {shape}", f"shape {arr.shape}, dtype {arr.dtype}")
    if kind == "f" and not np.isfinite(arr).all():
        fail(where, f"{name} with finite values", "NaN or infinity")
    return arr.astype(np.float64 if kind == "f" else np.int64)


class CaptionExplorer(Explorer):
    """Explore an attentive captioner's ``weights`` (S, L, G) over ``S`` scenes with the captions it wrote."""

    live_needs = "compute function (a seed -> CaptionExplorer.prepare(...) of new scenes)"

    @staticmethod
    def prepare(images: Any, tokens: Any, weights: Any, truth: Any, lengths: Any, cells: Any) -> Prepared:
        """Arrays for ``S`` scenes: ``images`` (S, 1, P, P) or (S, P, P); the captions the model wrote,
        ``tokens`` (S, L), with its attention ``weights`` (S, L, G); the true captions ``truth`` (S, L), their
        ``lengths`` (S,) with ``<end>``, and the region each true digit is drawn in, ``cells`` (S, L), -1 for none.

        >>> data = CaptionExplorer.prepare(np.zeros((1, 24, 24)), [[7, 10]], np.full((1, 2, 9), 1 / 9), [[7, 10]],
        ...                                [2], [[4, -1]])
        >>> data["n_words"].tolist(), data["grid"].item()
        ([2], 3)
        """
        imgs = _array("images", images, images.ndim if hasattr(images, "ndim") else 3, "(S, 1, P, P) or (S, P, P)")
        if imgs.ndim == 4 and imgs.shape[1] == 1:
            imgs = imgs[:, 0]
        if imgs.ndim != 3 or imgs.shape[1] != imgs.shape[2] or imgs.shape[1] % CELL or imgs.shape[0] == 0:
            fail("CaptionExplorer.prepare", f"images of shape (S>0, P, P) with P a multiple of {CELL}",
                 f"shape {imgs.shape}")
        S, P = imgs.shape[0], imgs.shape[1]
        grid = P // CELL
        G = grid * grid
        tok = _array("tokens", tokens, 2, "(S, L)", kind="i")
        L = tok.shape[1]
        expected = {"tokens": (S, L), "weights": (S, L, G), "truth": (S, L), "lengths": (S,), "cells": (S, L)}
        out = {"images": imgs, "tokens": tok,
               "weights": _array("weights", weights, 3, "(S, L, G)"),
               "truth": _array("truth", truth, 2, "(S, L)", kind="i"),
               "lengths": _array("lengths", lengths, 1, "(S,)", kind="i"),
               "cells": _array("cells", cells, 2, "(S, L)", kind="i")}
        for name, shape in expected.items():
            if out[name].shape != shape:
                fail("CaptionExplorer.prepare", f"{name} of shape {shape} (S = {S} scenes, L = {L}, G = {G})",
                     f"shape {out[name].shape}")
        if ((out["lengths"] < 1) | (out["lengths"] > L)).any():
            fail("CaptionExplorer.prepare", f"lengths in [1, {L}]", out["lengths"].tolist())
        ended = tok == END
        out["n_words"] = np.where(ended.any(1), ended.argmax(1) + 1, L).astype(np.int64)  # up to its first <end>
        out["grid"] = np.array(grid)
        return out

    def __init__(self, data: Prepared, compute: Callable[[int], Prepared] | None = None, seed: int = 0):
        self.settings = {"seed": seed}  # the test scenes the figures show
        super().__init__(data, compute)

    # What the page's JavaScript computes (widgets/js/caption.js), in Python -----------------------

    @staticmethod
    def view(data: Prepared, scene: int, word: int) -> dict[str, Any]:
        """Scene ``scene`` and word ``word`` (both from 1, clamped as the sliders are): the overlay's weights and
        labels, the caption's words and which is chosen, and the sentence about it."""
        S, L = data["tokens"].shape
        grid = int(data["grid"])
        G = grid * grid
        s = min(max(scene, 1), S) - 1
        n = int(data["n_words"][s])
        w = min(max(word, 1), n) - 1
        alpha = data["weights"][s, w]
        label = [f"{a:.2f}" if a >= 0.05 else "" for a in alpha]
        text = [_word(t) for t in data["tokens"][s, :n]]
        truth = [str(t) for t in data["truth"][s, : data["lengths"][s] - 1]]
        best = int(np.argmax(alpha))
        where = f"row {best // grid + 1}, column {best % grid + 1}"
        drawn = int(data["cells"][s, w])
        verdict = "" if drawn < 0 else (": where that digit is drawn" if drawn == best else
                                        ": not where the digit is drawn")
        sentence = (
            f"<b>Scene {s + 1}</b>: the model wrote “{' '.join(text)}” (truth “{' '.join(truth)}”). "
            f"Word {w + 1}, “{text[w]}”: strongest weight {_fixed2(alpha[best])} on {where}{verdict}."
        )
        fill = ["#d95f02" if k == w else "#bbbbbb" for k in range(n)]
        return {"alpha": alpha.tolist(), "label": label, "text": text, "fill": fill, "sentence": sentence,
                "scene": s, "word": w, "n_words": n, "G": G}

    def source_data(self, data: Prepared) -> dict[str, dict[str, Any]]:
        S, L = data["tokens"].shape
        P = data["images"].shape[1]
        grid = int(data["grid"])
        v = self.view(data, 1, 1)
        cell = np.arange(grid * grid)
        x, y = (cell % grid) * CELL + CELL / 2, (grid - 1 - cell // grid) * CELL + CELL / 2  # row 0 at the top
        return {
            "caption_store": {  # one row per scene, for the page's JavaScript
                "image": list(data["images"].reshape(S, P * P)), "weights": list(data["weights"].reshape(S, -1)),
                "tokens": list(data["tokens"]), "truth": list(data["truth"]), "cells": list(data["cells"]),
                "lengths": data["lengths"], "n_words": data["n_words"],
            },
            "caption_scene": {"image": [data["images"][0][::-1].copy()], "x": [0], "y": [0], "dw": [P], "dh": [P]},
            "caption_cells": {"x": x, "y": y, "alpha": v["alpha"], "label": v["label"]},
            "caption_words": {"x": list(range(v["n_words"])), "text": v["text"], "fill": v["fill"]},
        }

    def build(self):
        s = self.sources
        data = self.data
        S = data["tokens"].shape[0]
        P = data["images"].shape[1]
        grid = int(data["grid"])
        scene = figure(width=300, height=300, x_range=(0, P), y_range=(0, P), tools="", toolbar_location=None,
                       title="The scene and where the decoder looks", match_aspect=True)
        scene.image(image="image", x="x", y="y", dw="dw", dh="dh", source=s["caption_scene"],
                    color_mapper=LinearColorMapper(palette=Greys256, low=1, high=0))
        scene.rect(x="x", y="y", width=CELL, height=CELL, source=s["caption_cells"], fill_color="#d95f02",
                   fill_alpha="alpha", line_color="#d95f02", line_alpha=0.6)
        scene.add_layout(LabelSet(x="x", y="y", text="label", source=s["caption_cells"], text_font_size="8pt",
                                  text_align="center", y_offset=-CELL * 1.6, text_color="#222222"))
        scene.axis.visible = False
        scene.grid.visible = False

        words = figure(width=300, height=70, x_range=(-0.5, data["tokens"].shape[1] - 0.5), y_range=(0, 1),
                       tools="", toolbar_location=None, title="The caption it wrote (chosen word in orange)")
        words.rect(x="x", y=0.5, width=0.9, height=0.9, source=s["caption_words"], fill_color="fill",
                   line_color=None)
        words.text(x="x", y=0.5, text="text", source=s["caption_words"], text_align="center",
                   text_baseline="middle", text_font_size="10pt")
        words.axis.visible = False
        words.grid.visible = False

        self.div = Div(text=self.view(data, 1, 1)["sentence"], width=330, name="caption_sentence")
        self.scene_slider = Slider(start=1, end=max(S, 2), value=1, step=1, title="scene", width=330,
                                   name="caption_scene_slider")
        self.word_slider = Slider(start=1, end=max(data["tokens"].shape[1], 2), value=1, step=1, title="word",
                                  width=330, name="caption_word_slider")
        callback = custom_js("caption", scene_slider=self.scene_slider, word_slider=self.word_slider,
                             store=s["caption_store"], scene=s["caption_scene"], cells=s["caption_cells"],
                             words=s["caption_words"], div=self.div, grid=grid)
        self.scene_slider.js_on_change("value", callback)
        self.word_slider.js_on_change("value", callback)
        controls = column(self.scene_slider, self.word_slider, self.div)
        return row(column(scene, words), controls, name="caption_explorer")

    def on_update(self, data: Prepared) -> None:
        self.scene_slider.update(end=max(data["tokens"].shape[0], 2), value=1)
        self.word_slider.value = 1
        self.div.text = self.view(data, 1, 1)["sentence"]

    # Layer 3: live controls ------------------------------------------------------------------

    def request(self, value: Any) -> dict[str, int]:
        """The seed of new test scenes: ``{"seed": n}`` with n in [0, 9999]."""
        seed = value["seed"] if isinstance(value, Mapping) and set(value) == {"seed"} else value
        return {"seed": check_int("", "seed", seed, low=0, high=9999)}

    def controls(self) -> list:
        import ipywidgets

        slider = ipywidgets.IntSlider(value=self.settings["seed"], min=0, max=99, description="new scenes",
                                      continuous_update=False, layout=ipywidgets.Layout(width="420px"))
        return [self.bind("seed", slider)]


def _word(token: int) -> str:
    return "⟨end⟩" if token == END else str(int(token))


def _fixed2(x: float) -> str:
    from widgets.base import fixed

    return fixed(x, 2)
