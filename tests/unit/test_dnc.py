"""memlib.memory.dnc: the allocation and linkage equations (hand cases, invariants), the model's state,
traces and gradients, and errors.

Shapes: ``B`` batch, ``T`` time, ``I`` input features, ``O`` outputs, ``H`` controller width, ``N`` slots,
``W`` slot width, ``R`` read heads.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import memlib
from memlib.memory import dnc, dnc_cpu
from memlib.memory.dnc import (
    DNC,
    DNCState,
    allocation_weighting,
    directional_weightings,
    read_weighting,
    retention,
    update_link,
    update_precedence,
    update_usage,
    write_weighting,
)

B, T, I, O, H, N, W, R = 2, 6, 4, 3, 6, 5, 4, 2  # noqa: E741 (I as in the shape legend)
F64 = torch.float64


def make(dev="cpu", dtype=F64) -> DNC:
    return DNC(I, O, controller_size=H, memory_slots=N, memory_width=W, read_heads=R).to(dev, dtype)


def one_hot(i: int, n: int = N) -> torch.Tensor:
    w = torch.zeros(1, n, dtype=F64)
    w[0, i] = 1.0
    return w


# ---- the equations ----


def test_allocation_hand_case():
    usage = torch.tensor([[0.5, 0.2, 0.9]], dtype=F64)
    # sorted by usage: slot 1 (0.2), slot 0 (0.5), slot 2 (0.9)
    # a[1] = 1 - 0.2 = 0.8; a[0] = (1 - 0.5) * 0.2 = 0.1; a[2] = (1 - 0.9) * 0.2 * 0.5 = 0.01
    assert_close(allocation_weighting(usage), torch.tensor([[0.1, 0.8, 0.01]], dtype=F64))
    assert_close(allocation_weighting(torch.zeros(1, 3, dtype=F64)), one_hot(0, 3))  # ties: lowest index first
    assert_close(allocation_weighting(torch.ones(1, 3, dtype=F64)), torch.zeros(1, 3, dtype=F64))


def test_allocation_invariants():
    usage = torch.rand(200, N, dtype=F64)
    a = allocation_weighting(usage)
    assert (a >= 0).all()
    assert_close(a.sum(-1), 1 - usage.prod(-1))
    assert (a.sum(-1) <= 1).all()
    assert (a.argmax(-1) == usage.argmin(-1)).all()  # the least-used slot gets the most


def test_free_gates_release_what_was_read():
    read_weights = torch.stack([one_hot(0), one_hot(3)], dim=1)  # (1, 2, N): head 0 on slot 0, head 1 on slot 3
    psi = retention(torch.tensor([[1.0, 0.0]], dtype=F64), read_weights)  # head 0 frees, head 1 keeps
    assert_close(psi, 1 - one_hot(0))
    usage = update_usage(torch.ones(1, N, dtype=F64), torch.zeros(1, N, dtype=F64), psi)
    assert_close(usage, 1 - one_hot(0))
    assert_close(allocation_weighting(usage), one_hot(0))  # the freed slot is the next to be written


def test_usage_rises_with_writes_and_stays_in_unit_interval():
    usage = torch.zeros(1, N, dtype=F64)
    usage = update_usage(usage, 0.7 * one_hot(2), torch.ones(1, N, dtype=F64))
    assert_close(usage, 0.7 * one_hot(2))
    usage = update_usage(usage, 0.5 * one_hot(2), torch.ones(1, N, dtype=F64))
    assert_close(usage, 0.85 * one_hot(2))  # u + w - u w = 0.7 + 0.5 - 0.35
    u, w = torch.rand(100, N, dtype=F64), torch.softmax(torch.randn(100, N, dtype=F64), -1)
    psi = torch.rand(100, N, dtype=F64)
    new = update_usage(u, w, psi)
    assert ((new >= 0) & (new <= 1)).all()


def test_write_weighting_gates():
    a, c = one_hot(1), one_hot(3)
    ones, zeros = torch.ones(1, dtype=F64), torch.zeros(1, dtype=F64)
    assert_close(write_weighting(a, c, ones, ones), a)
    assert_close(write_weighting(a, c, ones, zeros), c)
    assert_close(write_weighting(a, c, zeros, ones), torch.zeros(1, N, dtype=F64))
    half = torch.full((1,), 0.5, dtype=F64)
    assert_close(write_weighting(a, c, half, half), 0.25 * a + 0.25 * c)


def test_link_records_the_order_of_writes():
    link, precedence = torch.zeros(1, N, N, dtype=F64), torch.zeros(1, N, dtype=F64)
    for slot in (2, 0, 3):  # write slot 2, then 0, then 3
        w = one_hot(slot)
        link = update_link(link, precedence, w)
        precedence = update_precedence(precedence, w)
    expected = torch.zeros(1, N, N, dtype=F64)
    expected[0, 0, 2] = 1.0  # slot 0 was written right after slot 2
    expected[0, 3, 0] = 1.0  # slot 3 right after slot 0
    assert_close(link, expected)
    assert_close(precedence, one_hot(3))
    forward, backward = directional_weightings(link, one_hot(0)[:, None])  # a read head on slot 0
    assert_close(forward, one_hot(3)[:, None])  # forward: what was written after slot 0
    assert_close(backward, one_hot(2)[:, None])  # backward: what was written before it


def test_link_and_precedence_invariants_over_random_writes():
    link, precedence = torch.zeros(50, N, N, dtype=F64), torch.zeros(50, N, dtype=F64)
    for _ in range(12):
        w = torch.softmax(torch.randn(50, N, dtype=F64) * 3, -1) * torch.rand(50, 1, dtype=F64)  # sums to <= 1
        link = update_link(link, precedence, w)
        precedence = update_precedence(precedence, w)
        assert (link >= 0).all() and (precedence >= 0).all()
        assert (link.diagonal(dim1=1, dim2=2) == 0).all()
        assert (link.sum(-1) <= 1 + 1e-12).all() and (link.sum(-2) <= 1 + 1e-12).all()
        assert (precedence.sum(-1) <= 1 + 1e-12).all()


def test_read_weighting_modes():
    b, c, f = (torch.softmax(torch.randn(1, R, N, dtype=F64), -1) for _ in range(3))
    for mode, expected in enumerate((b, c, f)):  # order: backward, content, forward
        modes = torch.zeros(1, R, 3, dtype=F64)
        modes[..., mode] = 1.0
        assert_close(read_weighting(b, c, f, modes), expected)


# ---- the model ----


def random_state(dev="cpu") -> DNCState:
    """A valid state away from the initial zeros (usage without ties, links with a zero diagonal)."""

    def r(*shape):
        return torch.randn(*shape, dtype=F64, device=dev)

    link = torch.rand(B, N, N, dtype=F64, device=dev) / N * (1 - torch.eye(N, dtype=F64, device=dev))
    return DNCState(
        (r(B, H), r(B, H)),
        r(B, N, W),
        torch.rand(B, N, dtype=F64, device=dev),
        link,
        r(B, N).softmax(-1) * 0.5,
        r(B, R, N).softmax(-1) * 0.9,
        r(B, N).softmax(-1) * 0.8,
        r(B, R, W),
    )


def leaves(state: DNCState) -> list[torch.Tensor]:
    return [*state.controller, *state[1:]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_state_in_state_out_on_the_input_device_and_dtype(dev, dtype):
    model = make(dev, dtype)
    x = torch.randn(B, T, I, device=dev, dtype=dtype)
    y, state = model(x)
    assert y.shape == (B, T, O) and y.device.type == dev.type and y.dtype == dtype
    for before, after in zip(leaves(model.initial_state(B, dev, dtype)), leaves(state), strict=True):
        assert before.shape == after.shape and after.device.type == dev.type and after.dtype == dtype
    assert all((t == 0).all() for t in leaves(model.initial_state(B)))


def test_sequence_equals_steps_and_chunks():
    model = make()
    x = torch.randn(B, T, I, dtype=F64)
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


DOCUMENTED = {
    "dnc.usage": (B, N),
    "dnc.allocation": (B, N),
    "dnc.free_gates": (B, R),
    "dnc.write_gate": (B,),
    "dnc.allocation_gate": (B,),
    "dnc.write_content": (B, N),
    "dnc.write_weights": (B, N),
    "dnc.memory": (B, N, W),
    "dnc.link": (B, N, N),
    "dnc.precedence": (B, N),
    "dnc.forward": (B, R, N),
    "dnc.backward": (B, R, N),
    "dnc.read_content": (B, R, N),
    "dnc.read_modes": (B, R, 3),
    "dnc.read_weights": (B, R, N),
    "dnc.read_vectors": (B, R, W),
}


def test_trace_names_shapes_and_invariants(dev):
    model = make(dev)
    with memlib.trace() as tr:
        _, state = model(torch.randn(B, 12, I, dtype=F64, device=dev))
    assert {n for n in tr.names() if n.startswith("dnc.")} == set(DOCUMENTED)
    for name, shape in DOCUMENTED.items():
        assert len(tr[name]) == 12 and all(v.shape == shape for v in tr[name]), name
    usage, link = tr.stack("dnc.usage"), tr.stack("dnc.link")
    assert ((usage >= 0) & (usage <= 1)).all()
    assert (link.diagonal(dim1=-2, dim2=-1) == 0).all()
    assert (link >= 0).all() and (link.sum(-1) <= 1 + 1e-12).all()
    assert (tr.stack("dnc.allocation").sum(-1) <= 1 + 1e-12).all()
    assert (tr.stack("dnc.precedence").sum(-1) <= 1 + 1e-12).all()
    assert (tr.stack("dnc.write_weights").sum(-1) <= 1 + 1e-12).all()
    read_weights = tr.stack("dnc.read_weights")
    assert (read_weights >= 0).all() and (read_weights.sum(-1) <= 1 + 1e-12).all()
    assert_close(tr.stack("dnc.read_modes").sum(-1), torch.ones(12, B, R, dtype=F64, device=dev))
    assert_close(tr.last("dnc.memory"), state.memory)
    assert_close(tr.last("dnc.link"), state.link)


def test_gradcheck_one_step(dev):
    model = make(dev)
    names = [name for name, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    x = torch.randn(B, I, dtype=F64, device=dev, requires_grad=True)
    state = [t.requires_grad_() for t in leaves(random_state(dev))]

    def step(x, h, c, *rest):
        given = DNCState((h, c), *rest[:7])
        y, new = torch.func.functional_call(model, dict(zip(names, rest[7:], strict=True)), (x[:, None], given))
        return y, new.memory, new.usage, new.link, new.read_weights

    assert torch.autograd.gradcheck(step, (x, *state, *params), fast_mode=True)


def _state_with(**fields):
    return make().initial_state(B)._replace(**fields)


def _x(*shape, dtype=F64):
    return torch.randn(*shape, dtype=dtype)


BAD_INPUTS = [
    (lambda: make()(_x(B, T, 9)), ValueError, r"expected input of size I = 4, got 9"),
    (lambda: make()(_x(B, T, I, dtype=torch.float32)), TypeError, r"dtype torch.float64 .*got torch.float32"),
    (
        lambda: make().step(_x(B, I), _state_with(memory=_x(B, N, 3))),
        ValueError,
        r"memory of shape \(2, 5, 4\), got \(2, 5, 3\)",
    ),
    (
        lambda: make()(_x(B, T, I), _state_with(link=_x(B, N))),
        ValueError,
        r"state.link of shape \(2, 5, 5\), got \(2, 5\)",
    ),
    (lambda: DNC(I, O, memory_slots=-3), ValueError, r"memory_slots as a positive integer, got -3"),
    (lambda: DNC(I, O, read_heads=0), ValueError, r"read_heads as a positive integer, got 0"),
    (lambda: allocation_weighting(torch.rand(3)), ValueError, r"usage of shape \(B, N\) = \(\?, \?\), got \(3,\)"),
    (lambda: update_link(_x(1, 4, 4), _x(1, 5), _x(1, 4)), ValueError, r"precedence .*\(1, 4\), got \(1, 5\)"),
    (
        lambda: read_weighting(_x(1, 2, 4), _x(1, 2, 4), _x(1, 2, 4), _x(1, 2, 2)),
        ValueError,
        r"\(1, 2, 3\), got \(1, 2, 2\)",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_INPUTS)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()


def reference_link(link, precedence, write_weights):
    """The link update written as plain tensor algebra, as in the paper (Methods, "Temporal memory linkage")."""
    w_i, w_j = write_weights[:, :, None], write_weights[:, None, :]
    updated = (1 - w_i - w_j) * link + w_i * precedence[:, None, :]
    return updated * (1 - torch.eye(link.shape[1], dtype=link.dtype))


@pytest.mark.parametrize("zero_diagonal", [True, False])
def test_link_update_equals_the_plain_formula_in_values_and_gradients(zero_diagonal):
    g = torch.Generator().manual_seed(0)
    link = torch.rand(3, N, N, dtype=F64, generator=g)
    if zero_diagonal:
        link = link * (1 - torch.eye(N, dtype=F64))
    precedence = torch.rand(3, N, dtype=F64, generator=g)
    w = torch.rand(3, N, dtype=F64, generator=g)
    grad = torch.randn(3, N, N, dtype=F64, generator=g)
    inputs = [t.clone().requires_grad_() for t in (link, precedence, w)]
    expected = [t.clone().requires_grad_() for t in (link, precedence, w)]
    got, want = update_link(*inputs), reference_link(*expected)
    assert_close(got, want)
    assert_close(torch.autograd.grad(got, inputs, grad), torch.autograd.grad(want, expected, grad))


def test_link_update_gradcheck_and_gradgradcheck():
    g = torch.Generator().manual_seed(1)
    args = (
        (torch.rand(2, N, N, dtype=F64, generator=g) * (1 - torch.eye(N, dtype=F64))).requires_grad_(),
        torch.rand(2, N, dtype=F64, generator=g).requires_grad_(),
        torch.rand(2, N, dtype=F64, generator=g).requires_grad_(),
    )
    assert torch.autograd.gradcheck(update_link, args)
    assert torch.autograd.gradgradcheck(update_link, args)



def test_directional_weightings_hand_written_backward_equals_autograd():
    # The compiled DNC step's operator, off the CPU, uses memlib.memory.dnc._directional_backward: same as autograd
    g = torch.Generator().manual_seed(2)
    link, read_weights = torch.rand(3, N, N, dtype=F64, generator=g), torch.rand(3, R, N, dtype=F64, generator=g)
    grad_forward, grad_backward = torch.randn(2, 3, R, N, dtype=F64, generator=g)
    inputs = [t.clone().requires_grad_() for t in (link, read_weights)]
    want = torch.autograd.grad(directional_weightings(*inputs), inputs, (grad_forward, grad_backward))
    assert_close(dnc._directional_backward(grad_forward, grad_backward, link, read_weights), want)


def test_temporal_linkage_is_the_link_update_then_the_directional_weightings_to_the_bit():
    g = torch.Generator().manual_seed(3)
    link, precedence, w = torch.rand(2, N, N, generator=g), torch.rand(2, N, generator=g), torch.rand(2, N, generator=g)
    read_weights = torch.rand(2, R, N, generator=g)
    updated = update_link(link, precedence, w)
    got = dnc.temporal_linkage(link, precedence, w, read_weights)
    for a, b in zip(got, (updated, *directional_weightings(updated, read_weights)), strict=True):
        assert torch.equal(a, b)


def _linkage_case(B, N, R, dtype, seed=4):
    """Inputs of one linkage step like the DNC's (weightings sum to <= 1), and gradients for its three values."""
    g = torch.Generator().manual_seed(seed)
    link = torch.rand(B, N, N, dtype=dtype, generator=g) / N * (1 - torch.eye(N, dtype=dtype))
    precedence = torch.softmax(torch.randn(B, N, dtype=dtype, generator=g), -1) * 0.8
    w = torch.softmax(3 * torch.randn(B, N, dtype=dtype, generator=g), -1) * 0.9
    read_weights = torch.softmax(3 * torch.randn(B, R, N, dtype=dtype, generator=g), -1)
    grads = (torch.randn(B, N, N, dtype=dtype, generator=g), *torch.randn(2, B, R, N, dtype=dtype, generator=g))
    return (link, precedence, w, read_weights), grads


def _autograd_linkage(inputs, grads):
    """Values and input gradients of update_link then directional_weightings, by autograd."""
    leaves = [t.clone().requires_grad_() for t in inputs]
    values = dnc.temporal_linkage(*leaves)
    return [v.detach() for v in values] + list(torch.autograd.grad(values, leaves, grads))


# N from 1 to 9 covers every remainder of the loops' blocks of four rows; R from 1 to 5, every group of heads
SIZES = [(1, 1, 1), (2, 4, 2), (3, 5, 1), (2, 6, 3), (1, 7, 4), (2, 9, 5), (4, 16, 2)]  # (B, N, R)


@pytest.mark.parametrize(("B", "N", "R"), SIZES)
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_linkage_loops_equal_autograd_in_values_and_gradients(B, N, R, dtype):
    # memlib.memory.dnc_cpu: the compiled CPU step's one pass over the link matrix each way
    if not dnc_cpu.supports(torch.zeros(1, dtype=dtype)):
        pytest.skip("the linkage loops do not compile here")
    inputs, grads = _linkage_case(B, N, R, dtype)
    got = [*dnc_cpu.linkage(*inputs), *dnc_cpu.linkage_backward(*grads, *inputs)]
    names = ("link", "forward", "backward", "d link", "d precedence", "d write_weights", "d read_weights")
    tolerance = {} if dtype == F64 else dict(atol=1e-6, rtol=1e-6)
    for name, a, b in zip(names, got, _autograd_linkage(inputs, grads), strict=True):
        assert_close(a, b, **tolerance, msg=lambda m, name=name: f"{name}: {m}")


def test_linkage_loops_take_strided_inputs_and_leave_them_alone():
    if not dnc_cpu.supports(torch.zeros(1, dtype=F64)):
        pytest.skip("the linkage loops do not compile here")
    inputs, grads = _linkage_case(2, 6, 2, F64)
    strided = [t.transpose(-1, -2).contiguous().transpose(-1, -2) if t.dim() == 3 else t for t in (*inputs, *grads)]
    copies = [t.clone() for t in strided]
    got = [*dnc_cpu.linkage(*strided[:4]), *dnc_cpu.linkage_backward(*strided[4:], *strided[:4])]
    for a, b in zip(got, _autograd_linkage(inputs, grads), strict=True):
        assert_close(a, b)
    assert all(torch.equal(a, b) for a, b in zip(copies, strided, strict=True))


def test_the_linkage_operator_runs_the_tensor_code_where_the_loops_do_not(monkeypatch):
    # off the CPU (or in another dtype) the custom operator computes with memlib.memory.dnc's tensor functions
    monkeypatch.setattr(dnc_cpu, "supports", lambda link: False)
    inputs, grads = _linkage_case(2, 6, 2, F64)
    got = [*dnc._linkage(*inputs), *dnc._linkage_backward(*grads, *inputs)]
    for a, b in zip(got, _autograd_linkage(inputs, grads), strict=True):
        assert_close(a, b)


def test_link_update_leaves_its_inputs_alone():
    link, precedence, w = torch.rand(2, N, N, dtype=F64), torch.rand(2, N, dtype=F64), torch.rand(2, N, dtype=F64)
    copies = [t.clone() for t in (link, precedence, w)]
    update_link(link, precedence, w)
    for before, after in zip(copies, (link, precedence, w), strict=True):
        assert torch.equal(before, after)
