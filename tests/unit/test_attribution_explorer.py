"""widgets.attribution: AttributionExplorer's three layers, and its page JavaScript against the Python mirror."""

from __future__ import annotations

import ipywidgets
import numpy as np
import pytest
from bokeh.models import CustomJS, Select
from jsparity import run_callback

from widgets.attribution import MAX_STEPS, PALETTE, WIDTH, AttributionExplorer, color_of, fmt, saliency_html
from widgets.base import load_js, status_html

TEXTS = ["the film was not good at all", "a truly great and moving story indeed",
         "dull plot but fine acting <ok> overall"]
TOKENS = [t.split() for t in TEXTS]  # E = 3 examples of T = 7 tokens
TARGETS = ["negative", "positive"]


def text_attributions(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"integrated_gradients": rng.normal(size=(3, 2, 7)), "saliency": np.abs(rng.normal(size=(3, 2, 7))),
            "occlusion": rng.normal(size=(3, 2, 7)) * 1e-3}


@pytest.fixture(scope="module")
def text_data():
    return AttributionExplorer.prepare(text_attributions(), TOKENS, TARGETS, predictions=["negative", "positive",
                                       "positive"], labels=["negative", "positive", "negative"],
                                       outputs=np.random.default_rng(1).normal(size=(3, 2)))


@pytest.fixture(scope="module")
def series_data():
    rng = np.random.default_rng(2)
    return AttributionExplorer.prepare({"ig": rng.normal(size=(4, 30)), "deeplift": rng.normal(size=(4, 30))},
                                       rng.normal(size=(4, 30, 2)), labels=[0.5, 1.25, 2, 3])


@pytest.fixture(scope="module")
def text_explorer(text_data) -> AttributionExplorer:
    """Built once: only for tests that leave it as it is."""
    return AttributionExplorer(text_data, target="positive", example=1)


@pytest.fixture(scope="module")
def series_explorer(series_data) -> AttributionExplorer:
    return AttributionExplorer(series_data)


# Layer 1: prepare -----------------------------------------------------------------------------------------


def test_prepare_text_and_series(text_data, series_data):
    assert text_data["attributions"].shape == (3, 3, 2, 7)  # (M, E, C, T)
    assert list(text_data["methods"]) == ["integrated_gradients", "saliency", "occlusion"]
    assert list(text_data["targets"]) == TARGETS and str(text_data["kind"]) == "text"
    assert text_data["tokens"].shape == (3, 7) and text_data["outputs"].shape == (3, 2)
    assert series_data["attributions"].shape == (2, 4, 1, 30) and list(series_data["targets"]) == ["output"]
    assert series_data["series"].shape == (4, 30, 2) and str(series_data["kind"]) == "series"
    assert list(series_data["labels"]) == ["0.5", "1.25", "2", "3"] and list(series_data["predictions"]) == [""] * 4


def test_prepare_reads_attribution_tuples_and_tensors():
    import torch

    class Attribution:  # the fields of memlib.interpret.Attribution that the explorer reads
        def __init__(self, per_step):
            self.per_step = per_step

    per_step = torch.randn(2, 5, requires_grad=True)
    data = AttributionExplorer.prepare({"ig": Attribution(per_step)}, torch.randn(2, 5, 3))
    np.testing.assert_allclose(data["attributions"][0, :, 0], per_step.detach().numpy(), rtol=1e-6)
    assert data["series"].shape == (2, 5, 3)


@pytest.mark.parametrize(
    "change,error,match",
    [
        ({"attributions": {}}, ValueError, r"expected at least one method in attributions, got an empty dict"),
        ({"attributions": [np.zeros((3, 7))]}, TypeError, r"expected attributions as a dict of method name"),
        ({"attributions": {"ig": np.zeros((3, 2, 7)), "sal": np.zeros((3, 2, 6))}}, ValueError,
         r"expected every method's attributions of shape \(E, C, T\) = \(3, 2, 7\) \(as 'ig'\), got \(3, 2, 6\) "
         r"for 'sal'"),
        ({"attributions": {"ig": np.zeros(7)}}, ValueError, r"attributions\['ig'\]: expected shape \(E, C, T\) or "
                                                           r"\(E, T\).*got \(7,\)"),
        ({"attributions": {"ig": np.full((3, 2, 7), np.nan)}}, ValueError, r"expected finite values"),
        ({"attributions": {"ig": np.zeros((3, 2, 8))}}, ValueError,
         r"expected 8 tokens in example 0 \(attributions' T\), got 7"),
        ({"inputs": TOKENS[:2]}, ValueError, r"expected 3 token lists \(one per example\), got 2"),
        ({"inputs": np.zeros((3, 9))}, ValueError, r"expected inputs of shape \(E, T\) or \(E, T, F\) with E = 3 "
                                                   r"and T = 7 .*got \(3, 9\)"),
        ({"inputs": "the film"}, TypeError, r"expected inputs as E token lists .*got str"),
        ({"targets": ["neg"]}, ValueError, r"expected 2 distinct target names \(attributions' C\), got \['neg'\]"),
        ({"targets": ["a", "a"]}, ValueError, r"expected 2 distinct target names"),
        ({"predictions": ["x"]}, ValueError, r"expected 3 predictions \(one per example\), got 1"),
        ({"outputs": np.zeros((3, 3))}, ValueError, r"expected outputs of shape \(3, 2\) .*got \(3, 3\)"),
    ],
)
def test_prepare_says_what_it_expected(change, error, match):
    args = {"attributions": text_attributions(), "inputs": TOKENS, "targets": TARGETS, **change}
    with pytest.raises(error, match=match):
        AttributionExplorer.prepare(args.pop("attributions"), args.pop("inputs"), args.pop("targets"), **args)


def test_constructor_checks_names(text_data):
    with pytest.raises(ValueError, match=r"expected target in \['negative', 'positive'\], got 'neutral'"):
        AttributionExplorer(text_data, target="neutral")
    with pytest.raises(ValueError, match=r"expected method in \['integrated_gradients', .*got 'shap'"):
        AttributionExplorer(text_data, method="shap")
    with pytest.raises(ValueError, match=r"expected example an integer in \[0, 3\), got 3"):
        AttributionExplorer(text_data, example=3)


# Layer 2: the static layout --------------------------------------------------------------------------------


def test_text_layout_holds_the_selection(text_explorer, text_data):
    layout = text_explorer.layout
    for name in ("attribution_method_select", "attribution_target_select", "attribution_example_select",
                 "attribution_caption", "attribution_text", "attribution_bars_figure", "attribution_methods_figure"):
        assert layout.select_one({"name": name}) is not None, name
    assert layout.select_one({"name": "attribution_target_select"}).value == "positive"
    bars = text_explorer.sources["attribution_bars"].data
    np.testing.assert_allclose(bars["value"], text_data["attributions"][0, 1, 1], rtol=1e-6)  # float32 in the page
    assert bars["token"] == TOKENS[1]
    store = text_explorer.sources["attribution_store"].data
    r = (2 * 3 + 1) * 2 + 1  # (method 2, example 1, target 1)
    assert (store["method"][r], store["example"][r], store["target"][r]) == (2, 1, 1)
    np.testing.assert_allclose(store["values"][r], text_data["attributions"][2, 1, 1], rtol=1e-6)
    assert store["values"][r].dtype == np.float32
    cells = text_explorer.sources["attribution_cells"].data
    assert len(cells["value"]) == 3 * 7 and max(abs(v) for v in cells["value"][14:]) == pytest.approx(1)
    vals = text_data["attributions"][0, 1, 1]
    caption = layout.select_one({"name": "attribution_caption"}).text
    assert caption.startswith("<b>example 2 of 3</b>, integrated_gradients, target <b>positive</b>: prediction "
                              "<b>positive</b>, label positive, output ")
    assert f"Sum of attributions {fmt(float(vals.astype(np.float32).astype(float).sum()), 2)}" in caption
    assert f'most positive &quot;{TOKENS[1][int(np.argmax(vals))]}&quot;' in caption
    chip = layout.select_one({"name": "attribution_text"}).text
    assert chip.count("<span") == 7 and "moving" in chip
    assert not layout.select_one({"name": "attribution_series_figure"}).visible


def test_series_layout_draws_the_input_beside(series_explorer, series_data):
    layout = series_explorer.layout
    assert layout.select_one({"name": "attribution_series_figure"}).visible
    assert not layout.select_one({"name": "attribution_text"}).visible
    series = series_explorer.sources["attribution_series"].data
    assert len(series["ys"]) == 2 and len(series["ys"][1]) == 30
    np.testing.assert_allclose(series["ys"][1], series_data["series"][0, :, 1], rtol=1e-6)
    assert series_explorer.sources["attribution_bars"].data["token"][3] == "step 3"
    assert "target <b>output</b>: label 0.5. Sum of" in layout.select_one({"name": "attribution_caption"}).text


def test_selectors_drive_one_customjs_and_fit_the_column(text_explorer, series_explorer):
    for explorer in (text_explorer, series_explorer):
        layout = explorer.layout
        selects = [layout.select_one({"name": f"attribution_{n}_select"}) for n in ("method", "target", "example")]
        assert all(isinstance(s, Select) for s in selects)
        [callback] = selects[0].js_property_callbacks["change:value"]
        assert isinstance(callback, CustomJS)
        assert all(s.js_property_callbacks["change:value"] == [callback] for s in selects)
        for fig in (explorer.bars_fig, explorer.cells_fig, explorer.series_fig):
            assert fig.width <= WIDTH
        assert sum(s.width for s in selects) <= WIDTH
    assert text_explorer.example_select.options[2] == ("2", "3: dull plot but fine acting <\u2026 (negative)")


def test_static_html_is_light(text_explorer):
    page = text_explorer.static_html()
    assert "attribution_store" in page and "BEGIN bokeh.min.js" not in page and "cdn.bokeh.org" not in page
    big = AttributionExplorer.prepare({m: np.random.default_rng(0).normal(size=(8, 2, 64)) for m in "abcd"},
                                      [[f"w{i}" for i in range(64)]] * 8, ["x", "y"])
    assert len(AttributionExplorer(big).static_html()) < 400_000


def test_colours_diverge_at_zero_and_escape_tokens():
    assert color_of(0.0, 1.0) in (PALETTE[127], PALETTE[128])
    assert color_of(-1.0, 1.0) == PALETTE[0] and color_of(1.0, 1.0) == PALETTE[255]
    red, blue = PALETTE[255], PALETTE[0]  # positive attributions red, negative blue
    assert int(red[1:3], 16) > int(red[5:7], 16) and int(blue[5:7], 16) > int(blue[1:3], 16)
    assert "&lt;b&gt;" in saliency_html(["<b>"], [0.5], 1.0, 2)
    assert [fmt(-0.0001, 2), fmt(-0.0, 2), fmt(1.005, 2), fmt(-1.25, 1)] == ["-0.00", "0.00", "1.00", "-1.3"]  # toFixed


# The page's JavaScript against the Python it mirrors -------------------------------------------------------

ATTRIBUTION_READ = """({bars: a.bars.data, cells: a.cells.data, text: a.text.text, caption: a.caption.text,
  low: a.mapper.low, high: a.mapper.high, series: a.series.data})"""


def _run_js(explorer, cases):
    explorer.layout  # noqa: B018 (the callback is made with the layout)
    assert explorer.callback.code == load_js("attribution")
    return run_callback(explorer.callback, cases, ATTRIBUTION_READ)


def test_the_pages_js_switches_method_target_and_example(text_explorer, text_data):
    cases = [{"method": "saliency", "target": "negative", "example": "0"},
             {"method": "occlusion", "target": "positive", "example": "2"},  # tiny values: more decimals
             {"method": "integrated_gradients", "target": "positive", "example": "1"}]
    methods = list(text_data["methods"])
    for case, got in zip(cases, _run_js(text_explorer, cases), strict=True):
        m, c, e = methods.index(case["method"]), TARGETS.index(case["target"]), int(case["example"])
        view = AttributionExplorer.view(text_data, m, c, e)
        assert got["bars"]["value"] == view["values"], case  # the same doubles
        assert got["bars"]["token"] == TOKENS[e]
        assert (got["low"], got["high"]) == (-view["scale"], view["scale"])
        assert got["cells"] == view["cells"], case
        assert got["text"] == view["text"], case
        assert got["caption"] == view["caption"], case


def test_the_bars_token_labels_in_the_pages_js(text_explorer):
    formatter = text_explorer.layout.select_one({"name": "attribution_bars_figure"}).xaxis[0].formatter
    assert formatter.code == load_js("attribution_token_tick")
    tokens = list(text_explorer.sources["attribution_bars"].data["token"])
    ticks = [0, 2, len(tokens) - 1, len(tokens)]  # the last one past the tokens: no label
    labels = run_callback(formatter, [{"tick": k} for k in ticks], "r")
    assert labels == [tokens[k] if k < len(tokens) else "" for k in ticks]


def test_the_pages_js_draws_the_chosen_sequence(series_explorer, series_data):
    cases = [{"method": "deeplift", "example": "3"}, {"method": "ig", "example": "1"}]
    for case, got in zip(cases, _run_js(series_explorer, cases), strict=True):
        m, e = ["ig", "deeplift"].index(case["method"]), int(case["example"])
        view = AttributionExplorer.view(series_data, m, 0, e)
        assert got["bars"]["value"] == view["values"] and got["caption"] == view["caption"], case
        assert got["text"] == "" and got["cells"] == view["cells"]
        np.testing.assert_array_equal(got["series"]["ys"][0], series_data["series"][e, :, 0].astype(np.float32))


# Layer 3: live --------------------------------------------------------------------------------------------


def page_recompute(tokens):
    """What a page supplies: tokens -> method -> (C, T); fails on digits, returns garbage on 'garbage'."""
    if any(t.isdigit() for t in tokens):
        raise RuntimeError("the model has no digits in its vocabulary")
    if "garbage" in tokens:
        return {"ig": np.zeros((2, len(tokens) + 1))}  # wrong T
    T = len(tokens)
    ig = np.stack([np.linspace(-1, 1, T), np.linspace(1, -1, T)])
    return {"integrated_gradients": ig, "saliency": np.abs(ig)}, "positive"


@pytest.fixture
def live(text_data) -> AttributionExplorer:
    explorer = AttributionExplorer(text_data, page_recompute, target="positive")
    explorer.layout  # noqa: B018 (built first, as show() does)
    explorer.status_widget()
    return explorer


def test_live_recompute_shows_the_new_text(live):
    [box] = live.controls()
    assert isinstance(box, ipywidgets.Text) and box.value == TEXTS[0]
    box.value = "memory is all you need"
    assert live.last_error is None
    assert live.data["attributions"].shape == (2, 1, 2, 5)
    assert live.sources["attribution_bars"].data["token"] == ["memory", "is", "all", "you", "need"]
    np.testing.assert_allclose(live.sources["attribution_bars"].data["value"], np.linspace(1, -1, 5))  # positive
    assert live.method_select.options == ["integrated_gradients", "saliency"]
    assert live.example_select.options == [("0", "1: memory is all you need")]
    assert "prediction <b>positive</b>" in live.caption_div.text
    assert live.x_range.end == 4.5 and live.mapper.high == 1.0


@pytest.mark.parametrize("text,message", [
    ("call 911 now", "Not updated: RuntimeError: the model has no digits in its vocabulary"),
    ("this is garbage", "expected 4 tokens in example 0 (attributions' T), got 3"),
    ("   ", "Not updated: expected at least one token, got an empty text"),
])
def test_live_reports_bad_results_and_keeps_the_view(live, text, message):
    before, bars = live.data, list(live.sources["attribution_bars"].data["value"])
    assert live.recompute(text) is False
    assert live.data is before and list(live.sources["attribution_bars"].data["value"]) == bars
    assert message in live.last_error and live.status_widget().value == status_html(live.last_error)
    assert live.recompute("a good one") is True and live.last_error is None  # and it recovers


def test_live_series_picker(series_data):
    seen = []

    def recompute(seq):
        seen.append(seq.shape)
        if seq[0, 0] > 100:
            return "not a dict"
        return {"ig": seq.sum(-1), "deeplift": -seq.sum(-1)}

    explorer = AttributionExplorer(series_data, recompute, candidates=series_data["series"][:3])
    explorer.layout  # noqa: B018
    [picker] = explorer.controls()
    assert isinstance(picker, ipywidgets.Dropdown) and len(picker.options) == 3
    picker.value = 2
    assert seen == [(30, 2)] and explorer.last_error is None
    np.testing.assert_allclose(explorer.data["attributions"][0, 0, 0], series_data["series"][2].sum(-1))
    np.testing.assert_allclose(explorer.sources["attribution_series"].data["ys"][0], series_data["series"][2, :, 0],
                               rtol=1e-6)
    explorer.candidates[1, 0, 0] = 1000
    picker.value = 1
    assert explorer.last_error.startswith("Not updated: expected recompute to return a dict")
    assert picker.value == explorer.settings["sequence"] == 2  # back on the sequence the figures show
    with pytest.raises(RuntimeError, match="no recompute function"):
        AttributionExplorer(series_data).recompute(series_data["series"][0])
    with pytest.raises(ValueError, match=r"expected series data .*got text data"):
        AttributionExplorer(series_data).update(AttributionExplorer.prepare(text_attributions(), TOKENS, TARGETS))


# One failure path: any error, the last good figures, the controls back on them ---------------------------------


def test_an_unexpected_error_is_reported_and_the_text_box_snaps_back(live, monkeypatch):
    [box] = live.controls()
    box.value = "memory is all you need"
    data, bars = live.data, list(live.sources["attribution_bars"].data["value"])
    caption = live.caption_div.text

    def lost(tokens):
        raise OSError("the checkpoint file went away")

    monkeypatch.setattr(live, "user_recompute", lost)
    box.value = "another sentence"
    assert live.last_error == "Not updated: OSError: the checkpoint file went away" == live.status_widget().value
    assert live.data is data and list(live.sources["attribution_bars"].data["value"]) == bars
    assert live.caption_div.text == caption
    assert box.value == live.settings["text"] == "memory is all you need"
    assert live.sources["attribution_bars"].data["token"] == box.value.split()  # the box shows what the bars show


def test_too_many_tokens_or_steps_are_refused_before_recompute(live, series_data, monkeypatch):
    [box] = live.controls()
    ran = []
    monkeypatch.setattr(live, "user_recompute", lambda tokens: ran.append(tokens))
    box.value = " ".join(["word"] * 65)
    assert live.last_error == ("Not updated: expected at most 64 tokens in text (no more bars fit, so the model is not "
                               "run), got 65")
    monkeypatch.setattr(AttributionExplorer, "max_text", 12)
    box.value = "a short text"  # 12 characters: it runs (and returns nothing usable)
    box.value = "a longer text"
    assert live.last_error == "Not updated: expected text of at most 12 characters (longer input is not run), got 13"
    assert ran == [["a", "short", "text"]] and box.value == live.settings["text"] == TEXTS[0]
    series = AttributionExplorer(series_data, lambda seq: ran.append(seq))
    assert series.recompute(np.zeros((MAX_STEPS + 1, 2))) is False
    assert series.last_error == ("Not updated: expected sequence of 1 to 1024 steps of 1 to 10 features (what the "
                                 "figures draw, so the model is not run beyond it), got shape (1025, 2)")
    assert series.recompute({"sequence": 9}) is False
    assert series.last_error == "Not updated: expected sequence an index in [0, 4) (the candidates), got 9"
    assert series.recompute({"text": "a"}) is False
    assert series.last_error == "Not updated: expected the setting 'sequence' for series data, got ['text']"
    assert len(ran) == 1
