"""memlib.efficient: each pattern equals full attention under its own mask, without a T x T matrix; errors.

Shapes: ``B`` batch, ``H`` heads, ``T`` length, ``D`` model width, ``w`` window radius, ``b`` block size.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.testing import assert_close
from torch.utils._python_dispatch import TorchDispatchMode

import memlib
from memlib.attention import MultiHeadAttention
from memlib.efficient import BigBirdAttention, LinformerAttention, SlidingWindowAttention
from memlib.profiling import peak_memory

B, T, D, H = 2, 12, 8, 2
F64 = torch.float64


def randn(*shape, dev, grad=False):
    return torch.randn(shape, dtype=F64, device=dev, requires_grad=grad)


def full_twin(model, dev) -> MultiHeadAttention:
    """A MultiHeadAttention with the same projections."""
    twin = MultiHeadAttention(D, H, batch_first=model.batch_first).to(dev, F64)
    twin.load_state_dict(model.state_dict(), strict=False)
    return twin


def padding(dev) -> torch.Tensor:
    mask = torch.zeros(B, T, dtype=torch.bool, device=dev)
    mask[1, 9:] = True
    return mask


def assert_equals_full_attention(model, dev, batch_first: bool, padded: bool):
    """Output, weights (dense, per head and averaged) and gradients equal full attention under model.mask(T)."""
    twin = full_twin(model, dev)
    x = randn(*((B, T, D) if batch_first else (T, B, D)), dev=dev, grad=True)
    kpm = padding(dev) if padded else None
    out, weights = model(x, x, x, key_padding_mask=kpm, average_attn_weights=False)
    expected, expected_w = twin(x, x, x, key_padding_mask=kpm, attn_mask=model.mask(T, dev), average_attn_weights=False)
    assert_close(out, expected)
    assert_close(weights.to_dense(), expected_w)
    _, averaged = model(x, x, x, key_padding_mask=kpm)
    assert_close(averaged.to_dense(), expected_w.mean(1))
    sums = averaged.to_dense().sum(-1)  # 1, or 0 for a query whose every allowed key is padding
    assert_close(sums[0], torch.ones(T, dtype=F64, device=dev))
    assert torch.all(((sums - 1).abs() < 1e-12) | (sums == 0))
    grad = torch.randn_like(out)
    (actual_grad,) = torch.autograd.grad(out, x, grad)
    (expected_grad,) = torch.autograd.grad(expected, x, grad)
    assert_close(actual_grad, expected_grad)


# ---------------------------------------------------------------------------------------------
# Sliding window (Longformer)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "global_tokens", "batch_first", "padded"),
    list(itertools.product([1, 3], [(), (0,), (0, 7)], [False, True], [False, True])),
)
def test_sliding_window_equals_full_attention_under_its_mask(dev, window, global_tokens, batch_first, padded):
    model = SlidingWindowAttention(D, H, window, global_tokens, batch_first=batch_first).to(dev, F64)
    assert_equals_full_attention(model, dev, batch_first, padded)


@pytest.mark.parametrize(("window", "global_tokens"), [(5, (3,)), (7, ()), (20, (0, 11))])
def test_sliding_window_in_uneven_chunks(dev, window, global_tokens):
    """Chunks of ``window`` queries that do not divide T = 12, and a window wider than the sequence."""
    model = SlidingWindowAttention(D, H, window, global_tokens, batch_first=True).to(dev, F64)
    assert_equals_full_attention(model, dev, batch_first=True, padded=True)


def test_sliding_window_peak_memory_is_linear_and_a_few_bands():
    """A training step's peak grows like T and stays a few times the band's weights (B, H, T, 2w + 1)."""
    torch.manual_seed(0)
    w, width, heads = 32, 16, 4  # the band (4 x 65 weights a query) outweighs the projections (16 a query)
    model = SlidingWindowAttention(width, heads, window=w, global_tokens=[0], batch_first=True)

    def peak(T):
        x = torch.randn(1, T, width)

        def step():
            model.zero_grad(set_to_none=True)
            model(x, x, x, need_weights=False)[0].sum().backward()

        return peak_memory(step)[0]

    short, long = peak(512), peak(1024)
    band = heads * 1024 * (2 * w + 1) * 4  # bytes of the band's float32 weights at T = 1024
    assert 1.8 < long / short < 2.2, (short, long)
    assert long < 10 * band, (long, band)


def test_sliding_window_pattern():
    mask = SlidingWindowAttention(D, H, window=1, global_tokens=[2]).mask(6)
    allowed = ~mask
    assert allowed[2].all() and allowed[:, 2].all()  # the global token sees and is seen by all
    assert allowed[0].tolist() == [True, True, True, False, False, False]
    assert allowed[5].tolist() == [False, False, True, False, True, True]


def test_sliding_window_trace(dev):
    model = SlidingWindowAttention(D, H, window=2, global_tokens=[0], batch_first=True).to(dev, F64)
    x = randn(B, T, D, dev=dev)
    with memlib.trace() as tr:
        _, weights = model(x, x, x, average_attn_weights=False, need_weights=False)
    assert weights is None
    assert tr.last("sliding_window.band").shape == (B, H, T, 5)
    assert tr.last("sliding_window.global_columns").shape == (B, H, T, 1)
    assert tr.last("sliding_window.global_rows").shape == (B, H, 1, T)


# ---------------------------------------------------------------------------------------------
# BigBird
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block_size", "globals_", "randoms", "batch_first", "padded"),
    [(2, 1, 1, False, False), (2, 1, 2, True, True), (3, 2, 1, False, True), (2, 0, 0, True, False), (4, 1, 3, 0, 1)],
)
def test_bigbird_equals_full_attention_under_its_mask(dev, block_size, globals_, randoms, batch_first, padded):
    model = BigBirdAttention(
        D, H, block_size, num_global_blocks=globals_, num_random_blocks=randoms, batch_first=bool(batch_first)
    ).to(dev, F64)
    assert_equals_full_attention(model, dev, bool(batch_first), bool(padded))


def test_bigbird_pattern():
    model = BigBirdAttention(D, H, block_size=2, num_window_blocks=3, num_global_blocks=1, num_random_blocks=2)
    blocks = model.key_blocks(16)  # 8 blocks
    assert torch.equal(blocks, model.key_blocks(16))  # one pattern per length
    other = BigBirdAttention(D, H, 2, num_random_blocks=2, seed=1).key_blocks(16)
    assert not torch.equal(blocks, other)
    for n, row in enumerate(blocks.tolist()):
        used = [k for k in row if k >= 0]
        assert len(used) == len(set(used))  # no key block twice
        assert {k for k in (n - 1, n, n + 1) if 0 <= k < 8} | {0} <= set(used)  # window and global
        randoms = row[4:]
        assert all(k == -1 or (abs(k - n) > 1 and k != 0) for k in randoms)
    mask = model.mask(16)
    assert (~mask[:2]).all() and (~mask[:, :2]).all()  # the global block


def test_bigbird_trace(dev):
    model = BigBirdAttention(D, H, block_size=3, batch_first=True).to(dev, F64)
    x = randn(B, T, D, dev=dev)
    with memlib.trace() as tr:
        model(x, x, x)
    assert tr.last("bigbird.blocks").shape == (B, H, 4, 3, 5 * 3)  # 4 blocks; 3 window + 1 global + 1 random
    assert tr.last("bigbird.key_blocks").shape == (4, 5)
    assert tr.last("bigbird.global_rows").shape == (B, H, 3, T)


# ---------------------------------------------------------------------------------------------
# No T x T matrix
# ---------------------------------------------------------------------------------------------


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operation returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize(
    "make",
    [
        lambda: SlidingWindowAttention(2, 1, window=2, global_tokens=[0], batch_first=True),
        lambda: BigBirdAttention(2, 1, block_size=4, batch_first=True),
        lambda: LinformerAttention(2, 1, seq_len=128, k=8, batch_first=True),
    ],
)
def test_memory_grows_slower_than_t_squared(make):
    long = 128
    model = make()
    x = torch.randn(1, long, 2)
    with LargestTensor() as watch:
        model(x, x, x)
        model(x, x, x, need_weights=False)
    assert watch.largest < long * long // 2, watch.largest


# ---------------------------------------------------------------------------------------------
# Linformer
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights", [True, False])
def test_linformer_with_identity_projections_is_full_attention(dev, batch_first, need_weights):
    model = LinformerAttention(D, H, seq_len=T, k=T, batch_first=batch_first).to(dev, F64)
    with torch.no_grad():
        model.E.copy_(torch.eye(T))
        model.F.copy_(torch.eye(T))
    twin = full_twin(model, dev)
    x = randn(*((B, T, D) if batch_first else (T, B, D)), dev=dev, grad=True)
    out, weights = model(x, x, x, need_weights=need_weights)
    expected, expected_w = twin(x, x, x)
    assert_close(out, expected)
    if need_weights:
        assert_close(weights, expected_w)
    grad = torch.randn_like(out)
    assert_close(torch.autograd.grad(out, x, grad), torch.autograd.grad(expected, x, grad))


def test_linformer_projects_to_k(dev):
    model = LinformerAttention(D, H, seq_len=T, k=4, batch_first=True).to(dev, F64)
    x = randn(B, T - 2, D, dev=dev)  # shorter than seq_len: the first T - 2 columns of E and F
    with memlib.trace() as tr:
        fused, _ = model(x, x, x, need_weights=False)
    out, weights = model(x, x, x, key_padding_mask=torch.zeros(B, T - 2, dtype=torch.bool, device=dev))
    assert_close(out, fused)
    assert weights.shape == (B, T - 2, 4)
    assert_close(weights.sum(-1), torch.ones(B, T - 2, dtype=F64, device=dev))
    assert tr.last("linformer.weights").shape == (B, H, T - 2, 4)
    assert tr.last("linformer.keys").shape == (B, H, 4, D // H)


def test_linformer_dense_weights_are_the_map_to_the_values_low_rank_and_without_zeros(dev):
    # one head of width D, identity projections of q, k, v and the output: the head's output is P F x
    model = LinformerAttention(D, 1, seq_len=T, k=3, batch_first=True).to(dev, F64)
    with torch.no_grad():
        model.in_proj_weight.copy_(torch.eye(D).repeat(3, 1))
        model.in_proj_bias.zero_()
        model.out_proj.weight.copy_(torch.eye(D))
        model.out_proj.bias.zero_()
    x = randn(B, T, D, dev=dev)
    out, weights = model(x, x, x)
    dense = model.dense_weights(weights)  # (B, T, T)
    assert_close(out, dense @ x)
    assert (dense != 0).all()  # no structural zeros: every position reaches every output
    assert (torch.linalg.matrix_rank(dense) <= 3).all()  # low rank: at most k
    shorter = model(x[:, :7], x[:, :7], x[:, :7])
    assert_close(shorter[0], model.dense_weights(shorter[1], 7) @ x[:, :7])
    with pytest.raises(ValueError, match=r"weights of shape \(..., Tq, k = 3\), got \(2, 12, 4\)"):
        model.dense_weights(torch.zeros(B, T, 4, dtype=F64))
    with pytest.raises(ValueError, match="length <= seq_len = 12, got 13"):
        model.dense_weights(weights, 13)


# ---------------------------------------------------------------------------------------------
# In a Transformer encoder layer
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: SlidingWindowAttention(D, H, window=2, global_tokens=[0], batch_first=True),
        lambda: BigBirdAttention(D, H, block_size=3, batch_first=True),
    ],
)
def test_replaces_self_attention_in_an_encoder_layer(dev, make):
    """An efficient module as ``self_attn`` of memlib's layer equals the layer with full attention under its mask."""
    sparse = make().to(dev, F64)
    layer = memlib.TransformerEncoderLayer(D, H, 16, dropout=0.0, batch_first=True).to(dev, F64)
    full = memlib.TransformerEncoderLayer(D, H, 16, dropout=0.0, batch_first=True).to(dev, F64)
    layer.self_attn = sparse
    full.load_state_dict(layer.state_dict())
    x = randn(B, T, D, dev=dev)
    assert_close(layer(x, src_key_padding_mask=padding(dev)), full(x, sparse.mask(T, dev), padding(dev)))


# ---------------------------------------------------------------------------------------------
# Gradients, dropout, errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: SlidingWindowAttention(4, 2, window=1, global_tokens=[1], batch_first=True),
        lambda: BigBirdAttention(4, 2, block_size=2, num_random_blocks=1, batch_first=True),
        lambda: LinformerAttention(4, 2, seq_len=6, k=3, batch_first=True),
    ],
)
def test_gradcheck(dev, make):
    model = make().to(dev, F64)
    x = randn(1, 6, 4, dev=dev, grad=True)
    assert torch.autograd.gradcheck(lambda x: model(x, x, x, need_weights=False)[0], (x,))


def test_dropout_only_in_training(dev):
    model = SlidingWindowAttention(D, H, window=2, dropout=0.5, batch_first=True).to(dev, F64)
    x = randn(B, T, D, dev=dev)
    model.eval()
    evaluated = model(x, x, x)[0]
    assert_close(evaluated, full_twin(model, dev)(x, x, x, attn_mask=model.mask(T, dev))[0])
    model.train()
    assert not torch.allclose(model(x, x, x)[0], evaluated)


def _x(*shape, dtype=F64):
    return torch.randn(shape).to(dtype)


def _window(**kwargs):
    return SlidingWindowAttention(D, H, window=2, **kwargs).double()


BAD_INPUTS = [
    (lambda: SlidingWindowAttention(D, H, window=0), ValueError, r"window as an integer >= 1, got 0"),
    (lambda: SlidingWindowAttention(D, H, 1, global_tokens=[-1]), ValueError, r"non-negative .*got \[-1\]"),
    (lambda: _window(global_tokens=[20])(_x(T, B, D), _x(T, B, D), _x(T, B, D)), ValueError, r"< T = 12, got \[20\]"),
    (lambda: _window()(_x(T, B, 6), _x(T, B, D), _x(T, B, D)), ValueError, r"embed_dim = 8 features, got 6"),
    (lambda: _window()(_x(T, B, D), _x(10, B, D), _x(10, B, D)), ValueError, r"Tq = 12 and Tk = 10"),
    (lambda: _window()(_x(T, D), _x(T, D), _x(T, D)), ValueError, r"query of shape \(T, B, D\), got \(12, 8\)"),
    (
        lambda: _window()(_x(T, B, D), _x(T, B, D), _x(T, B, D), key_padding_mask=torch.zeros(B, 3, dtype=torch.bool)),
        ValueError,
        r"key_padding_mask of shape \(B, Tk\) = \(2, 12\), got \(2, 3\)",
    ),
    (lambda: _window()(_x(T, B, D, dtype=torch.float32), _x(T, B, D), _x(T, B, D)), TypeError, r"float64.*float32"),
    (lambda: BigBirdAttention(D, H, 5).double()(*[_x(T, B, D)] * 3), ValueError, r"block_size = 5, got T = 12"),
    (lambda: BigBirdAttention(D, H, 2, num_window_blocks=2), ValueError, r"odd num_window_blocks .*got 2"),
    (lambda: BigBirdAttention(D, H, 0), ValueError, r"block_size as an integer >= 1, got 0"),
    (lambda: LinformerAttention(D, H, seq_len=4, k=6), ValueError, r"k <= seq_len .*got k = 6 and seq_len = 4"),
    (lambda: LinformerAttention(D, H, 4, 2).double()(*[_x(6, B, D)] * 3), ValueError, r"seq_len = 4 keys, got Tk = 6"),
    (
        lambda: LinformerAttention(D, H, 4, 2).double()(*[_x(4, B, D)] * 3, key_padding_mask=torch.zeros(B, 4)),
        TypeError,
        r"boolean key_padding_mask .*got torch.float32",
    ),
    (lambda: LinformerAttention(D, 3, 4, 2), ValueError, r"divisible by num_heads, got 8 and 3"),
    (
        lambda: _window()(*[_x(T, B, D)] * 3, attn_mask=torch.zeros(T, T, dtype=torch.bool)),
        ValueError,
        r"attn_mask=None and is_causal=False .*got attn_mask of shape \(12, 12\)",
    ),
    (lambda: BigBirdAttention(D, H, 2).double()(*[_x(T, B, D)] * 3, is_causal=True), ValueError, r"is_causal=True"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_INPUTS)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()
