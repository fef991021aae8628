"""memlib.lifelong: reservoir replay memory, EWC, the sequential protocol and its metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from memlib.lifelong import (
    EWC,
    ReplayBuffer,
    ReplayState,
    Task,
    average_accuracy,
    backward_transfer,
    diagonal_fisher,
    slot_reuse,
    split_digits,
    train_sequentially,
)


def _stream(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(n, dtype=torch.float32)[:, None]  # (n, 1): each example is its own index
    return x, torch.arange(n)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


# Replay memory ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, 1, 7, 50])
def test_reservoir_holds_at_most_capacity_and_counts_the_stream(capacity):
    x, y = _stream(40)
    buf = ReplayBuffer(capacity)
    state = buf.empty(x, y)
    for chunk in range(4):
        state = buf.add(state, x[chunk * 10 : (chunk + 1) * 10], y[chunk * 10 : (chunk + 1) * 10])
        assert state.x.shape[0] == min(capacity, 10 * (chunk + 1))
    assert state.seen == 40
    # every stored example is a distinct one from the stream, with its own label
    assert torch.equal(state.x[:, 0].long(), state.y)
    assert len(set(state.y.tolist())) == state.y.shape[0]


def test_reservoir_is_uniform_over_the_stream():
    # After n examples each is held with probability k / n, wherever it came in the stream.
    n, k, trials = 20, 5, 3000
    x, y = _stream(n)
    gen = torch.Generator().manual_seed(0)
    counts = np.zeros(n)
    buf = ReplayBuffer(k)
    for _ in range(trials):
        state = buf.add(buf.add(buf.empty(x, y), x[:8], y[:8], gen), x[8:], y[8:], gen)  # in two calls
        counts[state.y.numpy()] += 1
    expected = trials * k / n
    sd = np.sqrt(trials * (k / n) * (1 - k / n))
    assert np.abs(counts - expected).max() < 5 * sd, counts
    # early and late halves of the stream are held equally often (a reservoir biased to recent examples
    # fails this): per trial the count from the first half is hypergeometric, k of n with n/2 marked
    sd_half = np.sqrt(trials * k * 0.5 * 0.5 * (n - k) / (n - 1))
    assert abs(counts[: n // 2].sum() - trials * k / 2) < 5 * sd_half


def test_a_growing_memory_fills_its_new_slots():
    x, y = _stream(30)
    state = ReplayBuffer(5).add(ReplayBuffer.empty(x, y), x[:20], y[:20])
    state = ReplayBuffer(12).add(state, x[20:], y[20:])
    assert state.x.shape[0] == 12 and state.seen == 30


def test_sample_draws_distinct_stored_examples():
    x, y = _stream(10)
    state = ReplayBuffer(10).add(ReplayBuffer.empty(x, y), x, y)
    xs, ys = ReplayBuffer.sample(state, 4)
    assert xs.shape == (4, 1) and len(set(ys.tolist())) == 4
    assert ReplayBuffer.sample(state, 50)[0].shape == (10, 1)


@pytest.mark.parametrize("capacity", [-1, 2.5, True, None])
def test_bad_capacity_is_rejected(capacity):
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(capacity)


def test_replay_errors_name_the_problem():
    x, y = _stream(10)
    state = ReplayBuffer(8).add(ReplayBuffer.empty(x, y), x, y)
    with pytest.raises(ValueError, match="grow, not shrink"):
        ReplayBuffer(3).add(state, x, y)
    with pytest.raises(ValueError, match="as many examples"):
        ReplayBuffer(3).add(state, x, y[:4])
    with pytest.raises(ValueError, match=r"shape \(1,\)"):
        ReplayBuffer(8).add(state, torch.zeros(2, 3), y[:2])
    with pytest.raises(TypeError, match="ReplayState"):
        ReplayBuffer(3).add((x, y, 0), x, y)
    assert isinstance(state, ReplayState)


# EWC ---------------------------------------------------------------------------------------------------


def test_fisher_is_non_negative_and_matches_a_loop():
    torch.manual_seed(1)
    model = _mlp().double()
    x = torch.randn(6, 4, dtype=torch.float64)
    fisher = diagonal_fisher(model, x, batch_size=4)
    assert all((f >= 0).all() for f in fisher.values())
    # reference: sum over classes of p(c|x) * (grad log p(c|x))^2, one example and one class at a time
    ref = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for xi in x:
        logp = torch.log_softmax(model(xi[None]), dim=-1)[0]
        for c in range(3):
            grads = torch.autograd.grad(logp[c], list(model.parameters()), retain_graph=True)
            for (n, _), g in zip(model.named_parameters(), grads, strict=True):
                ref[n] += logp[c].exp().detach() * g**2 / x.shape[0]
    for n in ref:
        torch.testing.assert_close(fisher[n], ref[n])


def test_ewc_penalty_is_zero_at_the_anchor_and_quadratic_away():
    model = _mlp()
    x = torch.randn(10, 4)
    ewc = EWC(3.0)
    anchor = ewc.anchor(model, x)
    assert ewc.penalty(model, [anchor]).item() == 0.0
    assert ewc.penalty(model, []).item() == 0.0
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    # lam/2 * sum F (0.1)^2, and two identical anchors count twice
    expected = 0.5 * 3.0 * sum(f.sum() for f in anchor.fisher.values()) * 0.01
    torch.testing.assert_close(ewc.penalty(model, [anchor]), expected)
    torch.testing.assert_close(ewc.penalty(model, [anchor, anchor]), 2 * expected)
    assert ewc.penalty(model, [anchor]).requires_grad


@pytest.mark.parametrize("lam", [-1.0, float("nan"), float("inf"), "1", True])
def test_bad_lambda_is_rejected(lam):
    with pytest.raises(ValueError, match="lam"):
        EWC(lam)


# Protocol and metrics ------------------------------------------------------------------------------------


def test_metrics_by_hand():
    R = np.array([[0.9, 0.0, 0.0], [0.5, 0.8, 0.0], [0.3, 0.6, 1.0]])
    assert average_accuracy(R) == pytest.approx((0.3 + 0.6 + 1.0) / 3)
    assert backward_transfer(R) == pytest.approx(((0.3 - 0.9) + (0.6 - 0.8)) / 2)
    assert average_accuracy(np.array([[0.7]])) == pytest.approx(0.7)


@pytest.mark.parametrize("R", [np.zeros((2, 3)), np.zeros(3), np.zeros((0, 0)), np.array([[np.nan]])])
def test_metrics_reject_bad_matrices(R):
    with pytest.raises(ValueError, match="accuracy matrix"):
        average_accuracy(R)


def test_backward_transfer_needs_two_tasks():
    with pytest.raises(ValueError, match="at least 2 tasks"):
        backward_transfer(np.ones((1, 1)))


def _toy_tasks() -> list[Task]:
    gen = torch.Generator().manual_seed(0)
    tasks = []
    for t in range(3):
        x = torch.randn(24, 4, generator=gen) + 3 * t
        y = torch.full((24,), t)
        tasks.append(Task(x[:16], y[:16], x[16:], y[16:]))
    return tasks


@pytest.mark.parametrize(
    "kwargs", [{"method": "finetune"}, {"method": "replay", "memory": 6}, {"method": "ewc", "lam": 10.0}]
)
def test_train_sequentially_returns_a_square_matrix_in_range(kwargs):
    result = train_sequentially(_mlp, _toy_tasks(), epochs=2, batch_size=8, **kwargs)
    assert result.accuracy.shape == (3, 3)
    assert ((result.accuracy >= 0) & (result.accuracy <= 1)).all()
    held = (0, 6, 6) if kwargs["method"] == "replay" else (0, 0, 0)
    assert result.memory_held == held


def test_replay_memory_that_grows_is_reported():
    result = train_sequentially(_mlp, _toy_tasks(), "replay", epochs=1, memory=[2, 4, 8])
    assert result.memory_held == (0, 2, 4)


def test_train_sequentially_is_repeatable():
    a = train_sequentially(_mlp, _toy_tasks(), "replay", epochs=2, memory=5, seed=3)
    b = train_sequentially(_mlp, _toy_tasks(), "replay", epochs=2, memory=5, seed=3)
    np.testing.assert_array_equal(a.accuracy, b.accuracy)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "dream"}, "unknown method 'dream'"),
        ({"method": "replay", "memory": -1}, "memory"),
        ({"method": "replay", "memory": [4, 2, 8]}, "grow, not shrink"),
        ({"method": "replay", "memory": [4, 8]}, "one memory capacity per task"),
        ({"method": "finetune", "memory": 5}, "only by method='replay'"),
        ({"method": "replay", "lam": 1.0}, "only by method='ewc'"),
        ({"method": "ewc", "lam": -1.0}, "lam"),
        ({"epochs": 0}, "epochs"),
    ],
)
def test_train_sequentially_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_sequentially(_mlp, _toy_tasks(), **kwargs)


def test_train_sequentially_needs_tasks():
    with pytest.raises(ValueError, match="at least one task"):
        train_sequentially(_mlp, [])


def test_split_digits_makes_disjoint_class_pairs():
    tasks = split_digits(5, seed=0)
    assert len(tasks) == 5
    for t, task in enumerate(tasks):
        assert set(task.y_train.tolist()) == {2 * t, 2 * t + 1} == set(task.y_test.tolist())
        assert task.x_train.shape[1] == 64 and 0 <= task.x_train.min() and task.x_train.max() <= 1
    assert sum(t.x_train.shape[0] + t.x_test.shape[0] for t in tasks) == 1797
    with pytest.raises(ValueError, match="n_tasks"):
        split_digits(11)


# Slot reuse --------------------------------------------------------------------------------------------


def test_allocation_reuses_released_slots_and_a_ring_does_not():
    keep = torch.zeros(1, 40, dtype=torch.bool)
    keep[0, [0, 5, 17, 30]] = True  # 4 items to keep among 40, in 4 slots
    alloc = slot_reuse(keep, 4, "allocation")
    ring = slot_reuse(keep, 4, "ring")
    # once item 30 fills the last slot, the memory is full of kept items: items 31..39 find no slot
    assert (alloc.kept.item(), alloc.wanted.item(), alloc.dropped.item()) == (4, 4, 9)
    # a ring of 4 holds only items 36..39: none of those is marked keep
    assert (ring.kept.item(), ring.dropped.item()) == (0, 0)


def test_a_full_allocation_memory_keeps_the_oldest_and_drops_the_rest():
    keep = torch.ones(2, 10, dtype=torch.bool)
    alloc = slot_reuse(keep, 3, "allocation")
    assert alloc.kept.tolist() == [3, 3] and alloc.dropped.tolist() == [7, 7]
    assert slot_reuse(keep, 3, "ring").kept.tolist() == [3, 3]


@pytest.mark.parametrize(
    ("keep", "slots", "policy", "message"),
    [
        (torch.ones(2, 5, dtype=torch.bool), 3, "lru", "unknown policy 'lru'"),
        (torch.ones(5, dtype=torch.bool), 3, "ring", r"keep \(B, L\)"),
        (torch.ones(2, 5), 3, "ring", r"keep \(B, L\) bool"),
        (torch.ones(2, 5, dtype=torch.bool), 0, "ring", "slots >= 1"),
    ],
)
def test_slot_reuse_errors(keep, slots, policy, message):
    with pytest.raises(ValueError, match=message):
        slot_reuse(keep, slots, policy)
