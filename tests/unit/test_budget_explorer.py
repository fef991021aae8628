"""widgets.budget: MemoryBudgetExplorer's numbers are memlib.hardware's, in Python and in the page's JavaScript."""

from __future__ import annotations

import ipywidgets
import numpy as np
import pytest
import torch
from bokeh.models import Checkbox, ColumnDataSource, CustomJS, Select, Slider, Spinner
from jsparity import run_callback

import memlib
from memlib.hardware import GPUS, MiB, estimate_training_memory, fits, largest_batch, recommended_ram
from widgets.base import Refused, load_js
from widgets.budget import (
    LENGTH_FIELDS,
    PARTS,
    SCORE_BYTES,
    WIDTH,
    BudgetModel,
    Measured,
    MemoryBudgetExplorer,
    attention_heads,
    book_models,
    estimate_at,
    fixed_decimals,
    format_bytes,
    interpolate,
    live_cost,
    view,
)

# Touches precision or CPU kernels: `make test` runs these again under a restricted instruction set.
pytestmark = pytest.mark.kernels

LENGTHS = (8, 16, 32)  # the LSTM's (at smaller sizes its fused kernel's memory is not smooth in T)
SHORT = (4, 8, 16)  # the Transformer's


def tiny_models() -> dict[str, BudgetModel]:
    """A recurrent model (no blocks: no checkpointing) and a Transformer encoder of two blocks."""
    torch.manual_seed(0)
    layer = memlib.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
    return {
        "LSTM": BudgetModel(memlib.LSTM(8, 64, batch_first=True), lambda b, t: (b, t, 8), LENGTHS),
        "Transformer": BudgetModel(memlib.TransformerEncoder(layer, 2), lambda b, t: (b, t, 8), SHORT),
    }


@pytest.fixture(scope="module")
def models() -> dict[str, BudgetModel]:
    return tiny_models()


@pytest.fixture(scope="module")
def data(models):
    torch.set_num_threads(1)
    return MemoryBudgetExplorer.prepare(models)


@pytest.fixture(scope="module")
def explorer(data) -> MemoryBudgetExplorer:
    """Built once: only for tests that leave it as it is."""
    e = MemoryBudgetExplorer(data, model="Transformer", batch=64, length=8)
    e.layout  # noqa: B018
    return e


def direct(models, name, precision, optimizer, checkpointing, length, batch):
    """memlib's estimator called directly, at the example batch 4, scaled to ``batch``."""
    spec = models[name]
    return estimate_training_memory(spec.model, spec.example(4, length), optimizer, precision, checkpointing,
                                    batch_size=batch)


SETTINGS = [  # (model, precision, optimizer, checkpointing, length, batch)
    ("LSTM", "fp32", "adam", False, 8, 1),
    ("LSTM", "bf16", "sgd", False, 32, 100),
    ("LSTM", "amp", "sgd_momentum", False, 16, 7),
    ("Transformer", "fp32", "adam", False, 16, 32),
    ("Transformer", "fp32", "adam", True, 16, 32),
    ("Transformer", "bf16", "sgd_momentum", True, 4, 3),
    ("Transformer", "amp", "sgd", False, 8, 1000),
]


# Layer 1: prepare ----------------------------------------------------------------------------------------------


def test_prepare_shapes(data):
    assert list(data["names"]) == ["LSTM", "Transformer"]
    assert list(data["precisions"]) == ["fp32", "bf16", "amp"]
    assert list(data["optimizers"]) == ["sgd", "sgd_momentum", "adam"]
    assert list(data["checkpointable"]) == [False, True] and list(data["n_lengths"]) == [3, 3]
    np.testing.assert_array_equal(data["lengths"], [LENGTHS, SHORT])
    for f in LENGTH_FIELDS:
        assert data[f].shape == (2, 3, 2, 3)
        assert (data[f][0, :, 1] == -1).all() and (data[f][1] >= 0).all()  # the LSTM has no checkpointing
    assert data["optimizer_state"].shape == (2, 3, 3)
    assert data["n_parameters"][0] == sum(p.numel() for p in tiny_models()["LSTM"].model.parameters())


@pytest.mark.parametrize("setting", SETTINGS)
def test_at_a_measured_length_the_estimate_is_memlibs(models, data, setting):
    name, precision, optimizer, checkpointing, length, batch = setting
    ours = estimate_at(data, name, precision, optimizer, checkpointing, length).at_batch(batch)
    assert ours == direct(models, name, precision, optimizer, checkpointing, length, batch)


@pytest.mark.parametrize("name", ["LSTM", "Transformer"])
def test_between_measured_lengths_the_interpolation_is_close_to_a_fresh_estimate(models, data, name):
    for length in (12, 24) if name == "LSTM" else (6, 12):
        ours = estimate_at(data, name, "fp32", "adam", False, length)
        fresh = direct(models, name, "fp32", "adam", False, length, 4)
        # activations are counted, and polynomial in T (linear for the LSTM, quadratic with attention)
        assert ours.activations == pytest.approx(fresh.activations, rel=0.02), length
        assert ours.at_batch(16).total == pytest.approx(fresh.at_batch(16).total, rel=0.1), length


def test_interpolation_is_exact_at_the_points_and_quadratic_between():
    xs, ys = [16.0, 64.0, 256.0], [3.0, 7.0, 1e9 + 1]
    assert [interpolate(xs, ys, x) for x in xs] == ys
    assert interpolate([1.0, 2.0, 4.0], [1.0, 4.0, 16.0], 3.0) == pytest.approx(9.0)
    assert interpolate([5.0], [42.0], 5.0) == 42.0


def test_formatting_is_javascripts():
    assert fixed_decimals(0.125, 2) == "0.13" and fixed_decimals(2.5, 0) == "3"  # toFixed: ties away from zero
    assert format_bytes(3 * 2**30) == "3.00 GiB" and format_bytes(1536 * 2**10) == "1.50 MiB"
    assert format_bytes(2048) == "2.0 KiB" and format_bytes(100) == "100 B"


def test_book_models_are_specs():
    specs = book_models(quick=True)
    assert list(specs) == ["LSTM", "GRU", "Transformer encoder", "NTM"]
    assert all(isinstance(s, BudgetModel) and len(s.lengths) == 3 for s in specs.values())
    assert specs["Transformer encoder"].example(4, 16) == (4, 16, 64)


# Layer 2: the figures hold memlib's numbers ------------------------------------------------------------------


def test_bar_and_gpus_hold_memlibs_numbers_at_several_settings(models, data):
    for name, precision, optimizer, checkpointing, length, batch in SETTINGS[::2]:
        e = MemoryBudgetExplorer(data, model=name, precision=precision, optimizer=optimizer,
                                 checkpointing=checkpointing, length=length, batch=batch)
        expected = direct(models, name, precision, optimizer, checkpointing, length, batch)
        bar = e.sources["budget_bar"].data
        for part in PARTS:
            assert bar[part] == [expected.parts[part] / MiB], part
        g = e.sources["budget_gpus"].data
        assert g["gpu"] == list(GPUS)
        small = expected.at_batch(4)
        assert g["label"] == [str(largest_batch(small, device=n)) for n in GPUS]
        assert g["color"] == ["#1b7837" if fits(expected, n) else "#b2182b" for n in GPUS]
        assert g["ram_recommended"] == [recommended_ram(n).recommended for n in GPUS]
    lines = e.sources["budget_gpu_lines"].data  # one dashed line per usable size, in MiB
    assert lines["x"][0] == int(GPUS["GTX 960"].memory * 0.9) / MiB and lines["label"][1] == "RTX 3060, Titan X"


def test_layout_names_its_models_and_shares_one_customjs(explorer):
    layout = explorer.layout
    kinds = {"budget_model_select": Select, "budget_precision_select": Select, "budget_optimizer_select": Select,
             "budget_batch": Spinner, "budget_length": Slider, "budget_checkpointing": Checkbox}
    for name, kind in kinds.items():
        assert isinstance(layout.select_one({"name": name}), kind), name
    callback = layout.select_one({"name": "budget_batch"}).js_property_callbacks["change:value"][0]
    assert isinstance(callback, CustomJS) and callback is explorer.callback
    for name in ("budget_model_select", "budget_precision_select", "budget_optimizer_select", "budget_length"):
        assert layout.select_one({"name": name}).js_property_callbacks["change:value"] == [callback]
    assert layout.select_one({"name": "budget_checkpointing"}).js_property_callbacks["change:active"] == [callback]
    for name in ("budget_store", "budget_gpus", "budget_bar"):
        assert isinstance(explorer.sources[name], ColumnDataSource)
    slider = layout.select_one({"name": "budget_length"})
    assert (slider.start, slider.end, slider.value) == (4, 16, 8)
    assert "<b>Transformer</b>" in explorer.caption.text and "batch 64, length 8" in explorer.caption.text
    assert "other batches: scaled linearly from two measured batches" in explorer.caption.text  # not memlib's API


def _widths(obj):
    children = getattr(obj, "children", None)
    if children is None:
        return obj.width or 0
    sizes = [_widths(c) for c in children]
    return sum(sizes) if type(obj).__name__ == "Row" else max(sizes)


def test_at_most_660_px_wide(explorer):
    assert WIDTH == 660 and _widths(explorer.layout) <= 660
    assert explorer.bar_fig.width <= 660 and explorer.gpu_fig.width <= 660


def test_static_html_uses_the_pages_bokehjs(explorer):
    page = explorer.static_html()
    assert "memory_budget_explorer" in page and "BEGIN bokeh.min.js" not in page and "cdn.bokeh.org" not in page
    assert len(page) < 200_000


def test_a_model_without_blocks_cannot_checkpoint(data):
    e = MemoryBudgetExplorer(data, model="LSTM")
    assert e.layout.select_one({"name": "budget_checkpointing"}).disabled


# The page's JavaScript against the Python it mirrors -------------------------------------------------------------

BUDGET_READ = """({bar: a.bars.data, gpus: a.gpus.data, caption: a.caption.text, table: a.table.text,
  length: [a.length.start, a.length.end, a.length.value], line: a.batch_line.location, batch: a.batch.value,
  disabled: a.checkpoint.disabled})"""


def _run_js(explorer, cases):
    """Each case's ``checkpoint`` is the checkbox's ``active``; the others are widget values."""
    assert explorer.callback.code == load_js("budget")
    cases = [{("checkpoint.active" if k == "checkpoint" else k): v for k, v in c.items()} for c in cases]
    return run_callback(explorer.callback, cases, BUDGET_READ)


def test_the_pages_js_computes_what_python_computes(explorer, data):
    cases = [{"model": name, "precision": precision, "optimizer": optimizer, "checkpoint": ckpt, "length": length,
              "batch": batch} for name, precision, optimizer, ckpt, length, batch in SETTINGS]
    cases += [  # between measured lengths; a big batch that fits nowhere small; the LSTM asked to checkpoint
        {"model": "Transformer", "precision": "amp", "optimizer": "adam", "checkpoint": True, "length": 13,
         "batch": 123456},
        {"model": "LSTM", "precision": "fp32", "optimizer": "sgd", "checkpoint": True, "length": 9, "batch": 2},
        # out of range: the JS clamps the length to the measured ones and the batch to at least 1
        {"model": "Transformer", "precision": "bf16", "optimizer": "adam", "checkpoint": False, "length": 40,
         "batch": 0},
    ]
    for case, got in zip(cases, _run_js(explorer, cases), strict=True):
        ckpt = case["checkpoint"] and case["model"] == "Transformer"
        lo, hi = (8, 32) if case["model"] == "LSTM" else (4, 16)
        length, batch = min(max(case["length"], lo), hi), max(case["batch"], 1)
        settings = {"model": case["model"], "precision": case["precision"], "optimizer": case["optimizer"],
                    "checkpointing": ckpt, "batch": batch, "length": length}
        v = view(data, settings, explorer.gpus, explorer.reserve)
        for part in PARTS:
            assert got["bar"][part] == [v["estimate"].parts[part] / MiB], (case, part)  # the same doubles
        assert got["gpus"]["label"] == ["any" if lb is None else str(lb) for lb in v["largest"]], case
        assert got["gpus"]["color"] == ["#1b7837" if ok else "#b2182b" for ok in v["fits"]], case
        assert got["caption"] == v["caption"], case
        assert got["table"] == v["table"], case
        assert got["length"] == [lo, hi, length] and got["line"] == batch == got["batch"]
        assert got["disabled"] == (case["model"] == "LSTM")


# Layer 3: live, with any model -------------------------------------------------------------------------------


@pytest.fixture
def live(data, models) -> MemoryBudgetExplorer:
    e = MemoryBudgetExplorer(data, models=models, model="Transformer", length=8)
    e.layout  # noqa: B018
    e.status_widget()
    return e


def test_live_recompute_runs_memlibs_estimator_at_any_length(live, models):
    assert live.recompute({"length": 20, "optimizer": "sgd", "batch": 10}) is True
    expected = direct(models, "Transformer", "fp32", "sgd", False, 20, 10)
    assert [live.sources["budget_bar"].data[p] for p in PARTS] == [[expected.parts[p] / MiB] for p in PARTS]
    assert list(live.data["lengths"][0, :1]) == [20] and live.last_error is None
    slider = live.layout.select_one({"name": "budget_length"})
    assert slider.value == 20 and slider.disabled
    assert "length 20: <b>" in live.caption.text


def test_live_refuses_bad_settings_and_keeps_the_figures(live):
    before = dict(live.sources["budget_bar"].data)
    for bad, message in [
        ({"length": 0}, "expected length as an integer in [1, 100000], got 0"),
        ({"length": 100_001}, "expected length as an integer in [1, 100000], got 100001"),
        ({"length": 12.5}, "expected length as an integer in [1, 100000], got 12.5"),
        ({"batch": 0}, r"expected batch as an integer in [1, 10000000], got 0"),
        ({"precision": "fp8"}, "expected precision one of 'fp32', 'bf16', 'fp16', 'amp', got 'fp8'"),
        ({"optimizer": "lion"}, "expected optimizer one of 'sgd', 'sgd_momentum', 'adam', 'adamw', got 'lion'"),
        ({"checkpointing": "yes"}, "expected checkpointing as True or False, got 'yes'"),
        ({"model": "GPT"}, "expected model one of 'LSTM', 'Transformer', got 'GPT'"),
        ({"model": "LSTM", "checkpointing": True}, "'LSTM' has no blocks to checkpoint"),
        ({"colour": 1}, "expected settings among"),
        (["batch", 2], "expected a dict of settings"),
    ]:
        assert live.recompute(bad) is False, bad
        assert message in live.last_error, (bad, live.last_error)
        assert live.status_widget().value == live.last_error
        assert dict(live.sources["budget_bar"].data) == before


def test_live_controls_drive_the_estimate(live):
    boxes = live.controls()
    assert not live.controls_box.visible  # the ipywidgets drive the figures
    model, precision, optimizer = boxes[0].children
    batch, length, checkpoint = boxes[1].children
    assert isinstance(model, ipywidgets.Dropdown) and isinstance(checkpoint, ipywidgets.Checkbox)
    checkpoint.value = True
    assert live.settings["checkpointing"] and live.data["checkpointable"][0]
    batch.value = 3
    assert live.settings["batch"] == 3 and live.batch_line.location == 3
    model.value = "LSTM"  # no blocks: refused, the figures stay
    assert live.last_error is not None and live.settings["model"] == "Transformer"
    assert model.value == "Transformer" and checkpoint.value  # back on the settings the figures show


def test_for_models_estimates_only_the_start_and_goes_live(models):
    e = MemoryBudgetExplorer.for_models(models, model="LSTM", length=10, batch=5, optimizer="sgd")
    assert list(e.data["names"]) == ["LSTM"] and list(e.data["lengths"][0]) == [10, -1, -1]
    expected = direct(models, "LSTM", "fp32", "sgd", False, 10, 5)
    assert [e.sources["budget_bar"].data[p] for p in PARTS] == [[expected.parts[p] / MiB] for p in PARTS]
    assert e.recompute({"model": "Transformer", "checkpointing": True}) is True
    assert list(e.data["names"]) == ["Transformer"] and e.settings["length"] == 10
    with pytest.raises(ValueError, match=r"expected model one of 'LSTM', 'Transformer', got 'GRU'"):
        MemoryBudgetExplorer.for_models(models, model="GRU")


# One failure path: any error, the last good figures, the controls back on them ---------------------------------

KEYS = ("model", "precision", "optimizer", "batch", "length", "checkpointing")


def agree(e: MemoryBudgetExplorer, boxes: list) -> dict:
    """The controls show the settings, and the figures were computed with them (the caption says each)."""
    model, precision, optimizer = boxes[0].children
    batch, length, checkpoint = boxes[1].children
    shown = dict(zip(KEYS, (model.value, precision.value, optimizer.value, batch.value, length.value,
                            checkpoint.value), strict=True))
    assert shown == e.settings
    caption = e.caption.text
    assert caption.startswith(f"<b>{shown['model']}</b>")
    assert f"batch {shown['batch']}, length {shown['length']}:" in caption
    assert (", checkpointing, " in caption) == shown["checkpointing"]
    m = [str(n) for n in e.data["names"]].index(shown["model"])
    assert shown["length"] in e.data["lengths"][m, : e.data["n_lengths"][m]]
    assert checkpoint.disabled == (not e.data["checkpointable"][m] and not shown["checkpointing"])
    return shown


def test_an_unexpected_error_is_reported_and_the_controls_snap_back(live, monkeypatch):
    boxes = live.controls()
    before = agree(live, boxes)
    bar, caption = dict(live.sources["budget_bar"].data), live.caption.text

    def onednn(settings):
        raise RuntimeError("could not create a primitive descriptor for a LSTM forward propagation primitive")

    monkeypatch.setattr(live, "compute", onednn)
    for box, value in zip([*boxes[0].children, *boxes[1].children], ("LSTM", "amp", "sgd", 7, 12, True),
                          strict=True):
        box.value = value
        assert live.last_error == ("Not updated: RuntimeError: could not create a primitive descriptor for a LSTM "
                                   "forward propagation primitive")
        assert live.status_widget().value == live.last_error
        assert dict(live.sources["budget_bar"].data) == bar and live.caption.text == caption
        assert agree(live, boxes) == before


def test_refused_settings_leave_the_controls_on_the_figures_settings(live):
    boxes = live.controls()
    model, precision, optimizer = boxes[0].children
    batch, length, checkpoint = boxes[1].children
    checkpoint.value = True
    good = agree(live, boxes)
    assert good["checkpointing"] and live.last_error is None
    model.value = "LSTM"  # no blocks to checkpoint: refused before anything runs
    assert live.last_error == ("Not updated: 'LSTM' has no blocks to checkpoint (checkpointing=True is for a model "
                               "with a ModuleList or Sequential of blocks): untick checkpointing first")
    assert agree(live, boxes) == good
    batch.value = 0  # named, not clamped to 1
    assert live.last_error == "Not updated: MemoryBudgetExplorer: expected batch as an integer in [1, 10000000], got 0"
    assert agree(live, boxes) == good
    length.value = -5
    assert live.last_error == "Not updated: expected length as an integer in [1, 100000], got -5"
    assert agree(live, boxes) == good
    checkpoint.value = False
    model.value = "LSTM"  # now it can: the box that cannot be ticked is off limits
    assert live.last_error is None and agree(live, boxes)["model"] == "LSTM" and checkpoint.disabled
    model.value = "Transformer"
    assert agree(live, boxes)["model"] == "Transformer" and not checkpoint.disabled


# Cost limits: a live estimate runs a real forward and backward pass, so what it would cost is checked first ------


def test_attention_heads_are_counted_over_layers(models):
    assert attention_heads(models["Transformer"].model) == 2 * 2  # two blocks of two heads
    assert attention_heads(models["LSTM"].model) == 0


def test_live_cost_scales_a_measured_run():
    run = Measured(length=10, fixed=1000, grows=4000, seconds=0.5)
    assert live_cost(run, 10, heads=0) == (5000, 0.5)
    assert live_cost(run, 100, heads=0) == (1000 + 40_000, 5.0)  # linear in the steps
    scores = 4 * 3 * SCORE_BYTES  # batch 4, three heads: bytes per T^2
    with_attention = Measured(length=10, fixed=1000, grows=4000 + scores * 100, seconds=0.5)
    cost = live_cost(with_attention, 100, heads=3)
    assert cost.bytes == 1000 + 40_000 + scores * 100 * 100
    assert cost.seconds == pytest.approx(0.5 * (40_000 + scores * 10_000) / (4000 + scores * 100))  # as the bytes


@pytest.mark.parametrize("name,short,long", [("Transformer", 8, 64), ("LSTM", 8, 64)])
def test_the_scaled_cost_bounds_memlibs_estimate(models, name, short, long):
    spec = models[name]
    e = direct(models, name, "fp32", "adam", False, short, 4)
    run = Measured(short, e.parameters + e.gradients + e.optimizer_state, e.activations + e.backward_workspace, 1.0)
    bound = live_cost(run, long, attention_heads(spec.model)).bytes
    actual = direct(models, name, "fp32", "adam", False, long, 4)
    needed = actual.parameters + actual.gradients + actual.optimizer_state + actual.activations + \
        actual.backward_workspace
    assert needed <= bound <= 4 * needed, (needed, bound)


@pytest.fixture
def estimator_calls(monkeypatch) -> list[int]:
    """The sequence lengths memlib's estimator is called with, from now on."""
    import memlib.hardware

    calls, real = [], memlib.hardware.estimate_training_memory

    def recorded(model, example, *args, **kwargs):
        calls.append(example[1])  # (batch, length, width)
        return real(model, example, *args, **kwargs)

    monkeypatch.setattr(memlib.hardware, "estimate_training_memory", recorded)
    return calls


def test_a_length_over_the_memory_limit_is_refused_before_it_runs(live, estimator_calls):
    boxes = live.controls()
    batch, length, _ = boxes[1].children
    length.value = 16  # the Transformer's longest listed length: it runs, and is measured
    assert live.last_error is None and set(estimator_calls) == {16}
    good = agree(live, boxes)
    estimator_calls.clear()
    length.value = 100_000
    assert live.last_error.startswith("Not updated: length 100000 would take about ")
    assert "for 'Transformer' (scaled from its run at length 16: " in live.last_error
    assert live.last_error.endswith(", the T x T scores of 4 attention heads), over the memory limit of 1.00 GiB "
                                    "and the time limit of 2 s; it is not run")
    assert estimator_calls == [] and agree(live, boxes) == good


def test_the_limits_are_class_attributes(live, estimator_calls, monkeypatch):
    assert live.recompute({"length": 16}) is True
    estimator_calls.clear()
    monkeypatch.setattr(MemoryBudgetExplorer, "max_bytes", 1e12)
    monkeypatch.setattr(MemoryBudgetExplorer, "max_seconds", 1e-9)  # any longer run is too slow
    assert live.recompute({"length": 17}) is False
    assert live.last_error.endswith("over the time limit of 1e-09 s; it is not run") and estimator_calls == []
    monkeypatch.setattr(MemoryBudgetExplorer, "max_seconds", 1e9)
    monkeypatch.setattr(MemoryBudgetExplorer, "max_bytes", 1.0)
    assert live.recompute({"length": 17}) is False
    assert live.last_error.endswith("over the memory limit of 1 B; it is not run") and estimator_calls == []
    monkeypatch.setattr(MemoryBudgetExplorer, "max_bytes", 1e12)
    assert live.recompute({"length": 40}) is True and live.settings["length"] == 40
    assert set(estimator_calls) == {40}
    assert isinstance(Refused("x"), ValueError)


def test_a_model_not_run_yet_is_measured_at_its_own_longest_length_first(live, estimator_calls, monkeypatch):
    monkeypatch.setattr(MemoryBudgetExplorer, "max_seconds", 1e9)
    assert live.recompute({"model": "LSTM", "length": 100_000}) is False  # LSTM lengths (8, 16, 32): a run at 32
    assert set(estimator_calls) == {32}
    assert "for 'LSTM' (scaled from its run at length 32: " in live.last_error
    assert "attention" not in live.last_error and live.last_error.endswith("over the memory limit of 1.00 GiB; it is "
                                                                          "not run")
    assert live.settings["model"] == "Transformer"
    estimator_calls.clear()
    assert live.recompute({"model": "LSTM", "length": 20}) is True  # under the limits: it runs
    assert set(estimator_calls) == {20}


# Errors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"model": "GPT"}, r"expected model one of 'LSTM', 'Transformer', got 'GPT'"),
        ({"precision": "fp8"}, r"expected precision one of 'fp32', 'bf16', 'amp', got 'fp8'"),
        ({"optimizer": "lion"}, r"expected optimizer one of 'sgd', 'sgd_momentum', 'adam', got 'lion'"),
        ({"model": "LSTM", "checkpointing": True}, r"'LSTM' has no blocks to checkpoint"),
        ({"length": 64}, r"expected length in \[8, 32\] \(the lengths estimated; no extrapolation\), got 64"),
        ({"length": 9.5}, r"expected length as an integer, got 9.5"),
        ({"batch": 0}, r"expected batch as an integer in \[1, 10000000\], got 0"),
        ({"gpus": ["RTX 9090"]}, r"gpu: expected one of .*got 'RTX 9090'"),
        ({"gpus": []}, r"expected at least one GPU"),
        ({"reserve": 1.5}, r"expected reserve as a fraction in \[0, 1\)"),
    ],
)

def test_constructor_says_what_it_expected(data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MemoryBudgetExplorer(data, **kwargs)


def test_constructor_wants_prepared_data():
    with pytest.raises(ValueError, match=r"expected data from MemoryBudgetExplorer.prepare"):
        MemoryBudgetExplorer({"names": np.array(["x"])})


def test_prepare_says_what_it_expected(models):
    spec = models["LSTM"]
    cases = [
        ([spec], TypeError, r"expected a mapping of name -> BudgetModel, got list"),
        ({}, ValueError, r"at least one model"),
        ({"m": (spec.model, spec.example)}, TypeError, r"model 'm': expected a BudgetModel"),
        ({"m": spec._replace(model="lstm")}, TypeError, r"expected model as an nn.Module, got str"),
        ({"m": spec._replace(example=(4, 8, 4))}, TypeError, r"expected example as a function"),
        ({"m": spec._replace(lengths=(8, 4))}, ValueError, r"1 to 3 increasing positive integer lengths"),
        ({"m": spec._replace(lengths=(1, 2, 3, 4))}, ValueError, r"1 to 3 increasing"),
        ({"m": spec._replace(example=lambda b, t: (2, t, 8))}, ValueError,
         r"expected example\(batch, length\) to give a batch of 4, got one of 2"),
    ]
    for models_arg, error, match in cases:
        with pytest.raises(error, match=match):
            MemoryBudgetExplorer.prepare(models_arg, precisions=("fp32",), optimizers=("sgd",))
    with pytest.raises(ValueError, match=r"expected precisions as distinct names from .*got \['fp8'\]"):
        MemoryBudgetExplorer.prepare({"m": spec}, precisions=("fp8",))
    with pytest.raises(ValueError, match=r"expected example_batch as a positive integer, got 0"):
        MemoryBudgetExplorer.prepare({"m": spec}, example_batch=0)


def test_a_static_explorer_cannot_go_live(data):
    with pytest.raises(RuntimeError, match=r"no models or compute function"):
        MemoryBudgetExplorer(data).recompute({"batch": 2})


# The path the estimate took, where this CPU cannot run a kernel in half precision (memlib.capability) ----------


def test_the_caption_names_the_reference_path_in_python_and_in_the_pages_js(monkeypatch):
    monkeypatch.setenv("MEMLIB_HALF_PRECISION", "lstm=0")  # as on a CPU without bfloat16 LSTM (oneDNN)
    torch.manual_seed(0)
    models = {"LSTM": BudgetModel(memlib.LSTM(8, 16, batch_first=True), lambda b, t: (b, t, 8), (4, 8))}
    data = MemoryBudgetExplorer.prepare(models, precisions=("fp32", "amp"), optimizers=("adam",))
    assert data["paths"][0, 0] == ""
    assert data["paths"][0, 1].startswith("LSTM (lstm): torch's fused kernel does not run under autocast")
    e = MemoryBudgetExplorer(data, model="LSTM", precision="amp", length=4)
    e.layout  # noqa: B018
    assert "Path: LSTM (lstm)" in e._view["caption"]
    assert estimate_at(data, "LSTM", "amp", "adam", False, 4).notes == (str(data["paths"][0, 1]),)
    cases = [{"model": "LSTM", "precision": p, "optimizer": "adam", "checkpoint": False, "length": 4, "batch": 2}
             for p in ("fp32", "amp")]
    for case, got in zip(cases, _run_js(e, cases), strict=True):
        settings = {"model": "LSTM", "precision": case["precision"], "optimizer": "adam", "checkpointing": False,
                    "batch": 2, "length": 4}
        assert got["caption"] == view(data, settings, e.gpus, e.reserve)["caption"], case
        assert ("Path:" in got["caption"]) == (case["precision"] == "amp")
