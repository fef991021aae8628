"""memlib.transformer: encoder parity with torch.nn, positional encodings, the causal LM, Transformer-XL.

Shapes: ``B`` batch, ``T`` time, ``D`` model width, ``H`` heads, ``M`` remembered steps.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import memlib
from memlib.attention import additive_mask, causal_mask
from memlib.transformer import (
    CausalLM,
    LearnedPositionalEncoding,
    RelativeMultiHeadAttention,
    SinusoidalPositionalEncoding,
    TransformerEncoder,
    TransformerEncoderLayer,
    TransformerXL,
    sinusoidal_encoding,
)

# Touches precision or CPU kernels: `make test` runs these again under a restricted instruction set.
pytestmark = pytest.mark.kernels

B, T, D, H, FF = 2, 5, 8, 2, 16
F64 = torch.float64



def randn(*shape, dev, grad=False):
    return torch.randn(shape, dtype=F64, device=dev, requires_grad=grad)


def grads_of(output, x, module, weight):
    params = [p for _, p in sorted(module.named_parameters())]
    return torch.autograd.grad((output * weight).sum(), [x, *params])


def layer_masks(dev, kind: str) -> tuple[dict, dict]:
    """(torch's mask arguments, memlib's)."""
    padding = torch.zeros(B, T, dtype=torch.bool, device=dev)
    padding[1, 3:] = True
    blocked = torch.rand(T, T, device=dev) > 0.7
    blocked.fill_diagonal_(False)
    masks = {
        "none": {},
        "bool": {"src_key_padding_mask": padding, "src_mask": blocked},
        "float": {"src_key_padding_mask": additive_mask(padding, F64), "src_mask": randn(T, T, dev=dev)},
    }
    if kind == "causal":  # memlib needs no mask with is_causal; torch does
        return {"src_mask": causal_mask(T, device=dev), "is_causal": True}, {"is_causal": True}
    return masks[kind], masks[kind]


LAYER_GRID = list(itertools.product([False, True], [False, True], ["none", "bool", "float", "causal"]))


@pytest.mark.parametrize(("norm_first", "batch_first", "masks"), LAYER_GRID)
def test_encoder_layer_parity_with_torch(dev, norm_first, batch_first, masks):
    kwargs = {"dim_feedforward": FF, "dropout": 0.0, "norm_first": norm_first, "batch_first": batch_first}
    reference = nn.TransformerEncoderLayer(D, H, **kwargs, activation="gelu").to(dev, F64)
    layer = TransformerEncoderLayer(D, H, **kwargs, activation="gelu").to(dev, F64)
    layer.load_state_dict(reference.state_dict())
    x = randn(*((B, T, D) if batch_first else (T, B, D)), dev=dev, grad=True)
    torch_masks, memlib_masks = layer_masks(dev, masks)
    expected, actual = reference(x, **torch_masks), layer(x, **memlib_masks)
    assert_close(actual, expected)
    weight = torch.randn_like(expected)
    assert_close(grads_of(actual, x, layer, weight), grads_of(expected, x, reference, weight))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("masks", ["bool", "causal"])
def test_encoder_stack_parity_with_torch(dev, norm_first, masks):
    torch_layer = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, norm_first=norm_first)
    reference = nn.TransformerEncoder(torch_layer, 2, norm=nn.LayerNorm(D), enable_nested_tensor=False).to(dev, F64)
    memlib_layer = TransformerEncoderLayer(D, H, FF, dropout=0.0, norm_first=norm_first)
    encoder = TransformerEncoder(memlib_layer, 2, norm=nn.LayerNorm(D)).to(dev, F64)
    encoder.load_state_dict(reference.state_dict())
    x = randn(T, B, D, dev=dev, grad=True)
    torch_masks, memlib_masks = layer_masks(dev, masks)
    rename = {"src_mask": "mask"}
    torch_masks = {rename.get(k, k): v for k, v in torch_masks.items()}
    memlib_masks = {rename.get(k, k): v for k, v in memlib_masks.items()}
    expected, actual = reference(x, **torch_masks), encoder(x, **memlib_masks)
    assert_close(actual, expected)
    weight = torch.randn_like(expected)
    assert_close(grads_of(actual, x, encoder, weight), grads_of(expected, x, reference, weight))


def test_encoder_layer_same_initialisation_and_names_as_torch():
    torch.manual_seed(5)
    expected = nn.TransformerEncoderLayer(D, H, FF).state_dict()
    torch.manual_seed(5)
    actual = TransformerEncoderLayer(D, H, FF).state_dict()
    assert list(actual) == list(expected)
    for name in expected:
        assert_close(actual[name], expected[name])


def test_encoder_paths_agree_and_trace_each_layer(dev):
    encoder = TransformerEncoder(TransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True), 3).to(dev, F64)
    x = randn(B, T, D, dev=dev)
    fused = encoder(x, is_causal=True)
    with memlib.trace() as tr:
        reference = encoder(x, is_causal=True)
    assert_close(reference, fused)
    weights = tr["attention.weights"]
    assert len(weights) == 3 and all(w.shape == (B, H, T, T) for w in weights)
    future = causal_mask(T, device=dev).expand(B, H, T, T)
    assert all((w.masked_select(future) == 0).all() for w in weights)
    assert all(torch.allclose(w.sum(-1), torch.ones((), dtype=F64, device=dev)) for w in weights)


# ---------------------------------------------------------------------------------------------
# Positional encodings
# ---------------------------------------------------------------------------------------------


def test_sinusoidal_encoding_formula():
    d = 5  # odd: the last column is a sine
    pe = sinusoidal_encoding(torch.arange(4, dtype=F64), d)
    for pos, i in itertools.product(range(4), range(d)):
        angle = pos / 10000 ** (2 * (i // 2) / d)
        assert math.isclose(pe[pos, i], math.sin(angle) if i % 2 == 0 else math.cos(angle), abs_tol=1e-12)


@pytest.mark.parametrize("batch_first", [False, True])
def test_positional_encodings_add_per_position(dev, batch_first):
    x = torch.zeros((B, T, D) if batch_first else (T, B, D), dtype=F64, device=dev)
    sinusoidal = SinusoidalPositionalEncoding(D, batch_first=batch_first)
    learned = LearnedPositionalEncoding(16, D, batch_first=batch_first).to(dev, F64)
    time_major = (lambda y: y.transpose(0, 1)) if batch_first else (lambda y: y)
    expected = sinusoidal_encoding(torch.arange(3, 3 + T, dtype=F64, device=dev), D)
    assert_close(time_major(sinusoidal(x, offset=3))[:, 1], expected)
    assert_close(time_major(learned(x, offset=3))[:, 0], learned.embedding.weight[3 : 3 + T])
    assert_close(sinusoidal(x[0] if batch_first else x[:, 0]), sinusoidal_encoding(torch.arange(T).to(x), D))


# ---------------------------------------------------------------------------------------------
# CausalLM
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_causal_lm_never_looks_ahead(dev, positional):
    model = CausalLM(11, d_model=D, nhead=H, num_layers=2, dim_feedforward=FF, positional=positional, max_len=16)
    model = model.to(dev, F64)
    tokens = torch.randint(0, 11, (B, 6), device=dev)
    changed = tokens.clone()
    changed[:, 4:] = (tokens[:, 4:] + 1) % 11
    logits, logits_changed = model(tokens), model(changed)
    assert logits.shape == (B, 6, 11)
    assert_close(logits[:, :4], logits_changed[:, :4])
    assert not torch.allclose(logits[:, 4:], logits_changed[:, 4:])
    generated = model.generate(tokens[:, :2], 3)
    assert generated.shape == (B, 5) and torch.equal(generated[:, :2], tokens[:, :2])


def test_causal_lm_learns_a_cycle():
    torch.manual_seed(0)
    model = CausalLM(5, d_model=16, nhead=2, num_layers=1, dim_feedforward=32)
    data = (torch.arange(12)[None] + torch.arange(4)[:, None]) % 5  # (4, 12): 0 1 2 3 4 0 1 ... from 4 starts
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(25):
        logits = model(data[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 5), data[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses[::10]
    assert torch.equal(model.generate(data[:1, :3], 4)[0, 3:], data[0, 3:7])


# ---------------------------------------------------------------------------------------------
# Transformer-XL
# ---------------------------------------------------------------------------------------------


def make_xl(dev, mem_len: int, num_layers: int = 2) -> TransformerXL:
    return TransformerXL(D, H, num_layers, FF, mem_len=mem_len).to(dev, F64)


def test_xl_segments_with_memory_equal_one_long_segment(dev):
    model = make_xl(dev, mem_len=4)
    x = randn(B, 7, D, dev=dev)
    whole, _ = model(x)
    first, mems = model(x[:, :3])  # memory holds all 3 steps (mem_len 4)
    second, _ = model(x[:, 3:], mems)
    assert_close(torch.cat([first, second], dim=1), whole)


def test_xl_without_memory_is_one_segment(dev):
    model = make_xl(dev, mem_len=3)
    x = randn(B, T, D, dev=dev)
    empty = [x.new_zeros(B, 0, D)] * 2
    assert_close(model(x)[0], model(x, empty)[0])
    no_memory = make_xl(dev, mem_len=0)
    no_memory.load_state_dict(model.state_dict())
    _, mems = no_memory(x)
    assert all(m.shape == (B, 0, D) for m in mems)
    assert_close(no_memory(x[:, 2:], no_memory(x[:, :2])[1])[0], no_memory(x[:, 2:])[0])


def test_xl_memory_is_detached(dev):
    model = make_xl(dev, mem_len=4)
    x1, x2 = randn(B, 3, D, dev=dev, grad=True), randn(B, 3, D, dev=dev, grad=True)
    _, mems = model(x1)
    assert not any(m.requires_grad for m in mems)
    out, _ = model(x2, mems)
    out.sum().backward()
    assert x1.grad is None  # no gradient flows into the previous segment
    assert x2.grad is not None and model.layers[0].self_attn.u.grad is not None


def test_xl_mem_len_is_respected(dev):
    model = make_xl(dev, mem_len=5)
    segments = [randn(B, 3, D, dev=dev) for _ in range(3)]
    mems, seen = None, []
    for n, segment in enumerate(segments):
        _, mems = model(segment, mems)
        seen.append(segment)
        assert all(m.shape == (B, min(5, 3 * (n + 1)), D) for m in mems)
        assert_close(mems[0], torch.cat(seen, dim=1)[:, -5:])  # layer 0's memory: the last inputs


def test_xl_attention_matches_the_paper_term_by_term(dev):
    attn = RelativeMultiHeadAttention(D, H).to(dev, F64)
    M, Tx, E = 2, 3, D // H
    memory, x = randn(1, M, D, dev=dev), randn(1, Tx, D, dev=dev)
    with memlib.trace() as tr:
        attn(x, memory)
    weights = tr.last("transformer_xl.weights")[0]  # (H, Tx, M + Tx)
    h = torch.cat([memory, x], dim=1)[0]
    w_q, w_k, _ = attn.qkv.weight.chunk(3)
    for head in range(H):
        part = slice(head * E, (head + 1) * E)
        scores = torch.full((Tx, M + Tx), float("-inf"), dtype=F64, device=dev)
        for i, j in itertools.product(range(Tx), range(M + Tx)):
            distance = M + i - j
            if distance < 0:
                continue
            r = attn.r_proj(sinusoidal_encoding(torch.tensor([distance], dtype=F64, device=dev), D))[0, part]
            q, k = (w_q @ x[0, i])[part], (w_k @ h[j])[part]
            u, v = attn.u[head], attn.v[head]
            # (a) q.k + (b) q.W_R R + (c) u.k + (d) v.W_R R
            scores[i, j] = (q @ k + q @ r + u @ k + v @ r) / math.sqrt(E)
        assert_close(weights[head], torch.softmax(scores, dim=-1))


def test_xl_gradcheck(dev):
    attn = RelativeMultiHeadAttention(4, 2).to(dev, F64)
    memory, x = randn(1, 2, 4, dev=dev, grad=True), randn(1, 3, 4, dev=dev, grad=True)
    assert torch.autograd.gradcheck(attn, (x, memory))


# ---------------------------------------------------------------------------------------------
# Errors name the expected and the actual value
# ---------------------------------------------------------------------------------------------


def _x(*shape, dtype=F64):
    return torch.randn(shape).to(dtype)


BAD_INPUTS = [
    (lambda: TransformerEncoderLayer(D, H, activation="tanh"), ValueError, r"'relu', 'gelu' or a callable, got 'tanh'"),
    (lambda: TransformerEncoderLayer(D, 3), ValueError, r"divisible by num_heads, got 8 and 3"),
    (lambda: TransformerEncoderLayer(D, H).double()(_x(T, B, 6)), ValueError, r"d_model = 8 features, got 6"),
    (lambda: TransformerEncoderLayer(D, H).double()(_x(T, B, 1, D)), ValueError, r"got \(5, 2, 1, 8\)"),
    (lambda: TransformerEncoder(TransformerEncoderLayer(D, H), 0), ValueError, r"num_layers as an integer >= 1, got 0"),
    (lambda: TransformerEncoder("layer", 2), TypeError, r"encoder_layer as an nn.Module, got str"),
    (
        lambda: TransformerEncoderLayer(D, H).double()(_x(T, B, D), src_mask=torch.zeros(3, 3, dtype=torch.bool)),
        ValueError,
        r"attn_mask of shape \(5, 5\) or \(4, 5, 5\), got \(3, 3\)",
    ),
    (lambda: LearnedPositionalEncoding(4, D)(torch.zeros(T, 1, D)), ValueError, r"max_len = 4, got 0 to 5"),
    (lambda: CausalLM(5)(torch.tensor([[1, 7]])), ValueError, r"ids in \[0, 5\), got min 1, max 7"),
    (lambda: CausalLM(5)(torch.zeros(2, 3)), TypeError, r"torch.long tensor \(B, T\), got torch.float32"),
    (lambda: CausalLM(5, positional="rotary"), ValueError, r"positional in .*got 'rotary'"),
    (lambda: TransformerXL(D, H, 2, FF, mem_len=-1), ValueError, r"mem_len as an integer >= 0, got -1"),
    (lambda: TransformerXL(D, H, 2, FF, 3).double()(_x(B, T, 6)), ValueError, r"\(B, T, D = 8\), got \(2, 5, 6\)"),
    (lambda: TransformerXL(D, H, 2, FF, 3).double()(_x(B, T, D), [_x(B, 3, D)]), ValueError, r"2 tensors .*got 1"),
    (
        lambda: TransformerXL(D, H, 2, FF, 3).double()(_x(B, T, D), [_x(B, 3, D), _x(B, 2, D)]),
        ValueError,
        r"mems\[1\] of shape \(B, M, D\) = \(2, 3, 8\), got \(2, 2, 8\)",
    ),
    (
        lambda: TransformerXL(D, H, 2, FF, 3).double()(_x(B, T, D), [_x(B, 3, D, dtype=torch.float32)] * 2),
        TypeError,
        r"dtype torch.float64 \(the input's\), got cpu and torch.float32",
    ),
    (
        lambda: RelativeMultiHeadAttention(D, H).double()(_x(B, T, D), _x(3, 2, D)),
        ValueError,
        r"memory of shape \(B, \., D\) = \(2, \., 8\), got \(3, 2, 8\)",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_INPUTS)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_tensors_on_input_device_and_dtype(dev):
    model = TransformerXL(D, H, 1, FF, mem_len=2).to(dev)
    out, mems = model(torch.randn(B, T, D, device=dev))
    out2, _ = model(torch.randn(B, T, D, device=dev), mems)
    assert out2.device.type == mems[0].device.type == dev.type and out2.dtype == torch.float32
    encoded = SinusoidalPositionalEncoding(D)(torch.randn(T, B, D, device=dev, dtype=torch.float16))
    assert encoded.device.type == dev.type and encoded.dtype == torch.float16
