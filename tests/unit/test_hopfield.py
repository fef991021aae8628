"""memlib.memory.hopfield: classic storage, dynamics and energy; the modern update as attention; the layer.

Shapes: ``B`` batch, ``D`` pattern size, ``P`` stored patterns, ``S`` state patterns, ``I`` inputs,
``K`` pattern width, ``O`` outputs.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import memlib
from memlib.memory.hopfield import (
    HopfieldLayer,
    async_update,
    energy,
    hebbian_weights,
    modern_attention,
    modern_energy,
    modern_retrieve,
    modern_update,
    recall,
    sync_update,
)

F64 = torch.float64



def spins(*shape, dev="cpu", generator=None) -> torch.Tensor:
    return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(dev, F64)


def flip(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """Flip a random ``fraction`` of each row's units."""
    D = x.shape[-1]
    k = int(fraction * D)
    idx = torch.rand(x.shape, device=x.device).argsort(-1)[..., :k]
    return x.scatter(-1, idx, -x.gather(-1, idx))


# ---- classic ----


def test_hebbian_weights_are_symmetric_with_zero_diagonal(dev):
    patterns = spins(5, 40, dev=dev)
    weights = hebbian_weights(patterns)
    assert weights.shape == (40, 40) and weights.device.type == dev.type and weights.dtype == F64
    assert_close(weights, weights.T)
    assert (weights.diagonal() == 0).all()
    expected = sum(torch.outer(p, p) for p in patterns) / 40
    assert_close(weights, expected - torch.diag(expected.diagonal()))
    assert hebbian_weights(spins(3, 5, 40)).shape == (3, 40, 40)


@pytest.mark.parametrize("batched_weights", [False, True])
def test_stored_patterns_are_fixed_points_at_low_load(batched_weights):
    patterns = spins(4, 120)  # load 4 / 120, far below the ~0.138 capacity
    weights = hebbian_weights(patterns)
    if batched_weights:
        weights = weights.expand(4, -1, -1)
    assert torch.equal(sync_update(weights, patterns), patterns)
    assert torch.equal(async_update(weights, patterns), patterns)
    result = recall(weights, patterns)
    assert result.converged and result.sweeps == 1 and torch.equal(result.state, patterns)


def test_recall_repairs_corrupted_patterns_at_low_load():
    patterns = spins(5, 200)
    weights = hebbian_weights(patterns)
    noisy = flip(patterns, 0.15)
    result = recall(weights, noisy, generator=torch.Generator().manual_seed(0))
    assert result.converged
    assert torch.equal(result.state, patterns)
    assert (result.energy <= energy(weights, noisy)).all()


def test_energy_never_increases_under_asynchronous_updates():
    weights = hebbian_weights(spins(25, 40))  # heavy load: states move a lot, many spurious minima
    state = spins(16, 40)
    e = energy(weights, state)
    for unit in torch.randperm(40).tolist() * 2:
        state = async_update(weights, state, order=[unit])  # one unit at a time
        e_new = energy(weights, state)
        assert (e_new <= e + 1e-12).all()
        e = e_new


def test_energy_matches_the_quadratic_form():
    weights, state = hebbian_weights(spins(3, 10)), spins(4, 10)
    assert_close(energy(weights, state), -0.5 * torch.einsum("bi,ij,bj->b", state, weights, state))


def test_synchronous_updates_can_cycle_where_asynchronous_ones_settle():
    weights = hebbian_weights(torch.tensor([[1.0, 1.0]], dtype=F64))  # T = [[0, .5], [.5, 0]]
    state = torch.tensor([[1.0, -1.0]], dtype=F64)
    assert torch.equal(sync_update(weights, state), torch.tensor([[-1.0, 1.0]], dtype=F64))
    assert torch.equal(sync_update(weights, sync_update(weights, state)), state)  # a two-state cycle
    assert not recall(weights, state, asynchronous=False, max_sweeps=10).converged
    settled = recall(weights, state)
    assert settled.converged and torch.equal(settled.state, torch.tensor([[-1.0, -1.0]], dtype=F64))


def test_recall_traces_states_and_energies():
    patterns = spins(2, 30)
    with memlib.trace() as tr:
        result = recall(hebbian_weights(patterns), flip(patterns, 0.1))
    assert sorted(tr.names()) == ["hopfield.energy", "hopfield.state"]
    assert len(tr["hopfield.state"]) == result.sweeps + 1  # the initial state, then one per sweep
    assert all(v.shape == (2, 30) for v in tr["hopfield.state"])
    assert all(v.shape == (2,) for v in tr["hopfield.energy"])
    energies = tr.stack("hopfield.energy")  # (sweeps + 1, B)
    assert (energies[1:] <= energies[:-1] + 1e-12).all()


# ---- modern ----


@pytest.mark.parametrize("beta", [0.1, 1.0, 8.0])
def test_modern_update_is_softmax_attention(dev, beta):
    patterns = torch.randn(3, 7, 5, dtype=F64, device=dev)  # (B, P, D)
    state = torch.randn(3, 4, 5, dtype=F64, device=dev)  # (B, S, D)
    new = modern_update(patterns, state, beta)
    assert_close(new, F.scaled_dot_product_attention(state, patterns, patterns, scale=beta))
    assert_close(new, torch.softmax(beta * state @ patterns.transpose(1, 2), -1) @ patterns)
    assert new.shape == state.shape and new.device.type == dev.type and new.dtype == F64
    shared = torch.randn(7, 5, dtype=F64, device=dev)  # (P, D) shared by a (B, D) batch of states
    flat = state[:, 0]
    assert_close(modern_update(shared, flat, beta), torch.softmax(beta * flat @ shared.T, -1) @ shared)
    assert_close(modern_attention(shared, flat, beta).sum(-1), torch.ones(3, dtype=F64, device=dev))


def test_modern_retrieves_in_one_step_far_beyond_classic_capacity():
    D, P = 64, 200  # load 3.1: the classic network holds about 0.138 * 64 = 9 patterns
    patterns = spins(P, D)
    noisy = flip(patterns[:20], 0.2)
    retrieved = modern_update(patterns, noisy, beta=1.0).sign()
    assert torch.equal(retrieved, patterns[:20])


def test_modern_energy_never_increases():
    patterns = torch.randn(9, 6, dtype=F64)
    state = torch.randn(20, 6, dtype=F64) * 2
    e = modern_energy(patterns, state, 0.7)
    for _ in range(5):
        state = modern_update(patterns, state, 0.7)
        e_new = modern_energy(patterns, state, 0.7)
        assert (e_new <= e + 1e-10).all()
        e = e_new
    assert (e >= -1e-10).all()  # lse <= log(P) / beta + M |xi|, so E >= (|xi| - M)^2 / 2 >= 0


def test_modern_retrieve_traces_each_update():
    patterns, state = torch.randn(2, 6, 4, dtype=F64), torch.randn(2, 3, 4, dtype=F64)
    with memlib.trace() as tr:
        out = modern_retrieve(patterns, state, 2.0, steps=3)
    assert len(tr["hopfield.modern.attention"]) == 3 and tr.last("hopfield.modern.attention").shape == (2, 3, 6)
    assert_close(tr.last("hopfield.modern.state"), out)
    expected = modern_update(patterns, modern_update(patterns, modern_update(patterns, state, 2.0), 2.0), 2.0)
    assert_close(out, expected)


def test_hopfield_layer(dev):
    layer = HopfieldLayer(5, 3, num_patterns=7, pattern_size=4, steps=2).to(dev, F64)
    x = torch.randn(2, 6, 5, dtype=F64, device=dev)
    with memlib.trace() as tr:
        y = layer(x)
    assert y.shape == (2, 6, 3) and y.device.type == dev.type and y.dtype == F64
    xi = layer.query(x)
    xi = modern_update(layer.keys, xi, layer.beta)  # steps - 1 = 1 update in key space
    expected = torch.softmax(layer.beta * xi @ layer.keys.T, -1) @ layer.values
    assert_close(y, expected)
    assert len(tr["hopfield.layer.attention"]) == 2
    assert tr.last("hopfield.layer.attention").shape == (2, 6, 7)
    assert layer.beta == pytest.approx(0.5)  # 1 / sqrt(pattern_size)
    assert torch.autograd.gradcheck(layer, (x[:1, :2].clone().requires_grad_(),), fast_mode=True)


BAD_INPUTS = [
    (lambda: hebbian_weights(torch.tensor([[1.0, 0.0]])), ValueError, r"entries \+1 or -1, got values \[0.0, 1.0\]"),
    (lambda: hebbian_weights(torch.ones(4)), ValueError, r"\(P, D\) or \(B, P, D\), got \(4,\)"),
    (
        lambda: energy(torch.zeros(5, 5), torch.ones(2, 4)),
        ValueError,
        r"weights of shape \(D, D\) = \(4, 4\), got \(5, 5\)",
    ),
    (lambda: async_update(torch.zeros(3, 3), torch.ones(1, 3), order=[3]), ValueError, r"in \[0, D = 3\), got \[3\]"),
    (
        lambda: modern_update(torch.randn(4, 5), torch.randn(2, 6), 1.0),
        ValueError,
        r"\(\.\.\., D\) = \(2, 5\), got \(2, 6\)",
    ),
    (
        lambda: modern_update(torch.randn(2, 4, 5), torch.randn(3, 1, 5), 1.0),
        ValueError,
        r"\(2, \?, 5\), got \(3, 1, 5\)",
    ),
    (lambda: modern_update(torch.randn(4, 5), torch.randn(2, 5), 0.0), ValueError, r"positive number, got 0.0"),
    (lambda: HopfieldLayer(5, 3)(torch.randn(2, 6, 4)), ValueError, r"expected input of size I = 5, got 4"),
    (lambda: HopfieldLayer(5, 3, num_patterns=-1), ValueError, r"num_patterns as a positive integer, got -1"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_INPUTS)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()
