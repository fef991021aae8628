"""Classic long-time-lag sequence tasks: adding, copy, temporal order.

Each needs the model to hold a few inputs across many distractor steps, and each has a known
baseline, so a curve that beats it shows memory at work.

Shapes: ``B`` batch, ``T`` time (fixed per batch), ``L`` copy sequence length (``seq_len``),
``K`` bits per copy vector (``bits``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from memlib.tasks.seeding import batch_generator
from memlib.validate import check_int

# Channel c of a temporal-order input is the symbol TEMPORAL_ORDER_SYMBOLS[c].
TEMPORAL_ORDER_SYMBOLS = ("a", "b", "c", "d", "X", "Y", "E", "B")
_X, _E, _B = 4, 6, 7  # Y is _X + 1


class AddingBatch(NamedTuple):
    """What :func:`adding_batch` returns.

    >>> adding_batch(1, 4)._fields
    ('inputs', 'target')
    """
    inputs: torch.Tensor  # (B, T, 2) float: channel 0 values in [0, 1), channel 1 markers 0/1
    target: torch.Tensor  # (B,) float: sum of the two marked values


def adding_batch(
    batch_size: int,
    T: int,
    *,
    seed: int = 0,
    step: int = 0,
    device: torch.device | str = "cpu",
) -> AddingBatch:
    """The adding problem (Hochreiter & Schmidhuber 1997, "Long Short-Term Memory", Experiment 4).

    Common modern form: values uniform in [0, 1); exactly two positions are marked, one in the
    first half ``[0, T//2)`` and one in the second half ``[T//2, T)``; the target is the sum of
    the two marked values. ``T >= 2`` so that each half holds a position.

    Baseline: the target has mean 1 and variance 2 * 1/12, so always predicting 1.0 scores
    MSE 1/6 ≈ 0.167. A model must beat that to show it remembers the marked values.

    The batch depends only on ``(seed, step)``.

    >>> b = adding_batch(2, 5)
    >>> tuple(b.inputs.shape), tuple(b.target.shape)
    ((2, 5, 2), (2,))
    >>> b.inputs[..., 1].sum(1).tolist()  # two marked positions per sequence
    [2.0, 2.0]
    """
    check_int("adding_batch", "batch_size", batch_size, low=1, expected="batch_size >= 1", got=str(batch_size))
    check_int("adding_batch", "T", T, low=2, expected="T >= 2 (one marked position per half)", got=f"T={T}")
    gen = batch_generator(seed, step)
    values = torch.rand(batch_size, T, generator=gen)  # (B, T)
    half = T // 2
    first = torch.randint(0, half, (batch_size,), generator=gen)  # (B,)
    second = torch.randint(half, T, (batch_size,), generator=gen)  # (B,)
    rows = torch.arange(batch_size)
    markers = torch.zeros(batch_size, T)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]
    inputs = torch.stack([values, markers], dim=-1)  # (B, T, 2)
    return AddingBatch(inputs.to(device), target.to(device))


class CopyBatch(NamedTuple):
    """What :func:`copy_batch` returns.

    >>> copy_batch(1, 2, 3)._fields
    ('inputs', 'targets')
    """
    inputs: torch.Tensor  # (B, 2L+2, K+2) float 0/1
    targets: torch.Tensor  # (B, L, K) float 0/1: the outputs expected at the last L steps


def copy_batch(
    batch_size: int,
    seq_len: int,
    bits: int,
    *,
    seed: int = 0,
    step: int = 0,
    device: torch.device | str = "cpu",
) -> CopyBatch:
    """The copy task (Graves, Wayne & Danihelka 2014, "Neural Turing Machines", section 4.1).

    Input layout over ``2 * seq_len + 2`` steps (channels ``0..bits-1`` data, ``bits`` start
    delimiter, ``bits + 1`` end delimiter):

    - step 0: start delimiter;
    - steps ``1 .. seq_len``: the random binary vectors;
    - step ``seq_len + 1``: end delimiter;
    - steps ``seq_len + 2 .. 2 * seq_len + 1``: blanks (all zero), during which the model must
      output the sequence: ``targets[:, i]`` is expected at step ``seq_len + 2 + i``, i.e. the
      model's outputs over the last ``seq_len`` steps are scored against ``targets``.

    The length is fixed per batch. The batch depends only on ``(seed, step)``.

    >>> b = copy_batch(2, seq_len=3, bits=4, seed=0)
    >>> tuple(b.inputs.shape), tuple(b.targets.shape)
    ((2, 8, 6), (2, 3, 4))
    >>> torch.equal(b.targets, copy_batch(2, seq_len=3, bits=4, seed=0).targets)  # a function of (seed, step)
    True
    """
    check_int("copy_batch", "batch_size", batch_size, low=1, expected="batch_size >= 1", got=str(batch_size))
    check_int("copy_batch", "seq_len", seq_len, low=1, expected="seq_len >= 1", got=f"seq_len={seq_len}")
    check_int("copy_batch", "bits", bits, low=1, expected="bits >= 1", got=f"bits={bits}")
    gen = batch_generator(seed, step)
    targets = torch.randint(0, 2, (batch_size, seq_len, bits), generator=gen).float()  # (B, L, K)
    inputs = torch.zeros(batch_size, 2 * seq_len + 2, bits + 2)  # (B, 2L+2, K+2)
    inputs[:, 0, bits] = 1.0
    inputs[:, 1 : seq_len + 1, :bits] = targets
    inputs[:, seq_len + 1, bits + 1] = 1.0
    return CopyBatch(inputs.to(device), targets.to(device))


class TemporalOrderBatch(NamedTuple):
    """What :func:`temporal_order_batch` returns.

    >>> temporal_order_batch(1, 10)._fields
    ('inputs', 'labels')
    """
    inputs: torch.Tensor  # (B, T, 8) float one-hot over TEMPORAL_ORDER_SYMBOLS
    labels: torch.Tensor  # (B,) int64: XX -> 0, XY -> 1, YX -> 2, YY -> 3


def temporal_order_batch(
    batch_size: int,
    T: int,
    *,
    seed: int = 0,
    step: int = 0,
    device: torch.device | str = "cpu",
) -> TemporalOrderBatch:
    """Temporal order, two relevant symbols (Hochreiter & Schmidhuber 1997, Experiment 6a).

    As in the paper, the sequence starts with ``E``, ends with ``B`` (the trigger symbol) and
    otherwise holds distractors drawn uniformly from ``{a, b, c, d}``, except at two positions
    ``t1`` and ``t2`` that hold ``X`` or ``Y``. The class is their order:
    ``XX -> 0, XY -> 1, YX -> 2, YY -> 3``.

    The paper uses lengths 100-110 with ``t1`` in [10, 20] and ``t2`` in [50, 60]; here ``T`` is
    fixed per batch and the ranges scale with it (0-indexed): ``t1`` uniform in
    ``[T // 10, T // 5]`` and ``t2`` uniform in ``[T // 2, 6 * T // 10]``. ``T >= 10`` so that
    ``t1 >= 1`` never overwrites the start symbol.

    Channels (8, one per symbol, as the paper's 8 input units): 0 ``a``, 1 ``b``, 2 ``c``,
    3 ``d``, 4 ``X``, 5 ``Y``, 6 ``E`` (start), 7 ``B`` (end, trigger); see
    ``TEMPORAL_ORDER_SYMBOLS``. The batch depends only on ``(seed, step)``.

    >>> b = temporal_order_batch(2, 10)
    >>> tuple(b.inputs.shape), b.labels.dtype
    ((2, 10, 8), torch.int64)
    """
    where = "temporal_order_batch"
    check_int(where, "batch_size", batch_size, low=1, expected="batch_size >= 1", got=str(batch_size))
    check_int(where, "T", T, low=10, expected="T >= 10 (so that t1 >= T // 10 >= 1)", got=f"T={T}")
    gen = batch_generator(seed, step)
    symbols = torch.randint(0, 4, (batch_size, T), generator=gen)  # (B, T) distractors a..d
    t1 = torch.randint(T // 10, T // 5 + 1, (batch_size,), generator=gen)  # (B,)
    t2 = torch.randint(T // 2, 6 * T // 10 + 1, (batch_size,), generator=gen)  # (B,)
    is_y = torch.randint(0, 2, (batch_size, 2), generator=gen)  # (B, 2): 0 for X, 1 for Y
    rows = torch.arange(batch_size)
    symbols[:, 0] = _E
    symbols[:, -1] = _B
    symbols[rows, t1] = _X + is_y[:, 0]
    symbols[rows, t2] = _X + is_y[:, 1]
    labels = 2 * is_y[:, 0] + is_y[:, 1]
    inputs = F.one_hot(symbols, len(TEMPORAL_ORDER_SYMBOLS)).float()  # (B, T, 8)
    return TemporalOrderBatch(inputs.to(device), labels.to(device))
