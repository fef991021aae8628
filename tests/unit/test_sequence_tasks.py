"""memlib.tasks.sequences: adding, copy and temporal-order batches."""

from __future__ import annotations

import pytest
import torch

from memlib.tasks.sequences import (
    TEMPORAL_ORDER_SYMBOLS,
    adding_batch,
    copy_batch,
    temporal_order_batch,
)

MAKERS = [
    lambda **kw: adding_batch(6, 20, **kw),
    lambda **kw: copy_batch(6, 5, 3, **kw),
    lambda **kw: temporal_order_batch(6, 30, **kw),
]
MAKER_IDS = ["adding", "copy", "temporal_order"]


# ---- shapes, dtypes, devices, determinism ----


def test_shapes_and_dtypes(dev):
    add = adding_batch(7, 12, device=dev)
    assert add.inputs.shape == (7, 12, 2) and add.target.shape == (7,)
    assert add.inputs.dtype == torch.float32 and add.target.dtype == torch.float32
    cp = copy_batch(7, 4, 3, device=dev)
    assert cp.inputs.shape == (7, 2 * 4 + 2, 3 + 2) and cp.targets.shape == (7, 4, 3)
    assert cp.inputs.dtype == torch.float32 and cp.targets.dtype == torch.float32
    to = temporal_order_batch(7, 40, device=dev)
    assert to.inputs.shape == (7, 40, len(TEMPORAL_ORDER_SYMBOLS)) and to.labels.shape == (7,)
    assert to.inputs.dtype == torch.float32 and to.labels.dtype == torch.int64
    for tensor in (*add, *cp, *to):
        assert tensor.device.type == dev.type


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


# ---- adding ----


@pytest.mark.parametrize("T", [2, 3, 17, 100])
def test_adding_invariants(T):
    batch = adding_batch(64, T, seed=2, step=1)
    values, markers = batch.inputs[..., 0], batch.inputs[..., 1]  # (B, T) each
    assert ((values >= 0) & (values <= 1)).all()
    assert set(markers.unique().tolist()) <= {0.0, 1.0}
    half = T // 2
    assert (markers[:, :half].sum(dim=1) == 1).all()
    assert (markers[:, half:].sum(dim=1) == 1).all()
    torch.testing.assert_close(batch.target, (values * markers).sum(dim=1))


def test_adding_mean_prediction_baseline_is_one_sixth():
    batch = adding_batch(50_000, 10, seed=0, step=0)
    mse = ((batch.target - 1.0) ** 2).mean().item()
    assert abs(mse - 1 / 6) < 0.01


# ---- copy ----


@pytest.mark.parametrize("seq_len,bits", [(1, 1), (5, 3), (10, 8)])
def test_copy_layout(seq_len, bits):
    batch = copy_batch(16, seq_len, bits, seed=1, step=3)
    x, y = batch.inputs, batch.targets
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    start, end = bits, bits + 1
    # step 0: only the start delimiter
    assert (x[:, 0, start] == 1).all() and x[:, 0].sum() == 16
    # steps 1..L: the sequence, delimiters off
    assert torch.equal(x[:, 1 : seq_len + 1, :bits], y)
    assert (x[:, 1 : seq_len + 1, bits:] == 0).all()
    # step L+1: only the end delimiter
    assert (x[:, seq_len + 1, end] == 1).all() and x[:, seq_len + 1].sum() == 16
    # last L steps: blanks
    assert (x[:, seq_len + 2 :] == 0).all()
    assert x.shape[1] - (seq_len + 2) == seq_len


def test_copy_bits_are_mixed():
    targets = copy_batch(32, 10, 8).targets
    assert 0.4 < targets.mean().item() < 0.6


# ---- temporal order ----


@pytest.mark.parametrize("T", [10, 11, 57, 100, 110])
def test_temporal_order_invariants(T):
    batch = temporal_order_batch(128, T, seed=5, step=7)
    x = batch.inputs
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert (x.sum(dim=-1) == 1).all()  # one-hot rows
    symbols = x.argmax(dim=-1)  # (B, T)
    e, b, sym_x, sym_y = (TEMPORAL_ORDER_SYMBOLS.index(s) for s in "EBXY")
    assert (symbols[:, 0] == e).all() and (symbols[:, -1] == b).all()
    assert (symbols[:, 1:-1] != e).all() and (symbols[:, 1:-1] != b).all()
    relevant = (symbols == sym_x) | (symbols == sym_y)  # (B, T)
    assert (relevant.sum(dim=1) == 2).all()
    for row in range(128):
        t1, t2 = relevant[row].nonzero().flatten().tolist()
        assert T // 10 <= t1 <= T // 5
        assert T // 2 <= t2 <= 6 * T // 10
        first_y, second_y = int(symbols[row, t1] == sym_y), int(symbols[row, t2] == sym_y)
        assert batch.labels[row].item() == 2 * first_y + second_y


def test_temporal_order_paper_ranges_at_T_100():
    batch = temporal_order_batch(2000, 100)
    symbols = batch.inputs.argmax(dim=-1)
    relevant = symbols >= TEMPORAL_ORDER_SYMBOLS.index("X")
    relevant[:, [0, -1]] = False
    positions = relevant.nonzero()[:, 1]
    assert set(positions.tolist()) == set(range(10, 21)) | set(range(50, 61))
    assert set(batch.labels.tolist()) == {0, 1, 2, 3}


def test_symbol_table():
    assert TEMPORAL_ORDER_SYMBOLS == ("a", "b", "c", "d", "X", "Y", "E", "B")


# ---- validation ----


@pytest.mark.parametrize(
    "call,pieces",
    [
        (lambda: adding_batch(0, 10), ["batch_size >= 1", "got 0"]),
        (lambda: adding_batch(4, 1), ["T >= 2", "T=1"]),
        (lambda: copy_batch(0, 3, 2), ["batch_size >= 1", "got 0"]),
        (lambda: copy_batch(4, 0, 2), ["seq_len >= 1", "seq_len=0"]),
        (lambda: copy_batch(4, 3, 0), ["bits >= 1", "bits=0"]),
        (lambda: temporal_order_batch(-1, 20), ["batch_size >= 1", "got -1"]),
        (lambda: temporal_order_batch(4, 9), ["T >= 10", "T=9"]),
    ],
)
def test_bad_arguments_raise_with_values(call, pieces):
    with pytest.raises(ValueError) as info:
        call()
    for piece in pieces:
        assert piece in str(info.value)
