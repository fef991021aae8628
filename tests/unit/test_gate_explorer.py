"""widgets.gates: GateExplorer's three layers, and the forget gate's role (retention, half-life) on real traces."""

from __future__ import annotations

import ipywidgets
import numpy as np
import pytest
import torch
from bokeh.models import ColumnDataSource, CustomJS, Plot, Select, Slider
from jsparity import run_callback
from test_memory_explorer import footprint

import memlib
from memlib.tasks.sequences import adding_batch
from widgets.base import Refused, load_js
from widgets.gates import DEFAULT_INPUTS, GateExplorer, retention_and_half_life

LSTM_GATES = ("input_gate", "forget_gate", "output_gate", "candidate", "cell", "hidden")
GRU_GATES = ("reset_gate", "update_gate", "candidate", "hidden")


def hand_made(kind: str = "lstm", T: int = 8, H: int = 3, keep: float = 0.5, seed: int = 0, **extra) -> dict:
    """A variant whose keep gate (forget or update) is the constant ``keep``; other gates random."""
    rng = np.random.default_rng(seed)
    names = LSTM_GATES if kind == "lstm" else GRU_GATES
    gates = {g: rng.uniform(0, 1, (T, H)) if g.endswith("gate") else rng.uniform(-1, 1, (T, H)) for g in names}
    gates["forget_gate" if kind == "lstm" else "update_gate"] = np.full((T, H), keep)
    return {"kind": kind, "inputs": rng.uniform(0, 1, (T, 2)), "gates": gates, **extra}


def traced(kind: str, x: torch.Tensor, hidden: int = 8, bias: float = 0.0, seed: int = 0, **variant) -> dict:
    """A random-init memlib LSTM/GRU run on ``x`` (1, T, I) inside a trace, its keep gate's bias raised by ``bias``."""
    torch.manual_seed(seed)
    model = (memlib.LSTM if kind == "lstm" else memlib.GRU)(x.shape[-1], hidden, batch_first=True)
    keep = slice(hidden, 2 * hidden)  # gate order i, f, g, o (LSTM) and r, z, n (GRU): the second block
    with torch.no_grad():
        model.bias_ih_l0[keep] += bias
    with memlib.trace() as tr:
        model(x)
    return GateExplorer.from_trace(tr, kind, x[0], **variant)


@pytest.fixture(scope="module")
def data():
    return GateExplorer.prepare({
        "LSTM": hand_made("lstm", marked=2, labels=list("abcdefgh"), channels=["value", "marker"]),
        "GRU": hand_made("gru", keep=0.9, seed=1, marked=1),
    })


@pytest.fixture(scope="module")
def explorer(data) -> GateExplorer:
    """Built once (Bokeh figures take a while): only for tests that leave it as it is."""
    return GateExplorer(data)


# Layer 1: prepare ------------------------------------------------------------------------------


def test_prepare_returns_arrays_with_a_variant_axis(data):
    assert list(data["names"]) == ["LSTM", "GRU"] and list(data["kinds"]) == ["lstm", "gru"]
    assert data["inputs"].shape == (2, 8, 2) and data["labels"].shape == (2, 8)
    assert list(data["labels"][0]) == list("abcdefgh") and list(data["labels"][1]) == [""] * 8
    assert list(data["channels"][0]) == ["value", "marker"] and list(data["channels"][1]) == ["x[0]", "x[1]"]
    for gate in (*LSTM_GATES, *GRU_GATES, "retention"):
        assert data[gate].shape == (2, 8, 3)
    assert np.isnan(data["forget_gate"][1]).all() and np.isnan(data["update_gate"][0]).all()
    assert np.isfinite(data["forget_gate"][0]).all() and np.isfinite(data["candidate"]).all()
    assert data["half_life"].shape == (2, 3)


def test_retention_of_a_constant_half_forget_gate():
    data = GateExplorer.prepare({"v": hand_made("lstm", T=8, keep=0.5, marked=2)})
    r = data["retention"][0]
    assert np.isnan(r[:2]).all()
    np.testing.assert_allclose(r[2:], np.broadcast_to(0.5 ** np.arange(6)[:, None], (6, 3)))  # r_t = 0.5^(t-m)
    np.testing.assert_array_equal(data["half_life"][0], [1, 1, 1])


def test_gru_retention_multiplies_the_update_gate():
    data = GateExplorer.prepare({"v": hand_made("gru", T=12, keep=0.9, marked=0)})
    np.testing.assert_allclose(data["retention"][0, :, 0], 0.9 ** np.arange(12))
    np.testing.assert_array_equal(data["half_life"][0], [7, 7, 7])  # 0.9^6 = 0.53 > 1/2 >= 0.9^7 = 0.48


def test_half_life_per_unit_and_inf_when_never_halved():
    keep = np.array([[0.5, 0.8, 1.0]] * 6)  # (T=6, H=3)
    r, half_life = retention_and_half_life(keep, marked=1)
    np.testing.assert_allclose(r[1:, 2], 1.0)
    np.testing.assert_array_equal(half_life, [1, 4, np.inf])  # 0.8^3 = 0.51, 0.8^4 = 0.41


def test_retention_of_a_varying_forget_gate():
    keep = np.array([[0.9], [0.2], [0.5], [0.8]])
    r, half_life = retention_and_half_life(keep, marked=0)
    np.testing.assert_allclose(r[:, 0], [1, 0.2, 0.1, 0.08])  # f_0 is before the mark: it does not count
    assert half_life[0] == 1


def test_marked_defaults_to_the_first_step_and_takes_a_tensor_index():
    first = GateExplorer.prepare({"v": hand_made()})
    assert first["marked"][0] == 0 and first["retention"][0, 0, 0] == 1
    assert GateExplorer.prepare({"v": hand_made(marked=torch.tensor(3))})["marked"][0] == 3


def test_prepare_keeps_the_first_max_units():
    raw = hand_made(H=20)
    data = GateExplorer.prepare({"v": raw}, max_units=16)
    assert data["forget_gate"].shape == (1, 8, 16) and data["half_life"].shape == (1, 16)
    np.testing.assert_array_equal(data["cell"][0], raw["gates"]["cell"][:, :16])


def test_prepare_takes_torch_tensors():
    raw = hand_made()
    as_tensors = {**raw, "inputs": torch.tensor(raw["inputs"]),
                  "gates": {k: torch.tensor(v, requires_grad=True) for k, v in raw["gates"].items()}}
    np.testing.assert_allclose(GateExplorer.prepare({"v": as_tensors})["hidden"],
                               GateExplorer.prepare({"v": raw})["hidden"])


def test_prepare_takes_one_dimensional_inputs():
    data = GateExplorer.prepare({"v": {**hand_made(T=5), "inputs": np.arange(5.0)}})
    assert data["inputs"].shape == (1, 5, 1) and list(data["channels"][0]) == ["x"]


def with_gate(name: str, value, kind: str = "lstm") -> dict:
    raw = hand_made(kind)
    raw["gates"] = {**raw["gates"], name: value}
    return {"v": raw}


@pytest.mark.parametrize(
    "variants,error,match",
    [
        ([hand_made()], TypeError, r"mapping of variant name -> variant dict, got list"),
        ({}, ValueError, r"at least one variant, got none"),
        ({"v": [1, 2]}, TypeError, r"variant 'v': expected a dict with keys .*got list"),
        ({"v": {**hand_made(), "kind": "rnn"}}, ValueError, r"variant 'v': expected kind 'lstm' or 'gru', got 'rnn'"),
        ({"v": {**hand_made(), "colour": 1}}, ValueError, r"expected keys kind, inputs, gates .*got \[.*'colour'"),
        ({"v": {"kind": "lstm", "gates": {}}}, ValueError, r"inputs, gates.*got \['gates', 'kind'\]"),
        (with_gate("forget_gate", np.zeros(8)), ValueError, r"gate 'forget_gate': expected shape \(T, H\).*got \(8,\)"),
        (with_gate("cell", np.zeros((7, 3))), ValueError,
         r"expected every gate of shape \(T, H\) = \(8, 3\) like 'forget_gate', got 'cell' \(7, 3\)"),
        (with_gate("cell", np.full((8, 3), np.nan)), ValueError, r"gate 'cell': expected finite values, got 24 NaN"),
        (with_gate("input_gate", np.full((8, 3), 1.5)), ValueError,
         r"gate 'input_gate': expected values in \[0, 1\] \(a sigmoid's output\), got values in \[1.5, 1.5\]"),
        (with_gate("forget_gate", [["a"]]), TypeError, r"gate 'forget_gate': expected numbers of shape \(T, H\)"),
        ({"v": {**hand_made(), "gates": [1]}}, TypeError, r"expected gates as a dict of name -> \(T, H\) array"),
    ],
)
def test_prepare_says_what_it_expected(variants, error, match):
    with pytest.raises(error, match=match):
        GateExplorer.prepare(variants)


def test_prepare_names_missing_and_unexpected_gates():
    raw = hand_made("lstm")
    del raw["gates"]["cell"]
    raw["gates"]["update_gate"] = np.zeros((8, 3))
    with pytest.raises(ValueError, match=r"expected lstm gates \[.*\], got \[.*\] \(missing \['cell'\]\) "
                                         r"\(unexpected \['update_gate'\]\)"):
        GateExplorer.prepare({"v": raw})


def test_prepare_gives_a_gru_the_lstms_gates_and_says_so():
    raw = hand_made("lstm")
    with pytest.raises(ValueError, match=r"expected gru gates \['candidate', 'hidden', 'reset_gate', 'update_gate'\]"):
        GateExplorer.prepare({"v": {**raw, "kind": "gru"}})


@pytest.mark.parametrize(
    "change,error,match",
    [
        ({"inputs": np.zeros((7, 2))}, ValueError, r"expected inputs of shape \(8,\) or \(8, I\) to match the gates, "
                                                   r"got \(7, 2\)"),
        ({"inputs": np.zeros((8, 2, 1))}, ValueError, r"inputs: expected shape \(8,\) or \(8, I\).*got \(8, 2, 1\)"),
        ({"labels": ["a"] * 7}, ValueError, r"expected 8 labels \(one per step\), got 7"),
        ({"channels": ["a"]}, ValueError, r"expected 2 channel names \(one per input channel\), got 1"),
        ({"marked": 8}, ValueError, r"expected marked in \[0, 8\) \(a step of the sequence\), got 8"),
        ({"marked": 2.5}, TypeError, r"expected marked an integer step index in \[0, 8\), got 2.5"),
        ({"marked": True}, TypeError, r"expected marked an integer step index in \[0, 8\), got True"),
    ],
)
def test_prepare_checks_the_per_step_extras(change, error, match):
    with pytest.raises(error, match=match):
        GateExplorer.prepare({"v": {**hand_made(), **change}})


def test_prepare_wants_variants_of_one_shape():
    with pytest.raises(ValueError, match=r"variant 'b': expected T=8 steps, H=3 units and I=2 input channels like "
                                         r"variant 'a', got T=6, H=3, I=2"):
        GateExplorer.prepare({"a": hand_made(), "b": hand_made(T=6)})


def test_prepare_limits_the_steps_and_units_it_is_asked_to_draw():
    with pytest.raises(ValueError, match=r"at most max_steps=200 steps, got 201: shorten the input"):
        GateExplorer.prepare({"v": hand_made(T=201)})
    with pytest.raises(ValueError, match=r"max_units an integer >= 1, got 0"):
        GateExplorer.prepare({"v": hand_made()}, max_units=0)


# from_trace on real memlib models, and the forget gate's role ------------------------------------


@pytest.mark.parametrize("kind,names", [("lstm", LSTM_GATES), ("gru", GRU_GATES)])
def test_from_trace_reads_every_gate_of_a_real_model(kind, names):
    x = torch.rand(3, 10, 2)  # (B, T, I)
    model = (memlib.LSTM if kind == "lstm" else memlib.GRU)(2, 5, num_layers=2, batch_first=True)
    with memlib.trace() as tr:
        model(x)
    variant = GateExplorer.from_trace(tr, kind, x[1], layer=1, sample=1, marked=4)
    data = GateExplorer.prepare({kind: variant})
    for name in names:
        np.testing.assert_allclose(data[name][0], tr.stack(f"{kind}.{name}.l1")[:, 1].numpy(), rtol=1e-6)
    np.testing.assert_allclose(data["inputs"][0], x[1].numpy(), rtol=1e-6)
    # the last hidden state of the trace is the model's output at the last step
    np.testing.assert_allclose(data["hidden"][0, -1], model(x)[0][1, -1].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_from_trace_says_what_is_missing():
    with memlib.trace() as tr:
        memlib.GRU(2, 4)(torch.rand(5, 1, 2))
    with pytest.raises(ValueError, match=r"expected 'lstm.forget_gate.l0' in the trace \(run a memlib.LSTM"):
        GateExplorer.from_trace(tr, "lstm", torch.rand(5, 2))
    with pytest.raises(ValueError, match=r"expected 'gru.update_gate.l1' in the trace.*2 layer\(s\)"):
        GateExplorer.from_trace(tr, "gru", torch.rand(5, 2), layer=1)
    with pytest.raises(ValueError, match=r"expected sample in \[0, 1\) \(the batch\), got 3"):
        GateExplorer.from_trace(tr, "gru", torch.rand(5, 2), sample=3)
    with pytest.raises(ValueError, match=r"expected kind 'lstm' or 'gru', got 'rnn'"):
        GateExplorer.from_trace(tr, "rnn", torch.rand(5, 2))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_higher_forget_bias_holds_the_marked_value_longer(kind):
    batch = adding_batch(1, 40, seed=3)
    marked = int(batch.inputs[0, :, 1].nonzero()[0])
    data = GateExplorer.prepare({
        f"bias {b:+g}": traced(kind, batch.inputs, bias=b, marked=marked) for b in (0.0, 3.0)
    })
    low, high = data["half_life"]
    # a random-init gate sits near sigmoid(0) = 1/2: the marked value halves within a step or two
    assert np.median(low) <= 2
    # +3 moves it near sigmoid(3) = 0.95: a half-life near ln(1/2)/ln(0.95) = 13.5 steps
    assert np.median(high) >= 8 and (high >= low).all()
    assert np.nanmean(data["retention"][1, -1]) > 10 * np.nanmean(data["retention"][0, -1])


def test_parse_settings():
    defaults = {"length": 40.0, "seed": 0.0}
    assert GateExplorer.parse_settings("length=12, seed=3", defaults) == {"length": 12.0, "seed": 3.0}
    assert GateExplorer.parse_settings("  ", defaults) == defaults
    with pytest.raises(ValueError, match=r"expected settings like 'length=40 seed=0' .*got 'size=3'"):
        GateExplorer.parse_settings("size=3", defaults)
    with pytest.raises(ValueError, match=r"expected a number for length, got 'ten'"):
        GateExplorer.parse_settings("length=ten", defaults)


@pytest.mark.parametrize("text,match", [
    ("period=1e-300", r"expected period a number in \[2, 1e\+06\] \(steps per cycle: a sine sampled once a step "
                      r"needs at least 2\), got '1e-300'"),
    ("period=0", r"expected period a number in \[2, 1e\+06\].*got '0'"),
    ("length=40.5", r"expected length an integer in \[1, inf\] \(steps\), got '40.5'"),
    ("length=0", r"expected length an integer in \[1, inf\] \(steps\), got '0'"),
    ("seed=-1", r"expected seed an integer in \[0, 2.147\d*e\+09\] \(a random seed\), got '-1'"),
])
def test_parse_settings_names_the_bad_setting(text, match):
    with pytest.raises(ValueError, match=match):
        GateExplorer.parse_settings(text, {"length": 60, "period": 12, "seed": 0})
    assert GateExplorer.parse_settings("period=1.5", {"period": 12}, limits={}) == {"period": 1.5}  # the page's own


def test_prepare_names_a_non_finite_input_not_the_gate_it_spoils():
    t = torch.arange(8.0)
    x = torch.sin(2 * torch.pi * t / 1e-300)[None, :, None]  # 1e-300 is 0 in float32: t / period is NaN or inf
    with pytest.raises(ValueError, match=r"variant 'v' inputs: expected finite values, got 8 NaN/inf entries \(check "
                                         r"the settings that made the input\)"):
        GateExplorer.prepare({"v": traced("gru", x, hidden=4)})
    with pytest.raises(ValueError, match=r"expected max_steps an integer >= 1, got 0"):
        GateExplorer.prepare({"v": hand_made()}, max_steps=0)


# Layer 2: the static Bokeh layout ----------------------------------------------------------------

NAMED = ("gate_variant_select", "gate_time_slider", "gate_unit_select", "gate_caption", "gate_variants",
         "gate_inputs", "gate_labels", "gates_at_time", "unit_over_time", "retention_of_unit", "retention_cursor",
         "lstm_gate_heatmaps", "gru_gate_heatmaps")


def test_layout_names_its_models(explorer):
    for name in NAMED:
        assert explorer.layout.select_one({"name": name}) is not None, name
    for name in ("gates_at_time", "unit_over_time", "retention_of_unit", "gate_variants"):
        assert explorer.layout.select_one({"name": name}) is explorer.sources[name]
        assert isinstance(explorer.sources[name], ColumnDataSource)


def test_the_step_and_unit_sliders_stand_apart_and_fit_the_books_column(explorer):
    time = explorer.layout.select_one({"name": "gate_time_slider"})
    assert time.margin[1] >= 30  # touching the unit slider, the two read as one range slider
    assert footprint(explorer.layout) <= 680, footprint(explorer.layout)  # the book's column is 688 px


def test_titles_use_unicode_not_pseudo_tex(explorer):
    titles = [m.title.text for m in explorer.layout.select({"type": Plot})]
    assert "forget gate f\u209c" in titles and "input x\u209c" in titles
    assert not [t for t in titles if "_t" in t or "^" in t], titles


def test_sliders_and_select_share_one_customjs(explorer):
    layout = explorer.layout
    time, unit = layout.select_one({"name": "gate_time_slider"}), layout.select_one({"name": "gate_unit_select"})
    select = layout.select_one({"name": "gate_variant_select"})
    assert isinstance(time, Slider) and isinstance(unit, Slider) and isinstance(select, Select)
    assert (time.start, time.end, time.value) == (1, 8, 8) and (unit.start, unit.end, unit.value) == (0, 2, 0)
    assert select.options == ["LSTM", "GRU"] and select.value == "LSTM" and select.visible
    [callback] = time.js_property_callbacks["change:value"]
    assert isinstance(callback, CustomJS)
    assert unit.js_property_callbacks["change:value"] == [callback]
    assert select.js_property_callbacks["change:value"] == [callback]
    assert {"store", "select", "time", "unit", "filter", "bars", "lines", "retention", "caption"} <= set(callback.args)
    assert callback.args["bars"] is explorer.sources["gates_at_time"]


def test_sources_start_at_the_last_step_of_unit_0_of_the_first_variant(explorer, data):
    at_time = explorer.sources["gates_at_time"].data
    assert at_time["gate"] == ["f", "i", "o", "g", "c", "h"]
    np.testing.assert_allclose(at_time["value"], [data[g][0, -1, 0] for g in
                                                  ("forget_gate", "input_gate", "output_gate", "candidate", "cell",
                                                   "hidden")], rtol=1e-6)
    lines = explorer.sources["unit_over_time"].data
    assert len(lines["ys"]) == 6
    np.testing.assert_allclose(lines["ys"][1], data["input_gate"][0, :, 0], rtol=1e-6)
    np.testing.assert_allclose(explorer.sources["retention_of_unit"].data["retention"], data["retention"][0, :, 0],
                               rtol=1e-6)
    caption = explorer.layout.select_one({"name": "gate_caption"}).text
    assert caption.startswith("<b>LSTM</b>: step 8 of 8 &quot;h&quot;, unit 0: f 0.50")
    assert "marked step 3: 0.03" in caption and "Half-life of unit 0: 1 step;" in caption


def test_the_store_holds_every_variant_as_float32_images(explorer):
    store = explorer.sources["gate_variants"].data
    assert store["variant"] == ["LSTM", "GRU"] and store["kind"] == ["lstm", "gru"] and store["marked"] == [2, 1]
    assert store["forget_gate"][0].shape == (3, 8) and store["forget_gate"][0].dtype == np.float32  # (H, T)
    assert store["forget_gate"][1].shape == (1, 1)  # a GRU has no forget gate: a placeholder
    assert np.isinf(store["half_life"][1]).all() and store["median_half_life"][1] == np.inf  # 0.9^6 = 0.53 > 1/2
    assert store["line_channels"] == [["value", "marker"], ["x[0]", "x[1]"]] and store["input_lines"][0].shape == (2, 8)
    inputs = explorer.sources["gate_inputs"].data  # the chosen variant's input, as lines
    assert inputs["channel"] == ["value", "marker"]
    np.testing.assert_allclose(inputs["ys"][1], explorer.data["inputs"][0, :, 1], rtol=1e-6)
    assert explorer.sources["gate_labels"].data["label"] == list("abcdefgh")


def test_a_lone_gru_shows_its_own_heatmaps_and_no_selector():
    layout = GateExplorer(GateExplorer.prepare({"GRU": hand_made("gru")})).layout
    assert layout.select_one({"name": "gru_gate_heatmaps"}).visible
    assert not layout.select_one({"name": "lstm_gate_heatmaps"}).visible
    assert not layout.select_one({"name": "gate_variant_select"}).visible


def test_static_html_is_light_and_uses_the_pages_bokehjs(explorer):
    page = explorer.static_html()
    for name in NAMED:
        assert name in page, name
    assert "BEGIN bokeh.min.js" not in page and "cdn.bokeh.org" not in page


def test_page_weight_at_the_largest_size():
    variants = {f"v{k}": hand_made(T=200, H=40, seed=k) for k in range(3)}
    page = GateExplorer(GateExplorer.prepare(variants)).static_html()  # 16 of 40 units kept
    assert len(page) < 600_000


def test_update_moves_sliders_ranges_and_caption(data):
    explorer = GateExplorer(data)
    explorer.layout  # noqa: B018 (built first, as show() does)
    new = GateExplorer.prepare({"GRU, longer": hand_made("gru", T=12, H=5, marked=3)})
    explorer.update(new)
    layout = explorer.layout
    assert layout.select_one({"name": "gate_time_slider"}).end == 12
    assert layout.select_one({"name": "gate_time_slider"}).value == 8  # kept where the reader left it
    assert layout.select_one({"name": "gate_unit_select"}).end == 4
    select = layout.select_one({"name": "gate_variant_select"})
    assert select.options == ["GRU, longer"] and select.value == "GRU, longer" and not select.visible
    assert explorer.filter.group == "GRU, longer"
    assert layout.select_one({"name": "gru_gate_heatmaps"}).visible
    assert not layout.select_one({"name": "lstm_gate_heatmaps"}).visible
    assert explorer.bars_range.factors == ["z", "r", "n", "h"]
    assert (explorer.x_range.end, explorer.unit_range.end) == (12.5, 4.5)
    assert explorer.sources["gates_at_time"].data["gate"] == ["z", "r", "n", "h"]
    assert len(explorer.sources["retention_of_unit"].data["step"]) == 12
    assert all(span.location == 4 for span in explorer.mark_spans)
    assert "<b>GRU, longer</b>: step 8 of 12" in layout.select_one({"name": "gate_caption"}).text


def test_update_clamps_the_step_and_unit():
    explorer = GateExplorer(GateExplorer.prepare({"v": hand_made(T=8, H=3)}))
    explorer.layout.select_one({"name": "gate_unit_select"}).value = 2
    explorer.update(GateExplorer.prepare({"v": hand_made(T=1, H=1)}))
    time, unit = explorer.layout.select_one({"name": "gate_time_slider"}), explorer.layout.select_one(
        {"name": "gate_unit_select"})
    assert (time.start, time.end, time.value) == (1, 2, 1)  # Bokeh needs end > start; the JS clamps
    assert (unit.end, unit.value) == (1, 0)


GATES_READ = """({inputs: a.inputs.data, bars: a.bars.data, lines: a.lines.data, retention: a.retention.data,
  cursor: a.cursor.data, caption: a.caption.text, group: a.filter.group, lstm: a.lstm_block.visible,
  gru: a.gru_block.visible, factors: a.bars_range.factors, y: [a.bars_y.start, a.bars_y.end],
  time: a.time_spans.map(s => s.location), mark: a.mark_spans.map(s => s.location),
  boxes: a.unit_boxes.map(b => [b.bottom, b.top])})"""


def test_the_pages_js_shows_what_python_shows_for_every_variant_step_and_unit():
    x = torch.randn(1, 7, 2, generator=torch.Generator().manual_seed(0))
    labels = ["a", "", "b&c", "<d>", "e'f", '"g"', "h"]  # escaped alike by Python and the JS
    data = GateExplorer.prepare({
        "LSTM & 'bias 2'": traced("lstm", x, hidden=4, bias=2.0, marked=1, labels=labels),
        "GRU <i>": traced("gru", x, hidden=4, seed=1, channels=["u", "v"]),
    })
    assert np.isfinite(data["half_life"]).any() and np.isinf(data["half_life"]).any()  # both captions' forms
    explorer = GateExplorer(data)
    [callback] = explorer.layout.select_one({"name": "gate_time_slider"}).js_property_callbacks["change:value"]
    assert callback.code == load_js("gates")
    names = [str(n) for n in data["names"]]
    picks = [(v, t, u) for v in (1, 0) for t in (0, 1, 4, 6) for u in (0, 3)]
    cases = [{"select": names[v], "time": t + 1, "unit": u} for v, t, u in picks]
    cases.append({"select": "no such variant", "time": 9, "unit": 7})  # stale values: clamped, the first variant
    picks.append((0, 6, 3))
    for (v, t, u), case, got in zip(picks, cases, run_callback(callback, cases, GATES_READ), strict=True):
        kind = str(data["kinds"][v])
        want = GateExplorer._view(data, v, t, u)
        for name, key in (("bars", "gates_at_time"), ("lines", "unit_over_time"), ("retention", "retention_of_unit"),
                          ("cursor", "retention_cursor")):
            assert set(got[name]) == set(want[key]), (case, name)
            for col, values in got[name].items():
                expected = want[key][col]
                if col in ("gate", "name", "color"):
                    assert values == expected, (case, name, col)
                else:  # the same float32 numbers, as doubles (NaN before the mark)
                    np.testing.assert_array_equal(np.asarray(values, dtype=float), np.asarray(expected, dtype=float),
                                                  err_msg=f"{case} {name}.{col}")
        if v != 0:  # the JS redraws the input only when the variant changes (the page starts on the first)
            assert set(got["inputs"]) == set(want["gate_inputs"])
            for col, values in want["gate_inputs"].items():
                if col in ("channel", "color"):
                    assert got["inputs"][col] == list(values), (case, col)
                else:
                    np.testing.assert_array_equal(got["inputs"][col], np.asarray(values, dtype=float), err_msg=col)
        assert got["caption"] == explorer._caption(data, v, t, u), case
        assert got["group"] == names[v] and (got["lstm"], got["gru"]) == (kind == "lstm", kind == "gru")
        assert got["factors"] == want["gates_at_time"]["gate"]
        np.testing.assert_allclose(got["y"], GateExplorer._bar_bounds(data, v, u), rtol=1e-6)
        assert got["time"] == [t + 1] * len(explorer.time_spans)
        assert got["mark"] == [int(data["marked"][v]) + 1] * len(explorer.mark_spans)
        assert got["boxes"] == [[u - 0.5, u + 0.5]] * len(explorer.unit_boxes)


# Layer 3: live controls --------------------------------------------------------------------------

ALPHABET = " abcdefghijklmnopqrstuvwxyz"


def chapter_compute(settings: dict) -> dict:
    """What a chapter supplies: build the chosen input, run a random-init model with the chosen bias, prepare."""
    text, kind = settings["input_text"], settings["kind"]
    labels, marked = None, 0
    if settings["input_kind"] == "adding problem":
        p = GateExplorer.parse_settings(text, {"length": 40, "seed": 0})
        x = adding_batch(1, int(p["length"]), seed=int(p["seed"])).inputs  # (1, T, 2)
        marked = int(x[0, :, 1].nonzero()[0])
    elif settings["input_kind"] == "sine wave":
        p = GateExplorer.parse_settings(text, {"length": 60, "period": 12})
        t = torch.arange(int(p["length"]), dtype=torch.float32)
        x = torch.sin(2 * torch.pi * t / p["period"])[None, :, None]  # (1, T, 1)
    else:
        bad = sorted(set(text) - set(ALPHABET))
        if bad or not text:
            raise ValueError(f"expected lower-case letters and spaces, got {bad or 'nothing'}")
        x = torch.nn.functional.one_hot(torch.tensor([ALPHABET.index(c) for c in text]), len(ALPHABET))
        x, labels = x.float()[None], list(text)  # (1, T, 27)
    variant = traced(kind, x, hidden=6, bias=settings["forget_bias"], marked=marked, labels=labels)
    return GateExplorer.prepare({f"{kind.upper()}, forget bias {settings['forget_bias']:+g}": variant})


def first_settings() -> dict:
    return {"input_kind": "adding problem", "input_text": DEFAULT_INPUTS["adding problem"], "forget_bias": 0.0,
            "kind": "lstm"}


@pytest.fixture
def calls() -> list[dict]:
    return []


@pytest.fixture
def live(calls) -> GateExplorer:
    """A live explorer whose compute records the settings it is called with in ``calls``."""

    def compute(settings):
        calls.append(dict(settings))
        return chapter_compute(settings)

    explorer = GateExplorer(chapter_compute(first_settings()), compute=compute)
    explorer.layout  # noqa: B018
    explorer.status_widget()
    return explorer


def test_recompute_redraws_with_new_settings(live):
    assert live.recompute({**first_settings(), "input_text": "length=24 seed=1"}) is True
    assert live.data["retention"].shape == (1, 24, 6)
    assert len(live.sources["retention_of_unit"].data["step"]) == 24
    assert live.layout.select_one({"name": "gate_time_slider"}).end == 24
    assert live.last_error is None


def test_recompute_keeps_the_figures_when_compute_refuses(live):
    before = live.data
    values = list(live.sources["gates_at_time"].data["value"])
    assert live.recompute({**first_settings(), "input_text": "length=ten"}) is False
    assert live.data is before and list(live.sources["gates_at_time"].data["value"]) == values
    assert live.last_error == "Not updated: expected a number for length, got 'ten'"
    assert live.status_widget().value == live.last_error


def test_controls_drive_compute(live, calls):
    choose, text, bias, kind = live.controls()
    assert isinstance(choose, ipywidgets.Dropdown) and list(choose.options) == list(DEFAULT_INPUTS)
    assert isinstance(text, ipywidgets.Text) and text.value == DEFAULT_INPUTS["adding problem"]
    assert isinstance(bias, ipywidgets.FloatSlider) and bias.value == 0.0
    assert isinstance(kind, ipywidgets.ToggleButtons) and kind.value == "lstm"
    low = live.data["half_life"].copy()

    bias.value = 3.0
    assert calls[-1] == {**first_settings(), "forget_bias": 3.0}
    assert np.median(live.data["half_life"]) > np.median(low)
    assert live.sources["gate_variants"].data["variant"] == ["LSTM, forget bias +3"]

    kind.value = "gru"
    assert calls[-1]["kind"] == "gru" and live.sources["gates_at_time"].data["gate"] == ["z", "r", "n", "h"]
    assert live.layout.select_one({"name": "gru_gate_heatmaps"}).visible

    n = len(calls)
    choose.value = "sentence"  # one recompute, with that kind's text
    assert len(calls) == n + 1 and text.value == DEFAULT_INPUTS["sentence"]
    assert live.data["inputs"].shape == (1, len(DEFAULT_INPUTS["sentence"]), 27)
    assert live.sources["gate_labels"].data["label"] == list(DEFAULT_INPUTS["sentence"])
    assert live.input_image.visible and live.sources["gate_inputs"].data["channel"] == []  # 27 channels: an image

    text.value = "forget me not"
    assert calls[-1]["input_text"] == "forget me not" and live.data["inputs"].shape[1] == 13

    text.value = "Bad!"
    assert live.data["inputs"].shape[1] == 13
    assert live.status_widget().value.startswith("Not updated: expected lower-case letters")
    assert text.value == "forget me not"  # back on the sentence the figures show

    choose.value = "sine wave"
    assert live.data["inputs"].shape == (1, 60, 1) and live.last_error is None
    assert not live.input_image.visible and live.sources["gate_inputs"].data["channel"] == ["x"]
    choose.value = "sentence"  # the reader's last sentence that ran comes back
    assert text.value == "forget me not"


def test_constructor_checks_its_live_settings(data):
    with pytest.raises(ValueError, match=r"expected kind 'lstm' or 'gru', got 'rnn'"):
        GateExplorer(data, kind="rnn")
    with pytest.raises(ValueError, match=r"at least one input kind"):
        GateExplorer(data, inputs={})
    with pytest.raises(ValueError, match=r"expected forget_bias as a number in \[-4, 6\], got 9"):
        GateExplorer(data, forget_bias=9)


# One failure path: any error, the last good figures, the controls back on them ---------------------------------


KEYS = ("input_kind", "input_text", "forget_bias", "kind")


def shows(live: GateExplorer, controls: list) -> dict:
    """The controls' values, after checking that they are the settings and that the figures were made with them."""
    values = dict(zip(KEYS, (c.value for c in controls), strict=True))
    assert values == live.settings
    s = live.settings
    assert live.sources["gate_variants"].data["variant"][0].startswith(f"{s['kind'].upper()}, forget bias "
                                                                       f"{s['forget_bias']:+g}")
    if s["input_kind"] == "adding problem":
        assert live.data["inputs"].shape[1] == GateExplorer.parse_settings(s["input_text"], {"length": 40,
                                                                                             "seed": 0})["length"]
    return values


def test_an_unexpected_error_in_compute_is_reported_and_the_controls_snap_back(live, monkeypatch):
    controls = live.controls()
    choose, text, bias, kind = controls
    before = shows(live, controls)
    data, values = live.data, list(live.sources["gates_at_time"].data["value"])
    caption = live.caption.text

    def kernel_error(settings):
        raise RuntimeError("could not create a primitive descriptor for a LSTM forward propagation primitive")

    monkeypatch.setattr(live, "compute", kernel_error)
    for control, value in ((bias, 3.0), (kind, "gru"), (choose, "sine wave"), (text, "length=30 seed=2")):
        control.value = value
        assert live.last_error == ("Not updated: RuntimeError: could not create a primitive descriptor for a LSTM "
                                   "forward propagation primitive")
        assert live.status_widget().value == live.last_error
        assert live.data is data and list(live.sources["gates_at_time"].data["value"]) == values
        assert live.caption.text == caption
        assert shows(live, controls) == before  # every control back on what the figures show


def test_a_refused_setting_leaves_the_controls_on_the_figures_settings(live):
    controls = live.controls()
    choose, text, bias, kind = controls
    bias.value = 2.0  # a good change first
    good = shows(live, controls)
    assert good["forget_bias"] == 2.0 and live.last_error is None
    live.texts["sine wave"] = "length=60 period=1e-300"  # a period whose sine overflows to NaN
    choose.value = "sine wave"
    assert live.last_error.startswith("Not updated: expected period a number in [2, 1e+06]")
    assert shows(live, controls) == good and text.value == good["input_text"]
    text.value = "length=40.5 seed=1"
    assert live.last_error == "Not updated: expected length an integer in [1, inf] (steps), got '40.5'"
    assert shows(live, controls) == good
    kind.value = "gru"  # and a good one after: the status line clears, the controls move on
    assert live.last_error is None and shows(live, controls)["kind"] == "gru"


def test_a_paste_too_long_is_refused_before_compute(live, calls, monkeypatch):
    monkeypatch.setattr(GateExplorer, "max_text", 50)
    controls = live.controls()
    before = shows(live, controls)
    n = len(calls)
    controls[1].value = "a" * 51
    assert live.last_error == ("Not updated: expected input_text of at most 50 characters (longer input is not run), "
                               "got 51")
    assert len(calls) == n and shows(live, controls) == before
    assert isinstance(Refused("x"), ValueError)
    assert live.recompute({"forget_bias": 99.0}) is False
    assert live.last_error == "Not updated: expected forget_bias as a number in [-4, 6], got 99.0"
    assert live.recompute({"colour": 1}) is False and "expected settings among" in live.last_error
