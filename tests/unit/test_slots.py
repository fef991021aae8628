"""memlib.memory.slots: the learned, least-recently-written and random policies, read-then-write, state, traces, errors.

Shapes: ``B`` batch, ``T`` time, ``I`` inputs, ``N`` slots, ``W`` slot width, ``O`` outputs.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call
from torch.testing import assert_close

import memlib
from memlib.memory.slots import SlotMemory, SlotMemoryCell, SlotState

B, T, I, N, W, O = 2, 7, 5, 3, 4, 6  # noqa: E741 (I as in the shape legend); T > N: slots get overwritten
POLICIES = ["learned", "lrw", "random"]
NAMES = ["slots.memory", "slots.read_weights", "slots.recency", "slots.write_gate", "slots.write_weights"]


def make(policy: str, dev=None, dtype=torch.float64) -> SlotMemory:
    return SlotMemory(I, O, slots=N, slot_size=W, policy=policy).to(dev or "cpu", dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("policy", POLICIES)
def test_shapes_device_and_dtype(dev, policy, dtype):
    model = make(policy, dev, dtype)
    y, state = model(torch.randn(B, T, I, device=dev, dtype=dtype))
    assert y.shape == (B, T, O)
    assert state.memory.shape == (B, N, W) and state.recency.shape == (B, N)
    for t in (y, *state):
        assert t.dtype == dtype and t.device.type == dev.type


@pytest.mark.parametrize("policy", POLICIES)
def test_weightings_are_distributions_and_traced_per_step(dev, policy):
    model = make(policy, dev)
    with memlib.trace() as tr:
        model(torch.randn(B, T, I, device=dev, dtype=torch.float64))
    assert sorted(tr.names()) == NAMES
    assert all(len(tr[name]) == T for name in NAMES)
    ones = torch.ones(T, B, dtype=torch.float64, device=dev)
    for name in ("slots.read_weights", "slots.write_weights"):
        w = tr.stack(name)
        assert w.shape == (T, B, N) and (w >= 0).all()
        assert_close(w.sum(-1), ones)
    g = tr.stack("slots.write_gate")
    assert g.shape == (T, B) and ((g > 0) & (g <= 1)).all()
    recency = tr.stack("slots.recency")
    assert ((recency >= 0) & (recency <= 1)).all()
    assert tr.last("slots.memory").shape == (B, N, W)


def test_lrw_is_a_fifo_of_the_last_n_values():
    model = make("lrw")
    x = torch.randn(B, T, I, dtype=torch.float64)
    with memlib.trace() as tr:
        _, state = model(x)
    order = tr.stack("slots.write_weights").argmax(-1)  # (T, B)
    assert order[:, 0].tolist() == [t % N for t in range(T)]
    assert (tr.stack("slots.write_weights").amax(-1) == 1).all()
    assert (tr.stack("slots.write_gate") == 1).all()
    values = torch.tanh(model.cell.value(x)).detach()  # v_t = tanh(W_v x_t + b_v): (B, T, W)
    for slot in range(N):
        last_write = max(t for t in range(T) if t % N == slot)
        assert_close(state.memory[:, slot], values[:, last_write])
    # Older values are gone: the memory holds exactly the last N.
    assert not any(torch.allclose(state.memory[:, s], values[:, 0]) for s in range(N))
    # slot 0 written at the last step (t = 6), slot 2 one step before, slot 1 two steps before
    assert_close(state.recency[0], torch.tensor([1.0, 0.9**2, 0.9], dtype=torch.float64))


def test_random_policy_writes_whole_values_into_uniformly_drawn_slots():
    model = make("random")
    x = torch.randn(1, 3000, I, dtype=torch.float64)
    torch.manual_seed(0)
    with memlib.trace() as tr:
        _, state = model(x)
    w = tr.stack("slots.write_weights")[:, 0]  # (T, N)
    assert (w.amax(-1) == 1).all() and (tr.stack("slots.write_gate") == 1).all()
    counts = torch.bincount(w.argmax(-1), minlength=N).double()
    # 3000 draws over 3 slots: each count within 5 standard deviations (about 130) of 1000
    assert ((counts - 1000).abs() < 5 * (3000 * (1 / N) * (1 - 1 / N)) ** 0.5).all(), counts
    values = torch.tanh(model.cell.value(x)).detach()[0]  # (T, W)
    picks = w.argmax(-1).tolist()
    for slot in range(N):  # each slot holds the value of the last step that drew it
        last = max(t for t, p in enumerate(picks) if p == slot)
        assert_close(state.memory[0, slot], values[last])
    torch.manual_seed(0)
    with memlib.trace() as again:
        model(x)
    assert torch.equal(again.stack("slots.write_weights"), tr.stack("slots.write_weights"))


def test_read_comes_before_the_write():
    model = make("learned")
    cell = model.cell
    x = torch.randn(B, I, dtype=torch.float64)
    memory = torch.randn(B, N, W, dtype=torch.float64)
    state = SlotState(memory, torch.rand(B, N, dtype=torch.float64))
    with memlib.trace() as tr:
        read, new = cell(x, state)
    assert_close(read, torch.einsum("bn,bnw->bw", tr.last("slots.read_weights"), memory))
    # M_t,i = M_{t-1,i} + g w_i (v - M_{t-1,i})
    amount = (tr.last("slots.write_gate")[:, None] * tr.last("slots.write_weights"))[..., None]
    v = torch.tanh(cell.value(x)).detach()
    assert_close(new.memory, memory + amount * (v[:, None] - memory))


def test_learned_policy_tells_empty_slots_apart():
    model = make("learned")
    with memlib.trace() as tr:
        model(torch.randn(B, T, I, dtype=torch.float64))
    first = tr["slots.write_weights"][0]
    assert not torch.allclose(first, torch.full_like(first, 1 / N))


@pytest.mark.parametrize("policy", POLICIES)
def test_state_in_state_out(policy):
    model = make(policy)
    x = torch.randn(B, T, I, dtype=torch.float64)
    torch.manual_seed(1)  # the random policy draws its slots from the global generator
    whole, final = model(x)
    torch.manual_seed(1)
    first, middle = model(x[:, :3])
    second, end = model(x[:, 3:], middle)
    assert_close(torch.cat([first, second], dim=1), whole)
    for a, b in zip(end, final, strict=True):
        assert_close(a, b)


def test_gradcheck_learned_cell():
    cell = SlotMemoryCell(I, N, W).double()
    x = torch.randn(B, I, dtype=torch.float64, requires_grad=True)
    memory = torch.randn(B, N, W, dtype=torch.float64, requires_grad=True)
    recency = torch.rand(B, N, dtype=torch.float64, requires_grad=True)
    names = [k for k, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]

    def step(x, memory, recency, *values):
        read, state = functional_call(cell, dict(zip(names, values, strict=True)), (x, SlotState(memory, recency)))
        return read, state.memory, state.recency

    assert torch.autograd.gradcheck(step, (x, memory, recency, *params), fast_mode=True)


def _x(*shape, dtype=torch.float64):
    return torch.randn(shape, dtype=dtype)


BAD = [  # (call, exception, message with the expected and the actual value)
    (lambda: SlotMemoryCell(I, slots=0), ValueError, r"slots as a positive integer, got 0"),
    (lambda: SlotMemoryCell(I, slot_size=-2), ValueError, r"slot_size as a positive integer, got -2"),
    (lambda: SlotMemoryCell(-1), ValueError, r"input_size as a positive integer, got -1"),
    (lambda: SlotMemoryCell(I, policy="fifo"), ValueError, r"policy in \('learned', 'lrw', 'random'\), got 'fifo'"),
    (lambda: SlotMemoryCell(I, decay=1.5), ValueError, r"decay in \(0, 1\), got 1.5"),
    (lambda: SlotMemory(I, 0), ValueError, r"output_size as a positive integer, got 0"),
    (lambda: make("lrw")(_x(B, T, I + 1)), ValueError, r"input of shape \(B, T, I\) = \(\*, \*, 5\), got \(2, 7, 6\)"),
    (lambda: make("lrw")(_x(B, I)), ValueError, r"input of shape \(B, T, I\).*got \(2, 5\)"),
    (lambda: make("lrw")(_x(B, T, I, dtype=torch.float32)), TypeError, r"dtype torch.float64 .*got torch.float32"),
    (lambda: make("lrw")(_x(B, 0, I)), ValueError, r"non-empty batch and sequence, got input of shape \(2, 0, 5\)"),
    (lambda: make("lrw")([1.0]), TypeError, r"input as a tensor \(B, T, I\), got list"),
    (
        lambda: make("lrw")(_x(B, T, I), SlotState(_x(B, N + 1, W), _x(B, N))),
        ValueError,
        r"state.memory of shape \(B, N, W\) = \(2, 3, 4\), got \(2, 4, 4\)",
    ),
    (lambda: make("lrw")(_x(B, T, I), (_x(B, N, W),)), TypeError, r"state as a SlotState .*got tuple"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()
