"""memlib.attention: parity with torch (SDPA, MultiheadAttention), both paths, masks, Bahdanau and Luong, errors.

Shapes: ``B`` batch, ``H`` heads, ``Tq`` queries, ``Tk`` keys, ``D`` model width, ``E`` head width.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import memlib
from memlib.attention import (
    AdditiveAttention,
    LocalAttention,
    LuongAttention,
    MultiHeadAttention,
    additive_mask,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
    window_mask,
)

# Touches precision or CPU kernels: `make test` runs these again under a restricted instruction set.
pytestmark = pytest.mark.kernels

B, H, Tq, Tk, D = 2, 2, 4, 5, 8  # small: the parity grid runs in a few seconds
F64 = torch.float64



def randn(*shape, dev, grad=False):
    return torch.randn(shape, dtype=F64, device=dev, requires_grad=grad)


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------


def test_causal_mask_blocks_the_future():
    assert torch.equal(causal_mask(3), torch.ones(3, 3, dtype=torch.bool).triu(1))
    # queries as the last 2 of 4 positions: query 0 is position 2
    assert torch.equal(causal_mask(2, 4, offset=2), torch.tensor([[False, False, False, True], [False] * 4]))


def test_window_and_padding_masks():
    expected = torch.tensor([[abs(i - j) > 1 for j in range(5)] for i in range(5)])
    assert torch.equal(window_mask(5, window=1), expected)
    assert torch.equal(padding_mask(torch.tensor([3, 1]), 4), torch.tensor([[0, 0, 0, 1], [0, 1, 1, 1]]).bool())
    assert padding_mask(torch.tensor([2, 3])).shape == (2, 3)
    float_mask = additive_mask(torch.tensor([True, False]), F64)
    assert float_mask.dtype == F64 and float_mask[0] == float("-inf") and float_mask[1] == 0


# ---------------------------------------------------------------------------------------------
# Scaled dot-product attention
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float", "causal"])
def test_sdpa_matches_torch(dev, mask_kind):
    T2 = Tq if mask_kind == "causal" else Tk
    q, k, v = (
        randn(B, H, Tq, 3, dev=dev, grad=True),
        randn(B, H, T2, 3, dev=dev, grad=True),
        randn(B, H, T2, 6, dev=dev),
    )
    blocked = torch.rand(B, 1, Tq, T2, device=dev) > 0.6
    blocked[..., 0] = False  # every query keeps a key
    mask = {"none": None, "bool": blocked, "float": randn(B, 1, Tq, T2, dev=dev), "causal": None}[mask_kind]
    causal = mask_kind == "causal"
    out, weights = scaled_dot_product_attention(q, k, v, mask, causal=causal)
    torch_mask = ~mask if mask_kind == "bool" else mask  # torch's boolean mask is True where attention is allowed
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=torch_mask, is_causal=causal)
    assert_close(out, expected)
    grad = torch.randn_like(out)
    assert_close(torch.autograd.grad(out, (q, k), grad), torch.autograd.grad(expected, (q, k), grad))
    assert_close(weights.sum(-1), torch.ones(B, H, Tq, dtype=F64, device=dev))
    if mask_kind in ("bool", "causal"):
        blocked = blocked if mask_kind == "bool" else causal_mask(Tq, device=dev)
        assert (weights.masked_select(blocked.expand_as(weights)) == 0).all()


def test_sdpa_fully_blocked_row_gives_zeros_not_nan(dev):
    q, k, v = randn(1, 3, 4, dev=dev, grad=True), randn(1, 3, 4, dev=dev), randn(1, 3, 4, dev=dev)
    mask = torch.zeros(3, 3, dtype=torch.bool, device=dev)
    mask[1] = True
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert (out[0, 1] == 0).all() and (weights[0, 1] == 0).all()
    out.sum().backward()
    assert torch.isfinite(q.grad).all()
    assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=~mask))


def test_sdpa_gradcheck(dev):
    q, k, v = (
        randn(1, 2, 3, 2, dev=dev, grad=True),
        randn(1, 2, 4, 2, dev=dev, grad=True),
        randn(1, 2, 4, 3, dev=dev, grad=True),
    )
    mask = torch.tensor([[False, True, False, False]] * 3, device=dev)
    assert torch.autograd.gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask), (q, k, v))


# ---------------------------------------------------------------------------------------------
# MultiHeadAttention: parity with nn.MultiheadAttention
# ---------------------------------------------------------------------------------------------


def make_mha(dev, **kwargs) -> tuple[nn.Module, MultiHeadAttention]:
    reference = nn.MultiheadAttention(D, H, **kwargs).to(dev, F64)
    model = MultiHeadAttention(D, H, **kwargs).to(dev, F64)
    model.load_state_dict(reference.state_dict())
    return reference, model


def mha_inputs(dev, layout: str, kdim: int, vdim: int):
    def shape(T, features):
        return {"seq_first": (T, B, features), "batch_first": (B, T, features), "unbatched": (T, features)}[layout]

    return (
        randn(*shape(Tq, D), dev=dev, grad=True),
        randn(*shape(Tk, kdim), dev=dev, grad=True),
        randn(*shape(Tk, vdim), dev=dev, grad=True),
    )


def mha_masks(dev, kind: str, batched: bool) -> tuple[dict, dict]:
    """(torch's mask arguments, memlib's): the same except for is_causal, where memlib needs no mask."""
    padding = torch.zeros(B, Tk, dtype=torch.bool, device=dev)
    padding[0, 3:] = True
    blocked = torch.rand(Tq, Tk, device=dev) > 0.7
    blocked[:, 0] = False
    heads = (B * H if batched else H, Tq, Tk)
    blocked3 = torch.rand(heads, device=dev) > 0.7
    blocked3[..., 0] = False
    padding = padding if batched else padding[0]
    masks = {
        "none": {},
        "bool": {"key_padding_mask": padding, "attn_mask": blocked},
        "float": {"key_padding_mask": additive_mask(padding, F64), "attn_mask": randn(Tq, Tk, dev=dev)},
        "attn3d": {"attn_mask": blocked3},
    }
    if kind == "causal":
        return {"attn_mask": causal_mask(Tq, Tk, device=dev), "is_causal": True}, {"is_causal": True}
    return masks[kind], masks[kind]


def grads_of(output, inputs, module, weight):
    params = [p for _, p in sorted(module.named_parameters())]
    return torch.autograd.grad((output * weight).sum(), list(inputs) + params)


MHA_GRID = list(
    itertools.product(
        ["seq_first", "batch_first", "unbatched"],
        ["same", "kdim_vdim"],
        ["none", "bool", "float", "attn3d", "causal"],
        ["averaged", "per_head", "none"],
    )
)


@pytest.mark.parametrize(("layout", "dims", "masks", "weights"), MHA_GRID)
def test_mha_parity_with_torch(dev, layout, dims, masks, weights):
    kdim, vdim = (D, D) if dims == "same" else (3, 5)
    reference, model = make_mha(dev, kdim=kdim, vdim=vdim, batch_first=layout == "batch_first")
    q, k, v = mha_inputs(dev, layout, kdim, vdim)
    torch_masks, memlib_masks = mha_masks(dev, masks, batched=layout != "unbatched")
    flags = {"need_weights": weights != "none", "average_attn_weights": weights == "averaged"}
    expected, expected_w = reference(q, k, v, **torch_masks, **flags)
    actual, actual_w = model(q, k, v, **memlib_masks, **flags)
    assert_close(actual, expected)
    if weights == "none":
        assert actual_w is None
    else:
        assert_close(actual_w, expected_w)
    weight = torch.randn_like(expected)
    assert_close(grads_of(actual, (q, k, v), model, weight), grads_of(expected, (q, k, v), reference, weight))


@pytest.mark.parametrize("kwargs", [{"add_bias_kv": True}, {"add_zero_attn": True}, {"bias": False}])
@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_options_parity(dev, kwargs, need_weights):
    reference, model = make_mha(dev, **kwargs)
    q, k, v = mha_inputs(dev, "seq_first", D, D)
    masks, _ = mha_masks(dev, "bool", batched=True)
    expected, expected_w = reference(q, k, v, **masks, need_weights=need_weights)
    actual, actual_w = model(q, k, v, **masks, need_weights=need_weights)
    assert_close(actual, expected)
    if need_weights:
        assert_close(actual_w, expected_w)
    weight = torch.randn_like(expected)
    assert_close(grads_of(actual, (q, k, v), model, weight), grads_of(expected, (q, k, v), reference, weight))


@pytest.mark.parametrize("kdim", [None, 3])
def test_mha_same_initialisation_and_names_as_torch(kdim):
    torch.manual_seed(3)
    expected = nn.MultiheadAttention(D, H, kdim=kdim, vdim=kdim, add_bias_kv=True).state_dict()
    torch.manual_seed(3)
    actual = MultiHeadAttention(D, H, kdim=kdim, vdim=kdim, add_bias_kv=True).state_dict()
    assert list(actual) == list(expected)
    for name in expected:
        assert_close(actual[name], expected[name])


@pytest.mark.parametrize("masks", ["none", "bool", "causal"])
def test_mha_fused_and_reference_paths_agree(dev, masks):
    _, model = make_mha(dev, batch_first=True)
    q, k, v = mha_inputs(dev, "batch_first", D, D)
    _, kwargs = mha_masks(dev, masks, batched=True)
    fused, none = model(q, k, v, **kwargs, need_weights=False)
    with memlib.trace() as tr:
        reference, _ = model(q, k, v, **kwargs, need_weights=False)
    assert none is None
    assert_close(reference, fused)
    weight = torch.randn_like(fused)
    assert_close(grads_of(reference, (q, k, v), model, weight), grads_of(fused, (q, k, v), model, weight))
    recorded = tr.last("attention.weights")
    assert recorded.shape == (B, H, Tq, Tk)
    assert_close(recorded, model(q, k, v, **kwargs, average_attn_weights=False)[1])
    assert_close(recorded.sum(-1), torch.ones(B, H, Tq, dtype=F64, device=dev))


def test_mha_causal_leaves_no_weight_on_the_future(dev):
    _, model = make_mha(dev, batch_first=True)
    x = randn(B, 6, D, dev=dev)
    with memlib.trace() as tr:
        model(x, x, x, is_causal=True, need_weights=False)
    weights = tr.last("attention.weights")  # (B, H, T, T)
    assert (weights.masked_select(causal_mask(6, device=dev).expand_as(weights)) == 0).all()


def test_mha_dropout_only_in_training(dev):
    model = MultiHeadAttention(D, H, dropout=0.5, batch_first=True).to(dev, F64)
    plain = MultiHeadAttention(D, H, batch_first=True).to(dev, F64)
    plain.load_state_dict(model.state_dict())
    x = randn(B, Tq, D, dev=dev)
    model.eval()
    assert_close(model(x, x, x)[0], plain(x, x, x)[0])
    model.train()
    out, weights = model(x, x, x)
    assert not torch.allclose(out, plain(x, x, x)[0])
    assert_close(weights.sum(-1), torch.ones(B, Tq, dtype=F64, device=dev))  # weights are taken before dropout


def test_mha_runs_on_input_device_and_dtype(dev):
    model = MultiHeadAttention(D, H).to(dev)
    x = torch.randn(Tq, B, D, device=dev)
    for need_weights in (True, False):
        out, _ = model(x, x, x, is_causal=True, need_weights=need_weights)
        assert out.device.type == dev.type and out.dtype == torch.float32


# ---------------------------------------------------------------------------------------------
# Additive (Bahdanau) and multiplicative (Luong) attention
# ---------------------------------------------------------------------------------------------


def test_additive_attention_follows_the_equation(dev):
    attn = AdditiveAttention(3, 4, 5).to(dev, F64)
    s, h = randn(B, 3, dev=dev), randn(B, Tk, 4, dev=dev)
    lengths = torch.tensor([Tk, 2], device=dev)
    with memlib.trace() as tr:
        context, weights = attn(s, h, key_padding_mask=padding_mask(lengths, Tk))
    for b in range(B):
        n = int(lengths[b])
        # e_j = v^T tanh(W_q s + W_k h_j) over the valid keys only
        e = torch.stack([attn.v @ torch.tanh(attn.w_q.weight @ s[b] + attn.w_k.weight @ h[b, j]) for j in range(n)])
        alpha = torch.softmax(e, 0)
        assert_close(weights[b, :n], alpha)
        assert (weights[b, n:] == 0).all()
        assert_close(context[b], alpha @ h[b, :n])
    assert_close(tr.last("additive.weights"), weights)
    # a (B, Tq, Dq) query gives each query's row
    many, many_w = attn(torch.stack([s, s], 1), h, key_padding_mask=padding_mask(lengths, Tk))
    assert_close(many[:, 1], context) and assert_close(many_w[:, 0], weights)


@pytest.mark.parametrize("score", ["dot", "general"])
def test_luong_global_attention(dev, score):
    attn = LuongAttention(4, 4, score).to(dev, F64)
    h_t, h_s, values = randn(B, Tq, 4, dev=dev), randn(B, Tk, 4, dev=dev), randn(B, Tk, 6, dev=dev)
    context, weights = attn(h_t, h_s, values)
    keys = attn.W_a(h_s) if score == "general" else h_s
    expected = torch.softmax(h_t @ keys.transpose(1, 2), dim=-1)
    assert_close(weights, expected)
    assert_close(context, expected @ values)


def test_local_m_equals_global_attention_inside_its_window(dev):
    local = LocalAttention(4, 4, window=1, mode="local-m").to(dev, F64)
    glob = LuongAttention(4, 4).to(dev, F64)
    glob.load_state_dict(local.state_dict())
    h_t, h_s = randn(B, 4, dev=dev), randn(B, 6, 4, dev=dev)
    positions = torch.tensor([0, 3], device=dev)
    context, weights = local(h_t, h_s, positions=positions)
    outside = (torch.arange(6, device=dev) - positions[:, None]).abs() > 1  # (B, S)
    expected, expected_w = glob(h_t, h_s, key_padding_mask=outside)
    assert_close(context, expected)
    assert_close(weights, expected_w)
    assert (weights[outside] == 0).all()
    # a (B, Tq, Dq) query defaults to p_t = t
    _, by_step = local(torch.stack([h_t, h_t, h_t, h_t], 1), h_s)
    assert_close(by_step[1, 3], weights[1])


def test_local_p_predicts_its_position_and_applies_the_gaussian(dev):
    D_window = 2
    local = LocalAttention(4, 4, window=D_window, mode="local-p").to(dev, F64)
    h_t, h_s = randn(B, Tq, 4, dev=dev), randn(B, 8, 4, dev=dev)
    lengths = torch.tensor([8, 5], device=dev)
    with memlib.trace() as tr:
        _, weights = local(h_t, h_s, key_padding_mask=padding_mask(lengths, 8))
    p = tr.last("luong.position")  # (B, Tq)
    # p_t = S * sigmoid(v_p^T tanh(W_p h_t)), S each sequence's own length
    expected_p = lengths[:, None] * torch.sigmoid(torch.tanh(local.W_p(h_t)) @ local.v_p)
    assert_close(p, expected_p.to(F64))
    s = torch.arange(8, device=dev, dtype=F64)
    outside = (s - p[..., None]).abs() > D_window
    align = torch.softmax((h_t @ local.W_a(h_s).transpose(1, 2)).masked_fill(outside, float("-inf")), dim=-1)
    gaussian = torch.exp(-((s - p[..., None]) ** 2) / (2 * (D_window / 2) ** 2))
    assert_close(weights, align * gaussian)
    assert (weights[1, :, 5:] == 0).all()  # padding
    assert (weights.sum(-1) <= 1 + 1e-12).all()


@pytest.mark.parametrize("module", ["additive", "local-p", "local-m"])
def test_rnn_attention_gradcheck(dev, module):
    attn = {
        "additive": lambda: AdditiveAttention(3, 3, 4),
        "local-p": lambda: LocalAttention(3, 3, window=2, mode="local-p"),
        "local-m": lambda: LocalAttention(3, 3, window=1, mode="local-m"),
    }[module]().to(dev, F64)
    query, keys = randn(2, 2, 3, dev=dev, grad=True), randn(2, 5, 3, dev=dev, grad=True)
    assert torch.autograd.gradcheck(lambda q, k: attn(q, k)[0], (query, keys))


# ---------------------------------------------------------------------------------------------
# Errors name the expected and the actual value
# ---------------------------------------------------------------------------------------------


def _x(*shape, dtype=F64):
    return torch.randn(shape).to(dtype)


def _mha(**kwargs):
    return MultiHeadAttention(D, H, **kwargs).double()


BAD_INPUTS = [
    (lambda: MultiHeadAttention(7, 2), ValueError, r"embed_dim divisible by num_heads, got 7 and 2"),
    (lambda: MultiHeadAttention(8, 0), ValueError, r"num_heads as an integer >= 1, got 0"),
    (lambda: MultiHeadAttention(8, 2, dropout=1.5), ValueError, r"dropout as a probability in \[0, 1\), got 1.5"),
    (lambda: _mha()(_x(Tq, B, 6), _x(Tk, B, D), _x(Tk, B, D)), ValueError, r"query with 8 features, got 6"),
    (lambda: _mha(kdim=3)(_x(Tq, B, D), _x(Tk, B, D), _x(Tk, B, D)), ValueError, r"key with 3 features, got 8"),
    (lambda: _mha()(_x(Tq, B, D), _x(Tk, 3, D), _x(Tk, 3, D)), ValueError, r"one batch size, got 2, 3, 3"),
    (lambda: _mha()(_x(Tq, B, D), _x(Tk, B, D), _x(3, B, D)), ValueError, r"one length Tk, got 5 and 3"),
    (lambda: _mha()(_x(Tq, B, D), _x(Tk, D), _x(Tk, D)), ValueError, r"all of shape .*got \(4, 2, 8\), \(5, 8\)"),
    (lambda: _mha()(_x(Tq, B, D, dtype=torch.float32), _x(Tk, B, D), _x(Tk, B, D)), TypeError, r"float64.*float32"),
    (lambda: _mha()(_x(Tq, B, D), _x(Tk, B, D), [1.0]), TypeError, r"value as a tensor .*got list"),
    (
        lambda: _mha()(_x(Tq, B, D), _x(Tk, B, D), _x(Tk, B, D), attn_mask=torch.zeros(Tq, Tq, dtype=torch.bool)),
        ValueError,
        r"attn_mask of shape \(4, 5\) or \(4, 4, 5\), got \(4, 4\)",
    ),
    (
        lambda: _mha()(_x(Tq, B, D), _x(Tk, B, D), _x(Tk, B, D), key_padding_mask=torch.zeros(B, Tq, dtype=torch.bool)),
        ValueError,
        r"key_padding_mask of shape \(2, 5\), got \(2, 4\)",
    ),
    (
        lambda: _mha()(_x(Tq, B, D), _x(Tk, B, D), _x(Tk, B, D), attn_mask=torch.zeros(Tq, Tk, dtype=torch.long)),
        TypeError,
        r"attn_mask of dtype torch.bool or floating point, got torch.int64",
    ),
    (lambda: scaled_dot_product_attention(_x(2, 3), _x(4, 5), _x(4, 5)), ValueError, r"same last dim, got 3 and 5"),
    (lambda: scaled_dot_product_attention(_x(2, 3), _x(4, 3), _x(5, 3)), ValueError, r"same length Tk, got 4 and 5"),
    (
        lambda: scaled_dot_product_attention(_x(2, 3), _x(4, 3), _x(4, 3), mask=torch.ones(3, 4, dtype=torch.bool)),
        ValueError,
        r"broadcasts to \(\.\.\., Tq, Tk\) = \(\.\.\., 2, 4\), got shape \(3, 4\)",
    ),
    (lambda: scaled_dot_product_attention(_x(2, 3), _x(4, 3), _x(4, 3), dropout_p=1.0), ValueError, r"got 1.0"),
    (lambda: AdditiveAttention(3, 4, 5).double()(_x(B, 4), _x(B, Tk, 4)), ValueError, r"query with 3 features, got 4"),
    (lambda: AdditiveAttention(3, 4, 5).double()(_x(B, 3), _x(B, Tk, 3)), ValueError, r"keys with 4 features, got 3"),
    (
        lambda: AdditiveAttention(3, 4, 5).double()(_x(B, 3), _x(3, Tk, 4)),
        ValueError,
        r"to agree, got \(2, 3\), \(3, 5, 4\)",
    ),
    (lambda: LuongAttention(3, 4, "dot"), ValueError, r"query_dim == key_dim, got 3 and 4"),
    (lambda: LuongAttention(3, 3, "concat"), ValueError, r"score in \('dot', 'general'\), got 'concat'"),
    (lambda: LocalAttention(3, 3, window=0), ValueError, r"window as an integer >= 1, got 0"),
    (lambda: LocalAttention(3, 3, window=1, mode="local-x"), ValueError, r"mode in .*got 'local-x'"),
    (
        lambda: LocalAttention(3, 3, 1, "local-m").double()(_x(B, 3), _x(B, Tk, 3), positions=torch.zeros(3)),
        ValueError,
        r"positions of shape \(2,\), got \(3,\)",
    ),
    (lambda: causal_mask(0), ValueError, r"Tq as an integer >= 1, got 0"),
    (lambda: padding_mask(torch.tensor([1.0])), TypeError, r"1-D integer tensor \(B,\), got torch.float32"),
    (lambda: padding_mask(torch.tensor([5]), 3), ValueError, r"lengths in \[0, 3\], got \[5\]"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_INPUTS)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_nothing_recorded_outside_a_trace():
    _, model = make_mha(torch.device("cpu"))
    x = _x(Tq, B, D)
    with memlib.trace() as tr:
        pass
    model(x, x, x)
    AdditiveAttention(D, D, 4).double()(_x(B, D), _x(B, Tk, D))
    assert len(tr) == 0
