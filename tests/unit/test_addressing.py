"""memlib.memory.addressing: the NTM's addressing steps, read and write: invariants, hand cases, gradients, errors.

Shapes: ``B`` batch, ``H`` heads, ``N`` memory slots, ``W`` slot width, ``S`` shift kernel size.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from memlib.memory.addressing import (
    address,
    content_weighting,
    cosine_similarity,
    interpolate,
    read,
    sharpen,
    shift,
    write,
)

B, H, N, W, S = 2, 3, 6, 4, 3



def distribution(*shape, dev="cpu", dtype=torch.float64) -> torch.Tensor:
    return torch.softmax(torch.randn(*shape, dtype=dtype, device=dev) * 2, dim=-1)


def entropy(w: torch.Tensor) -> torch.Tensor:
    return -(w * w.clamp_min(1e-300).log()).sum(-1)


def assert_weighting(w: torch.Tensor) -> None:
    assert (w >= 0).all()
    assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))


# ---- content weighting (eqs. 5-6) ----


def test_content_weighting_is_a_softmax_of_cosine_similarity(dev):
    memory = torch.randn(B, N, W, dtype=torch.float64, device=dev)
    key = torch.randn(B, H, W, dtype=torch.float64, device=dev)
    beta = torch.rand(B, H, dtype=torch.float64, device=dev) * 5
    expected_similarity = torch.nn.functional.cosine_similarity(key[:, :, None, :], memory[:, None, :, :], dim=-1)
    assert_close(cosine_similarity(memory, key), expected_similarity)
    w = content_weighting(memory, key, beta)
    assert_close(w, torch.softmax(beta[..., None] * expected_similarity, dim=-1))
    assert_weighting(w)
    assert w.device.type == dev.type and w.dtype == torch.float64


def test_key_strength_zero_is_uniform_and_large_finds_the_slot():
    memory = torch.randn(B, N, W, dtype=torch.float64)
    key = memory[:, [4]] * 3.0  # (B, 1, W): slot 4, scaled (cosine ignores the scale)
    uniform = content_weighting(memory, key, torch.zeros(B, 1, dtype=torch.float64))
    assert_close(uniform, torch.full((B, 1, N), 1 / N, dtype=torch.float64))
    focused = content_weighting(memory, key, torch.full((B, 1), 200.0, dtype=torch.float64))
    assert (focused.argmax(-1) == 4).all()
    assert (focused[..., 4] > 0.99).all()


def test_zero_memory_gives_uniform_weights_and_finite_gradients():
    memory = torch.zeros(B, N, W, dtype=torch.float64, requires_grad=True)
    key = torch.randn(B, H, W, dtype=torch.float64, requires_grad=True)
    beta = torch.ones(B, H, dtype=torch.float64, requires_grad=True)
    w = content_weighting(memory, key, beta)
    assert_close(w, torch.full((B, H, N), 1 / N, dtype=torch.float64))
    (w * torch.randn_like(w)).sum().backward()
    for tensor in (memory, key, beta):
        assert torch.isfinite(tensor.grad).all()
    zero_key = content_weighting(torch.randn(B, N, W), torch.zeros(B, H, W), torch.ones(B, H))
    assert torch.isfinite(zero_key).all()


# ---- interpolation (eq. 7) ----


def test_interpolation_gate_picks_content_or_previous():
    content, previous = distribution(B, H, N), distribution(B, H, N)
    assert_close(interpolate(content, previous, torch.ones(B, H, dtype=torch.float64)), content)
    assert_close(interpolate(content, previous, torch.zeros(B, H, dtype=torch.float64)), previous)
    g = torch.rand(B, H, dtype=torch.float64)
    mixed = interpolate(content, previous, g)
    assert_close(mixed, g[..., None] * content + (1 - g[..., None]) * previous)
    assert_weighting(mixed)


# ---- shift (eq. 8) ----


def one_hot_kernel(offset: int, size: int = S) -> torch.Tensor:
    kernel = torch.zeros(B, H, size, dtype=torch.float64)
    kernel[..., size // 2 + offset] = 1.0
    return kernel


@pytest.mark.parametrize("peak", [0, 2, N - 1])
@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_shift_by_one_moves_the_peak_by_one_circularly(peak, offset):
    w = torch.full((B, H, N), 0.02, dtype=torch.float64)
    w[..., peak] = 1 - 0.02 * (N - 1)
    shifted = shift(w, one_hot_kernel(offset))
    assert (shifted.argmax(-1) == (peak + offset) % N).all()
    assert_close(shifted, torch.roll(w, offset, dims=-1))
    assert_weighting(shifted)


def test_shift_hand_case_blurs_and_wraps():
    w = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]], dtype=torch.float64)  # (1, 1, 4): all on slot 0
    s = torch.tensor([[[0.2, 0.5, 0.3]]], dtype=torch.float64)  # offsets -1, 0, +1
    # slot 0 stays with 0.5, moves to slot 1 with 0.3, and to slot -1 = 3 with 0.2
    assert_close(shift(w, s), torch.tensor([[[0.5, 0.3, 0.0, 0.2]]], dtype=torch.float64))


def test_wider_kernel_shifts_by_two():
    w = distribution(B, H, N)
    assert_close(shift(w, one_hot_kernel(2, size=5)), torch.roll(w, 2, dims=-1))


# ---- sharpening (eq. 9) ----


@pytest.mark.parametrize("gamma", [1.0, 1.5, 3.0, 20.0])
def test_sharpening_never_flattens(gamma):
    w = distribution(50, H, N)
    sharp = sharpen(w, torch.full((50, H), gamma, dtype=torch.float64))
    assert_weighting(sharp)
    slack = 1e-10  # sharpen's eps (1e-12 per slot) may lower the largest weight by about N * 1e-12
    assert (sharp.amax(-1) >= w.amax(-1) - slack).all()
    assert (entropy(sharp) <= entropy(w) + slack).all()
    assert (sharp.argmax(-1) == w.argmax(-1)).all()
    if gamma == 1.0:
        assert_close(sharp, w)


def test_sharpening_undoes_a_blur():
    w = torch.tensor([[0.1, 0.8, 0.1]], dtype=torch.float64)
    sharp = sharpen(w, torch.tensor([2.0], dtype=torch.float64))
    assert_close(sharp, torch.tensor([[0.01, 0.64, 0.01]], dtype=torch.float64) / 0.66)


def test_sharpening_a_weight_of_zero_has_finite_gradients():
    w = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    gamma = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    (sharpen(w, gamma) * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).sum().backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(gamma.grad).all()


# ---- the whole pipeline ----


def random_heads(dev="cpu", dtype=torch.float64):
    def r(*shape):
        return torch.randn(*shape, dtype=dtype, device=dev)

    return {
        "key": r(B, H, W),
        "beta": r(B, H).exp(),
        "g": r(B, H).sigmoid(),
        "s": torch.softmax(r(B, H, S), -1),
        "gamma": 1 + r(B, H).exp(),
    }


def test_every_stage_is_a_weighting(dev):
    memory = torch.randn(B, N, W, dtype=torch.float64, device=dev)
    stages = address(memory, distribution(B, H, N, dev=dev), **random_heads(dev))
    for stage in stages:
        assert stage.shape == (B, H, N)
        assert stage.device.type == dev.type
        assert_weighting(stage)


# ---- read (eq. 2) and write (eqs. 3-4) ----


def test_read_hand_case():
    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])  # (1, 3, 2)
    w = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]])  # (1, 2, 3): two read heads
    assert_close(read(memory, w), torch.tensor([[[2.0, 3.0], [5.0, 6.0]]]))


def test_write_hand_case():
    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])  # (1, 3, 2)
    w = torch.tensor([[[1.0, 0.5, 0.0]]])  # (1, 1, 3)
    erase = torch.tensor([[[1.0, 0.5]]])  # (1, 1, 2)
    add = torch.tensor([[[10.0, 20.0]]])
    # slot 0: [1, 2] * [1 - 1, 1 - 0.5] + [10, 20]      = [10, 21]
    # slot 1: [3, 4] * [1 - 0.5, 1 - 0.25] + 0.5 [10, 20] = [6.5, 13]
    # slot 2: unchanged
    expected = torch.tensor([[[10.0, 21.0], [6.5, 13.0], [5.0, 6.0]]])
    assert_close(write(memory, w, erase, add), expected)


def test_write_with_zero_weights_changes_nothing_and_heads_commute():
    memory = torch.randn(B, N, W, dtype=torch.float64)
    erase, add = torch.rand(B, 2, W, dtype=torch.float64), torch.randn(B, 2, W, dtype=torch.float64)
    assert_close(write(memory, torch.zeros(B, 2, N, dtype=torch.float64), erase, add), memory)
    w = distribution(B, 2, N)
    swapped = write(memory, w.flip(1), erase.flip(1), add.flip(1))
    assert_close(write(memory, w, erase, add), swapped)


def test_full_erase_then_add_replaces_a_slot():
    memory = torch.randn(B, N, W, dtype=torch.float64)
    w = torch.zeros(B, 1, N, dtype=torch.float64)
    w[..., 2] = 1.0
    add = torch.randn(B, 1, W, dtype=torch.float64)
    new = write(memory, w, torch.ones(B, 1, W, dtype=torch.float64), add)
    assert_close(new[:, 2], add[:, 0])
    assert_close(new[:, [0, 1, 3, 4, 5]], memory[:, [0, 1, 3, 4, 5]])
    assert_close(read(new, w), add)


# ---- gradients ----


def test_gradcheck_every_step(dev):
    b, h, n, w = 1, 2, 4, 3  # small: gradcheck differentiates numerically, one input element at a time

    def leaf(x):
        return x.to(dev).requires_grad_()

    def r(*shape):
        return torch.randn(*shape, dtype=torch.float64)

    memory, key = leaf(r(b, n, w)), leaf(r(b, h, w))
    beta, g, s, gamma = leaf(r(b, h).exp()), leaf(r(b, h).sigmoid()), leaf(r(b, h, 3).softmax(-1)), leaf(2 + r(b, h))
    previous, content, weights = (leaf(r(b, h, n).softmax(-1)) for _ in range(3))
    erase, add = leaf(r(b, h, w).sigmoid()), leaf(r(b, h, w))
    checks = [
        (content_weighting, (memory, key, beta)),
        (interpolate, (content, previous, g)),
        (shift, (weights, s)),
        (sharpen, (weights, gamma)),
        (read, (memory, weights)),
        (write, (memory, weights, erase, add)),
        (lambda *a: address(*a).sharpened, (memory, previous, key, beta, g, s, gamma)),
    ]
    for fn, inputs in checks:
        assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)


# ---- errors ----


def _m():
    return torch.randn(2, 6, 5)


BAD_INPUTS = [
    (
        lambda: content_weighting(_m(), torch.randn(2, 1, 4), torch.ones(2, 1)),
        ValueError,
        r"= \(2, \?, 5\), got \(2, 1, 4\)",
    ),
    (
        lambda: content_weighting(_m(), torch.randn(2, 1, 5), torch.ones(2, 3)),
        ValueError,
        r"beta .*\(2, 1\), got \(2, 3\)",
    ),
    (
        lambda: content_weighting(torch.randn(6, 5), torch.randn(2, 1, 5), torch.ones(2, 1)),
        ValueError,
        r"memory.*got \(6, 5\)",
    ),
    (
        lambda: content_weighting([[0.0]], torch.randn(2, 1, 5), torch.ones(2, 1)),
        TypeError,
        r"memory as a tensor.*got list",
    ),
    (
        lambda: read(_m(), torch.rand(2, 1, 7)),
        ValueError,
        r"weights of shape \(B, R, N\) = \(2, \?, 6\), got \(2, 1, 7\)",
    ),
    (lambda: read(_m(), torch.ones(2, 1, 6, dtype=torch.int64)), TypeError, r"floating-point tensor, got torch.int64"),
    (
        lambda: write(_m(), torch.rand(2, 1, 6), torch.rand(2, 1, 4), torch.rand(2, 1, 5)),
        ValueError,
        r"erase .*\(2, 1, 5\), got \(2, 1, 4\)",
    ),
    (lambda: shift(torch.rand(2, 6), torch.rand(2, 4)), ValueError, r"odd kernel size S .*got S=4"),
    (lambda: shift(torch.rand(2, 6), torch.rand(3, 3)), ValueError, r"s of shape .*\(2, \?\), got \(3, 3\)"),
    (lambda: sharpen(torch.rand(2, 6), torch.rand(2, 6)), ValueError, r"gamma of shape .*\(2,\), got \(2, 6\)"),
    (
        lambda: interpolate(torch.rand(2, 6), torch.rand(2, 5), torch.rand(2)),
        ValueError,
        r"previous .*\(2, 6\), got \(2, 5\)",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_INPUTS)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()
