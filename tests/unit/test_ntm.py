"""memlib.memory.ntm: state in and out, sequence = steps, traces, gradients, a short training run, errors.

Shapes: ``B`` batch, ``T`` time, ``I`` input features, ``O`` outputs, ``H`` controller width, ``N`` slots,
``W`` slot width, ``R`` read heads, ``S`` shift kernel size.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import memlib
from memlib.memory.ntm import NTM, NTMState
from memlib.tasks.sequences import copy_batch

B, T, I, O, H, N, W, R = 2, 5, 4, 3, 6, 5, 4, 2  # noqa: E741 (I as in the shape legend)
S = 3



def make(controller: str = "lstm", dev="cpu", dtype=torch.float64) -> NTM:
    model = NTM(I, O, controller_size=H, memory_slots=N, memory_width=W, read_heads=R, controller=controller)
    return model.to(dev, dtype)


def random_state(model: NTM, dev="cpu") -> NTMState:
    """A state away from the initial one (no exact zeros or one-hots), float64."""

    def r(*shape):
        return torch.randn(*shape, dtype=torch.float64, device=dev)

    controller = (r(B, H), r(B, H)) if model.controller_kind == "lstm" else ()
    return NTMState(controller, r(B, N, W), r(B, R, N).softmax(-1), r(B, N).softmax(-1), r(B, R, W))


def leaves(state: NTMState) -> list[torch.Tensor]:
    return [*state.controller, *state[1:]]


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_state_in_state_out_on_the_input_device_and_dtype(dev, controller, dtype):
    model = make(controller, dev, dtype)
    x = torch.randn(B, T, I, device=dev, dtype=dtype)
    y, state = model(x)
    assert y.shape == (B, T, O)
    initial = model.initial_state(B, dev, dtype)
    for before, after in zip(leaves(initial), leaves(state), strict=True):
        assert before.shape == after.shape
        assert after.device.type == dev.type and after.dtype == dtype
    assert y.device.type == dev.type and y.dtype == dtype
    y2, state2 = model(x, state)  # the returned state is accepted as the next one
    assert y2.shape == (B, T, O) and type(state2) is NTMState


def test_initial_state():
    state = make().initial_state(B)
    assert (state.memory == 0).all() and (state.read_vectors == 0).all()
    assert all((c == 0).all() for c in state.controller)
    assert (state.read_weights[..., 0] == 1).all() and state.read_weights.sum() == B * R
    assert (state.write_weights[..., 0] == 1).all() and state.write_weights.sum() == B
    assert make("feedforward").initial_state(B).controller == ()


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_sequence_equals_steps_and_chunks(controller):
    model = make(controller)
    x = torch.randn(B, T, I, dtype=torch.float64)
    y, final = model(x)
    state = None
    for t in range(T):
        y_t, state = model.step(x[:, t], state)
        assert_close(y_t, y[:, t])
    y_a, middle = model(x[:, :2])
    y_b, end = model(x[:, 2:], middle)
    assert_close(torch.cat([y_a, y_b], dim=1), y)
    for a, b in zip(leaves(end), leaves(final), strict=True):
        assert_close(a, b)


DOCUMENTED = {  # name: shape of one step's record
    "ntm.read_weights": (B, R, N),
    "ntm.write_weights": (B, N),
    "ntm.memory": (B, N, W),
    "ntm.erase": (B, W),
    "ntm.add": (B, W),
    "ntm.read_vectors": (B, R, W),
    **{f"ntm.read.{stage}": (B, R, N) for stage in ("content", "gated", "shifted", "sharpened")},
    **{f"ntm.write.{stage}": (B, N) for stage in ("content", "gated", "shifted", "sharpened")},
    "ntm.read.key": (B, R, W),
    "ntm.read.beta": (B, R),
    "ntm.read.g": (B, R),
    "ntm.read.gamma": (B, R),
    "ntm.read.s": (B, R, S),
    "ntm.write.key": (B, W),
    "ntm.write.beta": (B,),
    "ntm.write.g": (B,),
    "ntm.write.gamma": (B,),
    "ntm.write.s": (B, S),
}


def test_trace_records_the_documented_names_and_shapes(dev):
    model = make("feedforward", dev)
    x = torch.randn(B, T, I, dtype=torch.float64, device=dev)
    with memlib.trace() as tr:
        _, state = model(x)
    assert sorted(tr.names()) == sorted(DOCUMENTED)
    for name, shape in DOCUMENTED.items():
        assert len(tr[name]) == T, name
        assert all(v.shape == shape for v in tr[name]), name
    for name in DOCUMENTED:
        if name.endswith(("weights", "content", "gated", "shifted", "sharpened", ".s")):
            values = tr.stack(name)
            assert (values >= 0).all(), name
            assert_close(values.sum(-1), torch.ones_like(values.sum(-1)), msg=name)
    assert (tr.stack("ntm.read.gamma") >= 1).all() and (tr.stack("ntm.write.beta") >= 0).all()
    assert_close(tr.last("ntm.memory"), state.memory)
    assert_close(tr.last("ntm.read_weights"), state.read_weights)
    assert_close(tr.stack("ntm.read.sharpened"), tr.stack("ntm.read_weights"))


def test_lstm_controller_adds_its_own_trace_names():
    with memlib.trace() as tr:
        make("lstm")(torch.randn(B, T, I, dtype=torch.float64))
    assert set(DOCUMENTED) <= set(tr.names())
    assert {n for n in tr.names() if n not in DOCUMENTED} == {
        f"lstm.{n}" for n in ("input_gate", "forget_gate", "output_gate", "candidate", "cell", "hidden")
    }


def test_memory_follows_erase_and_add():
    with memlib.trace() as tr:
        _, state = make()(torch.randn(B, 1, I, dtype=torch.float64))
    w, a = tr.last("ntm.write_weights"), tr.last("ntm.add")
    expected = w[:, :, None] * a[:, None, :]  # the initial memory is zero: only the add remains
    assert_close(state.memory, expected)


def test_gradcheck_one_step(dev):
    model = make("lstm", dev)
    names = [name for name, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    x = torch.randn(B, I, dtype=torch.float64, device=dev, requires_grad=True)
    state = [t.requires_grad_() for t in leaves(random_state(model, dev))]

    def step(x, h, c, *rest):
        memory, read_weights, write_weights, read_vectors = rest[:4]
        given = NTMState((h, c), memory, read_weights, write_weights, read_vectors)
        y, new = torch.func.functional_call(
            model, dict(zip(names, rest[4:], strict=True)), (x[:, None], given)
        )  # T = 1
        return y, new.memory, new.read_weights, new.write_weights

    assert torch.autograd.gradcheck(step, (x, *state, *params), fast_mode=True)


def test_short_copy_training_lowers_the_loss():
    L, K = 2, 4  # tiny: about a second on one CPU thread
    model = NTM(K + 2, K, controller_size=32, memory_slots=6, memory_width=6)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(60):
        batch = copy_batch(8, L, K, seed=0, step=step)
        y, _ = model(batch.inputs)
        loss = F.binary_cross_entropy_with_logits(y[:, -L:], batch.targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert first > 0.65  # chance: log 2 = 0.693 per bit
    assert last < 0.6, f"loss went from {first:.3f} to {last:.3f} in 60 steps"


def _state_with(**fields):
    return make().initial_state(B)._replace(**fields)


BAD_INPUTS = [
    (lambda: make()(torch.randn(B, T, 7, dtype=torch.float64)), ValueError, r"expected input of size I = 4, got 7"),
    (lambda: make()(torch.randn(B, I, dtype=torch.float64)), ValueError, r"shape \(B, T, I\), got 2-D"),
    (lambda: make().step(torch.randn(B, T, I, dtype=torch.float64)), ValueError, r"shape \(B, I\), got 3-D"),
    (lambda: make()(torch.randn(B, T, I)), TypeError, r"dtype torch.float64 .*got torch.float32"),
    (lambda: make()(torch.ones(B, T, I, dtype=torch.int64)), TypeError, r"floating-point input, got torch.int64"),
    (lambda: make()("x"), TypeError, r"expected input as a tensor \(B, T, I\), got str"),
    (
        lambda: make()(torch.randn(B, T, I, dtype=torch.float64), _state_with(memory=torch.zeros(B, N, W + 1))),
        ValueError,
        r"state.memory of shape \(2, 5, 4\), got \(2, 5, 5\)",
    ),
    (
        lambda: make()(torch.randn(B, T, I, dtype=torch.float64), _state_with(read_weights=torch.zeros(B, 1, N))),
        ValueError,
        r"state.read_weights of shape \(2, 2, 5\), got \(2, 1, 5\)",
    ),
    (
        lambda: make()(torch.randn(3, T, I, dtype=torch.float64), make().initial_state(B)),
        ValueError,
        r"state.controller\[0\] of shape \(3, 6\), got \(2, 6\)",
    ),
    (
        lambda: make()(torch.randn(B, T, I, dtype=torch.float64), make().initial_state(B, dtype=torch.float32)),
        TypeError,
        r"dtype torch.float64 \(the input's\), got torch.float32",
    ),
    (lambda: make()(torch.randn(B, T, I, dtype=torch.float64), (1, 2)), TypeError, r"state as a NTMState, got tuple"),
    (lambda: NTM(I, O, memory_slots=-1), ValueError, r"memory_slots as a positive integer, got -1"),
    (lambda: NTM(I, O, memory_width=0), ValueError, r"memory_width as a positive integer, got 0"),
    (lambda: NTM(I, O, read_heads=2.0), ValueError, r"read_heads as a positive integer, got 2.0"),
    (lambda: NTM(I, O, controller="gru"), ValueError, r"'lstm' or 'feedforward', got 'gru'"),
    (lambda: make().initial_state(0), ValueError, r"batch_size as a positive integer, got 0"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_INPUTS)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize(("n", "kernel"), [(1, 1), (1, 3), (2, 5), (5, 3), (7, 5), (8, 1)])
def test_the_compiled_steps_shift_by_slices_equals_the_indexed_shift(n, kernel):
    # memlib.memory.addressing._shift_by_slices: the compiled step's shift (S // 2 <= N), the same terms and sum
    from memlib.memory import addressing

    g = torch.Generator().manual_seed(n * 10 + kernel)
    weights = torch.rand(2, 3, n, dtype=torch.float64, generator=g).softmax(-1).requires_grad_()
    s = torch.rand(2, 3, kernel, dtype=torch.float64, generator=g).softmax(-1).requires_grad_()
    grad = torch.randn(2, 3, n, dtype=torch.float64, generator=g)
    got, want = addressing._shift_by_slices(weights, s), addressing.shift(weights, s)
    assert torch.equal(got, want)  # the same products, summed in the same order
    assert_close(torch.autograd.grad(got, (weights, s), grad), torch.autograd.grad(want, (weights, s), grad))
