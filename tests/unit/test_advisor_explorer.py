"""widgets.advisor: AdvisorExplorer shows memlib.advise's answers, in Python, in the page's JavaScript and live."""

from __future__ import annotations

import itertools
import json
import math

import ipywidgets
import numpy as np
import pytest
from bokeh.models import ColumnDataSource, CustomJS, Div, Select, Span
from jsparity import run_callback

from memlib.advise import advise, load_table
from widgets.advisor import (
    GRIDS,
    WIDTH,
    AdvisorExplorer,
    cell_advice,
    default_grids,
    prepare,
    round_values,
    thin,
    view,
    y_range,
)
from widgets.base import load_js, status_html


def model(label, lags, step, peak, latency, interpretability=None):
    return {"label": label, "params": 1000, "largest_lag": lags, "step_ms": step, "peak_mib": peak,
            "latency_ms": latency, "interpretability": interpretability}


def made_up() -> dict:
    """Six models like the benchmark's: the RNN fastest but solving lags up to 10; the Transformer's memory grows as
    T**2; the NTM measured at one length only; the Linformer skipped (empty lists); different lengths per metric."""
    lin = lambda c, ts=(50, 200, 1000): [[t, c * t] for t in ts]  # noqa: E731
    return {
        "suite": "compare",
        "summary": {
            "batch": 16,
            "models": {
                "rnn": model("RNN", {"adding": 10, "copy": 4}, lin(0.01), lin(0.01), lin(0.001)),
                "lstm": model("LSTM", {"adding": 100, "copy": 21}, lin(0.04), lin(0.04, (50, 200, 500, 1000)),
                              lin(0.004), 0.93),
                "gru": model("GRU", {"adding": 100, "copy": 30}, lin(0.03), lin(0.03, (50, 500)), lin(0.003)),
                "transformer": model("Transformer <enc>", {"adding": 1000, "copy": 1000}, lin(0.02),
                                     [[t, 0.001 * t * t] for t in (50, 200, 1000)], lin(0.002, (50, 1000))),
                "ntm": model("NTM", {"adding": 50, "copy": 50}, [[50, 30.0]], [[50, 5.0]], [[50, 1.0]]),
                "linformer": model("Linformer", {"adding": 0, "copy": 0}, [], [], []),
            },
        },
    }


GRID = {"seq_lens": [50, 100, 200, 1000, 2000], "dependency_ranges": [0, 10, 25, 100, 500],
        "memory_budgets": [1.0, 10.0, 100.0, math.inf], "latencies": [0.3, 2.0, math.inf]}


@pytest.fixture(scope="module")
def table() -> dict:
    return made_up()


@pytest.fixture(scope="module")
def data(table):
    return prepare(table, **GRID)


@pytest.fixture(scope="module")
def explorer(data, table) -> AdvisorExplorer:
    """Built once: only for tests that leave it as it is."""
    e = AdvisorExplorer(data, seq_len=200, dependency_range=25, memory_budget=10.0, latency=math.inf)
    e.layout  # noqa: B018
    return e


def cells(data):
    return itertools.product(*(range(len(data[g])) for g in GRIDS))


# Layer 1: prepare --------------------------------------------------------------------------------------------------


def test_the_prepared_lookup_is_advise_at_every_cell(table, data):
    n_valid = 0
    for s, d, b, l in cells(data):  # noqa: E741
        q = (int(data["seq_lens"][s]), int(data["dependency_ranges"][d]), float(data["memory_budgets"][b]),
             float(data["latencies"][l]))
        got = cell_advice(data, s, d, b, l)
        if q[1] > q[0]:
            with pytest.raises(ValueError) as info:
                advise(*q, table=table)
            assert not got["valid"] and got["error"] == str(info.value), q
            continue
        n_valid += 1
        a = advise(*q, table=table)
        assert got["valid"] and got["choice"] == a.choice, q
        assert got["candidates"] == [(c.key, c.feasible, c.reasons) for c in a.candidates], q
    assert n_valid > 250  # most cells ask a valid question
    choices = {cell_advice(data, *cell)["choice"] for cell in cells(data)}
    assert {"rnn", "transformer", "gru", None} <= choices  # the grid reaches different answers


def test_prepared_predictions_are_advises(table, data):
    a = advise(2000, 0, math.inf, math.inf, table=table)
    s = list(data["seq_lens"]).index(2000)
    keys = list(data["keys"])
    for c in a.candidates:
        m = keys.index(c.key)
        for k, metric in enumerate(("step_ms", "peak_mib", "latency_ms")):
            expected = -1.0 if c.predicted[metric] is None else c.predicted[metric]
            assert data[metric][s, m] == expected and data["extrapolated"][s, m, k] == c.extrapolated[metric]
    assert data["peak_mib_text"][s, keys.index("transformer")] == "4000 MiB (extrapolated)"
    assert data["peak_mib_text"][s, keys.index("ntm")] == "not measured"
    assert list(data["memory_budgets_labels"]) == ["1 MiB", "10 MiB", "100 MiB", "no limit"]


def test_default_grids_come_from_the_table(table):
    t = load_table(table)
    g = default_grids(t)
    assert g["seq_lens"] == [50, 200, 500, 1000]  # every measured length
    assert g["dependency_ranges"] == [0, 10, 50, 100, 1000]  # 0 and each model's largest lag
    assert g["memory_budgets"][-1] == math.inf and g["latencies"][-1] == math.inf
    # round budgets from below the smallest predicted peak (the RNN's 0.5 MiB at T=50: nothing fits) to above the
    # largest (the Transformer's 1000 MiB at T=1000: everything fits), then no limit
    assert g["memory_budgets"] == [0.2, 2.0, 20.0, 200.0, 2000.0, math.inf]
    assert g["latencies"][0] < 0.05 and 20.0 > g["latencies"][-2] >= 4.0  # latency: 0.05 ms to 4 ms
    data = prepare(table)
    assert [list(data[k]) for k in GRIDS] == [g[k] for k in GRIDS]
    # a table whose lengths change changes the grid
    other = made_up()
    for row in other["summary"]["models"].values():
        for metric in ("step_ms", "peak_mib", "latency_ms"):
            row[metric] = [[t * 2, v] for t, v in row[metric]]
    assert default_grids(load_table(other))["seq_lens"] == [100, 400, 1000, 2000]


def test_grid_helpers():
    assert thin(list(range(10)), 4) == [0, 3, 6, 9] and thin([1, 2], 6) == [1, 2]
    assert round_values(3.0, 40.0, 6) == [2.0, 5.0, 10.0, 20.0, 50.0]
    assert round_values(0.04, 0.04, 6) == [0.02, 0.05]


def test_a_quadratic_model_spans_decades_so_the_axis_is_log(explorer, data):
    assert explorer.fig.y_scale.__class__.__name__ == "LogScale"
    lo, hi = y_range(data, log=True)
    assert (explorer.fig.y_range.start, explorer.fig.y_range.end) == (lo, hi)
    assert lo <= 0.5 and hi >= 4000.0  # the RNN at T=50 and the Transformer at T=2000


def test_models_sharing_a_label_get_distinct_bars(table):
    t = made_up()
    t["summary"]["models"]["gru"]["label"] = "LSTM"
    e = AdvisorExplorer(prepare(t, **GRID))
    e.layout  # noqa: B018
    assert list(e.fig.x_range.factors) == ["RNN", "LSTM (lstm)", "LSTM (gru)", "Transformer <enc>", "NTM", "Linformer"]
    assert e.sources["advisor_bars"].data["x"] == list(e.fig.x_range.factors)


def test_a_narrow_table_gets_a_linear_axis():
    t = made_up()
    models = t["summary"]["models"]
    for key in ("transformer", "ntm", "linformer", "gru"):
        del models[key]
    data = prepare(t, seq_lens=[200, 300], dependency_ranges=[0], memory_budgets=[5.0], latencies=[math.inf])
    e = AdvisorExplorer(data)
    assert e.layout.select_one({"name": "advisor_figure"}).y_scale.__class__.__name__ == "LinearScale"
    assert e.fig.y_range.start == 0


# Layer 2: the static layout ------------------------------------------------------------------------------------


def test_layout_shows_the_advice(explorer, table):
    a = advise(200, 25, 10.0, math.inf, table=table)
    assert a.choice == "gru"  # the RNN solves lags up to 10 only; the Transformer needs 40 MiB
    assert "<b>Choose GRU</b> at T=200" in explorer.caption.text
    assert "memory budget: 10 MiB (one training step of 16 sequences)" in explorer.caption.text
    table_html = explorer.table_div.text
    assert "Transformer &lt;enc&gt;" in table_html  # labels are escaped
    for c in a.candidates:
        assert "; ".join(c.reasons).replace("<", "&lt;").replace(">", "&gt;") in table_html
    bars = explorer.sources["advisor_bars"].data
    keys = list(explorer.data["keys"])
    assert bars["color"][keys.index("gru")] == "#1b7837" and bars["color"][keys.index("rnn")] == "#d6604d"
    assert bars["top"][keys.index("transformer")] == pytest.approx(40.0)
    assert bars["text"][keys.index("linformer")] == "not measured"
    assert explorer.budget_line.location == 10.0


def test_layout_names_its_models_and_shares_one_customjs(explorer):
    layout = explorer.layout
    for key in ("seq_len", "dependency_range", "memory_budget", "latency"):
        select = layout.select_one({"name": f"advisor_{key}"})
        assert isinstance(select, Select), key
        assert select.js_property_callbacks["change:value"] == [explorer.callback]
    assert isinstance(explorer.callback, CustomJS)
    args = explorer.callback.args
    assert args["store"] is explorer.sources["advisor_store"] and args["bars"] is explorer.sources["advisor_bars"]
    assert args["caption"] is layout.select_one({"name": "advisor_caption"})
    assert args["table"] is layout.select_one({"name": "advisor_table"}) and isinstance(args["table"], Div)
    assert args["y"] is explorer.fig.y_range and isinstance(args["budget_line"], Span)
    assert args["seq"] is layout.select_one({"name": "advisor_seq_len"})
    for name in ("advisor_store", "advisor_bars"):
        assert isinstance(explorer.sources[name], ColumnDataSource)
    select = layout.select_one({"name": "advisor_memory_budget"})
    assert select.options[-1] == ("3", "no limit") and select.value == "1"


def _widths(obj):
    children = getattr(obj, "children", None)
    if children is None:
        return obj.width or 0
    sizes = [_widths(c) for c in children]
    return sum(sizes) if type(obj).__name__ == "Row" else max(sizes)


def test_at_most_660_px_wide(explorer):
    assert WIDTH == 660 and _widths(explorer.layout) <= 660
    assert explorer.fig.width <= 660


def test_static_html_uses_the_pages_bokehjs(explorer):
    page = explorer.static_html()
    assert "advisor_explorer" in page and "BEGIN bokeh.min.js" not in page and "cdn.bokeh.org" not in page
    assert len(page) < 200_000


def test_the_default_grid_page_stays_small(table):
    e = AdvisorExplorer(prepare(table))
    assert len(e.static_html()) < 200_000


# The page's JavaScript against the Python it mirrors -----------------------------------------------------------

ADVISOR_READ = "({bars: a.bars.data, caption: a.caption.text, table: a.table.text, line: a.budget_line.location})"


def test_the_pages_js_shows_what_python_shows_at_every_cell(explorer, data):
    assert explorer.callback.code == load_js("advisor")
    every = list(cells(data))
    cases = [{"seq": str(s), "dep": str(d), "mem": str(b), "lat": str(l)} for s, d, b, l in every]  # noqa: E741
    bottom = explorer.fig.y_range.start
    for cell, got in zip(every, run_callback(explorer.callback, cases, ADVISOR_READ), strict=True):
        v = view(data, *cell, bottom=bottom)
        assert got["caption"] == v["caption"], cell
        assert got["table"] == v["table"], cell
        assert got["bars"] == v["bars"], cell
        assert got["line"] == v["budget_line"], cell


# Layer 3: live, any value --------------------------------------------------------------------------------------


@pytest.fixture
def live(data, table) -> AdvisorExplorer:
    e = AdvisorExplorer(data, table=table, seq_len=200, dependency_range=25, memory_budget=10.0, latency=math.inf)
    e.layout  # noqa: B018
    e.status_widget()
    return e


def test_live_recompute_asks_advise_at_any_value(live, table):
    assert live.recompute({"seq_len": 333, "dependency_range": 300, "memory_budget": 1e6}) is True
    a = advise(333, 300, 1e6, math.inf, table=table)
    assert a.choice == "transformer" and live.advice() == a
    assert "<b>Choose Transformer &lt;enc&gt;</b> at T=333" in live.caption.text
    assert list(live.data["seq_lens"]) == [333] and live.last_error is None
    for c in a.candidates:
        assert "; ".join(c.reasons).replace("<", "&lt;").replace(">", "&gt;") in live.table_div.text
    assert live.budget_line.location == 1e6
    assert live.layout.select_one({"name": "advisor_seq_len"}).options == [("0", "T = 333")]
    assert live.recompute({"memory_budget": "inf", "latency": "0.01"}) is True
    assert live.budget_line.location is None and "No model meets every constraint" in live.caption.text


def test_live_refuses_bad_values_and_keeps_the_figures(live):
    before = (live.caption.text, dict(live.sources["advisor_bars"].data))
    for bad, message in [
        ({"seq_len": -3}, "expected seq_len as an int >= 1, got -3"),
        ({"dependency_range": 201}, "expected dependency_range <= seq_len (200)"),
        ({"memory_budget": "lots"}, "expected memory_budget as a number of MiB or 'inf' (no limit), got 'lots'"),
        ({"latency": 0.0}, "expected latency as a number of ms > 0"),
        ({"colour": 1}, "expected settings among"),
        (["seq_len", 5], "expected a dict of settings"),
    ]:
        assert live.recompute(bad) is False, bad
        assert message in live.last_error, (bad, live.last_error)
        assert live.status_widget().value == status_html(live.last_error)
        assert (live.caption.text, dict(live.sources["advisor_bars"].data)) == before


def test_live_controls_change_the_advice(live):
    boxes = live.controls()
    assert not live.controls_box.visible  # the ipywidgets drive the figures
    seq, dep = boxes[0].children
    mem, lat = boxes[1].children
    assert isinstance(seq, ipywidgets.IntText) and isinstance(mem, ipywidgets.Text)
    assert "<b>Choose GRU</b>" in live.caption.text
    dep.value = 5  # the RNN now qualifies, and it is the fastest
    assert "<b>Choose RNN</b> at T=200" in live.caption.text and live.settings["dependency_range"] == 5
    mem.value = "1.5"  # the RNN needs 2 MiB at T=200
    assert "<b>No model meets every constraint</b>" in live.caption.text
    assert live.budget_line.location == 1.5
    seq.value = 100  # 1 MiB now
    assert "<b>Choose RNN</b> at T=100" in live.caption.text
    lat.value = "abc"
    assert live.last_error is not None and live.settings["latency"] == math.inf
    assert lat.value == "inf"  # back on the limit the figures show


def agree(live: AdvisorExplorer, boxes: list) -> tuple:
    """The boxes show the settings, and the caption is the advice for them."""
    seq, dep = boxes[0].children
    mem, lat = boxes[1].children
    s = live.settings
    shown = (seq.value, dep.value, mem.value, lat.value)
    assert shown == (s["seq_len"], s["dependency_range"], "inf" if math.isinf(s["memory_budget"]) else
                     repr(float(s["memory_budget"])), "inf" if math.isinf(s["latency"]) else repr(float(s["latency"])))
    assert f"T={s['seq_len']}" in live.caption.text
    return shown


def test_an_unexpected_error_is_reported_and_the_boxes_snap_back(live, monkeypatch):
    boxes = live.controls()
    before = agree(live, boxes)
    caption, bars = live.caption.text, dict(live.sources["advisor_bars"].data)

    def broken(settings):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(live, "compute", broken)
    seq, dep = boxes[0].children
    mem, lat = boxes[1].children
    for box, value in ((seq, 400), (dep, 3), (mem, "5"), (lat, "0.5")):
        box.value = value
        assert live.last_error == "Not updated: ZeroDivisionError: float division by zero"
        assert (live.caption.text, dict(live.sources["advisor_bars"].data)) == (caption, bars)
        assert agree(live, boxes) == before


def test_refused_values_leave_the_boxes_on_the_figures_settings(live):
    boxes = live.controls()
    seq, dep = boxes[0].children
    mem, _ = boxes[1].children
    mem.value = "1e6"  # a good change: shown as advise took it
    good = agree(live, boxes)
    assert good[2] == "1000000.0"
    for box, value in ((seq, -3), (dep, 201), (mem, "lots")):
        box.value = value
        assert live.last_error.startswith("Not updated: ") and "expected" in live.last_error
        assert agree(live, boxes) == good
    mem.value = "9" * (live.max_text + 1)
    assert live.last_error.startswith(f"Not updated: expected memory_budget of at most {live.max_text} characters")
    assert agree(live, boxes) == good


def test_live_widget_holds_the_controls_and_the_layout(live):
    box = live.live_widget()
    assert isinstance(box, ipywidgets.VBox) and len(box.children) == 4  # two rows of boxes, status, the layout


def test_for_table_goes_live(table, tmp_path):
    path = tmp_path / "compare.json"
    path.write_text(json.dumps(table))
    e = AdvisorExplorer.for_table(path, seq_lens=[50, 200], dependency_ranges=[0], memory_budgets=[100.0],
                                  latencies=[math.inf], seq_len=50)
    assert e.settings == {"seq_len": 50, "dependency_range": 0, "memory_budget": 100.0, "latency": math.inf}
    assert e.recompute({"seq_len": 4000}) is True
    assert e.advice() == advise(4000, 0, 100.0, math.inf, table=table)


# Errors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"seq_lens": []}, ValueError, r"expected seq_lens as a non-empty list, got \[\]"),
        ({"seq_lens": 200}, ValueError, r"expected seq_lens as a non-empty list, got 200"),
        ({"seq_lens": [200, 0]}, ValueError, r"seq_lens\[1\]: advise: expected seq_len as an int >= 1, got 0"),
        ({"seq_lens": [200.5]}, TypeError, r"seq_lens\[0\]: advise: expected seq_len as an int >= 1, got 200.5"),
        ({"seq_lens": [200, 200]}, ValueError, r"expected distinct seq_lens, got \[200, 200\]"),
        ({"dependency_ranges": [-1]}, ValueError, r"dependency_ranges\[0\]: .*dependency_range as an int >= 0"),
        ({"memory_budgets": [0.0]}, ValueError, r"memory_budgets\[0\]: .*memory_budget as a number of MiB > 0"),
        ({"latencies": [math.nan]}, ValueError, r"latencies\[0\]: .*latency as a number of ms > 0 .*got nan"),
        ({"latencies": ["fast"]}, TypeError, r"latencies\[0\]: .*got 'fast' \(str\)"),
    ],
)
def test_prepare_says_what_it_expected(table, kwargs, error, match):
    with pytest.raises(error, match=match):
        prepare(table, **{**GRID, **kwargs})


def test_prepare_checks_the_table(table):
    with pytest.raises(TypeError, match=r"expected table as the benchmark's data"):
        prepare([1, 2])
    bad = made_up()
    del bad["summary"]["models"]["rnn"]["step_ms"]
    with pytest.raises(ValueError, match=r"expected key summary.models.rnn.step_ms, missing"):
        prepare(bad)
    empty = made_up()
    for row in empty["summary"]["models"].values():
        row["step_ms"] = row["peak_mib"] = row["latency_ms"] = []
    with pytest.raises(ValueError, match=r"expected at least one measured length .* pass seq_lens"):
        prepare(empty)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"seq_len": 300}, r"expected seq_len one of \[50, 100, 200, 1000, 2000\] \(the prepared grid\), got 300"),
        ({"memory_budget": 5.0}, r"expected memory_budget one of \[1.0, 10.0, 100.0, inf\]"),
        ({"latency": 1.0}, r"expected latency one of"),
    ],
)
def test_constructor_says_what_it_expected(data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdvisorExplorer(data, **kwargs)


def test_constructor_wants_prepared_data():
    with pytest.raises(ValueError, match=r"expected data from AdvisorExplorer.prepare"):
        AdvisorExplorer({"keys": np.array(["x"])})


def test_a_static_explorer_cannot_go_live(data):
    e = AdvisorExplorer(data)
    with pytest.raises(RuntimeError, match=r"no table or compute function"):
        e.recompute({"seq_len": 2})
    assert e.advice() is None
