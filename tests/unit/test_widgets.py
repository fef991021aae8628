"""widgets: HiddenStateExplorer's three layers (prepare, static Bokeh layout, live controls) and claim checks."""

from __future__ import annotations

import ipywidgets
import numpy as np
import pytest
import torch
from bokeh.models import ColumnDataSource, CustomJS, Slider
from jsparity import run_callback

import memlib
from memlib.hybrid import SequenceRegressor
from memlib.tasks import encode_bits
from widgets import HiddenStateExplorer
from widgets.base import MAX_MESSAGE, Refused, check_number, check_text, describe, load_js, status_html


def raw(T: int = 6, D: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, 2, T).astype(float)
    return dict(hidden=rng.uniform(-1, 1, (T, D)), inputs=inputs, readout=rng.normal(size=T), target=np.cumsum(inputs))


@pytest.fixture
def explorer() -> HiddenStateExplorer:
    return HiddenStateExplorer(HiddenStateExplorer.prepare(**raw()))


# Layer 1: prepare ------------------------------------------------------------------------------


def test_prepare_takes_numpy_and_torch_alike():
    arrays = raw()
    tensors = {k: torch.tensor(v, dtype=torch.float32, requires_grad=True) for k, v in arrays.items()}
    from_numpy = HiddenStateExplorer.prepare(**arrays)
    from_torch = HiddenStateExplorer.prepare(**tensors)
    assert from_numpy.keys() == from_torch.keys() == {"hidden", "inputs", "readout", "target"}
    for name, value in from_torch.items():
        assert isinstance(value, np.ndarray) and value.dtype == np.float64
        np.testing.assert_allclose(value, from_numpy[name], rtol=1e-6)


def test_prepare_takes_a_real_trace():
    model = SequenceRegressor("gru", hidden_size=5)
    x = encode_bits("0110")[None]  # (1, T)
    with memlib.trace() as tr:
        model(x)
    data = HiddenStateExplorer.prepare(tr.last("hidden")[0], x[0], tr.last("readout")[0], x[0].cumsum(0))
    assert data["hidden"].shape == (4, 5)


@pytest.mark.parametrize(
    "hidden,expected",
    [(np.zeros(6), r"\(T, D\).*got \(6,\)"), (np.zeros((6, 4, 2)), r"\(T, D\).*got \(6, 4, 2\)")],
)
def test_prepare_rejects_hidden_of_wrong_rank(hidden, expected):
    with pytest.raises(ValueError, match=expected):
        HiddenStateExplorer.prepare(**{**raw(), "hidden": hidden})


@pytest.mark.parametrize("name", ["inputs", "readout", "target"])
def test_prepare_rejects_per_step_arrays_of_another_length(name):
    with pytest.raises(ValueError, match=rf"{name} of shape \(6,\) to match hidden \(6, 4\), got \(5,\)"):
        HiddenStateExplorer.prepare(**{**raw(), name: np.zeros(5)})


def test_prepare_rejects_a_per_step_array_of_two_dimensions():
    with pytest.raises(ValueError, match=r"readout: expected shape \(6,\).*got \(6, 1\)"):
        HiddenStateExplorer.prepare(**{**raw(), "readout": np.zeros((6, 1))})


def test_prepare_rejects_empty_hidden():
    with pytest.raises(ValueError, match=r"\(T>0, D>0\), got \(0, 4\)"):
        HiddenStateExplorer.prepare(np.zeros((0, 4)), [], [], [])


@pytest.mark.parametrize("name", ["hidden", "readout"])
def test_prepare_rejects_nan(name):
    arrays = raw()
    arrays[name] = arrays[name].copy()
    arrays[name].flat[2] = np.nan
    with pytest.raises(ValueError, match=rf"{name}: expected finite values, got 1 NaN"):
        HiddenStateExplorer.prepare(**arrays)


def test_prepare_rejects_non_numbers():
    with pytest.raises(TypeError, match="hidden"):
        HiddenStateExplorer.prepare(**{**raw(), "hidden": [["a", "b"]]})


# Layer 2: the static Bokeh layout ----------------------------------------------------------------


def test_layout_has_a_slider_with_customjs(explorer):
    slider = explorer.layout.select_one({"name": "step_slider"})
    assert isinstance(slider, Slider)
    assert (slider.start, slider.end, slider.value) == (1, 6, 6)
    callbacks = slider.js_property_callbacks["change:value"]
    assert len(callbacks) == 1 and isinstance(callbacks[0], CustomJS)
    assert {"slider", "grid", "state", "cursor", "curve", "span", "div"} <= set(callbacks[0].args)


def test_state_source_starts_at_the_last_step(explorer):
    source = explorer.layout.select_one({"name": "hidden_state_at_step"})
    assert isinstance(source, ColumnDataSource)
    assert source is explorer.sources["hidden_state_at_step"]
    np.testing.assert_array_equal(source.data["value"], explorer.data["hidden"][-1])
    np.testing.assert_array_equal(source.data["unit"], np.arange(4))


def test_update_replaces_data_and_moves_the_slider(explorer):
    explorer.layout  # noqa: B018 (built first, as show() does)
    new = HiddenStateExplorer.prepare(**raw(T=9, D=4, seed=1))
    explorer.update(new)
    assert explorer.data is new
    np.testing.assert_array_equal(explorer.sources["hidden_state_at_step"].data["value"], new["hidden"][-1])
    np.testing.assert_array_equal(explorer.sources["running_answer"].data["readout"], new["readout"])
    assert explorer.sources["hidden_grid"].data["T"] == [9]
    slider = explorer.layout.select_one({"name": "step_slider"})
    assert (slider.end, slider.value) == (9, 9)
    assert "step 9 of 9" in explorer.layout.select_one({"name": "step_caption"}).text


def test_update_before_the_layout_is_built():
    explorer = HiddenStateExplorer(HiddenStateExplorer.prepare(**raw()))
    explorer.update(HiddenStateExplorer.prepare(**raw(T=9)))
    assert explorer.layout.select_one({"name": "step_slider"}).end == 9


def test_static_html_uses_the_pages_bokehjs(explorer):
    page = explorer.static_html()
    assert "<div" in page and "<script" in page
    assert "step_slider" in page and "hidden_state_at_step" in page
    assert "BEGIN bokeh.min.js" not in page  # no inline BokehJS (~4 MB)
    assert len(page) < 200_000
    assert "cdn.bokeh.org" not in page


STEP_READ = "({state: a.state.data, cursor: a.cursor.data, span: a.span.location, caption: a.div.text})"


@pytest.mark.parametrize("T", [6, 1])  # a 1-step input keeps a 2-step slider, clamped in the JS
def test_the_step_sliders_js_shows_what_python_shows_at_every_step(T):
    arrays = raw(T=T, D=4, seed=3)
    arrays["inputs"] = arrays["inputs"] + np.linspace(0, 0.75, T)  # not only 0 and 1: the caption prints them
    explorer = HiddenStateExplorer(HiddenStateExplorer.prepare(**arrays))
    [callback] = explorer.layout.select_one({"name": "step_slider"}).js_property_callbacks["change:value"]
    assert callback.code == load_js("hidden_state")
    steps = list(range(1, max(T, 2) + 1))
    for value, got in zip(steps, run_callback(callback, [{"slider": v} for v in steps], STEP_READ), strict=True):
        t = min(value, T) - 1
        want = HiddenStateExplorer._at_step(explorer.data, t)
        assert got["state"]["value"] == want["hidden_state_at_step"]["value"].tolist(), t  # the same doubles
        assert got["state"]["unit"] == want["hidden_state_at_step"]["unit"].tolist()
        assert got["cursor"] == {"step": want["answer_cursor"]["step"],
                                 "readout": [float(r) for r in want["answer_cursor"]["readout"]]}, t
        assert got["span"] == t + 1
        assert got["caption"] == explorer._caption(t), t


# Layer 3: live controls --------------------------------------------------------------------------


def failing_compute(value):
    raise ValueError(f"cannot read {value!r}")


def test_recompute_keeps_the_figures_on_bad_input():
    explorer = HiddenStateExplorer(HiddenStateExplorer.prepare(**raw()), compute=failing_compute)
    explorer.layout  # noqa: B018
    status = explorer.status_widget()
    before = explorer.data
    value_before = list(explorer.sources["hidden_state_at_step"].data["value"])
    assert explorer.recompute("01x") is False
    assert explorer.data is before
    assert list(explorer.sources["hidden_state_at_step"].data["value"]) == value_before
    assert status.value == "Not updated: cannot read '01x'"


def test_recompute_without_compute_says_why(explorer):
    with pytest.raises(RuntimeError, match="no compute function"):
        explorer.recompute("01")


def rerun_model(model: torch.nn.Module):
    """A chapter's compute: run the model on typed bits and prepare its trace."""

    def compute(text: str):
        x = encode_bits(text)[None]  # (1, T)
        with memlib.trace() as tr:
            model(x)
        return HiddenStateExplorer.prepare(tr.last("hidden")[0], x[0], tr.last("readout")[0], x[0].cumsum(0))

    return compute


def test_typing_in_the_text_box_updates_the_figures():
    model = SequenceRegressor("gru", hidden_size=4)
    compute = rerun_model(model)
    explorer = HiddenStateExplorer(compute("0110"), compute=compute, initial_input="0110")
    explorer.layout  # noqa: B018
    status = explorer.status_widget()
    [box] = explorer.controls()
    assert isinstance(box, ipywidgets.Text)
    assert box.value == "0110"

    box.value = "1011101"
    assert explorer.data["hidden"].shape == (7, 4)
    np.testing.assert_array_equal(explorer.sources["running_answer"].data["input"], [1, 0, 1, 1, 1, 0, 1])
    np.testing.assert_array_equal(explorer.sources["hidden_state_at_step"].data["value"], explorer.data["hidden"][-1])
    assert explorer.layout.select_one({"name": "step_slider"}).end == 7
    assert status.value == ""

    box.value = "10z"
    assert explorer.data["hidden"].shape == (7, 4)
    assert "'z'" in status.value and status.value.startswith("Not updated:")
    assert box.value == "1011101" == explorer.settings["input"]  # back on the input the figures show

    box.value = "11"
    assert explorer.data["hidden"].shape == (2, 4)
    assert status.value == ""


# One failure path: any error, a plain line, the last good figures, the controls back on them ------------------


def test_describe_gives_one_plain_line():
    message = "expected period in [2, 1e+06], got 1e-300"
    assert describe(ValueError(message)) == message
    assert describe(TypeError("expected a str, got int")) == "expected a str, got int"
    oom = RuntimeError("[enforce fail at alloc_cpu.cpp:117] data.\nDefaultCPUAllocator: not enough memory: you "
                       "tried to allocate 687194767360 bytes.")
    assert describe(oom) == ("RuntimeError: [enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not "
                             "enough memory: you tried to allocate 687194767360 bytes.")
    assert describe(KeyError("model")) == "KeyError: 'model'"
    assert describe(MemoryError()) == "MemoryError"
    long = describe(RuntimeError("x" * 1000))
    assert len(long) == MAX_MESSAGE and long.endswith("\u2026") and "\n" not in long
    assert isinstance(Refused("over the limit"), ValueError)


def test_status_line_is_escaped_text():
    assert status_html("Transformer <enc> & co >= 1") == "Transformer &lt;enc> &amp; co >= 1"


def test_checks_name_the_parameter():
    assert check_text("input", "0110", 10) == "0110"
    with pytest.raises(Refused, match=r"expected input of at most 10 characters \(longer input is not run\), got 11"):
        check_text("input", "0" * 11, 10)
    with pytest.raises(TypeError, match=r"expected input as a str, got int"):
        check_text("input", 11, 10)
    assert check_number("temperature", 2, 0.25, 4.0) == 2.0
    for bad in (0.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match=rf"expected temperature as a number in \[0.25, 4\], got {bad!r}"):
            check_number("temperature", bad, 0.25, 4.0)


@pytest.fixture
def live_box():
    """A live hidden-state explorer on a real GRU, its text box, and its status line."""
    compute = rerun_model(SequenceRegressor("gru", hidden_size=4))
    explorer = HiddenStateExplorer(compute("0110"), compute=compute, initial_input="0110")
    explorer.layout  # noqa: B018
    status = explorer.status_widget()
    [box] = explorer.controls()
    return explorer, box, status


def figure_state(explorer: HiddenStateExplorer) -> tuple:
    return (explorer.data, {name: dict(src.data) for name, src in explorer.sources.items()},
            explorer.layout.select_one({"name": "step_caption"}).text)


def same_figures(a: tuple, b: tuple) -> bool:
    data_a, sources_a, caption_a = a
    data_b, sources_b, caption_b = b
    if data_a is not data_b or caption_a != caption_b or sources_a.keys() != sources_b.keys():
        return False
    return all(np.array_equal(np.asarray(x[k], dtype=object), np.asarray(y[k], dtype=object))
               for name in sources_a for x, y in [(sources_a[name], sources_b[name])] for k in x)


def test_an_unexpected_error_is_reported_and_the_controls_snap_back(live_box, monkeypatch):
    explorer, box, status = live_box
    before = figure_state(explorer)

    def out_of_memory(text):
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 687194767360 bytes.")

    monkeypatch.setattr(explorer, "compute", out_of_memory)
    box.value = "0101"
    assert status.value == explorer.last_error == ("Not updated: RuntimeError: DefaultCPUAllocator: not enough "
                                                   "memory: you tried to allocate 687194767360 bytes.")
    assert same_figures(figure_state(explorer), before)
    assert box.value == "0110" == explorer.settings["input"]  # the control shows what the figures show


def test_a_failure_while_drawing_puts_the_last_good_figures_back(live_box, monkeypatch):
    explorer, box, status = live_box
    before = figure_state(explorer)
    draw = explorer.on_update
    calls = []

    def fails_once(data):
        calls.append(data["hidden"].shape)
        if len(calls) == 1:
            raise IndexError("a widget could not take the new sizes")
        draw(data)

    monkeypatch.setattr(explorer, "on_update", fails_once)
    box.value = "1011101"  # the sources took the new data, then drawing failed: the old data comes back
    assert calls == [(7, 4), (4, 4)]
    assert status.value == "Not updated: IndexError: a widget could not take the new sizes"
    assert same_figures(figure_state(explorer), before) and box.value == "0110"


def test_a_refused_input_leaves_the_control_on_the_figures_setting(live_box):
    explorer, box, status = live_box
    box.value = "1x1"
    assert status.value.startswith("Not updated: encode_bits: expected only '0' and '1', got 'x'")
    assert box.value == explorer.settings["input"] == "0110" and explorer.data["hidden"].shape == (4, 4)
    box.value = "111"  # a good one after a bad one: the status line clears
    assert status.value == "" and box.value == explorer.settings["input"] == "111"
    assert explorer.data["hidden"].shape == (3, 4)


def test_a_paste_too_long_is_refused_before_the_model_runs(live_box, monkeypatch):
    explorer, box, status = live_box
    monkeypatch.setattr(HiddenStateExplorer, "max_text", 8)
    monkeypatch.setattr(explorer, "compute", lambda text: pytest.fail("the compute ran"))
    box.value = "0" * 9
    assert status.value == "Not updated: expected input of at most 8 characters (longer input is not run), got 9"
    assert box.value == "0110"
