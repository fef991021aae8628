"""memlib.memory.nsm: program attention, the mixture of stored interface weights, NTM heads, state, traces, errors.

Shapes: ``B`` batch, ``T`` time, ``I`` inputs, ``O`` outputs, ``H`` controller width, ``N`` slots, ``W`` slot
width, ``P`` programs.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call
from torch.testing import assert_close

import memlib
from memlib.memory.nsm import NSM, NSMCell, NSMConfig, NSMState

B, T, I, O, H, N, W, P = 2, 5, 4, 3, 6, 5, 3, 3  # noqa: E741 (I as in the shape legend)
NAMES = ["nsm.memory", "nsm.program_weights", "nsm.read", "nsm.read_weights", "nsm.write_weights"]


def config(**kwargs) -> NSMConfig:
    sizes = {"hidden_size": H, "memory_slots": N, "slot_size": W, "programs": P, "program_key_size": 4}
    return NSMConfig(I, O, **(sizes | kwargs))


def make(dev=None, dtype=torch.float64, **kwargs) -> NSM:
    return NSM(config(**kwargs)).to(dev or "cpu", dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_device_and_dtype(dev, dtype):
    model = make(dev, dtype)
    y, state = model(torch.randn(B, T, I, device=dev, dtype=dtype))
    assert y.shape == (B, T, O)
    shapes = {"h": (B, H), "c": (B, H), "memory": (B, N, W), "read": (B, W), "read_weights": (B, N)}
    shapes["write_weights"] = (B, N)
    for name, shape in shapes.items():
        value = getattr(state, name)
        assert value.shape == shape and value.dtype == dtype and value.device.type == dev.type


def test_program_weights_and_head_weights_are_distributions_per_step(dev):
    model = make(dev)
    with memlib.trace() as tr:
        model(torch.randn(B, T, I, device=dev, dtype=torch.float64))
    assert sorted(n for n in tr.names() if n.startswith("nsm.")) == NAMES
    assert all(len(tr[name]) == T for name in NAMES)
    ones = torch.ones(T, B, dtype=torch.float64, device=dev)
    for name, size in (("nsm.program_weights", P), ("nsm.read_weights", N), ("nsm.write_weights", N)):
        w = tr.stack(name)
        assert w.shape == (T, B, size) and (w >= 0).all()
        assert_close(w.sum(-1), ones)
    assert tr.last("nsm.memory").shape == (B, N, W) and tr.last("nsm.read").shape == (B, W)


def test_identical_programs_act_as_one():
    """The working weight is a convex mixture: P copies of one program behave as that program alone."""
    single = make(programs=1)
    copies = make(programs=P)
    state = single.state_dict()
    state["cell.program_weights"] = state["cell.program_weights"].expand(P, -1, -1).clone()
    state["cell.program_biases"] = state["cell.program_biases"].expand(P, -1).clone()
    state["cell.program_keys"] = torch.randn(P, 4, dtype=torch.float64)
    copies.load_state_dict(state)
    x = torch.randn(B, T, I, dtype=torch.float64)
    assert_close(copies(x)[0], single(x)[0])


def test_outputs_follow_the_selected_program():
    model = make()
    x = torch.randn(B, T, I, dtype=torch.float64)
    with memlib.trace() as tr:
        before = model(x)[0]
    weights = tr.stack("nsm.program_weights")  # (T, B, P)
    least = weights.sum((0, 1)).argmin()
    with torch.no_grad():
        model.cell.program_weights[least] += 0.5
    assert not torch.allclose(model(x)[0], before), "every program has some weight, so changing one changes the output"


def test_write_then_read_follows_the_ntm_equations():
    cell = NSMCell(config()).double()
    x = torch.randn(B, I, dtype=torch.float64)
    state = cell.initial_state(B, x)
    with memlib.trace() as tr:
        _, new = cell(x, state)
    # r_t = sum_i w^r(i) M_t(i), on the memory after the write
    assert_close(new.read, torch.einsum("bn,bnw->bw", tr.last("nsm.read_weights"), new.memory))
    assert_close(new.memory, tr.last("nsm.memory"))
    assert_close(new.write_weights, tr.last("nsm.write_weights"))


def test_feedforward_controller_keeps_no_recurrent_state():
    model = make(controller="feedforward")
    x = torch.randn(B, T, I, dtype=torch.float64)
    y, state = model(x)
    assert y.shape == (B, T, O) and (state.c == 0).all()
    assert isinstance(model.cell.controller, torch.nn.Linear)
    # h_t = tanh(W_h [x_t; r_{t-1}] + b_h): the last step's h from the last input and the read before it
    _, before = model(x[:, :-1])
    expected = torch.tanh(model.cell.controller(torch.cat([x[:, -1], before.read], -1)))
    assert_close(state.h, expected)


def test_initial_state():
    cell = NSMCell(config())
    like = torch.zeros(1, dtype=torch.float64)
    state = cell.initial_state(B, like)
    assert (state.memory == 1e-6).all() and (state.h == 0).all() and (state.read == 0).all()
    assert (state.read_weights[:, 0] == 1).all() and (state.write_weights.sum(-1) == 1).all()
    assert all(s.dtype == torch.float64 for s in state)


def test_state_in_state_out():
    model = make()
    x = torch.randn(B, T, I, dtype=torch.float64)
    whole, final = model(x)
    first, middle = model(x[:, :2])
    second, end = model(x[:, 2:], middle)
    assert_close(torch.cat([first, second], dim=1), whole)
    for a, b in zip(end, final, strict=True):
        assert_close(a, b)


def _reference_step(cell: NSMCell, x: torch.Tensor, state: NSMState) -> tuple[torch.Tensor, NSMState]:
    """One NSM step written out from the equations (Le et al. 2020, sec. 3; Graves et al. 2014, eqs. 2-9),
    independently of ``memlib.memory.addressing``: the module must give the same results."""
    c, S = cell.config, 2 * cell.config.shift_range + 1
    h, cc = cell.controller(torch.cat([x, state.read], -1), (state.h, state.c))
    k_p, beta_p = cell.program_interface(h).split([c.program_key_size, 1], -1)
    cos = torch.nn.functional.cosine_similarity(k_p[:, None], cell.program_keys[None], dim=-1)  # (B, P)
    w_p = torch.softmax(torch.nn.functional.softplus(beta_p) * cos, -1)
    xi = torch.einsum("bp,pxh,bh->bx", w_p, cell.program_weights, h) + w_p @ cell.program_biases
    Wd = c.slot_size

    def weighting(raw, memory, previous):
        k, beta, g, s, gamma = raw.split([Wd, 1, 1, S, 1], -1)
        cos = torch.nn.functional.cosine_similarity(k[:, None], memory, dim=-1)  # (B, N)
        w = torch.softmax(torch.nn.functional.softplus(beta) * cos, -1)  # eqs. 5-6
        g = torch.sigmoid(g)
        w = g * w + (1 - g) * previous  # eq. 7
        s = torch.softmax(s, -1)
        r = S // 2
        w = sum(s[:, r + d, None] * torch.roll(w, d, -1) for d in range(-r, r + 1))  # eq. 8
        w = w ** (1 + torch.nn.functional.softplus(gamma))  # eq. 9
        return w / w.sum(-1, keepdim=True)

    n_write = 3 * Wd + 3 + S
    write_raw, read_raw = xi[:, :n_write], xi[:, n_write:]
    e, a = torch.sigmoid(write_raw[:, -2 * Wd : -Wd]), write_raw[:, -Wd:]
    w_w = weighting(write_raw[:, : -2 * Wd], state.memory, state.write_weights)
    memory = state.memory * (1 - w_w[..., None] * e[:, None]) + w_w[..., None] * a[:, None]  # eqs. 3-4
    w_r = weighting(read_raw, memory, state.read_weights)
    r = torch.einsum("bn,bnw->bw", w_r, memory)  # eq. 2
    return cell.output(torch.cat([h, r], -1)), NSMState(h, cc, memory, r, w_r, w_w)


def test_one_step_follows_the_equations():
    """The module's addressing (the NTM's shared functions) gives what the equations written out give."""
    cell = NSMCell(config(shift_range=2)).double()
    x = torch.randn(B, I, dtype=torch.float64)
    start = cell.initial_state(B, x)
    state = start._replace(
        memory=torch.randn(B, N, W, dtype=torch.float64),
        read_weights=torch.softmax(torch.randn(B, N, dtype=torch.float64), -1),
        write_weights=torch.softmax(torch.randn(B, N, dtype=torch.float64), -1),
    )
    for s in (state, start):  # a filled memory, and the nearly empty one the model starts from
        y, new = cell(x, s)
        y_ref, ref = _reference_step(cell, x, s)
        assert_close(y, y_ref, rtol=1e-6, atol=1e-6)
        for field, a, b in zip(NSMState._fields, new, ref, strict=True):
            assert_close(a, b, rtol=1e-6, atol=1e-6, msg=f"state.{field}")


def test_gradcheck():
    model = make(hidden_size=3, memory_slots=4, slot_size=2, programs=2)
    x = torch.randn(1, 3, I, dtype=torch.float64, requires_grad=True)
    names = ["cell.program_keys", "cell.program_weights", "cell.program_biases"]
    params = [model.get_parameter(n).detach().clone().requires_grad_() for n in names]

    def forward(x, *values):
        return functional_call(model, dict(zip(names, values, strict=True)), (x,))[0]

    assert torch.autograd.gradcheck(forward, (x, *params), fast_mode=True)


def test_gradcheck_through_the_state_and_every_other_parameter():
    """Gradients reach the controller, the program interface, the output layer and the carried-in state."""
    model = make(hidden_size=3, memory_slots=4, slot_size=2, programs=2)
    x = torch.randn(1, 3, I, dtype=torch.float64)
    names = [n for n, _ in model.named_parameters() if not n.startswith("cell.program_")]
    params = [model.get_parameter(n).detach().clone().requires_grad_() for n in names]
    start = model.cell.initial_state(1, x)
    memory = torch.randn(1, 4, 2, dtype=torch.float64, requires_grad=True)
    read_weights = torch.softmax(torch.randn(1, 4, dtype=torch.float64), -1).requires_grad_()

    def forward(memory, read_weights, *values):
        state = start._replace(memory=memory, read_weights=read_weights)
        y, end = functional_call(model, dict(zip(names, values, strict=True)), (x, state))
        return y, end.memory

    assert torch.autograd.gradcheck(forward, (memory, read_weights, *params), fast_mode=True)


def test_every_program_gets_a_gradient():
    model = make()
    y, _ = model(torch.randn(B, T, I, dtype=torch.float64))
    y.square().sum().backward()
    cell = model.cell
    for name in ("program_keys", "program_weights", "program_biases"):
        grad = getattr(cell, name).grad
        assert grad is not None and torch.isfinite(grad).all(), name
        assert (grad.flatten(1).abs().sum(1) > 0).all(), f"{name}: a program got no gradient"


def _x(*shape, dtype=torch.float64):
    return torch.randn(shape, dtype=dtype)


BAD = [  # (call, exception, message with the expected and the actual value)
    (lambda: config(programs=0), ValueError, r"programs as a positive integer, got 0"),
    (lambda: config(memory_slots=-3), ValueError, r"memory_slots as a positive integer, got -3"),
    (lambda: config(program_key_size=0), ValueError, r"program_key_size as a positive integer, got 0"),
    (lambda: config(shift_range=N), ValueError, r"shift_range in \[0, memory_slots\), got 5"),
    (lambda: config(controller="gru"), ValueError, r"controller 'lstm' or 'feedforward', got 'gru'"),
    (lambda: NSMCell({"input_size": I}), TypeError, r"expected an NSMConfig, got dict"),
    (lambda: make()(_x(B, T, I + 1)), ValueError, r"input of shape \(B, I=4\), B > 0, got \(2, 5\)"),
    (lambda: make()(_x(B, I)), ValueError, r"input of shape \(B, T, I\), non-empty, got \(2, 4\)"),
    (lambda: make()(_x(B, T, I, dtype=torch.float32)), TypeError, r"dtype torch.float64 .*got torch.float32"),
    (lambda: make()("x"), TypeError, r"input as a tensor \(B, T, I\), got str"),
    (
        lambda: make()(_x(B, T, I), NSMCell(config()).initial_state(B + 1, _x(1))),
        ValueError,
        r"state.h of shape \(2, 6\), got \(3, 6\)",
    ),
    (lambda: make()(_x(B, T, I), (_x(B, H),)), TypeError, r"state as an NSMState .*got tuple"),
    (
        lambda: make()(_x(B, T, I), NSMCell(config()).initial_state(B, _x(1, dtype=torch.float32))),
        TypeError,
        r"state.h of dtype torch.float64 .*got torch.float32",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_state_is_a_named_tuple():
    assert NSMState._fields == ("h", "c", "memory", "read", "read_weights", "write_weights")
