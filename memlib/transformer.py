"""Transformers: positional encodings, an encoder (``torch.nn`` compatible), a causal language model, Transformer-XL.

Shapes: ``B`` batch, ``T`` time (sequence length), ``D`` model width (``d_model``), ``H`` heads, ``E`` head width
(``D / H``), ``F`` feed-forward width, ``V`` vocabulary, ``L`` layers, ``M`` remembered steps (Transformer-XL's
memory), ``K`` keys seen by a Transformer-XL query (``M + T``).

``TransformerEncoderLayer`` and ``TransformerEncoder`` take ``torch.nn``'s constructor arguments and inputs and hold
parameters under its names (``self_attn.in_proj_weight``, ``linear1``, ``linear2``, ``norm1``, ``norm2``,
``layers.0....``), so ``m.load_state_dict(torch_module.state_dict())`` works and the outputs match. Their
self-attention is :class:`memlib.attention.MultiHeadAttention`: fused outside a trace, explicit inside one.

Trace names:

- ``attention.weights`` (B, H, T, T): each encoder layer's self-attention weights, one value per layer per call
  (see :mod:`memlib.attention`). :class:`CausalLM` records them too.
- ``transformer_xl.weights`` (B, H, T, M + T): each Transformer-XL layer's attention weights, one value per layer
  per call, the first layer first; key ``j < M`` is remembered step ``j``, key ``M + t`` is step ``t`` of the segment.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from memlib.attention import (
    MultiHeadAttention,
    causal_mask,
    merge_heads,
    split_heads,
)
from memlib.tracing import record
from memlib.validate import check_length, check_tensor, check_tokens

# TransformerXL.forward's code is printed in chapter 12 with this name: keep it until the page is re-run.
from memlib.validate import check_tensor as _check_float

# ---------------------------------------------------------------------------------------------
# Positional encodings (Vaswani et al. 2017, section 3.5).
# ---------------------------------------------------------------------------------------------


def sinusoidal_encoding(positions: torch.Tensor, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """(T, D) sinusoids of ``positions`` (T,), a float tensor; made on its device and dtype.

    PE(pos, 2i) = sin(pos / base^(2i / D)), PE(pos, 2i + 1) = cos(pos / base^(2i / D)) (Vaswani et al. 2017, 3.5).
    Positions may be any real numbers: Transformer-XL encodes relative distances with it.

    >>> pe = sinusoidal_encoding(torch.arange(4.0), d_model=6)
    >>> pe.shape, pe[0].tolist()  # position 0: sin 0 = 0, cos 0 = 1
    (torch.Size([4, 6]), [0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    """
    check_tensor("sinusoidal_encoding", "positions", positions, "(T,)")
    if positions.dim() != 1:
        raise ValueError(f"sinusoidal_encoding: expected positions of shape (T,), got {tuple(positions.shape)}")
    check_length("sinusoidal_encoding", "d_model", d_model)
    two_i = torch.arange(0, d_model, 2, device=positions.device, dtype=positions.dtype)  # (ceil(D/2),)
    # pos / base^(2i / D)
    angles = positions[:, None] * base ** (-two_i / d_model)  # (T, ceil(D/2))
    pe = positions.new_empty(positions.shape[0], d_model)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return pe


def _check_sequence(name: str, x: object, d_model: int, batch_first: bool) -> torch.Tensor:
    layout = "(B, T, D)" if batch_first else "(T, B, D)"
    check_tensor(name, "input", x, f"{layout} or unbatched (T, D)")
    if x.dim() not in (2, 3):
        raise ValueError(f"{name}: expected input of shape {layout} or unbatched (T, D), got {tuple(x.shape)}")
    if x.shape[-1] != d_model:
        raise ValueError(f"{name}: expected input with d_model = {d_model} features, got {x.shape[-1]}")
    return x


class SinusoidalPositionalEncoding(nn.Module):
    """Adds fixed sinusoids of the position (Vaswani et al. 2017, section 3.5): x + PE[offset : offset + T].

    No parameters and no length limit: the sinusoids are computed on the input's device and dtype.
    ``forward(x (T, B, D), (B, T, D) with batch_first, or (T, D); offset = 0) -> same shape`` (then dropout).

    >>> SinusoidalPositionalEncoding(8, batch_first=True)(torch.zeros(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(self, d_model: int, dropout: float = 0.0, batch_first: bool = False, base: float = 10000.0):
        super().__init__()
        self.d_model = check_length(type(self).__name__, "d_model", d_model)
        self.batch_first, self.base = batch_first, base
        self.dropout = nn.Dropout(dropout)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}" + (", batch_first=True" if self.batch_first else "")

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _check_sequence(type(self).__name__, x, self.d_model, self.batch_first)
        T = x.shape[1] if (x.dim() == 3 and self.batch_first) else x.shape[0]
        # at least float32: half precision cannot tell large positions apart
        positions = torch.arange(offset, offset + T, device=x.device, dtype=torch.promote_types(x.dtype, torch.float32))
        pe = sinusoidal_encoding(positions, self.d_model, self.base).to(x.dtype)  # (T, D)
        if x.dim() == 3:
            pe = pe[None] if self.batch_first else pe[:, None]  # (1, T, D) or (T, 1, D)
        return self.dropout(x + pe)


class LearnedPositionalEncoding(nn.Module):
    """Adds a learned vector per position, x + P[offset : offset + T] (as in BERT and GPT; Vaswani et al. 2017,
    section 3.5, found it about as good as sinusoids). Positions beyond ``max_len`` have no vector: an error.

    Parameter: ``embedding.weight`` (max_len, D). ``forward`` as :class:`SinusoidalPositionalEncoding`'s.

    >>> LearnedPositionalEncoding(max_len=16, d_model=8, batch_first=True)(torch.zeros(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(
        self, max_len: int, d_model: int, dropout: float = 0.0, batch_first: bool = False, *, device=None, dtype=None
    ):
        super().__init__()
        name = type(self).__name__
        self.max_len, self.d_model = check_length(name, "max_len", max_len), check_length(name, "d_model", d_model)
        self.batch_first = batch_first
        self.embedding = nn.Embedding(max_len, d_model, device=device, dtype=dtype)
        self.dropout = nn.Dropout(dropout)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}" + (", batch_first=True" if self.batch_first else "")

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        name = type(self).__name__
        _check_sequence(name, x, self.d_model, self.batch_first)
        T = x.shape[1] if (x.dim() == 3 and self.batch_first) else x.shape[0]
        if offset < 0 or offset + T > self.max_len:
            got = f"{offset} to {offset + T}"
            raise ValueError(f"{name}: expected positions within max_len = {self.max_len}, got {got}")
        pe = self.embedding.weight[offset : offset + T]  # (T, D)
        if x.dim() == 3:
            pe = pe[None] if self.batch_first else pe[:, None]
        return self.dropout(x + pe)


# ---------------------------------------------------------------------------------------------
# Encoder: torch.nn.TransformerEncoderLayer / TransformerEncoder compatible.
# ---------------------------------------------------------------------------------------------

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu, "gelu": F.gelu}


class TransformerEncoderLayer(nn.Module):
    """Self-attention then a position-wise feed-forward network, each with a residual connection and LayerNorm
    (Vaswani et al. 2017, section 3.1), ``torch.nn.TransformerEncoderLayer`` compatible.

    Post-norm (default): x = norm1(x + SA(x)); x = norm2(x + FF(x)). Pre-norm (``norm_first``, Xiong et al. 2020):
    x = x + SA(norm1(x)); x = x + FF(norm2(x)). FF(x) = linear2(dropout(activation(linear1(x)))).

    Parameters: ``self_attn`` (:class:`~memlib.attention.MultiHeadAttention`), ``linear1`` (D -> F), ``linear2``
    (F -> D), ``norm1``, ``norm2``. ``forward(src (T, B, D) or (B, T, D) with batch_first or (T, D), src_mask (T, T)
    or (B*H, T, T), src_key_padding_mask (B, T), is_causal) -> same shape as src``. ``is_causal=True`` without
    ``src_mask`` applies the causal mask (torch requires the mask as well). torch's inference fast path (nested
    tensors) is not reproduced: outputs at padded positions are computed, not zeroed.

    >>> layer = TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)
    >>> layer(torch.zeros(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[torch.Tensor], torch.Tensor] = F.relu,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        *,
        device=None,
        dtype=None,
    ):
        super().__init__()
        name = type(self).__name__
        check_length(name, "dim_feedforward", dim_feedforward)
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise ValueError(f"{name}: expected activation 'relu', 'gelu' or a callable, got {activation!r}")
            activation = _ACTIVATIONS[activation]
        elif not callable(activation):
            got = type(activation).__name__
            raise TypeError(f"{name}: expected activation 'relu', 'gelu' or a callable, got {got}")
        factory = {"device": device, "dtype": dtype}
        # Construction order as in torch, so that one seed gives the same initial weights.
        self.self_attn = MultiHeadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, **factory
        )
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias, **factory)
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = activation
        self.d_model, self.batch_first = d_model, batch_first

    def forward(
        self,
        src: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        src_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        _check_sequence(type(self).__name__, src, self.d_model, self.batch_first)
        x = src
        if self.norm_first:
            # x + SA(LN(x)), then x + FF(LN(x))
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            # LN(x + SA(x)), then LN(x + FF(x))
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(
        self, x: torch.Tensor, mask: torch.Tensor | None, padding: torch.Tensor | None, is_causal: bool
    ) -> torch.Tensor:
        out, _ = self.self_attn(
            x, x, x, attn_mask=mask, key_padding_mask=padding, need_weights=False, is_causal=is_causal
        )
        return self.dropout1(out)

    def _ff_block(self, x: torch.Tensor) -> torch.Tensor:
        # FF(x) = W_2 activation(W_1 x + b_1) + b_2
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerEncoder(nn.Module):
    """A stack of ``num_layers`` copies of ``encoder_layer`` (then ``norm``), ``torch.nn.TransformerEncoder``
    compatible: parameters ``layers.0.self_attn.in_proj_weight``, ..., ``norm.weight``.

    ``forward(src, mask=None, src_key_padding_mask=None, is_causal=None) -> same shape as src``.
    ``enable_nested_tensor`` and ``mask_check`` are accepted for compatibility and change nothing: memlib has no
    nested-tensor fast path (so padded positions are computed, where torch's fast path returns zeros).

    >>> layer = TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)
    >>> TransformerEncoder(layer, num_layers=2)(torch.zeros(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(
        self,
        encoder_layer: nn.Module,
        num_layers: int,
        norm: nn.Module | None = None,
        enable_nested_tensor: bool = True,
        mask_check: bool = True,
    ):
        super().__init__()
        name = type(self).__name__
        if not isinstance(encoder_layer, nn.Module):
            raise TypeError(f"{name}: expected encoder_layer as an nn.Module, got {type(encoder_layer).__name__}")
        self.num_layers = check_length(name, "num_layers", num_layers)
        self.layers = nn.ModuleList(copy.deepcopy(encoder_layer) for _ in range(num_layers))
        self.norm = norm
        self.enable_nested_tensor, self.mask_check = enable_nested_tensor, mask_check

    def forward(
        self,
        src: torch.Tensor,
        mask: torch.Tensor | None = None,
        src_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool | None = None,
    ) -> torch.Tensor:
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        return x if self.norm is None else self.norm(x)


# ---------------------------------------------------------------------------------------------
# A small causal language model.
# ---------------------------------------------------------------------------------------------

_POSITIONAL = ("sinusoidal", "learned")


class CausalLM(nn.Module):
    """A decoder-only language model: embedding + positions -> pre-norm causal encoder -> LayerNorm -> head.

    Each position sees only itself and the past (a causal mask), so logits[:, t] predict tokens[:, t + 1]. The
    layers are memlib's :class:`TransformerEncoderLayer` with ``norm_first=True`` (the GPT-2 arrangement) and
    ``batch_first=True``. Defaults are small: the book trains it on a CPU in seconds.

    Parameters: ``embedding`` (V, D), ``position`` (learned: ``position.embedding.weight`` (max_len, D)),
    ``encoder.layers.k....``, ``encoder.norm``, ``head`` (D -> V).
    ``forward(tokens (B, T) long) -> logits (B, T, V)``; ``generate(tokens, max_new_tokens) -> (B, T + new)``.

    >>> lm = CausalLM(vocab_size=10, d_model=8, nhead=2, num_layers=1, dim_feedforward=16)
    >>> tokens = torch.tensor([[1, 2, 3]])
    >>> lm(tokens).shape  # (B, T, V)
    torch.Size([1, 3, 10])
    >>> lm.generate(tokens, max_new_tokens=2).shape
    torch.Size([1, 5])
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 256,
        dropout: float = 0.0,
        positional: str = "sinusoidal",
        max_len: int = 512,
    ):
        super().__init__()
        name = type(self).__name__
        self.vocab_size = check_length(name, "vocab_size", vocab_size)
        if positional not in _POSITIONAL:
            raise ValueError(f"{name}: expected positional in {_POSITIONAL}, got {positional!r}")
        self.embedding = nn.Embedding(vocab_size, d_model)
        if positional == "sinusoidal":
            self.position: nn.Module = SinusoidalPositionalEncoding(d_model, dropout, batch_first=True)
        else:
            self.position = LearnedPositionalEncoding(max_len, d_model, dropout, batch_first=True)
        layer = TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        check_tokens(type(self).__name__, tokens, self.vocab_size)
        x = self.position(self.embedding(tokens))  # (B, T, D)
        h = self.encoder(x, is_causal=True)  # (B, T, D): position t attends to 0..t
        return self.head(h)  # (B, T, V)

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy decoding: append the most likely next token ``max_new_tokens`` times. Returns (B, T + new)."""
        check_length(type(self).__name__, "max_new_tokens", max_new_tokens, minimum=0)
        for _ in range(max_new_tokens):
            logits = self(tokens)[:, -1]  # (B, V): the prediction after the last token
            tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
        return tokens


# ---------------------------------------------------------------------------------------------
# Transformer-XL (Dai et al. 2019): segment-level recurrence and relative positional encoding.
# ---------------------------------------------------------------------------------------------


class RelativeMultiHeadAttention(nn.Module):
    """Causal self-attention over [memory; segment] with relative positions (Dai et al. 2019, section 3.3).

    A_ij = q_i^T k_j  (a)  +  q_i^T W_{k,R} R_{i-j}  (b)  +  u^T k_j  (c)  +  v^T W_{k,R} R_{i-j}  (d),
    with q = W_q h, k = W_{k,E} h, R the sinusoid of the distance i - j, and u, v learned per head. Scaled by
    1 / sqrt(E), as in the authors' code (the paper's equation leaves the scale out).

    Parameters: ``qkv`` (Linear D -> 3D, no bias: W_q, W_{k,E}, W_v stacked), ``r_proj`` (Linear D -> D, no bias:
    W_{k,R}), ``u`` and ``v`` (H, E), ``out_proj`` (Linear D -> D, no bias).
    ``forward(x (B, T, D), memory (B, M, D)) -> (B, T, D)``: query i (step M + i of [memory; x]) sees keys 0..M + i.
    Traced as ``transformer_xl.weights`` (B, H, T, M + T).

    >>> attn = RelativeMultiHeadAttention(8, 2)
    >>> attn(torch.zeros(2, 3, 8), memory=torch.zeros(2, 4, 8)).shape  # 3 queries over 4 remembered + 3 steps
    torch.Size([2, 3, 8])
    """

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, *, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        check_length(name, "d_model", d_model)
        check_length(name, "nhead", nhead)
        if d_model % nhead:
            raise ValueError(f"{name}: expected d_model divisible by nhead, got {d_model} and {nhead}")
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.nhead, self.head_dim = d_model, nhead, d_model // nhead
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False, **factory)
        self.r_proj = nn.Linear(d_model, d_model, bias=False, **factory)
        self.u = nn.Parameter(torch.empty(nhead, self.head_dim, **factory))
        self.v = nn.Parameter(torch.empty(nhead, self.head_dim, **factory))
        self.out_proj = nn.Linear(d_model, d_model, bias=False, **factory)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.u, std=0.02)
        nn.init.normal_(self.v, std=0.02)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        for label, t in (("x", x), ("memory", memory)):
            check_tensor(name, label, t, "(B, T, D)")
            if t.dim() != 3 or t.shape[0] != x.shape[0] or t.shape[-1] != self.d_model:
                want = f"(B, ., D) = ({x.shape[0]}, ., {self.d_model})"
                raise ValueError(f"{name}: expected {label} of shape {want}, got {tuple(t.shape)}")
        B, T, _ = x.shape
        M = memory.shape[1]
        K = M + T
        H = self.nhead
        h = torch.cat([memory, x], dim=1)  # (B, K, D): h~ = [SG(m) o h]
        w_q, w_k, w_v = self.qkv.weight.chunk(3)  # (D, D) each
        q = split_heads(F.linear(x, w_q), H)  # (B, H, T, E): queries from the segment only
        k = split_heads(F.linear(h, w_k), H)  # (B, H, K, E): keys and values from memory and segment
        val = split_heads(F.linear(h, w_v), H)  # (B, H, K, E)
        # R_d for the distances d = K - 1, ..., 1, 0 (column c holds distance K - 1 - c)
        distances = torch.arange(K - 1, -1, -1, device=x.device, dtype=x.dtype)  # (K,)
        r = self.r_proj(sinusoidal_encoding(distances, self.d_model))  # (K, D): W_{k,R} R
        r = r.view(K, H, self.head_dim).transpose(0, 1)  # (H, K, E)

        # (a) + (c) = (q_i + u)^T k_j
        content = (q + self.u[:, None]) @ k.transpose(-2, -1)  # (B, H, T, K)
        # (b) + (d) = (q_i + v)^T W_{k,R} R_d, for every distance d
        position_by_distance = (q + self.v[:, None]) @ r.transpose(-2, -1)  # (B, H, T, K)
        # Query i sits at step M + i, so key j is at distance d = M + i - j: column K - 1 - d = j + T - 1 - i.
        i = torch.arange(T, device=x.device)[:, None]
        j = torch.arange(K, device=x.device)[None, :]
        column = (j + T - 1 - i).clamp(max=K - 1)  # (T, K): future keys (d < 0) are clamped, then masked below
        position = position_by_distance.gather(-1, column.expand(B, H, T, K))  # (B, H, T, K)

        scores = (content + position) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(causal_mask(T, K, offset=M, device=x.device), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, H, T, K): every query sees at least itself
        record("transformer_xl.weights", weights)
        out = self.dropout(weights) @ val  # (B, H, T, E)
        return self.out_proj(merge_heads(out))  # (B, T, D)


class TransformerXLLayer(nn.Module):
    """One Transformer-XL layer (Dai et al. 2019, section 3.3, the last equations), post-norm:

    o = LayerNorm(h + Linear(attention(h, memory))); h' = LayerNorm(o + FF(o)), FF(o) = W_2 relu(W_1 o).

    Parameters: ``self_attn`` (:class:`RelativeMultiHeadAttention`), ``linear1``, ``linear2``, ``norm1``, ``norm2``.

    >>> TransformerXLLayer(8, 2, dim_feedforward=16)(torch.zeros(2, 3, 8), torch.zeros(2, 4, 8)).shape
    torch.Size([2, 3, 8])
    """

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.0, layer_norm_eps: float = 1e-5
    ):
        super().__init__()
        self.self_attn = RelativeMultiHeadAttention(d_model, nhead, dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.self_attn(x, memory)))
        return self.norm2(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class TransformerXL(nn.Module):
    """A Transformer-XL stack (Dai et al. 2019): segment-level recurrence with a memory, relative positions.

    Each layer n attends over [SG(m^{n-1}); h^{n-1}] (section 3.2): the memory m^{n-1} holds the last ``mem_len``
    inputs of layer n from earlier segments, with the gradient stopped (SG: detached), so training cost stays per
    segment while the context reaches about ``num_layers * mem_len`` steps back. Positions are relative (section
    3.3), so remembered states need no re-encoding. Attention is causal: a step sees the memory and the segment up
    to itself.

    Works on vectors (embed tokens first); batch first. State in, state out:
    ``forward(x (B, T, D), mems = None) -> (output (B, T, D), new_mems)``, where ``mems`` is None (no memory) or a
    sequence of ``num_layers`` tensors (B, M, D), and ``new_mems`` a tuple of ``num_layers`` detached tensors
    (B, min(mem_len, M + T), D): the last steps of [mems[n]; input of layer n]. Pass them to the next segment.
    Traced as ``transformer_xl.weights``.

    >>> xl = TransformerXL(8, 2, num_layers=2, dim_feedforward=16, mem_len=4)
    >>> out, mems = xl(torch.zeros(2, 3, 8))
    >>> out, mems = xl(torch.zeros(2, 3, 8), mems)  # the next segment sees the last one
    >>> out.shape, len(mems), mems[0].shape
    (torch.Size([2, 3, 8]), 2, torch.Size([2, 4, 8]))
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        num_layers: int,
        dim_feedforward: int,
        mem_len: int,
        dropout: float = 0.0,
        layer_norm_eps: float = 1e-5,
    ):
        super().__init__()
        name = type(self).__name__
        check_length(name, "num_layers", num_layers)
        check_length(name, "dim_feedforward", dim_feedforward)
        self.mem_len = check_length(name, "mem_len", mem_len, minimum=0)
        self.d_model, self.num_layers = d_model, num_layers
        self.layers = nn.ModuleList(
            TransformerXLLayer(d_model, nhead, dim_feedforward, dropout, layer_norm_eps) for _ in range(num_layers)
        )

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, num_layers={self.num_layers}, mem_len={self.mem_len}"

    def forward(
        self, x: torch.Tensor, mems: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        name = type(self).__name__
        _check_float(name, "x", x, "(B, T, D)")
        if x.dim() != 3 or x.shape[-1] != self.d_model or 0 in x.shape:
            raise ValueError(f"{name}: expected x of shape (B, T, D = {self.d_model}), got {tuple(x.shape)}")
        B = x.shape[0]
        if mems is None:
            mems = [x.new_zeros(B, 0, self.d_model)] * self.num_layers
        else:
            mems = self._check_mems(mems, x)
        new_mems = []
        h = x
        for layer, memory in zip(self.layers, mems, strict=True):
            # m_{tau+1}^{n-1} = the last mem_len steps of [m_tau^{n-1}; h_tau^{n-1}], gradient stopped
            kept = torch.cat([memory, h], dim=1)
            new_mems.append(kept[:, kept.shape[1] - min(self.mem_len, kept.shape[1]) :].detach())
            # h_tau^n = Layer([SG(m_tau^{n-1}) o h_tau^{n-1}])
            h = layer(h, memory.detach())
        return h, tuple(new_mems)

    def _check_mems(self, mems: Sequence[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
        name = type(self).__name__
        if not isinstance(mems, Sequence) or len(mems) != self.num_layers:
            got = f"{len(mems)} tensors" if isinstance(mems, Sequence) else type(mems).__name__
            raise ValueError(f"{name}: expected mems as {self.num_layers} tensors (one per layer), got {got}")
        mems = list(mems)
        for n, m in enumerate(mems):
            check_tensor(name, f"mems[{n}]", m, "(B, M, D)")
            want = (x.shape[0], mems[0].shape[1], self.d_model)
            if tuple(m.shape) != want:
                raise ValueError(f"{name}: expected mems[{n}] of shape (B, M, D) = {want}, got {tuple(m.shape)}")
            if m.dtype != x.dtype or m.device != x.device:
                raise TypeError(
                    f"{name}: expected mems[{n}] on {x.device} with dtype {x.dtype} (the input's), "
                    f"got {m.device} and {m.dtype}"
                )
        return mems
