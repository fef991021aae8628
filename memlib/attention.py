"""Attention: scaled dot-product, multi-head (``torch.nn`` compatible), additive (Bahdanau), Luong global and local.

Shapes: ``B`` batch, ``H`` heads, ``Tq`` queries, ``Tk`` keys (Luong's source length ``S``), ``D`` model width
(``embed_dim``), ``E`` head width (``D / H``), ``Dq``, ``Dk``, ``Dv`` query, key and value features, ``A`` the
hidden width of additive attention.

Masks. A boolean mask is True where attention is *not* allowed, everywhere in memlib: the convention of
``torch.nn.MultiheadAttention`` and ``torch.nn.Transformer*``. (``torch.nn.functional.scaled_dot_product_attention``
uses the opposite one, True = may attend: give it ``~mask``.) A floating-point mask is added to the scores, so
``-inf`` blocks a position. :func:`causal_mask`, :func:`padding_mask` and :func:`window_mask` build boolean masks;
:func:`additive_mask` turns any mask into the float form. A query whose every key is blocked gets zero weights and
a zero output (as torch's fused kernel gives), not NaN.

Two paths, one math. :class:`MultiHeadAttention` calls ``torch.nn.functional.scaled_dot_product_attention`` when
the weights are not asked for (``need_weights=False``) and nothing is traced; otherwise it runs
:func:`scaled_dot_product_attention`, which computes the weights explicitly and returns them.

Trace names (one value per call of the module):

- ``attention.weights`` (B, H, Tq, Tk): :class:`MultiHeadAttention`'s softmax weights per head, before dropout
  (B = 1 for unbatched input). A stack of L layers records L values per call, the first layer first.
- ``additive.weights`` (B, Tq, Tk), or (B, Tk) for a single query (B, Dq): :class:`AdditiveAttention`.
- ``luong.weights`` (B, Tq, Tk) or (B, Tk): :class:`LuongAttention` and :class:`LocalAttention`.
- ``luong.position`` (B, Tq) or (B,): :class:`LocalAttention`'s window centre ``p_t``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from memlib import capability
from memlib.tracing import record, use_reference
from memlib.validate import check_heads, check_length, check_mask, check_tensor

# ---------------------------------------------------------------------------------------------
# Masks: boolean, True = blocked.
# ---------------------------------------------------------------------------------------------


def causal_mask(Tq: int, Tk: int | None = None, *, offset: int = 0, device=None) -> torch.Tensor:
    """(Tq, Tk) boolean mask, True where key ``j`` lies in query ``i``'s future: ``j > i + offset``.

    ``offset=0`` aligns query 0 with key 0 (as ``is_causal`` in torch). When the queries are the last ``Tq`` of
    ``Tk`` positions (a segment after ``Tk - Tq`` remembered steps), use ``offset=Tk - Tq``.

    >>> causal_mask(3)
    tensor([[False,  True,  True],
            [False, False,  True],
            [False, False, False]])
    """
    Tq = check_length("causal_mask", "Tq", Tq)
    Tk = Tq if Tk is None else check_length("causal_mask", "Tk", Tk)
    i = torch.arange(Tq, device=device)[:, None]  # (Tq, 1)
    j = torch.arange(Tk, device=device)[None, :]  # (1, Tk)
    return j > i + offset


def window_mask(Tq: int, Tk: int | None = None, *, window: int, offset: int = 0, device=None) -> torch.Tensor:
    """(Tq, Tk) boolean mask, True outside the band ``|j - (i + offset)| <= window`` (2 * window + 1 keys).

    >>> window_mask(4, window=1).int()
    tensor([[0, 0, 1, 1],
            [0, 0, 0, 1],
            [1, 0, 0, 0],
            [1, 1, 0, 0]], dtype=torch.int32)
    """
    Tq = check_length("window_mask", "Tq", Tq)
    Tk = Tq if Tk is None else check_length("window_mask", "Tk", Tk)
    window = check_length("window_mask", "window", window, minimum=0)
    i = torch.arange(Tq, device=device)[:, None]  # (Tq, 1)
    j = torch.arange(Tk, device=device)[None, :]  # (1, Tk)
    return (j - i - offset).abs() > window


def padding_mask(lengths: torch.Tensor, T: int | None = None) -> torch.Tensor:
    """(B, T) boolean mask from sequence lengths (B,): True at the padding, ``t >= lengths[b]``.

    ``T`` defaults to the longest length. The mask is made on ``lengths``' device. It is a ``key_padding_mask``.

    >>> padding_mask(torch.tensor([2, 3]))
    tensor([[False, False,  True],
            [False, False, False]])
    """
    if not isinstance(lengths, torch.Tensor) or lengths.is_floating_point() or lengths.dim() != 1:
        got = f"{lengths.dtype} of shape {tuple(lengths.shape)}" if isinstance(lengths, torch.Tensor) else lengths
        raise TypeError(f"padding_mask: expected lengths as a 1-D integer tensor (B,), got {got}")
    T = int(lengths.max()) if T is None else check_length("padding_mask", "T", T)
    if lengths.numel() and (lengths.min() < 0 or lengths.max() > T):
        raise ValueError(f"padding_mask: expected lengths in [0, {T}], got {lengths.tolist()}")
    return torch.arange(T, device=lengths.device)[None, :] >= lengths[:, None]  # (B, T)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The float form of a mask: a boolean mask becomes 0 (allowed) and -inf (blocked); a float mask is kept.

    >>> additive_mask(torch.tensor([False, True]), torch.float32)
    tensor([0., -inf])
    """
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


def _masked_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim; a row whose every score is -inf gets zero weights (not NaN, nor NaN gradients)."""
    blocked = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., 1): nothing to attend to
    weights = torch.softmax(scores.masked_fill(blocked, 0.0), dim=-1)
    return weights.masked_fill(blocked, 0.0)


def masked_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim; a row whose every score is -inf gets zero weights (not NaN, nor NaN gradients).

    >>> inf = float("inf")
    >>> masked_softmax(torch.tensor([[0.0, -inf], [-inf, -inf]]))
    tensor([[1., 0.],
            [0., 0.]])
    """
    return _masked_softmax(scores)


# ---------------------------------------------------------------------------------------------
# Scaled dot-product attention, with its weights.
# ---------------------------------------------------------------------------------------------


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(E) + M) V, returning the output and the weights.

    Vaswani et al. 2017, section 3.2.1, eq. 1. ``q`` (..., Tq, E), ``k`` (..., Tk, E), ``v`` (..., Tk, Ev),
    leading dims broadcast (e.g. (B, H)). ``mask`` broadcasts to (..., Tq, Tk): boolean, True = blocked
    (the opposite of ``torch.nn.functional.scaled_dot_product_attention``), or float, added to the scores.
    ``causal`` also blocks every key ``j > i`` (as torch's ``is_causal``). ``scale`` defaults to 1 / sqrt(E).

    Returns ``(output (..., Tq, Ev), weights (..., Tq, Tk))``. The weights are the softmax probabilities, before
    dropout (each row sums to 1, or is 0 where every key is blocked); dropout, when ``dropout_p > 0``, applies
    to the copy that multiplies ``v``, as in torch (no ``training`` flag: pass 0 in evaluation).
    """
    name = "scaled_dot_product_attention"
    for label, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, label, x, "(..., T, E)")
        if x.dim() < 2:
            raise ValueError(f"{name}: expected {label} with at least 2 dims (..., T, E), got shape {tuple(x.shape)}")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"{name}: expected q, k, v of one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{name}: expected q and k with the same last dim, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{name}: expected k and v with the same length Tk, got {k.shape[-2]} and {v.shape[-2]}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{name}: expected dropout_p in [0, 1), got {dropout_p!r}")
    Tq, Tk = q.shape[-2], k.shape[-2]
    if mask is not None:
        check_mask(name, "mask", mask)
        try:
            torch.broadcast_shapes(mask.shape, (*torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]), Tq, Tk))
        except RuntimeError:
            raise ValueError(
                f"{name}: expected a mask that broadcasts to (..., Tq, Tk) = (..., {Tq}, {Tk}), "
                f"got shape {tuple(mask.shape)}"
            ) from None
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale

    # S = Q K^T / sqrt(E)
    scores = (q * scale) @ k.transpose(-2, -1)  # (..., Tq, Tk)
    if mask is not None:
        # S + M: M is 0 where allowed and -inf where blocked (or any float bias)
        scores = scores + additive_mask(mask, q.dtype)
    if causal:
        scores = scores.masked_fill(causal_mask(Tq, Tk, device=q.device), float("-inf"))
    # A = softmax(S), row by row
    weights = _masked_softmax(scores) if (mask is not None or causal) else torch.softmax(scores, dim=-1)
    dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    # output = A V
    return dropped @ v, weights


# ---------------------------------------------------------------------------------------------
# Multi-head attention: torch.nn.MultiheadAttention compatible.
# ---------------------------------------------------------------------------------------------


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    B, T, D = x.shape
    return x.view(B, T, heads, D // heads).transpose(1, 2)  # (B, H, T, E)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    B, H, T, E = x.shape
    return x.transpose(1, 2).reshape(B, T, H * E)  # (B, T, D)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, D) -> (B, H, T, D / H): the model width cut into ``heads`` slices, heads before time.

    >>> split_heads(torch.zeros(2, 5, 8), 4).shape
    torch.Size([2, 4, 5, 2])
    """
    return _split_heads(x, heads)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, E) -> (B, T, H * E): the inverse of :func:`split_heads`.

    >>> x = torch.arange(16.0).view(1, 2, 8)
    >>> torch.equal(merge_heads(split_heads(x, 4)), x)
    True
    """
    return _merge_heads(x)


def xavier_init(module: nn.Module, weights: list[str]) -> None:
    """torch.nn.MultiheadAttention's initialisation: Xavier-uniform projections, zero biases.

    ``module`` has the named ``weights``, an ``in_proj_bias`` (or None) and an ``out_proj`` Linear.

    >>> m = MultiHeadAttention(8, 2)
    >>> xavier_init(m, ["in_proj_weight"])
    >>> bool(m.in_proj_bias.eq(0).all())
    True
    """
    for name in weights:
        nn.init.xavier_uniform_(getattr(module, name))
    if module.in_proj_bias is not None:
        nn.init.zeros_(module.in_proj_bias)
        nn.init.zeros_(module.out_proj.bias)


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017, section 3.2.2), ``torch.nn.MultiheadAttention`` compatible.

    head_h = Attention(Q W_h^Q, K W_h^K, V W_h^V); output = concat(head_1, ..., head_H) W^O.

    Parameters under torch's names: ``in_proj_weight`` (3D, D) (W^Q, W^K, W^V stacked) when ``kdim`` and ``vdim``
    equal ``embed_dim``, else ``q_proj_weight`` (D, D), ``k_proj_weight`` (D, kdim), ``v_proj_weight`` (D, vdim);
    ``in_proj_bias`` (3D,); ``out_proj`` (a Linear D -> D); ``bias_k`` and ``bias_v`` (1, 1, D) with
    ``add_bias_kv``. So ``m.load_state_dict(torch_module.state_dict())`` works, and the outputs match.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (output, weights or None)``, as in torch: query (Tq, B, D),
    key (Tk, B, kdim), value (Tk, B, vdim), or batch first (B, T, .) with ``batch_first``, or unbatched (T, .);
    ``key_padding_mask`` (B, Tk); ``attn_mask`` (Tq, Tk) or (B*H, Tq, Tk); boolean (True = blocked) or float
    (added). Weights (B, Tq, Tk) averaged over heads, or (B, H, Tq, Tk) with ``average_attn_weights=False``.

    Differences from torch: ``is_causal=True`` without ``attn_mask`` applies the causal mask (torch requires the
    mask too; given both, the mask is used, as torch does); a query with every key blocked gets zero weights and
    output (torch's weights path gives NaN); the returned weights are taken before dropout (torch returns them
    after), so they sum to 1 in training too. Traced as ``attention.weights`` (B, H, Tq, Tk).

    >>> mha = MultiHeadAttention(8, 2, batch_first=True)
    >>> x = torch.zeros(3, 5, 8)
    >>> out, weights = mha(x, x, x)
    >>> out.shape, weights.shape  # weights averaged over the heads
    (torch.Size([3, 5, 8]), torch.Size([3, 5, 5]))
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        *,
        device=None,
        dtype=None,
    ):
        super().__init__()
        name = type(self).__name__
        check_heads(name, embed_dim, num_heads, dropout)
        factory = {"device": device, "dtype": dtype}
        self.embed_dim, self.num_heads, self.batch_first = embed_dim, num_heads, batch_first
        self.dropout = float(dropout)
        self.kdim = embed_dim if kdim is None else check_length(name, "kdim", kdim)
        self.vdim = embed_dim if vdim is None else check_length(name, "vdim", vdim)
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.head_dim = embed_dim // num_heads
        # Registration order as in torch, so that one seed gives the same initial weights.
        if self._qkv_same_embed_dim:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim, **factory))
            for unused in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(unused, None)
        else:
            self.q_proj_weight = nn.Parameter(torch.empty(embed_dim, embed_dim, **factory))
            self.k_proj_weight = nn.Parameter(torch.empty(embed_dim, self.kdim, **factory))
            self.v_proj_weight = nn.Parameter(torch.empty(embed_dim, self.vdim, **factory))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, embed_dim, **factory))
            self.bias_v = nn.Parameter(torch.empty(1, 1, embed_dim, **factory))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        names = ["in_proj_weight"] if self._qkv_same_embed_dim else ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
        xavier_init(self, names)
        if self.bias_k is not None:
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)

    def extra_repr(self) -> str:
        s = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
        if not self._qkv_same_embed_dim:
            s += f", kdim={self.kdim}, vdim={self.vdim}"
        return s + (", batch_first=True" if self.batch_first else "")

    def _projections(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._qkv_same_embed_dim:
            return self.in_proj_weight.chunk(3)  # W^Q, W^K, W^V: (D, D) each
        return self.q_proj_weight, self.k_proj_weight, self.v_proj_weight

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        name = type(self).__name__
        dtype = self.out_proj.weight.dtype
        layout = "(B, T, features)" if self.batch_first else "(T, B, features)"
        shapes = f"{layout} or unbatched (T, features)"
        for label, x in (("query", query), ("key", key), ("value", value)):
            check_tensor(name, label, x, shapes)
            if x.dtype != dtype:
                raise TypeError(f"{name}: expected {label} of dtype {dtype} (the weights' dtype), got {x.dtype}")
        if query.dim() not in (2, 3) or key.dim() != query.dim() or value.dim() != query.dim():
            got = ", ".join(str(tuple(x.shape)) for x in (query, key, value))
            raise ValueError(f"{name}: expected query, key and value all of shape {shapes}, got {got}")
        batched = query.dim() == 3
        if batched and not self.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))  # (B, T, .)
        elif not batched:
            query, key, value = query[None], key[None], value[None]  # (1, T, .)
        for label, x, size in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if x.shape[-1] != size:
                raise ValueError(f"{name}: expected {label} with {size} features, got {x.shape[-1]}")
        if not query.shape[0] == key.shape[0] == value.shape[0]:
            got = f"{query.shape[0]}, {key.shape[0]}, {value.shape[0]}"
            raise ValueError(f"{name}: expected query, key and value with one batch size, got {got}")
        if key.shape[1] != value.shape[1]:
            got = f"{key.shape[1]} and {value.shape[1]}"
            raise ValueError(f"{name}: expected key and value of one length Tk, got {got}")
        B, Tq, Tk, H = query.shape[0], query.shape[1], key.shape[1], self.num_heads
        mask = self._merged_mask(key_padding_mask, attn_mask, is_causal, batched, B, Tq, Tk, query)

        w_q, w_k, w_v = self._projections()
        b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
        # Q W^Q, K W^K, V W^V for every head at once
        q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)  # (B, T, D)
        if self.bias_k is not None:  # one more key and value, learned, that every query may attend to
            k = torch.cat([k, self.bias_k.expand(B, 1, -1)], dim=1)  # (B, Tk + 1, D)
            v = torch.cat([v, self.bias_v.expand(B, 1, -1)], dim=1)
            mask = None if mask is None else F.pad(mask, (0, 1))
        q, k, v = _split_heads(q, H), _split_heads(k, H), _split_heads(v, H)  # (B, H, T, E)
        if self.add_zero_attn:  # and a zero key and value per head
            k = torch.cat([k, k.new_zeros(B, H, 1, self.head_dim)], dim=2)
            v = torch.cat([v, v.new_zeros(B, H, 1, self.head_dim)], dim=2)
            mask = None if mask is None else F.pad(mask, (0, 1))
        dropout_p = self.dropout if self.training else 0.0

        if not capability.use_fused("attention", q, type(self).__name__, need_weights or use_reference()):
            out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p=dropout_p)  # (B, H, Tq, E)
            record("attention.weights", weights)
        else:
            fused_causal = is_causal and mask is None
            if fused_causal:
                mask = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=fused_causal)
            weights = None
        # concat(head_1, ..., head_H) W^O
        out = self.out_proj(_merge_heads(out))  # (B, Tq, D)

        if batched and not self.batch_first:
            out = out.transpose(0, 1)  # (Tq, B, D)
        elif not batched:
            out = out[0]  # (Tq, D)
        if not need_weights:
            return out, None
        weights = weights.mean(dim=1) if average_attn_weights else weights  # (B, Tq, Tk) or (B, H, Tq, Tk)
        return out, weights if batched else weights[0]

    def _merged_mask(
        self,
        key_padding_mask: torch.Tensor | None,
        attn_mask: torch.Tensor | None,
        is_causal: bool,
        batched: bool,
        B: int,
        Tq: int,
        Tk: int,
        like: torch.Tensor,
    ) -> torch.Tensor | None:
        """Every mask as one float mask, broadcastable to (B, H, Tq, Tk), or None."""
        name, H = type(self).__name__, self.num_heads
        mask = None
        if attn_mask is None and is_causal:
            attn_mask = causal_mask(Tq, Tk, device=like.device)
        if attn_mask is not None:
            check_mask(name, "attn_mask", attn_mask)
            heads = (B * H, Tq, Tk) if batched else (H, Tq, Tk)
            if tuple(attn_mask.shape) == (Tq, Tk):
                mask = additive_mask(attn_mask, like.dtype)[None, None]  # (1, 1, Tq, Tk)
            elif tuple(attn_mask.shape) == heads:
                mask = additive_mask(attn_mask, like.dtype).view(B, H, Tq, Tk)
            else:
                raise ValueError(
                    f"{name}: expected attn_mask of shape {(Tq, Tk)} or {heads}, got {tuple(attn_mask.shape)}"
                )
        if key_padding_mask is not None:
            check_mask(name, "key_padding_mask", key_padding_mask)
            want = (B, Tk) if batched else (Tk,)
            if tuple(key_padding_mask.shape) != want:
                got = tuple(key_padding_mask.shape)
                raise ValueError(f"{name}: expected key_padding_mask of shape {want}, got {got}")
            padding = additive_mask(key_padding_mask, like.dtype).view(B, 1, 1, Tk)
            mask = padding if mask is None else mask + padding  # (B, H or 1, Tq or 1, Tk)
        return mask


# ---------------------------------------------------------------------------------------------
# Attention for encoder-decoder RNNs: additive (Bahdanau) and multiplicative (Luong), global and local.
# ---------------------------------------------------------------------------------------------


def _check_memory_inputs(
    name: str,
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None,
    query_dim: int,
    key_dim: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
    """Validate; return (query (B, Tq, Dq), values (B, Tk, Dv), float padding mask (B, 1, Tk) or None, single)."""
    check_tensor(name, "query", query, "(B, Tq, Dq) or (B, Dq)")
    check_tensor(name, "keys", keys, "(B, Tk, Dk)")
    values = keys if values is None else check_tensor(name, "values", values, "(B, Tk, Dv)")
    if query.dim() not in (2, 3):
        raise ValueError(f"{name}: expected query of shape (B, Tq, Dq) or (B, Dq), got {tuple(query.shape)}")
    if keys.dim() != 3 or values.dim() != 3:
        raise ValueError(
            f"{name}: expected keys and values of shape (B, Tk, .), got {tuple(keys.shape)} and {tuple(values.shape)}"
        )
    if query.shape[-1] != query_dim:
        raise ValueError(f"{name}: expected query with {query_dim} features, got {query.shape[-1]}")
    if keys.shape[-1] != key_dim:
        raise ValueError(f"{name}: expected keys with {key_dim} features, got {keys.shape[-1]}")
    if not query.shape[0] == keys.shape[0] == values.shape[0] or keys.shape[1] != values.shape[1]:
        raise ValueError(
            f"{name}: expected query (B, ...), keys (B, Tk, .) and values (B, Tk, .) to agree, got "
            f"{tuple(query.shape)}, {tuple(keys.shape)}, {tuple(values.shape)}"
        )
    single = query.dim() == 2
    query = query[:, None] if single else query  # (B, Tq, Dq)
    mask = None
    if key_padding_mask is not None:
        check_mask(name, "key_padding_mask", key_padding_mask)
        want, got = tuple(keys.shape[:2]), tuple(key_padding_mask.shape)
        if got != want:
            raise ValueError(f"{name}: expected key_padding_mask of shape {want}, got {got}")
        mask = additive_mask(key_padding_mask, query.dtype)[:, None]  # (B, 1, Tk)
    return query, values, mask, single


class AdditiveAttention(nn.Module):
    """Additive attention (Bahdanau, Cho & Bengio 2015, section 3.1 and appendix A.1.2).

    e_ij = v^T tanh(W_q s_i + W_k h_j), alpha_ij = softmax_j(e_ij), c_i = sum_j alpha_ij h_j.

    Parameters: ``w_q`` (Linear Dq -> A), ``w_k`` (Linear Dk -> A), no biases, as in the paper; ``v`` (A,).
    ``forward(query (B, Tq, Dq) or (B, Dq), keys (B, Tk, Dk), values (B, Tk, Dv) = keys,
    key_padding_mask (B, Tk) = None) -> (context (B, Tq, Dv) or (B, Dv), weights (B, Tq, Tk) or (B, Tk))``.
    Traced as ``additive.weights``.

    >>> attn = AdditiveAttention(query_dim=6, key_dim=4, hidden_size=8)
    >>> context, weights = attn(torch.zeros(2, 6), torch.zeros(2, 5, 4))
    >>> context.shape, weights.shape
    (torch.Size([2, 4]), torch.Size([2, 5]))
    >>> bool(torch.allclose(weights.sum(-1), torch.ones(2)))
    True
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_size: int, *, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        for label, size in (("query_dim", query_dim), ("key_dim", key_dim), ("hidden_size", hidden_size)):
            check_length(name, label, size)
        factory = {"device": device, "dtype": dtype}
        self.query_dim, self.key_dim, self.hidden_size = query_dim, key_dim, hidden_size
        self.w_q = nn.Linear(query_dim, hidden_size, bias=False, **factory)
        self.w_k = nn.Linear(key_dim, hidden_size, bias=False, **factory)
        self.v = nn.Parameter(torch.empty(hidden_size, **factory))
        nn.init.uniform_(self.v, -1 / math.sqrt(hidden_size), 1 / math.sqrt(hidden_size))

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        query, values, mask, single = _check_memory_inputs(
            type(self).__name__, query, keys, values, key_padding_mask, self.query_dim, self.key_dim
        )
        # e_ij = v^T tanh(W_q s_i + W_k h_j)
        hidden = torch.tanh(self.w_q(query)[:, :, None] + self.w_k(keys)[:, None])  # (B, Tq, Tk, A)
        scores = hidden @ self.v  # (B, Tq, Tk)
        if mask is not None:
            scores = scores + mask
        # alpha_ij = exp(e_ij) / sum_k exp(e_ik)
        weights = _masked_softmax(scores)  # (B, Tq, Tk)
        # c_i = sum_j alpha_ij h_j
        context = weights @ values  # (B, Tq, Dv)
        if single:
            context, weights = context[:, 0], weights[:, 0]
        record("additive.weights", weights)
        return context, weights


_SCORES = ("dot", "general")


class LuongAttention(nn.Module):
    """Global multiplicative attention (Luong, Pham & Manning 2015, section 3.1).

    score(h_t, h_s) = h_t^T h_s (``"dot"``) or h_t^T W_a h_s (``"general"``); a_t = softmax_s(score);
    c_t = sum_s a_t(s) h_s. (Luong's "concat" score is additive attention: :class:`AdditiveAttention`.)

    Parameters: ``W_a`` (Linear Dk -> Dq, no bias) for ``"general"``; none for ``"dot"`` (needs Dq = Dk).
    ``forward(query (B, Tq, Dq) or (B, Dq), keys (B, Tk, Dk), values = keys, key_padding_mask (B, Tk) = None)
    -> (context, weights)`` shaped as :class:`AdditiveAttention`'s. Traced as ``luong.weights``.

    >>> context, weights = LuongAttention(4, 4, score="dot")(torch.zeros(2, 4), torch.zeros(2, 5, 4))
    >>> context.shape, weights.shape
    (torch.Size([2, 4]), torch.Size([2, 5]))
    """

    def __init__(self, query_dim: int, key_dim: int, score: str = "general", *, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        check_length(name, "query_dim", query_dim)
        check_length(name, "key_dim", key_dim)
        if score not in _SCORES:
            raise ValueError(f"{name}: expected score in {_SCORES}, got {score!r}")
        if score == "dot" and query_dim != key_dim:
            raise ValueError(f"{name}: the 'dot' score needs query_dim == key_dim, got {query_dim} and {key_dim}")
        self.query_dim, self.key_dim, self.score = query_dim, key_dim, score
        if score == "general":
            self.W_a = nn.Linear(key_dim, query_dim, bias=False, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, score={self.score!r}"

    def _scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        # score(h_t, h_s) = h_t^T W_a h_s  (or h_t^T h_s)
        projected = self.W_a(keys) if self.score == "general" else keys  # (B, Tk, Dq)
        return query @ projected.transpose(1, 2)  # (B, Tq, Tk)

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        query, values, mask, single = _check_memory_inputs(
            type(self).__name__, query, keys, values, key_padding_mask, self.query_dim, self.key_dim
        )
        scores = self._scores(query, keys)
        if mask is not None:
            scores = scores + mask
        # a_t(s) = exp(score(h_t, h_s)) / sum_s' exp(score(h_t, h_s'))
        weights = _masked_softmax(scores)  # (B, Tq, Tk)
        # c_t = sum_s a_t(s) h_s
        context = weights @ values  # (B, Tq, Dv)
        if single:
            context, weights = context[:, 0], weights[:, 0]
        record("luong.weights", weights)
        return context, weights


_LOCAL_MODES = ("local-m", "local-p")


class LocalAttention(LuongAttention):
    """Local attention (Luong, Pham & Manning 2015, section 3.2): attend to the window [p_t - D, p_t + D].

    - ``"local-m"`` (monotonic): p_t = t, given as ``positions``; a_t = softmax of the scores inside the window.
    - ``"local-p"`` (predictive): p_t = S * sigmoid(v_p^T tanh(W_p h_t)) (eq. 9), S the source length (each
      sequence's own, from ``key_padding_mask``); a_t(s) = align(h_t, h_s) exp(-(s - p_t)^2 / (2 sigma^2)) with
      sigma = D / 2 (eq. 10), align the softmax inside the window. These weights sum to less than 1, as in the paper.

    Source positions ``s`` count from 0. Parameters: ``W_a`` (for ``score="general"``), ``W_p`` (Linear Dq -> Dq,
    no bias) and ``v_p`` (Dq,) for ``"local-p"``. ``forward(query, keys, values=None, positions=None,
    key_padding_mask=None) -> (context, weights)`` as :class:`LuongAttention`; ``positions`` (B, Tq) or (B,)
    (for a (B, Dq) query) are local-m's p_t, by default 0, 1, ..., Tq - 1; local-p ignores them. A window that holds
    no valid key gives zero weights. Scores are computed for all S positions and masked outside the window: the
    window limits what is attended, not the memory used. Traced as ``luong.weights`` and ``luong.position`` (p_t).

    >>> attn = LocalAttention(4, 4, window=1, mode="local-m")
    >>> context, weights = attn(torch.zeros(2, 4), torch.zeros(2, 6, 4), positions=torch.tensor([0, 3]))
    >>> context.shape, weights.shape
    (torch.Size([2, 4]), torch.Size([2, 6]))
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        window: int,
        mode: str = "local-p",
        score: str = "general",
        *,
        device=None,
        dtype=None,
    ):
        super().__init__(query_dim, key_dim, score, device=device, dtype=dtype)
        name = type(self).__name__
        self.window = check_length(name, "window", window)
        if mode not in _LOCAL_MODES:
            raise ValueError(f"{name}: expected mode in {_LOCAL_MODES}, got {mode!r}")
        self.mode = mode
        if mode == "local-p":
            self.W_p = nn.Linear(query_dim, query_dim, bias=False, device=device, dtype=dtype)
            self.v_p = nn.Parameter(torch.empty(query_dim, device=device, dtype=dtype))
            nn.init.uniform_(self.v_p, -1 / math.sqrt(query_dim), 1 / math.sqrt(query_dim))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", window={self.window}, mode={self.mode!r}"

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        name = type(self).__name__
        query, values, mask, single = _check_memory_inputs(
            name, query, keys, values, key_padding_mask, self.query_dim, self.key_dim
        )
        B, Tq, S = query.shape[0], query.shape[1], keys.shape[1]
        s = torch.arange(S, device=query.device, dtype=query.dtype)  # source positions (S,)
        if self.mode == "local-m":
            if positions is None:
                p = torch.arange(Tq, device=query.device, dtype=query.dtype).expand(B, Tq)
            else:
                want = (B,) if single else (B, Tq)
                if not isinstance(positions, torch.Tensor) or tuple(positions.shape) != want:
                    got = tuple(positions.shape) if isinstance(positions, torch.Tensor) else type(positions).__name__
                    raise ValueError(f"{name}: expected positions of shape {want}, got {got}")
                p = positions.to(query.dtype).reshape(B, Tq)
        else:
            # S_b: each sequence's own length (keys not masked as padding)
            lengths = torch.isfinite(mask).sum(-1).to(query.dtype) if mask is not None else S  # (B, 1) or S
            # p_t = S * sigmoid(v_p^T tanh(W_p h_t))   (eq. 9)
            p = lengths * torch.sigmoid(torch.tanh(self.W_p(query)) @ self.v_p)  # (B, Tq)
        distance = s - p[..., None]  # (B, Tq, S): s - p_t
        outside = distance.abs() > self.window  # keys outside [p_t - D, p_t + D]
        scores = self._scores(query, keys).masked_fill(outside, float("-inf"))
        if mask is not None:
            scores = scores + mask
        # align(h_t, h_s): softmax over the window
        weights = _masked_softmax(scores)  # (B, Tq, S)
        if self.mode == "local-p":
            sigma = self.window / 2
            # a_t(s) = align(h_t, h_s) exp(-(s - p_t)^2 / (2 sigma^2))   (eq. 10)
            weights = weights * torch.exp(-(distance**2) / (2 * sigma**2))
        context = weights @ values  # (B, Tq, Dv)
        if single:
            context, weights, p = context[:, 0], weights[:, 0], p[:, 0]
        record("luong.weights", weights)
        record("luong.position", p)
        return context, weights
