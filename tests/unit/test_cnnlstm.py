"""memlib.hybrid.CNNLSTM: shapes, traces, input checks, and that it learns a task that needs order."""

from __future__ import annotations

import pytest
import torch

import memlib
from memlib.hybrid import CNNLSTM


@pytest.mark.parametrize(("T", "pool", "blocks"), [(64, 4, 2), (50, 2, 3), (16, 4, 2)])
def test_shapes(dev, T, pool, blocks):
    model = CNNLSTM(5, channels=8, pool=pool, blocks=blocks, hidden_size=12).to(dev)
    x = torch.randn(3, T, device=dev)
    assert model(x).shape == (3, 5)
    with memlib.trace() as tr:
        model(x)
    steps = T // pool**blocks
    assert tr["cnnlstm.features"][0].shape == (3, steps, 8)
    assert tr["cnnlstm.hidden"][0].shape == (3, steps, 12)
    assert tr["cnnlstm.logits"][0].shape == (3, steps, 5)


def test_channels_and_last_logits_match_trace():
    model = CNNLSTM(3, in_channels=2, channels=4, pool=2, blocks=1, hidden_size=6).eval()
    x = torch.randn(2, 10, 2)
    with memlib.trace() as tr:
        out = model(x)
    torch.testing.assert_close(out, tr["cnnlstm.logits"][0][:, -1])


def test_bad_input():
    model = CNNLSTM(3, pool=4, blocks=2)
    with pytest.raises(ValueError, match="at least 16 time steps"):
        model(torch.randn(2, 10))
    with pytest.raises(ValueError, match=r"\(B, T, 1\)"):
        model(torch.randn(2, 20, 3))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.ones(2, 20, dtype=torch.long))


@pytest.mark.parametrize(
    "kwargs",
    [{"num_classes": 1}, {"kernel_size": 4}, {"pool": 0}, {"hidden_size": 0}, {"blocks": 1.5}],
)
def test_bad_arguments(kwargs):
    args = {"num_classes": 3} | kwargs
    with pytest.raises(ValueError):
        CNNLSTM(**args)


def test_learns_order_of_local_events():
    """Two bumps, one narrow and one wide, far apart: the class is which comes first (a pooled CNN can't tell)."""
    g = torch.Generator().manual_seed(0)

    def batch(n):
        y = torch.randint(2, (n,), generator=g)
        x = 0.05 * torch.randn(n, 96, generator=g)
        t = torch.arange(96.0)
        first, second = 20 + torch.randint(8, (n,), generator=g), 64 + torch.randint(8, (n,), generator=g)
        narrow = torch.where(y == 0, first, second)[:, None]
        wide = torch.where(y == 0, second, first)[:, None]
        x += torch.exp(-0.5 * ((t - narrow) / 1.0) ** 2) + torch.exp(-0.5 * ((t - wide) / 4.0) ** 2)
        return x, y

    memlib.seed_everything(0)
    model = CNNLSTM(2, channels=8, kernel_size=5, pool=2, blocks=2, hidden_size=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        x, y = batch(32)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = batch(200)
    with torch.no_grad():
        acc = (model(x).argmax(-1) == y).float().mean().item()
    assert acc > 0.9, acc
