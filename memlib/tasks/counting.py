"""Counting: how many 1s are in a bit string of varying length?

The simplest task that needs memory of the whole input: the answer depends on every
position, and sequences come in many lengths. Chapter 1 uses it to contrast a static model
(fixed-size input) with a recurrent one (any length).

Shapes: ``B`` batch, ``T`` time (``max_len``: every batch is padded to it).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from memlib.tasks.seeding import batch_generator
from memlib.validate import check_float, check_int


class CountingBatch(NamedTuple):
    """What :func:`counting_batch` returns.

    >>> counting_batch(1, 2, 3)._fields
    ('bits', 'lengths', 'counts')
    """
    bits: torch.Tensor  # (B, T) float 0/1, zero padded past each length
    lengths: torch.Tensor  # (B,) int64, each in [min_len, max_len]
    counts: torch.Tensor  # (B,) float: number of 1s in bits[b, :lengths[b]]


def counting_batch(
    batch_size: int,
    min_len: int,
    max_len: int,
    *,
    seed: int = 0,
    step: int = 0,
    p: float = 0.5,
    device: torch.device | str = "cpu",
) -> CountingBatch:
    """A batch of random bit strings with lengths uniform in ``[min_len, max_len]``.

    The batch depends only on ``(seed, step)``: training step ``k`` always sees the same data.

    >>> b = counting_batch(2, min_len=3, max_len=5)
    >>> tuple(b.bits.shape), b.lengths.dtype
    ((2, 5), torch.int64)
    >>> bool((b.counts == (b.bits.sum(1))).all())  # padding bits are 0
    True
    """
    check_int("counting_batch", "batch_size", batch_size, low=1, expected="batch_size >= 1", got=str(batch_size))
    if not 1 <= min_len <= max_len:
        raise ValueError(f"counting_batch: expected 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    check_float("counting_batch", "p", p, low=0, high=1, expected="0 <= p <= 1", got=f"p={p}")
    gen = batch_generator(seed, step)
    lengths = torch.randint(min_len, max_len + 1, (batch_size,), generator=gen)
    bits = (torch.rand(batch_size, max_len, generator=gen) < p).float()
    positions = torch.arange(max_len)
    bits = bits * (positions[None, :] < lengths[:, None])  # zero the padding
    counts = bits.sum(dim=1)
    return CountingBatch(bits.to(device), lengths.to(device), counts.to(device))


def encode_bits(text: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """``"0110"`` -> tensor([0., 1., 1., 0.]) of shape (T,); spaces are ignored.

    >>> encode_bits("0110")
    tensor([0., 1., 1., 0.])
    """
    if not isinstance(text, str):
        raise TypeError(f"encode_bits: expected a str of 0s and 1s, got {type(text).__name__}")
    cleaned = text.replace(" ", "")
    bad = sorted(set(cleaned) - {"0", "1"})
    if bad:
        raise ValueError(f"encode_bits: expected only '0' and '1', got {''.join(bad)!r} in {text!r}")
    if not cleaned:
        raise ValueError("encode_bits: expected at least one bit, got an empty string")
    return torch.tensor([float(c) for c in cleaned], device=device)


def decode_bits(bits: torch.Tensor) -> str:
    """Inverse of :func:`encode_bits` for a (T,) tensor of 0/1.

    >>> decode_bits(torch.tensor([0.0, 1.0, 1.0]))
    '011'
    """
    return "".join("1" if b > 0.5 else "0" for b in bits.tolist())
