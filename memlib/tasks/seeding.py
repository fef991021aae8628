"""The one way tasks seed a batch: a CPU generator that depends only on (seed, step)."""

import torch


def batch_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator for batch ``step`` of run ``seed`` (data moves to the device afterwards,
    so a batch is the same on every device).

    >>> a = torch.rand(2, generator=batch_generator(0, 5))
    >>> torch.equal(a, torch.rand(2, generator=batch_generator(0, 5)))
    True
    """
    # Hashing the pair keeps distinct (seed, step) pairs apart (int hashing is not randomised).
    return torch.Generator().manual_seed(hash((seed, step)) % 2**63)
