"""widgets.memory: MemoryExplorer's three layers on real NTM/DNC traces, and AddressingPipeline's JS against memlib."""

from __future__ import annotations

import ipywidgets
import numpy as np
import pytest
import torch
from bokeh.models import Column, ColumnDataSource, CustomJS, Row, Slider
from jsparity import run_callback, run_js

import memlib
from memlib.memory import addressing
from widgets.base import load_js
from widgets.memory import (
    DEFAULT_SEQUENCE,
    PIPELINE_DEFAULTS,
    WIDTH,
    AddressingPipeline,
    MemoryExplorer,
    example_memory,
    shift_kernel,
)

N, W, BITS = 8, 4, 4  # a small memory; copy-task vectors of 4 bits (inputs have BITS + 2 channels)


def copy_input(vectors: np.ndarray) -> torch.Tensor:
    """The copy task's input (memlib.tasks.copy_batch's layout) for (L, K) vectors: (2L + 2, K + 2)."""
    L, K = vectors.shape
    x = torch.zeros(2 * L + 2, K + 2)
    x[0, K] = 1.0  # start delimiter
    x[1 : L + 1, :K] = torch.as_tensor(vectors, dtype=torch.float32)
    x[L + 1, K + 1] = 1.0  # end delimiter
    return x


def model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    cls = memlib.NTM if kind == "ntm" else memlib.DNC
    return cls(BITS + 2, BITS, controller_size=16, memory_slots=N, memory_width=W)


def run(kind: str, net: torch.nn.Module, text: str, sample_rows: int = 1) -> tuple:
    """Run ``net`` on the copy input of ``text`` inside a trace: (trace, x (B, T, I), y (B, T, O), state, vectors)."""
    vectors = MemoryExplorer.parse_bit_vectors(text, bits=BITS)
    x = copy_input(vectors)[None].repeat(sample_rows, 1, 1)  # (B, T, I)
    with memlib.trace() as tr:
        y, state = net(x)
    return tr, x, y, state, vectors


@pytest.fixture(scope="module")
def ntm_run():
    return run("ntm", model("ntm"), "1011 0110")  # T = 2 * 2 + 2 = 6 steps


@pytest.fixture(scope="module")
def dnc_run():
    return run("dnc", model("dnc"), "1011 0110", sample_rows=2)


@pytest.fixture(scope="module")
def ntm_data(ntm_run):
    tr, x, y, _, vectors = ntm_run
    return MemoryExplorer.from_trace(tr, "ntm", x[0], targets=vectors, outputs=torch.sigmoid(y[0]))


@pytest.fixture(scope="module")
def dnc_data(dnc_run):
    tr, x, y, _, vectors = dnc_run
    return MemoryExplorer.from_trace(tr, "dnc", x[1], sample=1, targets=vectors, outputs=torch.sigmoid(y[1]))


@pytest.fixture(scope="module")
def ntm_explorer(ntm_data) -> MemoryExplorer:
    """Built once: only for tests that leave it as it is."""
    return MemoryExplorer(ntm_data)


@pytest.fixture(scope="module")
def dnc_explorer(dnc_data) -> MemoryExplorer:
    return MemoryExplorer(dnc_data)


def hand_made(kind: str = "ntm", T: int = 5, n: int = 6, w: int = 3, R: int = 1, seed: int = 0) -> dict:
    """Valid arguments for prepare: softmax weightings, sigmoid erase/gates, a link with a zero diagonal."""
    rng = np.random.default_rng(seed)
    soft = lambda *shape: (e := np.exp(rng.normal(size=shape))) / e.sum(-1, keepdims=True)  # noqa: E731
    args = {"kind": kind, "inputs": rng.uniform(0, 1, (T, 2)), "memory": rng.normal(size=(T, n, w)),
            "read_weights": soft(T, R, n), "write_weights": soft(T, n)}
    if kind == "ntm":
        args |= {"erase": rng.uniform(0, 1, (T, w)), "add": rng.uniform(-1, 1, (T, w))}
    else:
        link = rng.uniform(0, 1 / n, (T, n, n))
        link[:, np.arange(n), np.arange(n)] = 0
        args |= {"usage": rng.uniform(0, 1, (T, n)), "allocation": 0.9 * soft(T, n), "link": link,
                 "read_modes": soft(T, R, 3)}
    return args


def prepare(args: dict, **extra):
    args = {**args, **extra}
    return MemoryExplorer.prepare(args.pop("kind"), args.pop("inputs"), args.pop("memory"), args.pop("read_weights"),
                                  args.pop("write_weights"), **args)


# Layer 1: prepare ------------------------------------------------------------------------------


def test_prepare_returns_float_arrays_and_aligns_targets_to_the_last_steps():
    args = hand_made("ntm", T=5)
    data = prepare(args, targets=np.ones((2, 3)), outputs=np.full((5, 3), 0.5))
    assert str(data["kind"]) == "ntm" and set(data) == {"kind", "inputs", "memory", "read_weights", "write_weights",
                                                        "targets", "outputs", "erase", "add"}
    assert data["memory"].shape == (5, 6, 3) and data["read_weights"].shape == (5, 1, 6)
    assert np.isnan(data["targets"][:3]).all() and (data["targets"][3:] == 1).all()  # nothing expected before
    assert data["outputs"].shape == (5, 3)
    bare = prepare(args)
    assert bare["targets"].shape == bare["outputs"].shape == (5, 0)
    only_targets = prepare(args, targets=np.ones((5, 2)))
    assert np.isnan(only_targets["outputs"]).all() and only_targets["outputs"].shape == (5, 2)
    dnc = prepare(hand_made("dnc", R=2))
    assert np.isnan(dnc["free_gates"]).all() and dnc["free_gates"].shape == (5, 2)
    assert np.isnan(dnc["write_gate"]).all() and "erase" not in dnc


def _bad_sum(args):
    w = args["write_weights"].copy()
    w[2] *= 0.5
    return {"write_weights": w}


def _too_much(args):
    w = args["read_weights"].copy()
    w[1, 0] *= 1.5
    return {"read_weights": w}


@pytest.mark.parametrize("kind, change, message", [
    ("ntm", lambda a: {"kind": "lstm"}, r"expected kind 'ntm' or 'dnc', got 'lstm'"),
    ("ntm", lambda a: {"erase": None}, r"kind='ntm' needs \['erase', 'add'\], missing \['erase'\]"),
    ("ntm", lambda a: {"usage": np.zeros((5, 6))}, r"\['usage'\] belong to the other kind of memory"),
    ("dnc", lambda a: {"erase": np.zeros((5, 3))}, r"\['erase'\] belong to the other kind"),
    ("dnc", lambda a: {"link": None, "read_modes": None}, r"missing \['link', 'read_modes'\]"),
    ("ntm", lambda a: {"inputs": np.zeros((0, 2))}, r"inputs: expected shape \(T>0, I>0\), got \(0, 2\)"),
    ("ntm", lambda a: {"inputs": np.zeros((4, 2))}, r"memory: expected T=4 steps like the inputs, got 5 \(was the "
                                                     r"model run more than once inside the trace\?\)"),
    ("ntm", lambda a: {"memory": np.zeros((5, 6))}, r"memory: expected shape \(T, N, W\).*got \(5, 6\)"),
    ("ntm", lambda a: {"memory": np.full((5, 6, 3), np.nan)}, r"memory: expected finite values, got 90 NaN/inf"),
    ("ntm", lambda a: {"read_weights": np.zeros((5, 6))}, r"read_weights: expected shape \(T, R, N\)"),
    ("ntm", lambda a: {"read_weights": np.full((5, 1, 7), 1 / 7)},
     r"read_weights: expected shape \(T, R, N\) = \(5, R, 6\) with 1 <= R <= 4, got \(5, 1, 7\)"),
    ("ntm", lambda a: {"read_weights": np.full((5, 5, 6), 1 / 6)}, r"1 <= R <= 4, got \(5, 5, 6\)"),
    ("ntm", lambda a: {"write_weights": np.full((5, 5), 0.2)}, r"write_weights: expected shape \(T, N\) = \(5, 6\)"),
    ("ntm", _bad_sum, r"write_weights: expected each weighting over the 6 slots to sum to 1 \(Graves et al. 2014, "
                      r"eq. 1\), got sums in \[0.5, 1\] \(first bad at step/head index \(2,\): 0.5\)"),
    ("dnc", _too_much, r"read_weights: expected each weighting over the 6 slots to sum to at most 1"),
    ("ntm", lambda a: {"write_weights": np.tile([-0.1, 1.1, 0, 0, 0, 0], (5, 1))},
     r"write_weights: expected non-negative weights, got -0.1 at index \(0, 0\)"),
    ("ntm", lambda a: {"erase": np.full((5, 3), 1.5)}, r"erase: expected erase values \(a sigmoid's output\) in "
                                                        r"\[0, 1\], got values in \[1.5, 1.5\]"),
    ("ntm", lambda a: {"add": np.zeros((5, 4))}, r"add: expected shape \(T, W\) = \(5, 3\), got \(5, 4\)"),
    ("dnc", lambda a: {"usage": np.full((5, 6), 1.2)}, r"usage: expected usage in \[0, 1\]"),
    ("dnc", lambda a: {"link": np.full((5, 6, 6), -0.5)}, r"link: expected link weights in \[0, 1\]"),
    ("dnc", lambda a: {"read_modes": np.full((5, 1, 3), 0.5)}, r"read_modes: expected each weighting over the 3 "
                                                                r"slots to sum to 1 \(a softmax"),
    ("dnc", lambda a: {"write_gate": np.full(4, 0.5)}, r"write_gate: expected shape \(T,\) = \(5,\), got \(4,\)"),
    ("ntm", lambda a: {"targets": np.ones((6, 2))}, r"targets: expected shape \(T', O\) with 1 <= T' <= T=5"),
    ("ntm", lambda a: {"targets": np.ones((2, 2)), "outputs": np.ones((5, 3))},
     r"targets: expected O=3 channels like the outputs, got 2"),
    ("ntm", lambda a: {"outputs": np.ones((4, 3))}, r"outputs: expected shape \(T, O\) = \(5, 3\), got \(4, 3\)"),
    ("ntm", lambda a: {"max_steps": 4}, r"expected at most max_steps=4 steps \(the page stays small and the "
                                         r"slider usable\), got T=5: run a shorter sequence"),
    ("ntm", lambda a: {"max_slots": 5}, r"expected at most max_slots=5 memory slots .*got N=6"),
    ("dnc", lambda a: {"max_values": 200}, r"expected at most max_values=200 memory and link values .*got 270 "
                                           r"\(T=5, N=6, W=3\): use at most 3 steps, or a smaller memory"),
    ("ntm", lambda a: {"max_steps": 0}, r"expected max_steps a positive integer, got 0"),
])
def test_prepare_says_what_it_expected(kind, change, message):
    args = hand_made(kind)
    with pytest.raises(ValueError, match=message):
        prepare(args, **change(args))


def test_prepare_rejects_non_numbers():
    with pytest.raises(TypeError, match=r"inputs: expected numbers of shape \(T, I\).*got list"):
        prepare(hand_made(), inputs=[["a", "b"]])


def test_from_trace_reads_an_ntm_run(ntm_run, ntm_data):
    tr, x, y, state, vectors = ntm_run
    assert ntm_data["memory"].shape == (6, N, W) and ntm_data["read_weights"].shape == (6, 1, N)
    for name in ("memory", "read_weights", "write_weights", "erase", "add"):
        np.testing.assert_allclose(ntm_data[name], tr.stack(f"ntm.{name}")[:, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(ntm_data["memory"][-1], state.memory[0].detach().numpy(), rtol=1e-6)  # the last state
    np.testing.assert_allclose(ntm_data["read_weights"].sum(-1), 1, atol=1e-5)
    np.testing.assert_allclose(ntm_data["inputs"], x[0].numpy())
    np.testing.assert_allclose(ntm_data["targets"][-2:], vectors)
    assert np.isnan(ntm_data["targets"][:-2]).all()
    np.testing.assert_allclose(ntm_data["outputs"], torch.sigmoid(y[0]).detach().numpy(), rtol=1e-6)


def test_from_trace_reads_a_dnc_run(dnc_run, dnc_data):
    tr, x, _, state, _ = dnc_run
    assert dnc_data["link"].shape == (6, N, N) and dnc_data["read_modes"].shape == (6, 2, 3)
    for name in ("memory", "read_weights", "write_weights", "usage", "allocation", "link", "read_modes",
                 "free_gates", "write_gate", "allocation_gate"):
        np.testing.assert_allclose(dnc_data[name], tr.stack(f"dnc.{name}")[:, 1].numpy(), rtol=1e-6)
    np.testing.assert_allclose(dnc_data["link"][-1], state.link[1].detach().numpy(), rtol=1e-6)
    assert (np.diagonal(dnc_data["link"], axis1=1, axis2=2) == 0).all()


def test_from_trace_says_what_is_missing(ntm_run):
    tr, x, _, _, _ = ntm_run
    with pytest.raises(ValueError, match=r"expected 'dnc.memory' in the trace \(run a memlib.DNC inside"):
        MemoryExplorer.from_trace(tr, "dnc", x[0])
    with pytest.raises(ValueError, match=r"expected sample in \[0, 1\) \(the batch\), got 2"):
        MemoryExplorer.from_trace(tr, "ntm", x[0], sample=2)
    with pytest.raises(ValueError, match=r"expected kind 'ntm' or 'dnc', got 'mann'"):
        MemoryExplorer.from_trace(tr, "mann", x[0])
    net = model("ntm")
    with memlib.trace() as twice:
        net(x)
        net(x)
    with pytest.raises(ValueError, match=r"expected T=6 steps like the inputs, got 12 \(was the model run more"):
        MemoryExplorer.from_trace(twice, "ntm", x[0])


def test_parse_bit_vectors():
    np.testing.assert_array_equal(MemoryExplorer.parse_bit_vectors("10 01, 11"), [[1, 0], [0, 1], [1, 1]])
    assert MemoryExplorer.parse_bit_vectors(DEFAULT_SEQUENCE).shape == (3, 4)
    with pytest.raises(ValueError, match=r"expected every group to have 4 bits, got 3 in group 2 \('011'\)"):
        MemoryExplorer.parse_bit_vectors("1011 011", bits=4)
    with pytest.raises(ValueError, match=r"expected only 0 and 1, got '2a' in group 1"):
        MemoryExplorer.parse_bit_vectors("10a2")
    with pytest.raises(ValueError, match=r"got nothing"):
        MemoryExplorer.parse_bit_vectors("  ")
    for bits in (0, -4, 2.5, True):
        with pytest.raises(ValueError, match=rf"expected bits \(per group\) a positive integer, got {bits!r}"):
            MemoryExplorer.parse_bit_vectors("1011", bits=bits)


# Layer 2: the static Bokeh layout ----------------------------------------------------------------

NAMED = ("memory_time_slider", "memory_caption", "memory_trace", "memory_over_time", "memory_at_step",
         "weights_at_step", "erase_add_at_step", "usage_at_step", "link_at_step", "ntm_panels", "dnc_panels",
         "memory_explorer")


@pytest.mark.parametrize("which", ["ntm", "dnc"])
def test_layout_names_its_models_and_the_slider_drives_one_customjs(which, ntm_explorer, dnc_explorer):
    explorer = ntm_explorer if which == "ntm" else dnc_explorer
    layout = explorer.layout
    for name in NAMED:
        assert layout.select_one({"name": name}) is not None, name
    for name in ("memory_at_step", "weights_at_step", "erase_add_at_step", "usage_at_step", "link_at_step"):
        assert layout.select_one({"name": name}) is explorer.sources[name]
        assert isinstance(explorer.sources[name], ColumnDataSource)
    slider = layout.select_one({"name": "memory_time_slider"})
    assert isinstance(slider, Slider) and (slider.start, slider.end, slider.value) == (1, 6, 6)
    [callback] = slider.js_property_callbacks["change:value"]
    assert isinstance(callback, CustomJS) and callback.code == load_js("memory_step")
    assert callback.args["memory_at_step"] is explorer.sources["memory_at_step"]
    assert callback.args["store"] is explorer.sources["memory_trace"] and callback.args["slider"] is slider
    assert len(callback.args["spans"]) == 3 + 1 + 4 + 2  # inputs, targets, outputs; write; 4 reads; usage, alloc
    assert layout.select_one({"name": "ntm_panels"}).visible == (which == "ntm")
    assert layout.select_one({"name": "dnc_panels"}).visible == (which == "dnc")
    R = explorer.data["read_weights"].shape[1]
    assert [fig.visible for fig in explorer.read_maps] == [r < R for r in range(4)]


def test_sources_start_at_the_last_step(ntm_explorer, ntm_data, dnc_explorer, dnc_data):
    s = ntm_explorer.sources
    np.testing.assert_array_equal(s["memory_at_step"].data["value"], ntm_data["memory"][-1].astype(np.float32).ravel())
    assert list(s["memory_at_step"].data["slot"][:W + 1]) == [0] * W + [1]  # row-major: M[slot, col]
    weights = s["weights_at_step"].data
    assert list(weights["head"]) == ["write"] * N + ["read 1"] * N
    np.testing.assert_allclose(weights["weight"][:N], ntm_data["write_weights"][-1], rtol=1e-6)
    np.testing.assert_allclose(weights["weight"][N:], ntm_data["read_weights"][-1, 0], rtol=1e-6)
    np.testing.assert_allclose(s["erase_add_at_step"].data["erase"], ntm_data["erase"][-1], rtol=1e-6)
    assert len(s["link_at_step"].data["value"]) == 0
    d = dnc_explorer.sources
    np.testing.assert_allclose(d["link_at_step"].data["value"], dnc_data["link"][-1].ravel(), rtol=1e-6)
    np.testing.assert_allclose(d["usage_at_step"].data["allocation"], dnc_data["allocation"][-1], rtol=1e-6)
    assert len(d["weights_at_step"].data["weight"]) == 3 * N  # write + 2 read heads
    caption = dnc_explorer.layout.select_one({"name": "memory_caption"}).text
    assert caption.startswith("<b>step 6 of 6</b>. Write head: slot ") and "write gate " in caption
    assert caption.count("<br>Read head") == 2 and "modes backward " in caption and "free gate" in caption


def test_the_store_holds_float32_arrays(dnc_explorer):
    store = dnc_explorer.sources["memory_trace"].data
    assert (store["kind"], store["T"], store["N"], store["W"], store["R"]) == (["dnc"], [6], [N], [W], [2])
    assert store["link"][0].dtype == np.float32 and store["link"][0].shape == (6 * N * N,)
    assert store["memory"][0].shape == (6 * N * W,) and store["erase"][0].shape == (1,)  # a DNC has no erase trace
    over_time = dnc_explorer.sources["memory_over_time"].data
    assert over_time["read_1"][0].shape == (N, 6) and over_time["read_2"][0].shape == (1, 1)
    assert over_time["targets"][0].dtype == np.float32 and np.isnan(over_time["targets"][0][:, :4]).all()


def test_static_html_is_light_and_uses_the_pages_bokehjs(dnc_explorer):
    page = dnc_explorer.static_html()
    for name in NAMED:
        assert name in page, name
    assert "BEGIN bokeh.min.js" not in page and "cdn.bokeh.org" not in page


def test_page_weight_at_the_largest_size():
    args = hand_made("dnc", T=80, n=32, w=16, R=4)  # 80 * 32 * (32 + 16) = 122,880 values, under the budget
    page = MemoryExplorer(prepare(args, outputs=np.zeros((80, 4)))).static_html()
    assert len(page) < 1_000_000, len(page)


STEP_SOURCES = ("memory_at_step", "weights_at_step", "erase_add_at_step", "usage_at_step", "link_at_step")
STEP_READ = ("({sources: {" + ", ".join(f"{name}: a.{name}.data" for name in STEP_SOURCES) + "}, "
             "span: a.spans[0].location, caption: a.caption.text})")


@pytest.mark.parametrize("which", ["ntm", "dnc"])
def test_the_slider_js_shows_what_python_shows_at_every_step(which, ntm_explorer, dnc_explorer):
    explorer = ntm_explorer if which == "ntm" else dnc_explorer
    data = explorer.data
    [callback] = explorer.layout.select_one({"name": "memory_time_slider"}).js_property_callbacks["change:value"]
    steps = run_callback(callback, [{"slider": t} for t in range(1, 7)], STEP_READ)
    for t, got in enumerate(steps):
        want = MemoryExplorer._at_step(data, t)  # what Python shows at step t (float32, as the page holds)
        for name, cols in got["sources"].items():
            assert set(cols) == set(want[name]), name
            for col, values in cols.items():
                expected = want[name][col]
                if len(expected) and isinstance(expected[0], str):
                    assert list(values) == list(expected), f"{name}.{col}"
                else:
                    np.testing.assert_array_equal(np.asarray(values, dtype=np.float64),
                                                  np.asarray(expected, dtype=np.float64), err_msg=f"{name}.{col}")
        assert got["span"] == t + 1
        assert got["caption"] == MemoryExplorer.caption(data, t), t


def test_update_moves_the_slider_and_switches_kind(ntm_data, dnc_data):
    explorer = MemoryExplorer(ntm_data)
    explorer.layout  # noqa: B018 (built first, as show() does)
    explorer.layout.select_one({"name": "memory_time_slider"}).value = 3
    explorer.update(dnc_data)
    layout = explorer.layout
    slider = layout.select_one({"name": "memory_time_slider"})
    assert (slider.end, slider.value) == (6, 3)  # kept where the reader left it
    assert layout.select_one({"name": "dnc_panels"}).visible and not layout.select_one({"name": "ntm_panels"}).visible
    assert [fig.visible for fig in explorer.read_maps] == [True, True, False, False]
    np.testing.assert_allclose(explorer.sources["link_at_step"].data["value"], dnc_data["link"][2].ravel(), rtol=1e-6)
    assert layout.select_one({"name": "memory_caption"}).text.startswith("<b>step 3 of 6</b>")
    short = prepare(hand_made("ntm", T=2, n=5, w=2))
    explorer.update(short)
    assert (slider.end, slider.value) == (2, 2)  # clamped to the new length
    assert (explorer.slot_range.end, explorer.col_range.end, explorer.x_range.end) == (4.5, 1.5, 2.5)
    assert not explorer.io_figs["targets"].visible and not explorer.io_figs["outputs"].visible


# Layer 3: live controls --------------------------------------------------------------------------


@pytest.fixture
def calls() -> list[dict]:
    return []


@pytest.fixture
def live(calls) -> MemoryExplorer:
    """A live NTM explorer whose compute (what a chapter supplies) records its settings in ``calls``."""
    net = model("ntm")

    def compute(settings):
        calls.append(dict(settings))
        tr, x, y, _, vectors = run("ntm", net, settings["sequence"])
        return MemoryExplorer.from_trace(tr, "ntm", x[0], targets=vectors, outputs=torch.sigmoid(y[0]))

    explorer = MemoryExplorer(compute({"example": None, "sequence": DEFAULT_SEQUENCE}), compute=compute)
    explorer.layout  # noqa: B018
    explorer.status_widget()
    calls.clear()
    return explorer


def test_recompute_redraws_a_longer_sequence(live):
    assert live.data["memory"].shape[0] == 8  # 3 vectors: 2 * 3 + 2 steps
    assert live.recompute({"example": None, "sequence": "1011 0110 1110 0001 1111"}) is True
    assert live.data["memory"].shape[0] == 12 and live.last_error is None
    assert live.sources["memory_trace"].data["T"] == [12]
    assert live.sources["memory_over_time"].data["write"][0].shape == (N, 12)
    assert live.layout.select_one({"name": "memory_time_slider"}).end == 12


def test_recompute_keeps_the_figures_when_compute_refuses(live):
    before = live.data
    values = list(live.sources["memory_at_step"].data["value"])
    assert live.recompute({"example": None, "sequence": "1011 012"}) is False
    assert live.data is before and list(live.sources["memory_at_step"].data["value"]) == values
    assert live.last_error == "Not updated: expected only 0 and 1, got '2' in group 2 ('012')"
    assert live.status_widget().value == live.last_error


def test_the_text_box_drives_compute(live, calls):
    [text] = live.controls()
    assert isinstance(text, ipywidgets.Text) and text.value == DEFAULT_SEQUENCE
    text.value = "1111 0000"
    assert calls == [{"example": None, "sequence": "1111 0000"}] and live.data["memory"].shape[0] == 6
    text.value = "11"
    assert live.data["memory"].shape[0] == 6 and live.last_error.startswith("Not updated: expected every group")


EXAMPLES = {"three vectors": "1011 0110 1110", "one vector": "1001"}


@pytest.fixture
def with_examples(calls) -> tuple[MemoryExplorer, ipywidgets.Dropdown, ipywidgets.Text]:
    net = model("ntm")

    def compute(settings):
        calls.append(dict(settings))
        tr, x, y, _, _ = run("ntm", net, settings["sequence"])
        return MemoryExplorer.from_trace(tr, "ntm", x[0])

    explorer = MemoryExplorer(compute({"example": None, "sequence": EXAMPLES["three vectors"]}), compute=compute,
                              examples=EXAMPLES)
    explorer.layout  # noqa: B018
    explorer.status_widget()
    choose, text = explorer.controls()
    calls.clear()
    return explorer, choose, text


def test_examples_add_a_dropdown(with_examples, calls):
    explorer, choose, text = with_examples
    assert isinstance(choose, ipywidgets.Dropdown) and list(choose.options) == list(EXAMPLES)
    assert text.value == EXAMPLES["three vectors"]
    choose.value = "one vector"  # one recompute, with that example's text
    assert calls == [{"example": "one vector", "sequence": "1001"}] and text.value == "1001"
    assert explorer.data["memory"].shape[0] == 4
    text.value = "1100 0011"
    assert calls[-1] == {"example": "one vector", "sequence": "1100 0011"}
    choose.value = "three vectors"
    choose.value = "one vector"  # the reader's edit comes back
    assert text.value == "1100 0011"


# One failure path: any error, the last good figures, the controls back on them ---------------------------------

def agree(explorer: MemoryExplorer, choose, text) -> tuple[str, str]:
    """The controls show the settings, and the figures were made from that sequence (2L + 2 steps)."""
    assert (choose.value, text.value) == (explorer.settings["example"], explorer.settings["sequence"])
    vectors = MemoryExplorer.parse_bit_vectors(text.value)
    assert explorer.data["memory"].shape[0] == 2 * len(vectors) + 2
    np.testing.assert_array_equal(explorer.data["inputs"][1 : len(vectors) + 1, :BITS], vectors)
    return choose.value, text.value


def test_an_unexpected_error_in_compute_is_reported_and_the_controls_snap_back(with_examples, monkeypatch):
    explorer, choose, text = with_examples
    before, data = agree(explorer, choose, text), explorer.data
    values = list(explorer.sources["memory_at_step"].data["value"])

    def lost(settings):
        raise MemoryError()

    monkeypatch.setattr(explorer, "compute", lost)
    for control, value in ((choose, "one vector"), (text, "1111 0000")):
        control.value = value
        assert explorer.last_error == "Not updated: MemoryError" == explorer.status_widget().value
        assert explorer.data is data and list(explorer.sources["memory_at_step"].data["value"]) == values
        assert agree(explorer, choose, text) == before


def test_a_refused_example_leaves_both_controls_on_the_figures(with_examples, calls):
    explorer, choose, text = with_examples
    explorer.examples["one vector"] = "10z1"  # as if the reader had left a bad text there
    choose.value = "one vector"
    assert explorer.last_error == "Not updated: expected only 0 and 1, got 'z' in group 1 ('10z1')"
    assert agree(explorer, choose, text) == ("three vectors", EXAMPLES["three vectors"])
    text.value = "11"  # a group of another width
    assert explorer.last_error.startswith("Not updated: expected every group to have 4 bits")
    assert agree(explorer, choose, text) == ("three vectors", EXAMPLES["three vectors"])
    text.value = "1100 0011"
    assert explorer.last_error is None and agree(explorer, choose, text) == ("three vectors", "1100 0011")


def test_a_sequence_too_long_is_refused_before_the_model_runs(with_examples, calls, monkeypatch):
    explorer, choose, text = with_examples
    before = agree(explorer, choose, text)
    text.value = " ".join(["1010"] * 81)
    assert explorer.last_error == ("Not updated: expected at most 80 groups in sequence (each one a step or more, and "
                                   "the explorer draws at most 80 steps: the model is not run), got 81")
    monkeypatch.setattr(MemoryExplorer, "max_text", 20)
    text.value = "1010 " * 5
    assert explorer.last_error == ("Not updated: expected sequence of at most 20 characters (longer input is not "
                                   "run), got 25")
    assert calls == [] and agree(explorer, choose, text) == before
    assert explorer.recompute({"example": "two vectors"}) is False
    assert explorer.last_error == ("Not updated: expected example one of ['three vectors', 'one vector'], got "
                                   "'two vectors'")


# The addressing pipeline -------------------------------------------------------------------------


def memlib_stages(memory, key, previous, beta, g, shift, gamma) -> dict[str, np.ndarray]:
    """The four stages straight from memlib.memory.addressing's functions, one by one, in float64."""
    f64 = torch.float64
    M = torch.tensor(memory, dtype=f64)[None]  # (1, N, W)
    k = torch.tensor(key, dtype=f64)[None, None]  # (1, 1, W)
    prev = torch.tensor(previous, dtype=f64)[None, None]  # (1, 1, N)
    s = torch.tensor([max(-shift, 0), 1 - abs(shift), max(shift, 0)], dtype=f64)[None, None]
    content = addressing.content_weighting(M, k, torch.tensor([[beta]], dtype=f64))
    gated = addressing.interpolate(content, prev, torch.tensor([[g]], dtype=f64))
    shifted = addressing.shift(gated, s)
    sharpened = addressing.sharpen(shifted, torch.tensor([[gamma]], dtype=f64))
    return {"similarity": addressing.cosine_similarity(M, k)[0, 0].numpy(), "content": content[0, 0].numpy(),
            "gated": gated[0, 0].numpy(), "shifted": shifted[0, 0].numpy(), "sharpened": sharpened[0, 0].numpy()}


@pytest.fixture(scope="module")
def pipeline() -> AddressingPipeline:
    return AddressingPipeline()


def test_pipeline_starts_with_memlibs_numbers(pipeline):
    memory, key, previous = example_memory()
    want = memlib_stages(memory, key, previous, **PIPELINE_DEFAULTS)
    for stage in ("content", "gated", "shifted", "sharpened"):
        np.testing.assert_allclose(pipeline.sources[f"pipeline_{stage}"].data["weight"], want[stage], rtol=0,
                                   atol=1e-15, err_msg=stage)
    np.testing.assert_allclose(pipeline.sources["pipeline_inputs"].data["similarity"], want["similarity"], atol=1e-15)
    np.testing.assert_array_equal(pipeline.sources["pipeline_kernel"].data["s"], shift_kernel(0.8))
    assert int(want["content"].argmax()) == 5 and int(want["sharpened"].argmax()) == 6  # found, then moved up
    caption = pipeline.layout.select_one({"name": "pipeline_caption"}).text
    assert caption == "Focus after each stage: content slot 5 (0.71), gated slot 5 (0.57), shifted slot 6 (0.46), " \
                      "sharpened slot 6 (0.83)."


def test_pipeline_names_its_models_and_every_slider_drives_the_js(pipeline):
    layout = pipeline.layout
    callbacks = set()
    for name, value in PIPELINE_DEFAULTS.items():
        slider = layout.select_one({"name": f"pipeline_{name}"})
        assert isinstance(slider, Slider) and slider.value == value
        [callback] = slider.js_property_callbacks["change:value"]
        assert load_js("addressing") in callback.code and callback.args[name] is slider
        callbacks.add(id(callback))
    assert len(callbacks) == 1
    page = pipeline.static_html()
    for name in ("pipeline_content", "pipeline_gated", "pipeline_shifted", "pipeline_sharpened", "pipeline_setup",
                 "pipeline_caption", "pipeline_memory", "addressing_pipeline"):
        assert name in page, name


PIPELINE_RUN = """return settings.map(([b, g, x, gamma]) => address_pipeline(M, N, W, key, prev, b, g, shift_kernel(x),
  gamma));"""


SETTINGS = [tuple(PIPELINE_DEFAULTS.values()), (0.0, 1.0, 0.0, 1.0), (20.0, 0.0, -1.0, 10.0), (3.5, 0.35, -0.45, 1.7),
            (12.0, 0.5, 0.25, 4.2), (0.5, 0.95, 1.0, 1.0)]


def test_the_pages_js_computes_what_memlib_computes():
    memory, key, previous = example_memory()
    args = {"M": memory.ravel().tolist(), "N": 8, "W": 5, "key": key.tolist(), "prev": previous.tolist(),
            "settings": SETTINGS}
    [results] = run_js(load_js("addressing") + "\n" + PIPELINE_RUN, args, [{}], "r")
    worst = 0.0
    for settings, got in zip(SETTINGS, results, strict=True):
        want = memlib_stages(memory, key, previous, *settings)
        for stage, values in want.items():
            np.testing.assert_allclose(got[stage], values, rtol=0, atol=1e-12, err_msg=f"{stage} at {settings}")
            worst = max(worst, float(np.abs(np.asarray(got[stage]) - values).max()))
    assert worst < 1e-12


PIPELINE_READ = ("({caption: a.caption.text, " + ", ".join(
    f"{name}: a.{name}.data" for name in ("inputs", "kernel", "content", "gated", "shifted", "sharpened")) + "})")


def test_the_pipeline_sliders_js_draws_what_python_draws(pipeline):
    [callback] = pipeline.layout.select_one({"name": "pipeline_beta"}).js_property_callbacks["change:value"]
    assert callback.code == load_js("addressing", "addressing_pipeline")
    memory, key, previous = example_memory()
    cases = [dict(zip(PIPELINE_DEFAULTS, settings, strict=True)) for settings in SETTINGS]
    for case, got in zip(cases, run_callback(callback, cases, PIPELINE_READ), strict=True):
        data = AddressingPipeline.prepare(memory, key, previous, **case)
        want = pipeline.source_data(data)
        for name, cols in got.items():
            if name == "caption":
                assert cols == AddressingPipeline.caption(data), case
                continue
            assert set(cols) == set(want[f"pipeline_{name}"]), (case, name)
            for col, values in cols.items():
                np.testing.assert_allclose(values, want[f"pipeline_{name}"][col], rtol=0, atol=1e-12,
                                           err_msg=f"{name}.{col} at {case}")


@pytest.mark.parametrize("change, message", [
    ({"memory": np.zeros((1, 5))}, r"memory: expected shape \(N, W\) with 2 <= N <= 32 .*got \(1, 5\)"),
    ({"key": np.zeros(4)}, r"key: expected shape \(W,\) = \(5,\), got \(4,\)"),
    ({"previous": np.full(8, 0.5)}, r"previous: expected each weighting over the 8 slots to sum to 1"),
    ({"gamma": 0.5}, r"expected gamma a number in \[1, 10\] \(the slider's range\), got 0.5"),
    ({"g": True}, r"expected g a number in \[0, 1\]"),
])
def test_pipeline_prepare_says_what_it_expected(change, message):
    memory, key, previous = example_memory()
    args = {"memory": memory, "key": key, "previous": previous, **change}
    with pytest.raises(ValueError, match=message):
        AddressingPipeline.prepare(**args)


# Width: the book's output column is 688 px; every layout stays within 660 -----------------------


def footprint(model) -> int:
    """Width a Bokeh model takes: a row adds its children, a column takes the widest, margins included.

    Hidden children count too: which panels show depends on the data (NTM or DNC), and a layout must
    fit in every case.
    """
    margin = model.margin if model.margin is not None else 0
    sides = (margin, margin) if isinstance(margin, int) else (margin[-1], margin[1] if len(margin) > 1 else margin[0])
    if isinstance(model, Row):
        inner = sum(footprint(c) for c in model.children) + model.spacing * max(len(model.children) - 1, 0)
    elif isinstance(model, Column):
        inner = max((footprint(c) for c in model.children), default=0)
    else:
        assert model.width is not None, f"{type(model).__name__} {model.name!r} has no fixed width"
        inner = model.width
    return inner + sum(sides)


@pytest.mark.parametrize("which", ["ntm", "dnc", "pipeline"])
def test_every_layout_fits_the_books_column(which, ntm_explorer, dnc_explorer, pipeline):
    explorer = {"ntm": ntm_explorer, "dnc": dnc_explorer, "pipeline": pipeline}[which]
    assert WIDTH <= 660
    assert footprint(explorer.layout) <= WIDTH, footprint(explorer.layout)


def test_the_live_text_box_fits_the_books_column(live):
    [text] = live.controls()
    assert int(text.layout.width.removesuffix("px")) <= WIDTH


def test_the_example_dropdown_is_as_wide_as_the_text_box(with_examples):
    _, choose, text = with_examples
    assert choose.layout.width == text.layout.width == f"{WIDTH}px"  # the default 300 px cut the longer labels
