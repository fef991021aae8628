"""memlib.memory.mann: LRUA equations (hand cases, invariants), the model's state, traces, gradients, errors.

Shapes: ``B`` batch, ``T`` time, ``I`` input features, ``O`` outputs, ``H`` controller width, ``N`` slots,
``W`` slot width, ``R`` heads.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import memlib
from memlib.memory.mann import MANN, MANNState, least_used, lrua_write_weights, update_usage

B, T, I, O, H, N, W, R = 2, 7, 4, 3, 6, 8, 4, 2  # noqa: E741 (I as in the shape legend)
F64 = torch.float64


def make(dev="cpu", dtype=F64, gamma=0.95) -> MANN:
    model = MANN(I, O, controller_size=H, memory_slots=N, memory_width=W, read_heads=R, gamma=gamma)
    return model.to(dev, dtype)


# ---- the equations ----


def test_least_used_hand_case_and_ties():
    usage = torch.tensor([[0.5, 0.1, 0.9, 0.1, 0.3]], dtype=F64)
    assert_close(least_used(usage, 1), torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]], dtype=F64))  # tie: lower index
    assert_close(least_used(usage, 3), torch.tensor([[0.0, 1.0, 0.0, 1.0, 1.0]], dtype=F64))
    assert_close(least_used(torch.zeros(1, 4, dtype=F64), 2), torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=F64))


def test_least_used_invariants():
    usage = torch.rand(100, N, dtype=F64)
    lu = least_used(usage, R)
    assert set(lu.unique().tolist()) <= {0.0, 1.0}
    assert (lu.sum(-1) == R).all()
    chosen, unchosen = usage.masked_fill(~lu.bool(), -1), usage.masked_fill(lu.bool(), 2)
    assert (chosen.amax(-1) <= unchosen.amin(-1)).all()  # every chosen slot is used no more than any other


def test_lrua_write_weights_hand_case():
    read_prev = torch.tensor([[[0.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]]], dtype=F64)  # (1, 2, 4)
    lu = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=F64)
    gate = torch.tensor([[1.0, 0.25]], dtype=F64)
    expected = torch.tensor([[[0.0, 1.0, 0.0, 0.0], [0.125, 0.125, 0.75, 0.75]]], dtype=F64)
    assert_close(lrua_write_weights(read_prev, lu, gate), expected)


def test_usage_decays_and_adds_reads_and_writes():
    usage = torch.tensor([[1.0, 0.0, 0.5]], dtype=F64)
    reads = torch.tensor([[[0.0, 1.0, 0.0]]], dtype=F64)
    writes = torch.tensor([[[0.0, 0.0, 0.5]]], dtype=F64)
    assert_close(update_usage(usage, reads, writes, 0.5), torch.tensor([[0.5, 1.0, 0.75]], dtype=F64))


# ---- the model ----


def leaves(state: MANNState) -> list[torch.Tensor]:
    return [*state.controller, *state[1:]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_state_in_state_out_on_the_input_device_and_dtype(dev, dtype):
    model = make(dev, dtype)
    x = torch.randn(B, T, I, device=dev, dtype=dtype)
    y, state = model(x)
    assert y.shape == (B, T, O) and y.device.type == dev.type and y.dtype == dtype
    for before, after in zip(leaves(model.initial_state(B, dev, dtype)), leaves(state), strict=True):
        assert before.shape == after.shape and after.device.type == dev.type and after.dtype == dtype


def test_sequence_equals_steps_and_chunks():
    model = make()
    x = torch.randn(B, T, I, dtype=F64)
    y, final = model(x)
    state = None
    for t in range(T):
        y_t, state = model.step(x[:, t], state)
        assert_close(y_t, y[:, t])
    y_a, middle = model(x[:, :3])
    y_b, end = model(x[:, 3:], middle)
    assert_close(torch.cat([y_a, y_b], dim=1), y)
    for a, b in zip(leaves(end), leaves(final), strict=True):
        assert_close(a, b)


DOCUMENTED = {
    "mann.least_used": (B, N),
    "mann.write_gate": (B, R),
    "mann.write_weights": (B, R, N),
    "mann.memory": (B, N, W),
    "mann.keys": (B, R, W),
    "mann.read_weights": (B, R, N),
    "mann.read_vectors": (B, R, W),
    "mann.usage": (B, N),
}


def test_trace_names_shapes_and_lrua_invariants(dev):
    model = make(dev)
    with memlib.trace() as tr:
        _, state = model(torch.randn(B, T, I, dtype=F64, device=dev))
    assert {n for n in tr.names() if n.startswith("mann.")} == set(DOCUMENTED)
    for name, shape in DOCUMENTED.items():
        assert len(tr[name]) == T and all(v.shape == shape for v in tr[name]), name
    reads, writes = tr.stack("mann.read_weights"), tr.stack("mann.write_weights")  # (T, B, R, N)
    lu, gate, usage = tr.stack("mann.least_used"), tr.stack("mann.write_gate"), tr.stack("mann.usage")
    assert (reads >= 0).all()
    assert_close(reads.sum(-1), torch.ones(T, B, R, dtype=F64, device=dev))
    assert (lu.sum(-1) == R).all() and set(lu.unique().tolist()) <= {0.0, 1.0}
    assert (usage >= 0).all()
    # w^w_t = sigma(alpha) w^r_{t-1} + (1 - sigma(alpha)) w^lu_{t-1}, from the recorded pieces
    previous_reads = torch.cat([torch.zeros_like(reads[:1]), reads[:-1]])  # the initial read weights are zero
    expected = gate[..., None] * previous_reads + (1 - gate[..., None]) * lu[:, :, None, :]
    assert_close(writes, expected)
    # w^u_t = gamma w^u_{t-1} + w^r_t + w^w_t
    previous_usage = torch.cat([torch.zeros_like(usage[:1]), usage[:-1]])
    assert_close(usage, 0.95 * previous_usage + reads.sum(2) + writes.sum(2))
    assert_close(tr.last("mann.memory"), state.memory)


def test_first_writes_go_to_the_first_free_slots_and_least_used_slot_is_emptied():
    model = make()
    with memlib.trace() as tr:
        model(torch.randn(B, 2, I, dtype=F64))
    first_writes = tr["mann.write_weights"][0]  # (B, R, N): from zero reads, only the least-used term
    assert (first_writes[..., R:] == 0).all() and (first_writes[..., :R] > 0).all()
    keys, memory = tr["mann.keys"][0], tr["mann.memory"][0]
    assert_close(memory, first_writes.transpose(1, 2) @ keys)  # an add into an empty memory
    # Step 2: the least-used slot after step 1 is set to zero, then written: only the new writes remain there.
    usage = tr["mann.usage"][0]
    emptied = usage.argmin(-1)  # (B,)
    rows = torch.arange(B)
    new = (tr["mann.write_weights"][1].transpose(1, 2) @ tr["mann.keys"][1])[rows, emptied]
    assert_close(tr["mann.memory"][1][rows, emptied], new)


def test_gradcheck_one_step(dev):
    model = make(dev)
    names = [name for name, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]

    def r(*shape):
        return torch.randn(*shape, dtype=F64, device=dev)

    x = r(B, I).requires_grad_()
    state = [r(B, H), r(B, H), r(B, N, W), r(B, R, N).softmax(-1), torch.rand(B, N, dtype=F64, device=dev), r(B, R, W)]
    state = [t.requires_grad_() for t in state]

    def step(x, h, c, *rest):
        given = MANNState((h, c), *rest[:4])
        y, new = torch.func.functional_call(model, dict(zip(names, rest[4:], strict=True)), (x[:, None], given))
        return y, new.memory, new.read_weights, new.usage

    assert torch.autograd.gradcheck(step, (x, *state, *params), fast_mode=True)


def _x(*shape, dtype=F64):
    return torch.randn(*shape, dtype=dtype)


BAD_INPUTS = [
    (lambda: make()(_x(B, T, 5)), ValueError, r"expected input of size I = 4, got 5"),
    (
        lambda: make()(_x(B, T, I), make().initial_state(B)._replace(usage=_x(B, N + 1))),
        ValueError,
        r"state.usage of shape \(2, 8\), got \(2, 9\)",
    ),
    (lambda: MANN(I, O, memory_width=-2), ValueError, r"memory_width as a positive integer, got -2"),
    (lambda: MANN(I, O, memory_slots=2, read_heads=3), ValueError, r"read_heads <= memory_slots = 2, got 3"),
    (lambda: MANN(I, O, gamma=1.5), ValueError, r"gamma \(usage decay\) in \[0, 1\], got 1.5"),
    (lambda: least_used(torch.rand(2, 4), 5), ValueError, r"n as an integer in \[1, N = 4\], got 5"),
    (lambda: lrua_write_weights(_x(1, 2, 4), _x(1, 5), _x(1, 2)), ValueError, r"least_used .*\(1, 4\), got \(1, 5\)"),
    (lambda: update_usage(_x(1, 4), _x(1, 2, 4), _x(1, 2, 4), 2.0), ValueError, r"gamma in \[0, 1\], got 2.0"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_INPUTS)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()
