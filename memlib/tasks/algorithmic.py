"""The NTM's algorithmic tasks beyond copy (Graves, Wayne & Danihelka 2014, section 4): repeat copy,
associative recall, priority sort. (Copy itself is ``memlib.tasks.sequences.copy_batch``.)

Each batch is a ``NamedTuple(inputs, targets)`` of float 0/1 tensors (priorities excepted) whose targets are
the outputs expected over the *last* ``targets.shape[1]`` steps of the input: score the model's outputs
``y[:, -targets.shape[1]:]`` against them (e.g. ``BCEWithLogitsLoss``). Lengths are fixed per batch, as
in ``copy_batch``; vary them across steps for a curriculum. A batch depends only on ``(seed, step)``.

Shapes: ``B`` batch, ``T`` time, ``K`` bits per data vector (``bits``), ``L`` sequence length
(``seq_len``), ``C`` copies (``repeats``), ``n`` items and ``m`` vectors per item (associative recall).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from memlib.tasks.seeding import batch_generator
from memlib.validate import check_int


def _check_positive(name: str, **values: int) -> None:
    for label, value in values.items():
        check_int(name, label, value, low=1, expected=f"{label} >= 1", got=f"{label}={value!r}")


class RepeatCopyBatch(NamedTuple):
    """What :func:`repeat_copy_batch` returns.

    >>> repeat_copy_batch(1, 2, 2, 3)._fields
    ('inputs', 'targets')
    """
    inputs: torch.Tensor  # (B, L + 2 + C*L + 1, K + 2) float
    targets: torch.Tensor  # (B, C*L + 1, K + 1) float 0/1: the last C*L + 1 output steps


def repeat_copy_batch(
    batch_size: int,
    seq_len: int,
    repeats: int,
    bits: int,
    *,
    max_repeats: int = 10,
    seed: int = 0,
    step: int = 0,
    device: torch.device | str = "cpu",
) -> RepeatCopyBatch:
    """Repeat copy (Graves et al. 2014, section 4.2): output the sequence ``repeats`` times, then an end marker.

    Input layout over ``L + 2 + C*L + 1`` steps (channels ``0..K-1`` data, ``K`` start delimiter, ``K + 1``
    repeat count):

    - step 0: start delimiter;
    - steps ``1 .. L``: the random binary vectors;
    - step ``L + 1``: the number of copies on channel ``K + 1``, as ``repeats / max_repeats`` (the paper
      normalises the count; here to (0, 1], so that counts up to ``max_repeats`` keep their scale);
    - the last ``C*L + 1`` steps: blanks, during which the model outputs the sequence ``C`` times and then
      the end marker: ``targets`` has the data on channels ``0..K-1`` and the end marker on channel ``K``.

    The paper trains with lengths and repeats drawn from 1-10 each.

    >>> b = repeat_copy_batch(2, seq_len=3, repeats=2, bits=4)
    >>> tuple(b.inputs.shape), tuple(b.targets.shape)
    ((2, 12, 6), (2, 7, 5))
    """
    _check_positive("repeat_copy_batch", batch_size=batch_size, seq_len=seq_len, repeats=repeats, bits=bits)
    _check_positive("repeat_copy_batch", max_repeats=max_repeats)
    if repeats > max_repeats:
        raise ValueError(f"repeat_copy_batch: expected repeats <= max_repeats = {max_repeats}, got {repeats}")
    gen = batch_generator(seed, step)
    L, C, K = seq_len, repeats, bits
    sequence = torch.randint(0, 2, (batch_size, L, K), generator=gen).float()  # (B, L, K)
    inputs = torch.zeros(batch_size, L + 2 + C * L + 1, K + 2)
    inputs[:, 0, K] = 1.0
    inputs[:, 1 : L + 1, :K] = sequence
    inputs[:, L + 1, K + 1] = repeats / max_repeats
    targets = torch.zeros(batch_size, C * L + 1, K + 1)
    targets[:, : C * L, :K] = sequence.repeat(1, C, 1)  # (B, C*L, K): the copies back to back
    targets[:, C * L, K] = 1.0
    return RepeatCopyBatch(inputs.to(device), targets.to(device))


class AssociativeRecallBatch(NamedTuple):
    """What :func:`associative_recall_batch` returns.

    >>> associative_recall_batch(1, 2, 3)._fields
    ('inputs', 'targets', 'query')
    """
    inputs: torch.Tensor  # (B, n*(m+1) + (m+2) + m, K + 2) float 0/1
    targets: torch.Tensor  # (B, m, K) float 0/1: the item after the queried one, over the last m steps
    query: torch.Tensor  # (B,) int64 in [0, n - 2]: the index of the queried item


def associative_recall_batch(
    batch_size: int,
    items: int,
    bits: int,
    *,
    item_len: int = 3,
    seed: int = 0,
    step: int = 0,
    device: torch.device | str = "cpu",
) -> AssociativeRecallBatch:
    """Associative recall (Graves et al. 2014, section 4.3): given a query item, output the item that followed it.

    An item is ``item_len`` (m) random binary vectors (the paper: 3 vectors of 6 bits, 2-6 items).
    Input layout (channels ``0..K-1`` data, ``K`` item delimiter, ``K + 1`` query delimiter):

    - ``items`` (n) blocks of ``m + 1`` steps: the item delimiter, then the item's m vectors;
    - the query: the query delimiter, a copy of item ``query`` (uniform in ``0 .. n-2``, so that a next item
      exists), the query delimiter again;
    - ``m`` blank steps, during which the model outputs item ``query + 1`` (``targets``).

    >>> b = associative_recall_batch(2, items=3, bits=4)
    >>> tuple(b.inputs.shape), tuple(b.targets.shape), tuple(b.query.shape)
    ((2, 20, 6), (2, 3, 4), (2,))
    """
    _check_positive("associative_recall_batch", batch_size=batch_size, bits=bits, item_len=item_len)
    check_int("associative_recall_batch", "items", items, low=2, expected="items >= 2 (a query and its successor)")
    gen = batch_generator(seed, step)
    n, m, K = items, item_len, bits
    data = torch.randint(0, 2, (batch_size, n, m, K), generator=gen).float()  # (B, n, m, K)
    query = torch.randint(0, n - 1, (batch_size,), generator=gen)  # (B,)
    rows = torch.arange(batch_size)
    T = n * (m + 1) + (m + 2) + m
    inputs = torch.zeros(batch_size, T, K + 2)
    blocks = inputs[:, : n * (m + 1)].view(batch_size, n, m + 1, K + 2)  # (B, n, m+1, K+2), a view
    blocks[:, :, 0, K] = 1.0
    blocks[:, :, 1:, :K] = data
    start = n * (m + 1)
    inputs[:, start, K + 1] = 1.0
    inputs[:, start + 1 : start + 1 + m, :K] = data[rows, query]  # (B, m, K)
    inputs[:, start + 1 + m, K + 1] = 1.0
    targets = data[rows, query + 1]  # (B, m, K)
    return AssociativeRecallBatch(inputs.to(device), targets.to(device), query.to(device))


class PrioritySortBatch(NamedTuple):
    """What :func:`priority_sort_batch` returns.

    >>> priority_sort_batch(1, 2, 3)._fields
    ('inputs', 'targets', 'priorities')
    """
    inputs: torch.Tensor  # (B, L + 2 + out_len, K + 3) float: data 0/1, priority in [-1, 1], delimiters
    targets: torch.Tensor  # (B, out_len, K) float 0/1: the highest-priority vectors, highest first
    priorities: torch.Tensor  # (B, L) float in [-1, 1)


def priority_sort_batch(
    batch_size: int,
    seq_len: int,
    bits: int,
    *,
    out_len: int | None = None,
    seed: int = 0,
    step: int = 0,
    device: torch.device | str = "cpu",
) -> PrioritySortBatch:
    """Priority sort (Graves et al. 2014, section 4.5): output the vectors sorted by their priority.

    Each of the ``seq_len`` random binary vectors comes with a priority uniform in [-1, 1); the targets are
    the ``out_len`` (default ``seq_len``; the paper: 16 of 20) highest-priority vectors, highest first.
    Input layout (channels ``0..K-1`` data, ``K`` priority, ``K + 1`` start, ``K + 2`` end delimiter):
    step 0 start delimiter; steps ``1 .. L`` a vector and its priority; step ``L + 1`` end delimiter;
    then ``out_len`` blank steps, during which the model outputs ``targets``.

    >>> b = priority_sort_batch(2, seq_len=4, bits=3)
    >>> tuple(b.inputs.shape), tuple(b.targets.shape), tuple(b.priorities.shape)
    ((2, 10, 6), (2, 4, 3), (2, 4))
    """
    _check_positive("priority_sort_batch", batch_size=batch_size, seq_len=seq_len, bits=bits)
    out_len = seq_len if out_len is None else out_len
    check_int("priority_sort_batch", "out_len", out_len, low=1, high=seq_len,
              expected=f"1 <= out_len <= seq_len = {seq_len}", got=f"out_len={out_len!r}")
    gen = batch_generator(seed, step)
    L, K = seq_len, bits
    data = torch.randint(0, 2, (batch_size, L, K), generator=gen).float()  # (B, L, K)
    priorities = torch.rand(batch_size, L, generator=gen) * 2 - 1  # (B, L)
    inputs = torch.zeros(batch_size, L + 2 + out_len, K + 3)
    inputs[:, 0, K + 1] = 1.0
    inputs[:, 1 : L + 1, :K] = data
    inputs[:, 1 : L + 1, K] = priorities
    inputs[:, L + 1, K + 2] = 1.0
    order = priorities.argsort(dim=1, descending=True)[:, :out_len]  # (B, out_len)
    targets = data.gather(1, order[..., None].expand(-1, -1, K))  # (B, out_len, K)
    return PrioritySortBatch(inputs.to(device), targets.to(device), priorities.to(device))
