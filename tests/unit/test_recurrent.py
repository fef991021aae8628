"""memlib.recurrent: parity with torch.nn on both paths, packed and unbatched input, cells, traces, errors.

Shapes: ``T`` time, ``B`` batch, ``I`` input features, ``H`` hidden width, ``L`` layers, ``D`` directions.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_sequence
from torch.testing import assert_close

import memlib
from memlib import recurrent
from memlib.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from memlib.tracing import reference_path

# Touches precision or CPU kernels: `make test` runs these again under a restricted instruction set.
pytestmark = pytest.mark.kernels

T, B, I, H = 4, 3, 5, 4  # noqa: E741 (I as in the shape legend); small: the 256-case grid runs in seconds

FAMILIES = {  # name: (torch.nn class, memlib class, extra constructor arguments)
    "rnn_tanh": (nn.RNN, RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, LSTM, {}),
    "gru": (nn.GRU, GRU, {}),
}
PATHS = {"fused": contextlib.nullcontext, "reference": memlib.trace}



def make_pair(family: str, dev: torch.device, **kwargs) -> tuple[nn.Module, nn.Module]:
    """A torch.nn module and a memlib module holding the same float64 weights."""
    torch_cls, memlib_cls, extra = FAMILIES[family]
    reference = torch_cls(I, H, **extra, **kwargs).to(dev, torch.float64)
    model = memlib_cls(I, H, **extra, **kwargs).to(dev, torch.float64)
    model.load_state_dict(reference.state_dict())
    return reference, model


def initial_state(family: str, shape: tuple[int, ...], dev: torch.device):
    """Random h0 (or (h0, c0) for the LSTM) that requires grad."""
    n = 2 if family == "lstm" else 1
    state = tuple(torch.randn(shape, dtype=torch.float64, device=dev, requires_grad=True) for _ in range(n))
    return state if n == 2 else state[0]


def leaves(x) -> list[torch.Tensor]:
    return list(x) if isinstance(x, tuple) else [x]


def run_and_grad(module: nn.Module, x: torch.Tensor | PackedSequence, hx, weights: list[torch.Tensor]):
    """Outputs, final states and the gradients of a fixed random projection of them w.r.t. inputs and weights."""
    output, state = module(x, hx)
    out = output.data if isinstance(output, PackedSequence) else output
    states = leaves(state)
    loss = (out * weights[0]).sum() + sum((s * w).sum() for s, w in zip(states, weights[1:], strict=False))
    inputs = [x.data if isinstance(x, PackedSequence) else x] + (leaves(hx) if hx is not None else [])
    params = [p for _, p in sorted(module.named_parameters())]
    grads = torch.autograd.grad(loss, inputs + params)
    return out, states, grads


def assert_parity(reference, model, x, hx, path):
    output, state = reference(x, hx)
    out = output.data if isinstance(output, PackedSequence) else output
    weights = [torch.randn_like(out)] + [torch.randn_like(s) for s in leaves(state)]
    expected = run_and_grad(reference, x, hx, weights)
    with PATHS[path]():
        actual = run_and_grad(model, x, hx, weights)
    assert_close(actual[0], expected[0])
    assert_close(actual[1], expected[1])
    assert_close(actual[2], expected[2])


GRID = list(itertools.product([1, 2], [False, True], [False, True], [True, False], [False, True]))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("num_layers", "bidirectional", "batch_first", "bias", "with_state"), GRID)
def test_parity_with_torch(dev, family, path, num_layers, bidirectional, batch_first, bias, with_state):
    kwargs = {"num_layers": num_layers, "bidirectional": bidirectional, "batch_first": batch_first, "bias": bias}
    reference, model = make_pair(family, dev, **kwargs)
    shape = (B, T, I) if batch_first else (T, B, I)
    x = torch.randn(shape, dtype=torch.float64, device=dev, requires_grad=True)
    D = 2 if bidirectional else 1
    hx = initial_state(family, (num_layers * D, B, H), dev) if with_state else None
    assert_parity(reference, model, x, hx, path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("with_state", [False, True])
def test_packed_parity(dev, family, path, with_state):
    reference, model = make_pair(family, dev, num_layers=2, bidirectional=True)
    lengths = [3, 6, 1, 6, 2]  # unsorted, with a tie
    sequences = [torch.randn(n, I, dtype=torch.float64, device=dev) for n in lengths]
    x = pack_sequence(sequences, enforce_sorted=False)
    x = PackedSequence(x.data.requires_grad_(), x.batch_sizes, x.sorted_indices, x.unsorted_indices)
    hx = initial_state(family, (4, len(lengths), H), dev) if with_state else None
    assert_parity(reference, model, x, hx, path)
    with PATHS[path]():
        output, _ = model(x, hx)
    assert isinstance(output, PackedSequence)
    assert torch.equal(output.batch_sizes, x.batch_sizes)
    assert torch.equal(output.unsorted_indices, x.unsorted_indices)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("batch_first", "with_state"), [(False, False), (True, True)])
def test_unbatched_parity(dev, family, path, batch_first, with_state):
    reference, model = make_pair(family, dev, num_layers=2, bidirectional=True, batch_first=batch_first)
    x = torch.randn(T, I, dtype=torch.float64, device=dev, requires_grad=True)  # (T, I)
    hx = initial_state(family, (4, H), dev) if with_state else None
    assert_parity(reference, model, x, hx, path)
    with PATHS[path]():
        output, state = model(x, hx)
    assert output.shape == (T, 2 * H)
    assert all(s.shape == (4, H) for s in leaves(state))


@pytest.mark.parametrize("family", FAMILIES)
def test_same_initialisation_as_torch(family):
    torch_cls, memlib_cls, extra = FAMILIES[family]
    torch.manual_seed(1)
    expected = torch_cls(I, H, num_layers=2, bidirectional=True, **extra).state_dict()
    torch.manual_seed(1)
    actual = memlib_cls(I, H, num_layers=2, bidirectional=True, **extra).state_dict()
    assert list(actual) == list(expected)
    for name in expected:
        assert_close(actual[name], expected[name])
    bound = 1 / H**0.5
    assert all(v.abs().max() <= bound for v in actual.values())


def test_reference_path_runs_without_fused_kernels(monkeypatch):
    _, model = make_pair("lstm", torch.device("cpu"))
    x = torch.randn(T, B, I, dtype=torch.float64)
    expected, _ = model(x)
    monkeypatch.setattr(recurrent, "_VF", None)  # any fused call would now fail
    with reference_path():
        actual, _ = model(x)
    assert_close(actual, expected)


CELLS = {  # name: (torch.nn class, memlib class, extra constructor arguments, number of state tensors)
    "rnn_tanh": (nn.RNNCell, RNNCell, {"nonlinearity": "tanh"}, 1),
    "rnn_relu": (nn.RNNCell, RNNCell, {"nonlinearity": "relu"}, 1),
    "lstm": (nn.LSTMCell, LSTMCell, {}, 2),
    "gru": (nn.GRUCell, GRUCell, {}, 1),
}


def make_cells(name: str, dev: torch.device, bias: bool = True) -> tuple[nn.Module, nn.Module]:
    torch_cls, memlib_cls, extra, _ = CELLS[name]
    reference = torch_cls(I, H, bias=bias, **extra).to(dev, torch.float64)
    cell = memlib_cls(I, H, bias=bias, **extra).to(dev, torch.float64)
    cell.load_state_dict(reference.state_dict())
    return reference, cell


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("batched", "with_state"), [(True, False), (True, True), (False, True)])
def test_cell_parity(dev, name, bias, batched, with_state):
    reference, cell = make_cells(name, dev, bias)
    shape = (B,) if batched else ()
    x = torch.randn(*shape, I, dtype=torch.float64, device=dev)
    n = CELLS[name][3]
    hx = tuple(torch.randn(*shape, H, dtype=torch.float64, device=dev) for _ in range(n)) if with_state else None
    hx = hx[0] if hx is not None and n == 1 else hx
    expected, actual = reference(x, hx), cell(x, hx)
    assert_close(actual, expected)
    assert all(s.shape == (*shape, H) for s in leaves(actual))


@pytest.mark.parametrize("name", CELLS)
def test_cell_gradcheck(dev, name):
    _, cell = make_cells(name, dev)
    x = torch.randn(2, I, dtype=torch.float64, device=dev, requires_grad=True)
    n = CELLS[name][3]
    state = [torch.randn(2, H, dtype=torch.float64, device=dev, requires_grad=True) for _ in range(n)]
    names = [k for k, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in cell.named_parameters()]

    def step(x, *rest):
        hx = tuple(rest[:n]) if n == 2 else rest[0]
        return functional_call(cell, dict(zip(names, rest[n:], strict=True)), (x, hx))

    if name == "rnn_relu":  # relu has a kink at 0: keep every preactivation away from it
        with torch.no_grad():
            params[-1].add_(5.0)
    assert torch.autograd.gradcheck(step, (x, *state, *params))


@pytest.mark.parametrize("path", PATHS)
def test_dropout(dev, path):
    model = LSTM(I, H, num_layers=2, dropout=0.5).to(dev, torch.float64)
    plain = LSTM(I, H, num_layers=2).to(dev, torch.float64)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64, device=dev)
    model.eval()
    with PATHS[path]():
        assert_close(model(x)[0], plain(x)[0])
        evaluated = model(x)[0]
        model.train()
        trained = model(x)[0]
    assert not torch.allclose(trained, evaluated)


def test_dropout_warns_with_one_layer():
    with pytest.warns(UserWarning, match="num_layers=1"):
        LSTM(I, H, dropout=0.5)


LSTM_NAMES = ["input_gate", "forget_gate", "output_gate", "candidate", "cell", "hidden"]


def test_lstm_trace_names_and_shapes(dev):
    model = LSTM(I, H).to(dev, torch.float64)
    x = torch.randn(5, 3, I, dtype=torch.float64, device=dev)  # T=5, B=3
    with memlib.trace() as tr:
        output, (h, c) = model(x)
    assert sorted(tr.names()) == sorted(f"lstm.{n}.l0" for n in LSTM_NAMES)
    for name in tr.names():
        assert len(tr[name]) == 5
        assert all(v.shape == (3, H) for v in tr[name])
    for gate in ("input_gate", "forget_gate", "output_gate"):
        values = tr.stack(f"lstm.{gate}.l0")
        assert ((values > 0) & (values < 1)).all()
    assert_close(tr.stack("lstm.hidden.l0"), output)
    assert_close(tr.last("lstm.cell.l0"), c[0])


@pytest.mark.parametrize(
    ("family", "names"),
    [
        ("gru", ["reset_gate", "update_gate", "candidate", "hidden"]),
        ("rnn_tanh", ["preactivation", "hidden"]),
        ("lstm", LSTM_NAMES),
    ],
)
def test_trace_layers_and_directions(family, names):
    _, model = make_pair(family, torch.device("cpu"), num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, dtype=torch.float64)
    with memlib.trace() as tr:
        output, _ = model(x)
    prefix = family.split("_")[0]
    suffixes = [".l0", ".l0_reverse", ".l1", ".l1_reverse"]
    assert sorted(tr.names()) == sorted(f"{prefix}.{n}{s}" for n in names for s in suffixes)
    assert all(len(tr[name]) == T for name in tr.names())
    # Forward names run in time order, _reverse names from the last step to the first.
    assert_close(tr.stack(f"{prefix}.hidden.l1"), output[..., :H])
    assert_close(tr.stack(f"{prefix}.hidden.l1_reverse").flip(0), output[..., H:])


def test_packed_trace_records_running_rows():
    _, model = make_pair("gru", torch.device("cpu"))
    x = pack_sequence([torch.randn(n, I, dtype=torch.float64) for n in (2, 4, 1)], enforce_sorted=False)
    with memlib.trace() as tr:
        model(x)
    assert [v.shape[0] for v in tr["gru.hidden.l0"]] == x.batch_sizes.tolist()  # [3, 2, 1, 1]


def test_cell_records_bare_names():
    with memlib.trace() as tr:
        LSTMCell(I, H).double()(torch.randn(B, I, dtype=torch.float64))
    assert sorted(tr.names()) == sorted(f"lstm.{n}" for n in LSTM_NAMES)


def test_nothing_recorded_outside_a_trace():
    _, model = make_pair("lstm", torch.device("cpu"))
    with memlib.trace() as tr:
        pass
    with reference_path():
        model(torch.randn(T, B, I, dtype=torch.float64))
    LSTMCell(I, H).double()(torch.randn(B, I, dtype=torch.float64))
    assert len(tr) == 0


def _lstm(**kwargs):
    return LSTM(I, H, **kwargs).double()


def _x(*shape, dtype=torch.float64):
    return torch.randn(shape).to(dtype)


BAD_INPUTS = [  # (call, exception, message with the expected and the actual value)
    (lambda: _lstm()(_x(T, B, 7)), ValueError, r"expected input of size 5, got 7"),
    (lambda: _lstm()(_x(T, B, I, dtype=torch.int64)), TypeError, r"floating-point input, got torch.int64"),
    (lambda: _lstm()(_x(T, B, I, dtype=torch.float32)), TypeError, r"dtype torch.float64 .*got torch.float32"),
    (lambda: _lstm()(_x(0, B, I)), ValueError, r"non-empty.*\(0, 3, 5\)"),
    (lambda: _lstm()(_x(T, B, 2, I)), ValueError, r"expected input of shape \(T, B, I\).*got 4-D"),
    (lambda: _lstm()(_x(I)), ValueError, r"expected input of shape .*got 1-D"),
    (lambda: _lstm()([1.0, 2.0]), TypeError, r"expected input as a tensor .*got list"),
    (lambda: _lstm()(_x(T, B, I), _x(1, B, H)), TypeError, r"expected hx as a tuple \(h0, c0\), got Tensor"),
    (lambda: _lstm()(_x(T, B, I), (_x(1, B, H), _x(1, 2, H))), ValueError, r"c0 of shape \(1, 3, 4\), got \(1, 2, 4\)"),
    (lambda: GRU(I, H, 2).double()(_x(T, B, I), _x(1, B, H)), ValueError, r"h0 of shape \(2, 3, 4\), got \(1, 3, 4\)"),
    (lambda: GRU(I, H).double()(_x(T, I), _x(1, B, H)), ValueError, r"h0 of shape \(1, 4\), got \(1, 3, 4\)"),
    (lambda: RNN(I, H).double()(_x(T, B, I), _x(1, B, H, dtype=torch.float32)), TypeError, r"h0 of dtype"),
    (lambda: LSTMCell(I, H).double()(_x(B, 7)), ValueError, r"expected input of size 5, got 7"),
    (lambda: GRUCell(I, H).double()(_x(B, I), _x(2, H)), ValueError, r"h0 of shape \(3, 4\), got \(2, 4\)"),
    (lambda: RNN(I, H, nonlinearity="sigmoid"), ValueError, r"'tanh' or 'relu', got 'sigmoid'"),
    (lambda: RNNCell(I, H, nonlinearity="gelu"), ValueError, r"'tanh' or 'relu', got 'gelu'"),
    (lambda: LSTM(I, 0), ValueError, r"hidden_size as a positive integer, got 0"),
    (lambda: GRU(I, H, num_layers=0), ValueError, r"num_layers as a positive integer, got 0"),
    (lambda: GRU(I, H, 2, dropout=1.5), ValueError, r"dropout as a probability in \[0, 1\], got 1.5"),
    (lambda: LSTM(I, H, proj_size=2), TypeError, r"proj_size"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_INPUTS)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("path", PATHS)
def test_tensors_on_input_device_and_dtype(dev, path):
    model = GRU(I, H, num_layers=2).to(dev, torch.float32)
    with PATHS[path]():
        output, h = model(torch.randn(T, B, I, device=dev))
    assert output.device.type == h.device.type == dev.type
    assert output.dtype == h.dtype == torch.float32


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fused_path_gets_contiguous_weights_on_cuda(family):
    """On CUDA the weights share one cuDNN buffer (no per-call copy, no warning), after .to() and load_state_dict."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA: on the CPU flatten_parameters() is a no-op")
    reference, model = make_pair(family, torch.device("cuda"), num_layers=2, bidirectional=True)
    model = model.float()  # a dtype change makes new tensors: they are laid out again
    reference = reference.float()
    x = torch.randn(T, B, I, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "not part of single contiguous chunk of memory" would fail here
        out, _ = model(x)
    assert_close(out, reference(x)[0])


def test_flatten_parameters_is_a_no_op_on_the_cpu():
    model = LSTM(I, H, num_layers=2)
    before = {n: p.data_ptr() for n, p in model.named_parameters()}
    model.flatten_parameters()
    assert before == {n: p.data_ptr() for n, p in model.named_parameters()}
