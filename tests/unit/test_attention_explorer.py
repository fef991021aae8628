"""widgets.attention: AttentionExplorer's three layers, and its masks against memlib's."""

from __future__ import annotations

import dataclasses
import zlib

import ipywidgets
import numpy as np
import pytest
import torch
from bokeh.models import Column, ColumnDataSource, CustomJS, Row, Select, Slider
from jsparity import run_callback

import memlib
from memlib.attention import causal_mask
from widgets.attention import (
    AXIS_FRAME_PX,
    LABEL_PX,
    PATTERNS,
    AttentionExplorer,
    PatternParams,
    bigbird_order,
    cross_text,
    fixed,
    format_bytes,
    memory_text,
    pattern_allowed,
    pattern_pairs,
)
from widgets.base import load_js

TOKENS = "the cat that the dog chased sat on the mat".split()  # T = 10, "the" three times


def softmax_maps(L: int = 2, H: int = 3, T: int = 10, seed: int = 0) -> np.ndarray:
    """(L, H, T, T) random rows that sum to 1."""
    scores = np.random.default_rng(seed).normal(size=(L, H, T, T))
    e = np.exp(scores)
    return e / e.sum(-1, keepdims=True)


def linformer_maps(H: int = 3, T: int = 10, k: int = 4, seed: int = 1) -> np.ndarray:
    return softmax_maps(1, H, T, seed)[0, :, :, :k] / softmax_maps(1, H, T, seed)[0, :, :, :k].sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    return AttentionExplorer.prepare(softmax_maps(), TOKENS, linformer_weights=linformer_maps(),
                                     projection=np.random.default_rng(2).normal(size=(4, 16)))


@pytest.fixture(scope="module")
def explorer(data) -> AttentionExplorer:
    """Built once: only for tests that leave it as it is."""
    return AttentionExplorer(data, pattern="sliding_window")


# Layer 1: prepare -------------------------------------------------------------------------------------


def test_prepare_returns_plain_arrays(data):
    assert data["weights"].shape == (2, 3, 10, 10) and data["weights"].dtype == np.float64
    assert list(data["tokens"]) == TOKENS
    assert data["linformer_weights"].shape == (3, 10, 4)
    assert data["projection"].shape == (4, 10)  # the first T columns of E (k, n)


def test_prepare_takes_tensors_and_fully_masked_rows():
    w = torch.tensor(softmax_maps(1, 2, 5), dtype=torch.float32, requires_grad=True)
    with torch.no_grad():
        w[0, 1, 3] = 0  # a query whose every key was masked: memlib gives it zero weights
    data = AttentionExplorer.prepare(w, list("abcde"))
    np.testing.assert_allclose(data["weights"], w.detach().numpy(), rtol=1e-6)
    assert AttentionExplorer.prepare(softmax_maps(1, 1, 3), np.array(["x", "y", "z"]))["tokens"].shape == (3,)


def with_row(value: float) -> np.ndarray:
    w = softmax_maps()
    w[1, 2, 4] = value
    return w


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"weights": softmax_maps()[0]}, ValueError, r"weights: expected shape \(L, H, T, T\).*got \(3, 10, 10\)"),
        ({"weights": softmax_maps()[..., :9]}, ValueError, r"expected square query x key maps .*Tq = 10 and Tk = 9"),
        ({"weights": np.zeros((1, 0, 10, 10))}, ValueError, r"expected weights of shape \(L>0, H>0, T>0, T>0\)"),
        ({"tokens": TOKENS[:9]}, ValueError, r"expected 10 tokens \(one per query and key\), got 9"),
        ({"tokens": "the cat"}, TypeError, r"expected tokens as a list of 10 strings, got str"),
        ({"tokens": [*TOKENS[:9], 3]}, TypeError, r"expected every token a string, got int at 9"),
        ({"weights": with_row(np.nan)}, ValueError, r"weights: expected finite values, got 10 NaN/inf entries"),
        ({"weights": with_row(0.2)}, ValueError,
         r"expected each row to sum to 1 \(or be all zero: a fully masked query\), got 2 at layer 1, head 2, "
         r"query 4 \(1 such rows\)"),
        ({"weights": -softmax_maps()}, ValueError, r"expected non-negative weights \(a softmax\), got -0\.\d+ at "
                                                   r"layer \d, head \d, query \d, key \d"),
        ({"weights": [["a"]]}, TypeError, r"weights: expected numbers of shape \(L, H, T, T\)"),
        ({"max_tokens": 8}, ValueError, r"at most max_tokens = 8 tokens, got 10: shorten the text"),
        ({"linformer_weights": linformer_maps(H=2)}, ValueError,
         r"expected linformer_weights of shape \(1 or 3, 10, k>0\), got \(2, 10, 4\)"),
        ({"linformer_weights": linformer_maps() * 2}, ValueError,
         r"linformer_weights: expected each row to sum to 1 .*got 2 at head 0, query 0"),
        ({"projection": np.zeros((4, 10))}, ValueError, r"expected linformer_weights with the projection"),
        ({"linformer_weights": linformer_maps(), "projection": np.zeros((5, 10))}, ValueError,
         r"expected projection E of shape \(4, n >= 10\), got \(5, 10\)"),
        ({"linformer_weights": linformer_maps(), "projection": np.zeros((4, 9))}, ValueError,
         r"expected projection E of shape \(4, n >= 10\), got \(4, 9\)"),
    ],
)
def test_prepare_says_what_it_expected(kwargs, error, match):
    args = {"weights": softmax_maps(), "tokens": TOKENS, **kwargs}
    with pytest.raises(error, match=match):
        AttentionExplorer.prepare(args.pop("weights"), args.pop("tokens"), **args)


# from_trace on real memlib models ---------------------------------------------------------------------


def encoder(d: int = 16, heads: int = 2, layers: int = 2) -> memlib.TransformerEncoder:
    torch.manual_seed(0)
    layer = memlib.TransformerEncoderLayer(d, heads, 32, dropout=0.0, batch_first=True)
    return memlib.TransformerEncoder(layer, layers).eval()


def test_from_trace_stacks_the_layers_of_a_real_encoder():
    model, x = encoder(), torch.randn(3, 10, 16)  # (B, T, D)
    with memlib.trace() as tr:
        model(x)
    data = AttentionExplorer.from_trace(tr, TOKENS, sample=1)
    assert data["weights"].shape == (2, 2, 10, 10)  # (L, H, T, T)
    for layer in range(2):
        np.testing.assert_allclose(data["weights"][layer], tr["attention.weights"][layer][1].numpy(), rtol=1e-6)
    assert "linformer_weights" not in data


def test_from_trace_reads_linformer_and_its_projection():
    x = torch.randn(1, 10, 16)
    linformer = memlib.LinformerAttention(16, 2, seq_len=12, k=3, batch_first=True)
    with memlib.trace() as tr:
        encoder()(x)
        linformer(x, x, x)
    data = AttentionExplorer.from_trace(tr, TOKENS, projection=linformer.E.detach())
    np.testing.assert_allclose(data["linformer_weights"], tr.last("linformer.weights")[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(data["projection"], linformer.E.detach()[:, :10].numpy(), rtol=1e-6)


def test_from_trace_says_what_is_wrong():
    model = encoder()
    with memlib.trace() as tr:
        model(torch.randn(2, 10, 16))
    with pytest.raises(ValueError, match=r"expected 'luong.weights' in the trace .*got names \['attention.weights'\]"):
        AttentionExplorer.from_trace(tr, TOKENS, name="luong.weights")
    with pytest.raises(ValueError, match=r"expected sample in \[0, 2\) \(the batch\), got 2"):
        AttentionExplorer.from_trace(tr, TOKENS, sample=2)
    with pytest.raises(ValueError, match=r"expected 10 tokens"):
        AttentionExplorer.from_trace(tr, TOKENS[:4])
    with memlib.trace() as two_calls:
        model(torch.randn(1, 10, 16))
        model(torch.randn(1, 6, 16))
    with pytest.raises(ValueError, match=r"of one shape \(B, H, T, T\) \(one call of the model\), got \[\("):
        AttentionExplorer.from_trace(two_calls, TOKENS)


# The masks and their costs, against memlib ---------------------------------------------------------------


@pytest.mark.parametrize("T,window,n_global", [(10, 1, 1), (10, 2, 0), (7, 1, 2), (12, 3, 3), (5, 6, 1)])
def test_sliding_window_mask_is_memlibs(T, window, n_global):
    attn = memlib.SlidingWindowAttention(8, 2, window=window, global_tokens=range(n_global))
    allowed = pattern_allowed("sliding_window", T, PatternParams(window=window, n_global=n_global))
    np.testing.assert_array_equal(allowed, ~attn.mask(T).numpy())


def test_causal_and_full_masks():
    np.testing.assert_array_equal(pattern_allowed("causal", 9, PatternParams()), ~causal_mask(9).numpy())
    assert pattern_allowed("full", 4, PatternParams()).all() and pattern_allowed("linformer", 4, PatternParams()).all()


BIGBIRD_CASES = [  # (T, block, window radius in blocks, global blocks, random blocks, seed)
    (12, 1, 1, 1, 1, 0), (12, 2, 1, 1, 1, 0), (16, 2, 1, 1, 2, 3), (24, 2, 0, 0, 3, 1), (24, 4, 1, 2, 1, 2),
    (32, 1, 2, 1, 4, 1), (16, 4, 1, 0, 0, 0), (8, 8, 1, 1, 1, 0), (48, 2, 1, 1, 6, 3),
]


@pytest.mark.parametrize("T,block,window,n_global,n_random,seed", BIGBIRD_CASES)
def test_bigbird_mask_is_memlibs_random_blocks_included(T, block, window, n_global, n_random, seed):
    attn = memlib.BigBirdAttention(8, 2, block_size=block, num_window_blocks=2 * window + 1,
                                   num_global_blocks=n_global, num_random_blocks=n_random, seed=seed)
    p = PatternParams(window=window, n_global=n_global, n_random=n_random, block=block, seed=seed)
    np.testing.assert_array_equal(pattern_allowed("bigbird", T, p), ~attn.mask(T).numpy())


def test_bigbird_pads_a_sentence_to_whole_blocks_and_cuts_the_mask_back():
    attn = memlib.BigBirdAttention(8, 2, block_size=4, num_window_blocks=1, num_global_blocks=1, num_random_blocks=1)
    p = PatternParams(window=0, n_global=1, n_random=1, block=4)
    np.testing.assert_array_equal(pattern_allowed("bigbird", 10, p), ~attn.mask(12).numpy()[:10, :10])


def test_bigbird_order_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    order = bigbird_order(6, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    assert order.shape == (6, 5) and order.dtype == np.int16
    assert all(sorted(order[q].tolist()) == [o for o in range(6) if o != q] for q in range(6))
    assert bigbird_order(1, 0).shape == (1, 0)


@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("T", [8, 16, 32])
def test_pair_formulas_count_the_mask(pattern, T):
    for p in (PatternParams(), PatternParams(window=2, n_global=3, n_random=2, block=4, seed=1, k=5),
              PatternParams(window=0, n_global=0, n_random=0, block=8, k=64)):
        expected = T * min(p.k, T) if pattern == "linformer" else int(pattern_allowed(pattern, T, p).sum())
        assert pattern_pairs(pattern, T, p) == expected, p


def test_pair_formulas_at_length():
    n = 4096
    assert pattern_pairs("full", n, PatternParams()) == n * n
    assert pattern_pairs("causal", n, PatternParams()) == n * (n + 1) // 2
    assert pattern_pairs("sliding_window", n, PatternParams(window=256, n_global=0)) == n * 513 - 256 * 257
    assert pattern_pairs("linformer", n, PatternParams(k=256)) == n * 256
    # BigBird, no global: a middle block sees 3 window + 2 random blocks of 64 x 64; the two end blocks 2 + 2
    p = PatternParams(window=1, n_global=0, n_random=2, block=64)
    assert pattern_pairs("bigbird", n, p) == (62 * 5 + 2 * 4) * 64 * 64
    with pytest.raises(ValueError, match=r"expected n a multiple of the block size 16 for BigBird, got n = 100"):
        pattern_pairs("bigbird", 100, PatternParams(block=16))
    with pytest.raises(ValueError, match=r"expected pattern in \['full', .*got 'dense'"):
        pattern_allowed("dense", 4, PatternParams())


def test_format_bytes_and_memory_text():
    assert [format_bytes(b) for b in (400, 1536, 64 * 2**20, 3 * 2**40)] == ["400 B", "1.5 KiB", "64.0 MiB",
                                                                             "3.0 TiB"]
    text = memory_text("sliding_window", 10, 58, PatternParams(window=2, n_global=1), outside=0.405, padded=10)
    assert text.startswith("<b>sliding window (Longformer)</b>: 58 of 100 query-key pairs allowed (58.0% of T\u00b2)")
    assert "At n = 4,096 tokens: 28,660 scores (0.2% of n\u00b2): 112.0 KiB per head" in text
    assert "against 64.0 MiB for full attention" in text and "40.5% of its weight outside the pattern" in text
    assert [fixed(6.25, 1), fixed(0.125, 2), fixed(1.005, 2), fixed(64, 1)] == ["6.3", "0.13", "1.00", "64.0"]  # as JS
    assert "padded to 12" in memory_text("bigbird", 10, 70, PatternParams(block=4), None, padded=12)


def test_pattern_params_are_checked():
    with pytest.raises(ValueError, match=r"PatternParams: expected block as an integer >= 1, got 0"):
        PatternParams(block=0)
    with pytest.raises(ValueError, match=r"expected window as an integer >= 0, got 1.5"):
        PatternParams(window=1.5)


# Layer 2: the static Bokeh layout -------------------------------------------------------------------------

NAMED = ("attention_layer_select", "attention_head_select", "attention_query_slider", "attention_pattern_select",
         "attention_window_slider", "attention_global_slider", "attention_random_slider", "attention_block_select",
         "attention_seed_slider", "attention_k_slider", "attention_n_select", "attention_memory_cost",
         "attention_caption", "attention_mask_figure", "attention_linformer_panel", "attention_store",
         "attention_tokens", "attention_weights_view", "attention_row_view", "attention_mask_view",
         "attention_bigbird_orders", "attention_linformer_store", "attention_linformer_view",
         "attention_projection_view")
WIDGETS = ("attention_layer_select", "attention_head_select", "attention_query_slider", "attention_pattern_select",
           "attention_window_slider", "attention_global_slider", "attention_random_slider", "attention_block_select",
           "attention_seed_slider", "attention_k_slider", "attention_n_select")


def test_layout_names_its_models(explorer):
    for name in NAMED:
        assert explorer.layout.select_one({"name": name}) is not None, name
    for name in ("attention_weights_view", "attention_mask_view", "attention_row_view"):
        assert explorer.layout.select_one({"name": name}) is explorer.sources[name]
        assert isinstance(explorer.sources[name], ColumnDataSource)


def test_every_control_drives_one_customjs(explorer):
    layout = explorer.layout
    head = layout.select_one({"name": "attention_head_select"})
    assert isinstance(head, Select) and head.options[-1] == ("mean", "mean of 3 heads") and head.value == "0"
    assert layout.select_one({"name": "attention_layer_select"}).options == [("0", "layer 1"), ("1", "layer 2")]
    [callback] = head.js_property_callbacks["change:value"]
    assert isinstance(callback, CustomJS)
    for name in WIDGETS:
        assert layout.select_one({"name": name}).js_property_callbacks["change:value"] == [callback], name
    assert {"store", "weights_view", "mask_view", "row_view", "orders", "memory", "pattern"} <= set(callback.args)
    assert callback.args["mask_view"] is explorer.sources["attention_mask_view"]
    weights_fig = explorer.weights_fig
    assert len(weights_fig.js_event_callbacks["tap"]) == 1  # a click on a row chooses that query
    window = layout.select_one({"name": "attention_window_slider"})
    assert isinstance(window, Slider) and window.visible and (window.end, window.value) == (9, 1)
    assert not layout.select_one({"name": "attention_random_slider"}).visible  # BigBird only


def test_sources_start_on_layer_1_head_1_and_the_middle_query(explorer, data):
    view = explorer.sources["attention_weights_view"].data
    np.testing.assert_allclose(view["weight"], data["weights"][0, 0].ravel(), rtol=1e-6)
    assert view["query"][10 * 5 + 3] == "chased" and view["key"][10 * 5 + 3] == "the"  # cell (query 5, key 3)
    row = explorer.sources["attention_row_view"].data
    np.testing.assert_allclose(row["weight"], data["weights"][0, 0, 5], rtol=1e-6)
    assert row["token"] == TOKENS
    caption = explorer.layout.select_one({"name": "attention_caption"}).text
    assert caption.startswith('<b>layer 1, head 1</b>: query 6 &quot;chased&quot; attends most to key')


def test_mask_view_renormalises_the_weights_inside_the_pattern(explorer, data):
    mask = explorer.sources["attention_mask_view"].data
    allowed = pattern_allowed("sliding_window", 10, PatternParams()).ravel()
    np.testing.assert_array_equal(mask["allowed"], allowed)
    shown = np.asarray(mask["weight"]).reshape(10, 10)
    assert np.isnan(shown[~allowed.reshape(10, 10)]).all()
    np.testing.assert_allclose(np.nansum(shown, 1), 1, rtol=1e-5)  # a softmax over the allowed keys
    w = data["weights"][0, 0]
    np.testing.assert_allclose(shown[5, 4:7], w[5, 4:7] / (w[5, 4:7].sum() + w[5, 0]), rtol=1e-5)  # band + global
    text = explorer.layout.select_one({"name": "attention_memory_cost"}).text
    assert text.startswith("<b>sliding window (Longformer)</b>: 44 of 100 query-key pairs allowed (44.0% of T")


def test_the_store_is_float32_and_the_orders_are_memlibs(explorer):
    store = explorer.sources["attention_store"].data
    assert store["layer"] == [0, 0, 0, 1, 1, 1] and store["head"] == [0, 1, 2, 0, 1, 2]
    assert store["weights"][0].dtype == np.float32 and store["weights"][0].shape == (100,)
    orders = explorer.sources["attention_bigbird_orders"].data
    assert sorted(set(orders["block"])) == [1, 2, 4, 8] and sorted(set(orders["seed"])) == [0, 1, 2, 3]
    r = orders["block"].index(2)
    np.testing.assert_array_equal(orders["order"][r], bigbird_order(5, orders["seed"][r]).ravel())
    lin = explorer.sources["attention_linformer_store"].data
    assert len(lin["weights"]) == 3 and lin["k"] == [4, 4, 4]


def test_static_html_is_light_and_uses_the_pages_bokehjs(explorer):
    page = explorer.static_html()
    for name in NAMED:
        assert name in page, name
    assert "BEGIN bokeh.min.js" not in page and "cdn.bokeh.org" not in page


def test_page_weight_at_the_largest_size():
    T = 48
    explorer = AttentionExplorer(AttentionExplorer.prepare(softmax_maps(4, 4, T), [f"t{i}" for i in range(T)]))
    assert len(explorer.static_html()) < 600_000


def shown_width(model) -> int:
    """Width a Bokeh model takes as shown: a row adds its visible children, a column takes the widest."""
    if isinstance(model, Row | Column):
        shown = [c for c in model.children if c.visible]
        inner = sum(map(shown_width, shown)) if isinstance(model, Row) else max(map(shown_width, shown), default=0)
        margin = model.margin or 0
    else:
        assert model.width is not None, f"{type(model).__name__} {model.name!r} has no fixed width"
        inner, margin = model.width, model.margin or 0
    return inner + (2 * margin if isinstance(margin, int) else margin[1] + margin[3])


@pytest.mark.parametrize("pattern", ["full", "bigbird", "linformer", "cross"])
def test_the_layout_fits_the_books_column(pattern):
    T = 48
    tokens = [f"t{i}" for i in range(T)]
    if pattern == "cross":
        weights = softmax_maps(1, 2, T)[..., :30]
        data = AttentionExplorer.prepare(weights / weights.sum(-1, keepdims=True), tokens,
                                         key_tokens=[f"k{i}" for i in range(30)])
        explorer = AttentionExplorer(data)
    else:
        data = AttentionExplorer.prepare(softmax_maps(1, 2, T), tokens, linformer_weights=linformer_maps(H=2, T=T),
                                         projection=np.random.default_rng(2).normal(size=(4, T)))
        explorer = AttentionExplorer(data, pattern=pattern)
    assert shown_width(explorer.layout) <= 680, shown_width(explorer.layout)  # the book's column is 688 px


@pytest.mark.parametrize("T", [10, 24, 48])
def test_token_labels_are_thinned_so_they_never_collide(T):
    explorer = AttentionExplorer(AttentionExplorer.prepare(softmax_maps(1, 2, T), [f"t{i}" for i in range(T)]))
    explorer.layout  # noqa: B018 (the figures are made with the layout)
    for fig in (explorer.weights_fig, explorer.mask_fig, explorer.row_fig):
        for axis, length in ((fig.xaxis, fig.width), (fig.yaxis, fig.height)):
            ticks = axis[0].ticker.ticks if hasattr(axis[0].ticker, "ticks") else None
            if not axis[0].major_label_overrides:
                continue  # a value axis (the bars' weights)
            step = ticks[1] - ticks[0] if len(ticks) > 1 else 1
            assert ticks == list(range(0, T, step))
            assert (length - AXIS_FRAME_PX) / T * step >= LABEL_PX, (fig.title.text, T, step)
    if T == 10:  # few tokens: every one labelled
        assert explorer.weights_fig.xaxis[0].ticker.ticks == list(range(10))


def test_bigbird_start_and_a_block_size_the_sentence_cannot_have():
    data = AttentionExplorer.prepare(softmax_maps(1, 2, 3), ["a", "b", "c"])
    explorer = AttentionExplorer(data, pattern="bigbird", params=PatternParams(block=4))
    block = explorer.layout.select_one({"name": "attention_block_select"})
    assert block.options == ["1", "2"] and block.value == "2" and block.visible
    assert explorer.current_params().block == 2
    assert "padded to 4" in explorer.layout.select_one({"name": "attention_memory_cost"}).text


def test_linformer_panel_shows_when_chosen(data):
    explorer = AttentionExplorer(data, pattern="linformer")
    layout = explorer.layout
    assert layout.select_one({"name": "attention_linformer_panel"}).visible
    assert not layout.select_one({"name": "attention_mask_figure"}).visible
    np.testing.assert_allclose(explorer.sources["attention_linformer_view"].data["weight"],
                               data["linformer_weights"].mean(0).ravel())
    assert len(explorer.sources["attention_projection_view"].data["value"]) == 40  # k x T
    text = layout.select_one({"name": "attention_memory_cost"}).text
    assert "k = 4: 10 queries x 4 projected keys = 40 scores" in text and "At n = 4,096 tokens: 16,384" in text
    bare = AttentionExplorer(AttentionExplorer.prepare(softmax_maps(), TOKENS), pattern="linformer")
    assert bare.layout.select_one({"name": "attention_linformer_missing"}).visible


def test_update_resizes_everything_and_keeps_the_readers_choices(data):
    explorer = AttentionExplorer(data)
    layout = explorer.layout
    layout.select_one({"name": "attention_head_select"}).value = "2"
    layout.select_one({"name": "attention_query_slider"}).value = 9
    explorer.update(AttentionExplorer.prepare(softmax_maps(1, 2, 6, seed=5), list("abcdef")))
    head = layout.select_one({"name": "attention_head_select"})
    assert head.options == [("0", "head 1"), ("1", "head 2"), ("mean", "mean of 2 heads")] and head.value == "1"
    query = layout.select_one({"name": "attention_query_slider"})
    assert (query.end, query.value) == (5, 5)
    assert explorer.weights_fig.x_range.end == 5.5 and explorer.weights_fig.y_range.start == 5.5
    assert explorer.weights_fig.xaxis.major_label_overrides == dict(enumerate("abcdef"))
    assert len(explorer.sources["attention_weights_view"].data["weight"]) == 36
    assert explorer.sources["attention_tokens"].data["token"] == list("abcdef")
    assert not layout.select_one({"name": "attention_linformer_panel"}).visible
    assert layout.select_one({"name": "attention_block_select"}).options == ["1", "2", "4"]
    assert layout.select_one({"name": "attention_caption"}).text.startswith("<b>layer 1, head 2</b>: query 6")


def test_constructor_checks_its_settings(data):
    with pytest.raises(ValueError, match=r"expected pattern in \['full', .*got 'dense'"):
        AttentionExplorer(data, pattern="dense")
    with pytest.raises(ValueError, match=r"expected params.n in \[512, .*got n = 1000"):
        AttentionExplorer(data, params=PatternParams(n=1000))


# Layer 3: live controls -----------------------------------------------------------------------------------

MODEL = encoder()


def embed(words: list[str], d: int = 16) -> torch.Tensor:
    """(1, T, D): a fixed random vector per word (from its CRC) plus sinusoidal positions."""
    rows = [torch.randn(d, generator=torch.Generator().manual_seed(zlib.crc32(w.encode()))) for w in words]
    positions = memlib.transformer.sinusoidal_encoding(torch.arange(len(words), dtype=torch.float32), d)
    return (torch.stack(rows) + positions)[None]


def chapter_compute(settings: dict) -> dict:
    """What a chapter supplies: tokens, scores divided by the temperature, the pattern as memlib's mask."""
    words = settings["text"].split()
    if not words or not all(w.isalpha() for w in words):
        raise ValueError(f"expected words of letters, got {settings['text']!r}")
    if settings["pattern"] == "linformer":
        raise ValueError("this compute runs the encoder's own patterns only")
    T, tau = len(words), settings["temperature"]
    params = PatternParams(**{k: settings[k] for k in ("window", "n_global", "n_random", "block", "seed", "k")})
    blocked = torch.from_numpy(~pattern_allowed(settings["pattern"], T, params))  # memlib: True = blocked
    model = encoder()
    with torch.no_grad():
        for layer in model.layers:  # softmax(q k / (sqrt(E) tau)): scale the query projection by 1 / tau
            layer.self_attn.in_proj_weight[:16] /= tau
            layer.self_attn.in_proj_bias[:16] /= tau
    with memlib.trace() as tr, torch.no_grad():
        model(embed(words), mask=blocked)
    return AttentionExplorer.from_trace(tr, words)


def first_settings(**change) -> dict:
    return {"text": " ".join(TOKENS), "temperature": 1.0, "pattern": "full", "window": 1, "n_global": 1,
            "n_random": 1, "block": 1, "seed": 0, "k": 4, **change}


def test_renormalised_view_is_the_masked_models_first_layer():
    full, causal = chapter_compute(first_settings()), chapter_compute(first_settings(pattern="causal"))
    explorer = AttentionExplorer(full, pattern="causal")
    for h in range(2):
        explorer.layout.select_one({"name": "attention_head_select"}).value = str(h)
        explorer.update(full)
        shown = np.nan_to_num(np.asarray(explorer.sources["attention_mask_view"].data["weight"]).reshape(10, 10))
        np.testing.assert_allclose(shown, causal["weights"][0, h], rtol=1e-4, atol=1e-6)


@pytest.fixture
def calls() -> list[dict]:
    return []


@pytest.fixture
def live(calls) -> AttentionExplorer:
    def compute(settings):
        calls.append(dict(settings))
        return chapter_compute(settings)

    explorer = AttentionExplorer(chapter_compute(first_settings()), compute=compute)
    explorer.layout  # noqa: B018 (built first, as show() does)
    explorer.status_widget()
    return explorer


def test_recompute_redraws_with_a_new_sentence(live):
    assert live.recompute(first_settings(text="memory is all you need")) is True
    assert live.data["weights"].shape == (2, 2, 5, 5)
    assert live.sources["attention_row_view"].data["token"] == ["memory", "is", "all", "you", "need"]
    assert live.last_error is None


def test_recompute_keeps_the_figures_when_compute_refuses(live):
    before, weights = live.data, list(live.sources["attention_weights_view"].data["weight"])
    assert live.recompute(first_settings(text="no digits 42")) is False
    assert live.data is before and list(live.sources["attention_weights_view"].data["weight"]) == weights
    assert live.last_error == "Not updated: expected words of letters, got 'no digits 42'"
    assert live.status_widget().value == live.last_error


def entropy(weights: np.ndarray) -> float:
    return float(-(weights * np.log(np.clip(weights, 1e-12, None))).sum(-1).mean())


def test_controls_drive_compute(live, calls):
    text, temperature, pattern = live.controls()
    assert isinstance(text, ipywidgets.Text) and text.value == " ".join(TOKENS)
    assert isinstance(temperature, ipywidgets.FloatSlider) and temperature.value == 1.0
    assert isinstance(pattern, ipywidgets.Dropdown) and pattern.value == "full"
    warm = entropy(live.data["weights"])

    temperature.value = 0.25
    assert calls[-1] == first_settings(temperature=0.25)
    assert entropy(live.data["weights"]) < warm  # colder: sharper rows

    pattern.value = "sliding_window"
    assert calls[-1]["pattern"] == "sliding_window"
    assert live.layout.select_one({"name": "attention_pattern_select"}).value == "sliding_window"
    blocked = ~pattern_allowed("sliding_window", 10, PatternParams())
    assert (live.data["weights"][:, :, blocked] == 0).all()  # the model ran with the pattern

    live.layout.select_one({"name": "attention_window_slider"}).value = 3  # the reader moved a Bokeh slider
    text.value = "a short one"
    assert calls[-1]["text"] == "a short one" and calls[-1]["window"] == 3
    assert live.data["weights"].shape[2] == 3

    pattern.value = "linformer"
    assert live.last_error == "Not updated: this compute runs the encoder's own patterns only"
    assert live.data["weights"].shape[2] == 3
    assert pattern.value == live.settings["pattern"] == "sliding_window"  # back on the pattern the model ran
    assert live.layout.select_one({"name": "attention_pattern_select"}).value == "sliding_window"


# One failure path: any error, the last good figures, the controls back on them ---------------------------------


def agree(live: AttentionExplorer, controls: list) -> tuple:
    """The controls show the settings, the mask panel shows the pattern, and the figures hold that sentence."""
    text, temperature, pattern = controls
    values = (text.value, temperature.value, pattern.value)
    assert values == (live.settings["text"], live.settings["temperature"], live.settings["pattern"])
    assert live.layout.select_one({"name": "attention_pattern_select"}).value == pattern.value
    assert [str(t) for t in live.data["tokens"]] == text.value.split()
    return values


def test_an_unexpected_error_in_compute_is_reported_and_the_controls_snap_back(live, monkeypatch):
    controls = live.controls()
    before, data = agree(live, controls), live.data
    weights = list(live.sources["attention_weights_view"].data["weight"])
    mask = list(live.sources["attention_mask_view"].data["allowed"])

    def cuda_error(settings):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 640.00 GiB")

    monkeypatch.setattr(live, "compute", cuda_error)
    for control, value in zip(controls, ("a new sentence", 2.0, "causal"), strict=True):
        control.value = value
        assert live.last_error == "Not updated: OutOfMemoryError: CUDA out of memory. Tried to allocate 640.00 GiB"
        assert live.data is data and list(live.sources["attention_weights_view"].data["weight"]) == weights
        assert list(live.sources["attention_mask_view"].data["allowed"]) == mask  # the mask panel kept its pattern
        assert agree(live, controls) == before


def test_refused_settings_leave_the_controls_on_the_figures_settings(live, calls, monkeypatch):
    controls = live.controls()
    text, temperature, pattern = controls
    pattern.value = "causal"
    good = agree(live, controls)
    for control, value in ((pattern, "linformer"), (text, "no digits 42")):
        control.value = value
        assert live.last_error.startswith("Not updated: ") and agree(live, controls) == good
    n = len(calls)
    text.value = " ".join(["word"] * 49)  # more words than the map draws: not run
    assert live.last_error == ("Not updated: expected at most 48 words in text (a longer map is not drawn, so the "
                               "model is not run), got 49")
    monkeypatch.setattr(AttentionExplorer, "max_text", 10)
    text.value = "a long sentence"
    assert live.last_error == "Not updated: expected text of at most 10 characters (longer input is not run), got 15"
    assert len(calls) == n and agree(live, controls) == good
    assert live.recompute({"temperature": 0.0}) is False
    assert live.last_error == "Not updated: expected temperature as a number in [0.25, 4], got 0.0"
    assert live.recompute({"pattern": "dilated"}) is False and "expected pattern in ['full'" in live.last_error
    assert live.recompute({"colour": 1}) is False and "expected settings among" in live.last_error
    assert len(calls) == n


# The page's JavaScript against the Python it mirrors (node, when installed; the browser check covers the rest) ------

ATTENTION_READ = """({allowed: a.mask_view.data.allowed, shown: a.mask_view.data.weight,
  weight: a.weights_view.data.weight, row: a.row_view.data.inside, memory: a.memory.text, caption: a.caption.text})"""


def _run_js(explorer, cases):
    assert explorer.callback.code == load_js("attention")
    return run_callback(explorer.callback, cases, ATTENTION_READ)


JS_CASES = [  # the widgets' values (strings for Selects), and the view Python computes for them
    {"pattern": "full", "head": "mean", "layer": "1", "query": 2},
    {"pattern": "causal", "head": "2", "query": 9},
    {"pattern": "sliding_window", "window_s": 2, "global_s": 0, "n_select": "65536"},
    {"pattern": "sliding_window", "window_s": 1, "global_s": 3},
    {"pattern": "bigbird", "block": "1", "window_s": 1, "global_s": 1, "random_s": 2, "seed_s": 3},
    {"pattern": "bigbird", "block": "4", "window_s": 0, "global_s": 1, "random_s": 1, "seed_s": 1},
    {"pattern": "bigbird", "block": "2", "window_s": 1, "global_s": 2, "random_s": 6, "seed_s": 2},
    {"pattern": "linformer", "k_s": 64, "n_select": "1024"},
]


def test_the_pages_js_draws_what_python_draws(explorer, data):
    explorer.layout  # noqa: B018 (the callback is made with the layout)
    results = _run_js(explorer, JS_CASES)
    fields = {"window_s": "window", "global_s": "n_global", "random_s": "n_random", "block": "block",
              "seed_s": "seed", "k_s": "k", "n_select": "n"}
    for case, got in zip(JS_CASES, results, strict=True):
        p = PatternParams(**{**dataclasses.asdict(PatternParams()),
                             **{fields[k]: int(v) for k, v in case.items() if k in fields}})
        layer, head, q = int(case.get("layer", "0")), case.get("head", "0"), case.get("query", 5)
        view = explorer._view(data, layer, head, q, case["pattern"], p, explorer._orders_cache(10))
        np.testing.assert_array_equal(got["allowed"], view["allowed"], err_msg=str(case))
        np.testing.assert_allclose(got["weight"], view["weights"], rtol=1e-5, err_msg=str(case))
        shown = np.asarray(got["shown"], dtype=float)  # NaN: a blocked cell
        np.testing.assert_allclose(shown, view["shown"], rtol=1e-5, err_msg=str(case))
        np.testing.assert_allclose(got["row"], view["row_inside"], rtol=1e-5, atol=1e-7, err_msg=str(case))
        assert got["memory"] == view["memory"], case
        assert got["caption"] == explorer._caption(data, layer, head, q), case


def test_the_query_sliders_labels_and_a_tap_on_a_map_in_the_pages_js(explorer, data):
    explorer.layout  # noqa: B018 (the slider is made with the layout)
    formatter = explorer.query_slider.format
    assert formatter.code == load_js("attention_query_tick")
    tokens = [str(t) for t in data["tokens"]]
    ticks = [0, 3, len(tokens) - 1, len(tokens)]  # the last one past the tokens: no label
    labels = run_callback(formatter, [{"tick": k} for k in ticks], "r")
    assert labels == [f'{k + 1} "{tokens[k]}"' if k < len(tokens) else f'{k + 1} ""' for k in ticks]
    for fig in (explorer.weights_fig, explorer.mask_fig):
        [tap] = fig.js_event_callbacks["tap"]
        assert tap.code == load_js("attention_tap") and tap.args["query"] is explorer.query_slider
        rows = run_callback(tap, [{"cb_obj": {"y": y}} for y in (-3.2, 2.4, 2.6, 99.0)], "a.query.value")
        assert rows == [0, 2, 3, explorer.query_slider.end]  # the nearest row, within the slider's range


# Cross-attention: queries from one sequence, keys from another ----------------------------------------------

QUESTIONS = ["where", "is", "the", "cat"]  # T = 4 queries
DOCUMENT = "the cat sat on the mat by the door".split()  # S = 9 keys


def cross_maps(L: int = 2, H: int = 3, T: int = 4, S: int = 9, seed: int = 3) -> np.ndarray:
    """(L, H, T, S) random rows that sum to 1."""
    e = np.exp(np.random.default_rng(seed).normal(size=(L, H, T, S)))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def cross_data():
    return AttentionExplorer.prepare(cross_maps(), QUESTIONS, key_tokens=DOCUMENT)


@pytest.fixture(scope="module")
def cross(cross_data) -> AttentionExplorer:
    """Built once: only for tests that leave it as it is."""
    return AttentionExplorer(cross_data)


def test_prepare_cross_attention(cross_data):
    assert cross_data["weights"].shape == (2, 3, 4, 9)
    assert list(cross_data["tokens"]) == QUESTIONS and list(cross_data["key_tokens"]) == DOCUMENT
    square = AttentionExplorer.prepare(softmax_maps(), TOKENS, key_tokens=TOKENS)  # S = T is cross too
    assert list(square["key_tokens"]) == TOKENS
    assert "key_tokens" not in AttentionExplorer.prepare(softmax_maps(), TOKENS)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"tokens": QUESTIONS[:3]}, ValueError, r"expected 4 tokens \(one per query: weights' third dim T\), got 3"),
        ({"key_tokens": DOCUMENT[:8]}, ValueError,
         r"expected 9 key_tokens \(one per key: weights' last dim S\), got 8"),
        ({"key_tokens": [*DOCUMENT, "x"]}, ValueError, r"expected 9 key_tokens .*got 10"),
        ({"key_tokens": "the cat"}, TypeError, r"expected key_tokens as a list of 9 strings, got str"),
        ({"key_tokens": [*DOCUMENT[:8], 1.5]}, TypeError, r"expected every key token a string, got float at 8"),
        ({"weights": cross_maps()[0]}, ValueError, r"weights: expected shape \(L, H, T, S\).*got \(3, 4, 9\)"),
        ({"weights": np.zeros((1, 1, 4, 0))}, ValueError, r"expected weights of shape \(L>0, H>0, T>0, S>0\)"),
        ({"weights": cross_maps() * 2}, ValueError,
         r"expected each row to sum to 1 .*got 2 at layer 0, head 0, query 0"),
        ({"max_tokens": 8}, ValueError, r"at most max_tokens = 8 key_tokens, got 9"),
        ({"linformer_weights": linformer_maps(T=4)}, ValueError, r"expected no linformer_weights or projection"),
    ],
)
def test_prepare_cross_says_what_it_expected(kwargs, error, match):
    args = {"weights": cross_maps(), "tokens": QUESTIONS, "key_tokens": DOCUMENT, **kwargs}
    with pytest.raises(error, match=match):
        AttentionExplorer.prepare(args.pop("weights"), args.pop("tokens"), **args)


def test_a_rectangular_map_without_key_tokens_points_to_cross_attention():
    with pytest.raises(ValueError, match=r"Tq = 4 and Tk = 9; for cross-attention .* give key_tokens"):
        AttentionExplorer.prepare(cross_maps(), QUESTIONS)


def test_from_trace_reads_memlibs_cross_attention():
    torch.manual_seed(0)
    query, doc = torch.randn(2, 4, 8), torch.randn(2, 9, 6)
    additive = memlib.AdditiveAttention(8, 6, 5)
    mha = memlib.MultiHeadAttention(8, 2, kdim=6, vdim=6, batch_first=True)
    with memlib.trace() as tr:
        additive(query, doc)  # (B, T, S): one head
        additive(query[:, 0], doc)  # (B, S): one query
        mha(query, doc, doc, need_weights=True)  # (B, H, T, S)
    data = AttentionExplorer.from_trace(tr, QUESTIONS, "attention.weights", sample=1, key_tokens=DOCUMENT)
    assert data["weights"].shape == (1, 2, 4, 9)
    np.testing.assert_allclose(data["weights"][0], tr["attention.weights"][0][1].numpy(), rtol=1e-6)
    with memlib.trace() as tr:
        additive(query, doc)
    data = AttentionExplorer.from_trace(tr, QUESTIONS, "additive.weights", sample=1, key_tokens=DOCUMENT)
    assert data["weights"].shape == (1, 1, 4, 9)
    np.testing.assert_allclose(data["weights"][0, 0], tr["additive.weights"][0][1].numpy(), rtol=1e-6)
    with memlib.trace() as tr:
        additive(query[:, 0], doc)
    data = AttentionExplorer.from_trace(tr, ["where"], "additive.weights", key_tokens=DOCUMENT)
    assert data["weights"].shape == (1, 1, 1, 9)
    with pytest.raises(ValueError, match=r"expected 9 key_tokens .*got 4"):
        AttentionExplorer.from_trace(tr, ["where"], "additive.weights", key_tokens=DOCUMENT[:4])
    with memlib.trace() as two:
        additive(query, doc)
        additive(query[:, 0], doc)
    with pytest.raises(ValueError, match=r"of one shape \(B, H, T, S\), \(B, T, S\) or \(B, S\) .*got \[\("):
        AttentionExplorer.from_trace(two, QUESTIONS, "additive.weights", key_tokens=DOCUMENT)


def test_cross_layout_labels_both_token_lists_and_turns_the_patterns_off(cross, cross_data):
    layout = cross.layout
    fig = cross.weights_fig
    assert fig.xaxis.major_label_overrides == dict(enumerate(DOCUMENT))  # keys across
    assert fig.yaxis.major_label_overrides == dict(enumerate(QUESTIONS))  # queries down
    assert (fig.x_range.start, fig.x_range.end, fig.y_range.start, fig.y_range.end) == (-0.5, 8.5, 3.5, -0.5)
    assert fig.width <= 660 and cross.row_fig.width <= 660
    assert cross.row_fig.xaxis.major_label_overrides == dict(enumerate(DOCUMENT))
    pattern = layout.select_one({"name": "attention_pattern_select"})
    assert pattern.disabled and "self-attention only" in pattern.title
    for name in ("attention_window_slider", "attention_global_slider", "attention_random_slider",
                 "attention_block_select", "attention_seed_slider", "attention_k_slider", "attention_n_select",
                 "attention_mask_figure", "attention_linformer_panel", "attention_linformer_missing"):
        assert not layout.select_one({"name": name}).visible, name
    memory = layout.select_one({"name": "attention_memory_cost"}).text
    assert memory.startswith("<b>cross-attention</b>: 4 queries x 9 keys = 36 scores per head")
    assert "pattern selector" in memory and "off" in memory
    assert "pattern selector" in layout.select_one({"name": "attention_note"}).text
    query = layout.select_one({"name": "attention_query_slider"})
    assert (query.end, query.value) == (3, 2)
    head = layout.select_one({"name": "attention_head_select"})
    assert head.js_property_callbacks["change:value"] == query.js_property_callbacks["change:value"]


def test_cross_sources_hold_the_weights(cross, cross_data):
    view = cross.sources["attention_weights_view"].data
    np.testing.assert_allclose(view["weight"], cross_data["weights"][0, 0].ravel(), rtol=1e-6)
    assert len(view["weight"]) == 36 and view["query"][9 * 2 + 4] == "the" and view["key"][9 * 2 + 4] == "the"
    assert view["query"][9 * 3 + 1] == "cat" and view["key"][9 * 3 + 1] == "cat"  # cell (query 3, key 1)
    assert view["key"][:9] == DOCUMENT
    store = cross.sources["attention_store"].data
    for r, (li, h) in enumerate(zip(store["layer"], store["head"], strict=True)):
        np.testing.assert_allclose(store["weights"][r], cross_data["weights"][li, h].ravel(), rtol=1e-6)
    row = cross.sources["attention_row_view"].data
    assert row["token"] == DOCUMENT
    np.testing.assert_allclose(row["weight"], cross_data["weights"][0, 0, 2], rtol=1e-6)
    assert cross.sources["attention_key_tokens"].data["cross"] == [1] * 9
    assert len(cross.sources["attention_mask_view"].data["x"]) == 0  # no pattern to draw
    best = int(np.argmax(cross_data["weights"][0, 0, 2]))
    caption = cross.layout.select_one({"name": "attention_caption"}).text
    assert caption.startswith(f'<b>layer 1, head 1</b>: query 3 &quot;the&quot; attends most to key {best + 1} '
                              f"&quot;{DOCUMENT[best]}&quot;")
    page = cross.static_html()
    assert "attention_key_tokens" in page and "BEGIN bokeh.min.js" not in page


def test_self_attention_sources_are_unchanged_by_the_cross_mode(explorer):
    keys = explorer.sources["attention_key_tokens"].data
    assert keys["token"] == TOKENS and keys["cross"] == [0] * 10
    assert explorer.layout.select_one({"name": "attention_pattern_select"}).disabled is not True


def test_cross_explorer_checks_its_pattern_and_its_mode(cross_data, data):
    with pytest.raises(ValueError, match=r"expected pattern 'full' for cross-attention .*got 'causal'"):
        AttentionExplorer(cross_data, pattern="causal")
    explorer = AttentionExplorer(cross_data)
    with pytest.raises(ValueError, match=r"expected cross-attention data .*got self-attention data"):
        explorer.update(data)
    assert explorer.data is cross_data
    with pytest.raises(ValueError, match=r"expected self-attention data .*got cross-attention data"):
        AttentionExplorer(data).update(cross_data)


def test_cross_update_resizes_both_axes(cross_data):
    explorer = AttentionExplorer(cross_data)
    explorer.layout.select_one({"name": "attention_head_select"}).value = "mean"
    new = AttentionExplorer.prepare(cross_maps(1, 2, 2, 5, seed=4), ["a", "b"], key_tokens=list("vwxyz"))
    explorer.update(new)
    assert explorer.weights_fig.x_range.end == 4.5 and explorer.weights_fig.y_range.start == 1.5
    assert explorer.weights_fig.xaxis.major_label_overrides == dict(enumerate("vwxyz"))
    assert explorer.weights_fig.yaxis.major_label_overrides == {0: "a", 1: "b"}
    assert explorer.row_fig.x_range.end == 4.5
    np.testing.assert_allclose(explorer.sources["attention_weights_view"].data["weight"],
                               new["weights"][0].mean(0).ravel(), rtol=1e-6)
    assert explorer.layout.select_one({"name": "attention_memory_cost"}).text.startswith(
        "<b>cross-attention</b>: 2 queries x 5 keys")


def test_cross_live_controls_offer_no_pattern(cross_data):
    calls = []

    def compute(settings):
        calls.append(dict(settings))
        return AttentionExplorer.prepare(cross_maps(seed=int(10 * settings["temperature"])), QUESTIONS,
                                         key_tokens=DOCUMENT)

    explorer = AttentionExplorer(cross_data, compute=compute)
    explorer.layout  # noqa: B018
    controls = explorer.controls()
    assert len(controls) == 2 and not any(isinstance(c, ipywidgets.Dropdown) for c in controls)
    controls[1].value = 2.0
    assert calls[-1]["temperature"] == 2.0 and calls[-1]["pattern"] == "full"
    np.testing.assert_allclose(explorer.data["weights"], cross_maps(seed=20))


def test_cross_page_weight_at_the_largest_size():
    T, S = 48, 48
    data = AttentionExplorer.prepare(cross_maps(4, 4, T, S), [f"q{i}" for i in range(T)],
                                     key_tokens=[f"k{i}" for i in range(S)])
    assert len(AttentionExplorer(data).static_html()) < 600_000


CROSS_JS_CASES = [
    {"head": "mean", "layer": "1", "query": 0},
    {"head": "2", "layer": "0", "query": 3},
    {"head": "1", "layer": "1", "query": 1, "pattern": "causal"},  # a stale pattern value changes nothing
]


def test_the_pages_js_draws_cross_attention_as_python_does(cross, cross_data):
    cross.layout  # noqa: B018 (the callback is made with the layout)
    for case, got in zip(CROSS_JS_CASES, _run_js(cross, CROSS_JS_CASES), strict=True):
        layer, head, q = int(case["layer"]), case["head"], case["query"]
        view = cross._view(cross_data, layer, head, q, "full", PatternParams(), {})
        np.testing.assert_allclose(got["weight"], view["weights"], rtol=1e-5, err_msg=str(case))
        np.testing.assert_allclose(got["row"], view["row"], rtol=1e-5, err_msg=str(case))
        assert got["caption"] == cross._caption(cross_data, layer, head, q), case
        assert got["memory"] == cross.memory.text and got["allowed"] == [], case  # the JS leaves the note Python wrote
    assert cross.memory.text == cross_text(4, 9)
