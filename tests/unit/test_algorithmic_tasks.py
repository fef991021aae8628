"""memlib.tasks.algorithmic: repeat copy, associative recall and priority sort batches."""

from __future__ import annotations

import pytest
import torch

from memlib.tasks.algorithmic import associative_recall_batch, priority_sort_batch, repeat_copy_batch

MAKERS = [
    lambda **kw: repeat_copy_batch(5, 3, 2, 4, **kw),
    lambda **kw: associative_recall_batch(5, 4, 6, **kw),
    lambda **kw: priority_sort_batch(5, 6, 3, **kw),
]
MAKER_IDS = ["repeat_copy", "associative_recall", "priority_sort"]


# ---- shapes, dtypes, devices, determinism ----


def test_shapes_and_dtypes(dev):
    rc = repeat_copy_batch(7, 3, 4, 5, device=dev)
    assert rc.inputs.shape == (7, 3 + 2 + 4 * 3 + 1, 5 + 2) and rc.targets.shape == (7, 4 * 3 + 1, 5 + 1)
    ar = associative_recall_batch(7, 5, 6, item_len=2, device=dev)
    assert ar.inputs.shape == (7, 5 * 3 + 4 + 2, 6 + 2) and ar.targets.shape == (7, 2, 6) and ar.query.shape == (7,)
    ps = priority_sort_batch(7, 8, 5, out_len=6, device=dev)
    assert ps.inputs.shape == (7, 8 + 2 + 6, 5 + 3) and ps.targets.shape == (7, 6, 5) and ps.priorities.shape == (7, 8)
    for tensor in (*rc, ar.inputs, ar.targets, ps.inputs, ps.targets, ps.priorities):
        assert tensor.dtype == torch.float32 and tensor.device.type == dev.type
    assert ar.query.dtype == torch.int64 and ar.query.device.type == dev.type


@pytest.mark.parametrize("make", MAKERS, ids=MAKER_IDS)
def test_same_seed_and_step_same_batch(make):
    for x, y in zip(make(seed=3, step=5), make(seed=3, step=5), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("make", MAKERS, ids=MAKER_IDS)
def test_batches_differ_across_steps_and_seeds(make):
    base = make(seed=3, step=5)
    assert not torch.equal(base.inputs, make(seed=3, step=6).inputs)
    assert not torch.equal(base.inputs, make(seed=4, step=5).inputs)


@pytest.mark.parametrize("make", MAKERS, ids=MAKER_IDS)
def test_device_does_not_change_the_data(make, dev):
    for x, y in zip(make(seed=1, step=2), make(seed=1, step=2, device=dev), strict=True):
        assert torch.equal(x, y.cpu())


# ---- repeat copy ----


@pytest.mark.parametrize(("L", "C"), [(1, 1), (3, 2), (5, 4)])
def test_repeat_copy_layout(L, C):
    K = 4
    batch = repeat_copy_batch(6, L, C, K, max_repeats=8, seed=1)
    x, y = batch.inputs, batch.targets
    sequence = x[:, 1 : L + 1, :K]
    assert set(sequence.unique().tolist()) <= {0.0, 1.0}
    assert (x[:, 0, K] == 1).all() and (x[:, 0, :K] == 0).all()
    assert (x[:, L + 1, K + 1] == C / 8).all()
    assert (x[:, L + 1, : K + 1] == 0).all()
    assert (x[:, L + 2 :] == 0).all()  # blanks while the model answers
    assert x[:, :, K].sum() == 6 and x[:, :, K + 1].count_nonzero() == 6
    for c in range(C):
        assert torch.equal(y[:, c * L : (c + 1) * L, :K], sequence)
    assert (y[:, : C * L, K] == 0).all()
    assert (y[:, C * L, K] == 1).all() and (y[:, C * L, :K] == 0).all()


# ---- associative recall ----


def test_associative_recall_layout():
    n, m, K = 5, 3, 6
    batch = associative_recall_batch(32, n, K, item_len=m, seed=2)
    x = batch.inputs
    items = x[:, : n * (m + 1)].reshape(32, n, m + 1, K + 2)
    assert (items[:, :, 0, K] == 1).all() and (items[:, :, 0, :K] == 0).all()
    assert (items[:, :, 1:, K:] == 0).all()
    start = n * (m + 1)
    assert (x[:, start, K + 1] == 1).all() and (x[:, start + m + 1, K + 1] == 1).all()
    assert (x[:, start + m + 2 :] == 0).all()
    assert ((batch.query >= 0) & (batch.query <= n - 2)).all()
    rows = torch.arange(32)
    assert torch.equal(x[:, start + 1 : start + 1 + m, :K], items[rows, batch.query, 1:, :K])
    assert torch.equal(batch.targets, items[rows, batch.query + 1, 1:, :K])
    assert len(batch.query.unique()) > 1


# ---- priority sort ----


def test_priority_sort_targets_are_sorted_by_priority():
    L, K, out = 8, 5, 6
    batch = priority_sort_batch(16, L, K, out_len=out, seed=4)
    x, p = batch.inputs, batch.priorities
    assert ((p >= -1) & (p < 1)).all()
    assert torch.equal(x[:, 1 : L + 1, K], p)
    assert (x[:, 0, K + 1] == 1).all() and (x[:, L + 1, K + 2] == 1).all() and (x[:, L + 2 :] == 0).all()
    for b in range(16):
        ranked = sorted(range(L), key=lambda i: -p[b, i].item())[:out]
        assert torch.equal(batch.targets[b], x[b, 1 : L + 1, :K][ranked])


# ---- errors ----

BAD_INPUTS = [
    (lambda: repeat_copy_batch(2, 0, 1, 3), r"expected seq_len >= 1, got seq_len=0"),
    (lambda: repeat_copy_batch(2, 3, 11, 3), r"repeats <= max_repeats = 10, got 11"),
    (lambda: repeat_copy_batch(-1, 3, 1, 3), r"batch_size >= 1, got batch_size=-1"),
    (lambda: associative_recall_batch(2, 1, 3), r"items >= 2 .*got 1"),
    (lambda: associative_recall_batch(2, 3, 3, item_len=0), r"item_len >= 1, got item_len=0"),
    (lambda: priority_sort_batch(2, 4, 3, out_len=5), r"1 <= out_len <= seq_len = 4, got out_len=5"),
    (lambda: priority_sort_batch(2, 4, 0), r"bits >= 1, got bits=0"),
]


@pytest.mark.parametrize(("call", "message"), BAD_INPUTS)
def test_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()
