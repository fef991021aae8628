"""Efficient attention: sliding window with global tokens (Longformer), block sparse (BigBird), low rank (Linformer).

Shapes: ``B`` batch, ``H`` heads, ``T`` sequence length, ``Tq`` queries, ``Tk`` keys, ``D`` model width
(``embed_dim``), ``E`` head width (``D / H``), ``w`` window radius (``2w + 1`` keys per query), ``G`` global tokens,
``b`` block size, ``nb`` blocks (``T / b``), ``Kb`` key blocks per query block, ``n`` Linformer's ``seq_len``,
``k`` its projected length.

Each module holds :class:`memlib.attention.MultiHeadAttention`'s parameters (``in_proj_weight`` (3D, D),
``in_proj_bias``, ``out_proj``: a MultiHeadAttention state dict loads into it, with ``strict=False`` for Linformer's
extra ``E`` and ``F``) and takes its call:
``attn(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, average_attn_weights=True,
is_causal=False) -> (output, weights or None)``, with (T, B, D) inputs, or (B, T, D) with ``batch_first``, and a
boolean (True = padding) or float ``key_padding_mask`` (B, Tk). ``attn_mask`` and ``is_causal`` are accepted so that
a module can replace ``self_attn`` in :class:`~memlib.transformer.TransformerEncoderLayer`, and must stay None and
False: the pattern is the mask. Only the pattern differs, and the weights come back in a
compact form (a NamedTuple with ``to_dense()`` for small inputs), averaged over heads unless
``average_attn_weights=False``. The sparse patterns are computed without an n x n matrix: the sliding window in
O(T w) memory, BigBird in O(T Kb b). ``mask(T)`` returns the pattern as a dense boolean mask (True = blocked) to
compare with full attention on small inputs.

Trace names (one value per call, per head):

- ``sliding_window.band`` (B, H, T, 2w + 1), ``sliding_window.global_columns`` (B, H, T, G),
  ``sliding_window.global_rows`` (B, H, G, T): :class:`SlidingWindowAttention`'s weights (see :class:`WindowWeights`).
- ``bigbird.blocks`` (B, H, nb, b, Kb * b), ``bigbird.key_blocks`` (nb, Kb), ``bigbird.global_rows`` (B, H, g b, T):
  :class:`BigBirdAttention`'s (see :class:`BlockWeights`).
- ``linformer.weights`` (B, H, Tq, k) and ``linformer.keys`` (B, H, k, E), the projected keys:
  :class:`LinformerAttention` (``dense_weights`` maps the weights back to the Tk positions: rank at most k, no zeros).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from memlib import capability
from memlib.attention import (
    additive_mask,
    masked_softmax,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
    window_mask,
    xavier_init,
)
from memlib.tracing import record, tracing, use_reference
from memlib.validate import check_heads, check_length, check_mask, check_tensor, is_int

# ---------------------------------------------------------------------------------------------
# Shared: MultiHeadAttention's projections, call convention and checks.
# ---------------------------------------------------------------------------------------------


class _ProjectedAttention(nn.Module):
    """``in_proj_weight`` (3D, D), ``in_proj_bias`` (3D,), ``out_proj``: as ``nn.MultiheadAttention`` with
    kdim = vdim = embed_dim, initialised the same way."""

    def __init__(
        self, embed_dim: int, num_heads: int, dropout: float, bias: bool, batch_first: bool, device, dtype
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_heads(name, embed_dim, num_heads, dropout)
        factory = {"device": device, "dtype": dtype}
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.batch_first = float(dropout), batch_first
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim, **factory))
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        xavier_init(self, ["in_proj_weight"])

    def _inputs(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
        attn_mask: torch.Tensor | None,
        is_causal: bool,
        same_length: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Validate; return q (B, H, Tq, E), k and v (B, H, Tk, E), and the float padding mask (B, Tk) or None."""
        name = type(self).__name__
        if attn_mask is not None or is_causal:
            got = f"attn_mask of shape {tuple(attn_mask.shape)}" if attn_mask is not None else "is_causal=True"
            raise ValueError(
                f"{name}: expected attn_mask=None and is_causal=False (the module's pattern is its mask; for full "
                f"attention under the same pattern pass mask(T) to MultiHeadAttention), got {got}"
            )
        layout = "(B, T, D)" if self.batch_first else "(T, B, D)"
        dtype = self.in_proj_weight.dtype
        for label, x in (("query", query), ("key", key), ("value", value)):
            check_tensor(name, label, x, layout)
            if x.dim() != 3:
                raise ValueError(f"{name}: expected {label} of shape {layout}, got {tuple(x.shape)}")
            if x.shape[-1] != self.embed_dim:
                raise ValueError(
                    f"{name}: expected {label} with embed_dim = {self.embed_dim} features, got {x.shape[-1]}"
                )
            if x.dtype != dtype:
                raise TypeError(f"{name}: expected {label} of dtype {dtype} (the weights' dtype), got {x.dtype}")
        if not self.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))  # (B, T, D)
        if not query.shape[0] == key.shape[0] == value.shape[0] or key.shape[1] != value.shape[1]:
            got = ", ".join(str(tuple(x.shape)) for x in (query, key, value))
            raise ValueError(
                f"{name}: expected query, key and value with one batch size, key and value of one length,"
                f" got (batch first) {got}"
            )
        if same_length and query.shape[1] != key.shape[1]:
            raise ValueError(
                f"{name}: expected queries and keys of one length (the pattern is over positions), "
                f"got Tq = {query.shape[1]} and Tk = {key.shape[1]}"
            )
        pad = None
        if key_padding_mask is not None:
            check_mask(name, "key_padding_mask", key_padding_mask)
            want, got = (key.shape[0], key.shape[1]), tuple(key_padding_mask.shape)
            if got != want:
                raise ValueError(f"{name}: expected key_padding_mask of shape (B, Tk) = {want}, got {got}")
            pad = additive_mask(key_padding_mask, dtype)  # (B, Tk)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        H = self.num_heads
        q = split_heads(F.linear(query, w_q, b_q), H)  # (B, H, Tq, E)
        k = split_heads(F.linear(key, w_k, b_k), H)  # (B, H, Tk, E)
        v = split_heads(F.linear(value, w_v, b_v), H)  # (B, H, Tk, E)
        return q, k, v, pad

    def _output(self, out: torch.Tensor) -> torch.Tensor:
        out = self.out_proj(merge_heads(out))  # (B, Tq, D)
        return out if self.batch_first else out.transpose(0, 1)

    def _dropout(self, weights: torch.Tensor) -> torch.Tensor:
        return F.dropout(weights, self.dropout) if (self.training and self.dropout > 0) else weights


def _average(weights: torch.Tensor, average: bool) -> torch.Tensor:
    return weights.mean(dim=1) if average else weights


def _lean_softmax(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over the last dim of a fresh ``scores`` tensor (overwritten), keeping one weights-sized tensor alive.

    Returns ``(weights, blocked)``: ``blocked`` (..., 1) marks rows whose every score is -inf. Those rows are set to
    0 before the softmax, so their weights come out uniform rather than NaN; the caller zeroes their outputs
    (:func:`_zero_blocked`) and, where the weights are shown, their weights. That is
    :func:`memlib.attention.masked_softmax` without its two extra copies of the weights (a masked copy of the
    scores and a masked copy of the softmax, which would stay alive beside the one the softmax saves for backward).
    """
    blocked = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., 1): nothing to attend to
    return torch.softmax(scores.masked_fill_(blocked, 0.0), dim=-1), blocked


def _zero_blocked(x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
    """Zero the rows of ``x`` (outputs or weights) whose query had nothing to attend to: their gradients vanish too."""
    return x.masked_fill(blocked, 0.0)


# ---------------------------------------------------------------------------------------------
# Longformer: a sliding window plus global tokens.
# ---------------------------------------------------------------------------------------------


class WindowWeights(NamedTuple):
    """Sliding-window weights in compact form; leading dims (B, H), or (B,) when averaged over heads.

    ``band`` (..., T, 2w + 1): query i's weight on key i + o, o = -w..w (0 off the sequence and at global keys,
    which have their own column); ``global_columns`` (..., T, G): every query's weight on each global key;
    ``global_rows`` (..., G, T): the global queries' weights on every key (these rows replace the other two);
    ``global_tokens`` (G,): the global positions.

    >>> attn = SlidingWindowAttention(8, 2, window=1, batch_first=True)
    >>> x = torch.zeros(1, 5, 8)
    >>> weights = attn(x, x, x)[1]
    >>> weights.to_dense().shape, bool(torch.allclose(weights.to_dense().sum(-1), torch.ones(1, 5)))
    (torch.Size([1, 5, 5]), True)
    """

    band: torch.Tensor
    global_columns: torch.Tensor
    global_rows: torch.Tensor
    global_tokens: torch.Tensor

    def to_dense(self) -> torch.Tensor:
        """The weights as a (..., T, T) matrix (materialises T x T: for small inputs, tests and plots)."""
        band, g = self.band, self.global_tokens
        T, w = band.shape[-2], (band.shape[-1] - 1) // 2
        i = torch.arange(T, device=band.device)[:, None]
        j = i + torch.arange(-w, w + 1, device=band.device)  # (T, 2w + 1): the key of each band entry
        on_sequence = (j >= 0) & (j < T)
        dense = band.new_zeros(*band.shape[:-1], T)  # (..., T, T)
        dense.scatter_add_(-1, j.clamp(0, T - 1).expand_as(band), band * on_sequence)
        dense.index_add_(-1, g, self.global_columns)
        return dense.index_copy(-2, g, self.global_rows)


class SlidingWindowAttention(_ProjectedAttention):
    """Longformer attention (Beltagy, Peters & Cohan 2020, section 3.1): a sliding window plus global tokens.

    Query i attends to keys ``|i - j|`` <= ``window`` (2 * window + 1 keys; the paper's window size w is this full
    width); a global token attends to every key, and every query attends to it. One set of projections serves both
    (the paper learns separate ones for global attention, initialised equal to these). Self-attention: Tq = Tk = T.

    Computed in O(T w) memory, in chunks of ``window`` queries: each chunk's queries meet its 3 * window keys in one
    matrix product, and the band is cut out of it with a shift (pad and view), so the largest tensors are about
    1.5 times the band's weights (B, H, T, 2w + 1); the global columns and rows are G x T. A training step's peak
    is about 6 times the band's weights (the projections included; 52 times with the band unfolded per query, as
    this class did before). Weights: :class:`WindowWeights`. Traced as ``sliding_window.band``,
    ``sliding_window.global_columns``, ``sliding_window.global_rows``.

    >>> attn = SlidingWindowAttention(8, 2, window=1, global_tokens=[0], batch_first=True)
    >>> x = torch.zeros(2, 6, 8)
    >>> out, weights = attn(x, x, x, need_weights=False)
    >>> out.shape
    torch.Size([2, 6, 8])
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        window: int,
        global_tokens: Sequence[int] = (),
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        *,
        device=None,
        dtype=None,
    ):
        super().__init__(embed_dim, num_heads, dropout, bias, batch_first, device, dtype)
        name = type(self).__name__
        self.window = check_length(name, "window", window)
        tokens = list(global_tokens)
        if any(not is_int(t) or t < 0 for t in tokens):
            raise ValueError(f"{name}: expected global_tokens as non-negative integer positions, got {tokens}")
        self.global_tokens = tuple(sorted({int(t) for t in tokens}))

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, window={self.window}, " + (
            f"global_tokens={self.global_tokens}"
        )

    def _global_index(self, T: int, device) -> torch.Tensor:
        if self.global_tokens and self.global_tokens[-1] >= T:
            raise ValueError(f"{type(self).__name__}: expected global_tokens < T = {T}, got {list(self.global_tokens)}")
        return torch.tensor(self.global_tokens, dtype=torch.long, device=device)  # (G,)

    def mask(self, T: int, device=None) -> torch.Tensor:
        """The pattern as a (T, T) boolean mask, True = blocked: outside the band, unless a global token is involved."""
        is_global = torch.zeros(T, dtype=torch.bool, device=device)
        is_global[self._global_index(T, device)] = True
        return window_mask(T, window=self.window, device=device) & ~is_global[:, None] & ~is_global[None, :]

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
    ) -> tuple[torch.Tensor, WindowWeights | None]:
        q, k, v, pad = self._inputs(query, key, value, key_padding_mask, attn_mask, is_causal, same_length=True)
        B, H, T, E = q.shape
        w, width = self.window, 2 * self.window + 1
        g = self._global_index(T, q.device)  # (G,)
        key_mask = q.new_zeros(B, T) if pad is None else pad  # (B, T): 0 or -inf per key
        is_global = torch.zeros(T, dtype=torch.bool, device=q.device)
        is_global[g] = True
        q = q * (1.0 / math.sqrt(E))  # scaled once here rather than on every score

        # Chunks of c queries; chunk n's queries n c .. n c + c - 1 see keys n c - w .. n c + c - 1 + w, L of them.
        # One (c, L) product per chunk computes the band with (c + 2w) / (2w + 1) of its work, and nothing of T x T.
        c = min(w, T)
        nc = -(-T // c)
        Tp, L = nc * c, c + 2 * w  # queries padded to whole chunks; keys per chunk
        q_chunks = F.pad(q, (0, 0, 0, Tp - T)).view(B, H, nc, c, E)  # (B, H, nc, c, E)
        k_chunks = F.pad(k, (0, 0, w, w + Tp - T)).unfold(2, L, c)  # (B, H, nc, E, L): a view
        v_chunks = F.pad(v, (0, 0, w, w + Tp - T)).unfold(2, L, c).transpose(-2, -1)  # (B, H, nc, L, E): a view
        # s_ij = q_i . k_j / sqrt(E) for the chunk's queries i and keys j, (c, L) a chunk. The band: row i of a chunk
        # needs columns i .. i + 2w. Padding each flattened chunk by c and reading it as (c, L + 1) shifts row i
        # left by i, so its band lands in columns 0 .. 2w (a view of the padded copy).
        band_scores = F.pad((q_chunks @ k_chunks).flatten(-2), (0, c)).view(B, H, nc, c, L + 1)[..., :width]
        # s_ig = q_i . k_g / sqrt(E) for the global keys g, beside the band: one softmax over both
        global_scores = q_chunks @ k[:, :, None, g].transpose(-2, -1)  # (B, H, nc, c, G)
        scores = torch.cat([band_scores, global_scores], dim=-1).view(B, H, Tp, width + g.numel())
        del band_scores  # the padded copy it views: one band-sized tensor fewer at the peak
        # Blocked in the band: positions off the sequence, padding, and global keys (they have their own column).
        band_mask = F.pad(key_mask.masked_fill(is_global, float("-inf")), (w, w + Tp - T), value=float("-inf"))
        scores[..., :width] += band_mask.unfold(1, width, 1)[:, None]  # (B, 1, Tp, 2w + 1)
        scores[..., width:] += key_mask[:, None, None, g]  # (B, 1, 1, G)
        weights, blocked = _lean_softmax(scores)  # (B, H, Tp, 2w + 1 + G), (B, H, Tp, 1)
        band, columns = weights.split([width, g.numel()], dim=-1)
        # Back to the chunks' (c, L) layout (the inverse shift) for one product with the chunk's values.
        spread = F.pad(self._dropout(band).reshape(B, H, nc, c, width), (0, L + 1 - width))  # (B, H, nc, c, L + 1)
        spread = spread.flatten(-2)[..., : c * L].view(B, H, nc, c, L)
        out = (spread @ v_chunks).view(B, H, Tp, E) + self._dropout(columns) @ v[:, :, g]  # (B, H, Tp, E)
        out = _zero_blocked(out, blocked)[:, :, :T]  # (B, H, T, E)

        # Global queries attend to every key: G full rows.
        row_scores = (q[:, :, g] @ k.transpose(-2, -1)) + key_mask[:, None, None, :]  # (B, H, G, T)
        rows = masked_softmax(row_scores)
        out = out.index_copy(2, g, self._dropout(rows) @ v)  # (B, H, T, E)

        if not (need_weights or tracing()):
            return self._output(out), None
        shown = _zero_blocked(weights[:, :, :T], blocked[:, :, :T])  # (B, H, T, 2w + 1 + G)
        band, columns = shown.split([width, g.numel()], dim=-1)
        record("sliding_window.band", band)
        record("sliding_window.global_columns", columns)
        record("sliding_window.global_rows", rows)
        if not need_weights:
            return self._output(out), None
        a = average_attn_weights
        return self._output(out), WindowWeights(_average(band, a), _average(columns, a), _average(rows, a), g)


# ---------------------------------------------------------------------------------------------
# BigBird: window, global and random blocks.
# ---------------------------------------------------------------------------------------------


class BlockWeights(NamedTuple):
    """BigBird weights in compact form; leading dims (B, H), or (B,) when averaged over heads.

    ``blocks`` (..., nb, b, Kb * b): query block n's weights on the keys of its key blocks ``key_blocks[n]``, block
    after block; ``key_blocks`` (nb, Kb): the key block indices, -1 where unused (zero weight); ``global_rows``
    (..., g b, T): the global queries' weights on every key (these rows replace the block rows).

    >>> attn = BigBirdAttention(8, 2, block_size=2, num_random_blocks=0, batch_first=True)
    >>> x = torch.zeros(1, 8, 8)
    >>> attn(x, x, x)[1].to_dense().shape
    torch.Size([1, 8, 8])
    """

    blocks: torch.Tensor
    key_blocks: torch.Tensor
    global_rows: torch.Tensor

    def to_dense(self) -> torch.Tensor:
        """The weights as a (..., T, T) matrix (materialises T x T: for small inputs, tests and plots)."""
        nb, b = self.blocks.shape[-3], self.blocks.shape[-2]
        Kb, T = self.key_blocks.shape[1], nb * self.blocks.shape[-2]
        used = self.key_blocks >= 0  # (nb, Kb)
        # column of entry (n, kk, c) = key_blocks[n, kk] * b + c
        offsets = torch.arange(b, device=self.blocks.device)
        columns = (self.key_blocks.clamp(min=0)[..., None] * b + offsets).reshape(nb, 1, Kb * b)  # (nb, 1, Kb b)
        weights = self.blocks * used.repeat_interleave(b, dim=1)[:, None, :]  # unused blocks hold 0 anyway
        dense = self.blocks.new_zeros(*self.blocks.shape[:-1], T)  # (..., nb, b, T)
        dense.scatter_add_(-1, columns.expand_as(weights), weights)
        dense = dense.flatten(-3, -2)  # (..., T, T)
        G = self.global_rows.shape[-2]
        return torch.cat([self.global_rows, dense[..., G:, :]], dim=-2)


class BigBirdAttention(_ProjectedAttention):
    """BigBird attention (Zaheer et al. 2020, section 2 and appendix D), block sparse, the ITC variant.

    The sequence is cut into blocks of ``block_size`` tokens (T must be a multiple). Query block n attends to
    ``num_window_blocks`` blocks around itself (odd: n - r .. n + r), the first ``num_global_blocks`` blocks
    (global: they also attend to every key) and ``num_random_blocks`` random other blocks. The random blocks are
    drawn from ``seed`` and the number of blocks, so a model sees one pattern per length (shared by the heads;
    the paper's code draws one per head). Self-attention: Tq = Tk = T.

    Computed in O(T Kb b) memory by gathering each query block's key blocks. Weights: :class:`BlockWeights`.
    Traced as ``bigbird.blocks``, ``bigbird.key_blocks``, ``bigbird.global_rows``.

    >>> attn = BigBirdAttention(8, 2, block_size=2, batch_first=True)
    >>> x = torch.zeros(1, 12, 8)
    >>> attn(x, x, x, need_weights=False)[0].shape
    torch.Size([1, 12, 8])
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        block_size: int,
        num_window_blocks: int = 3,
        num_global_blocks: int = 1,
        num_random_blocks: int = 1,
        seed: int = 0,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        *,
        device=None,
        dtype=None,
    ):
        super().__init__(embed_dim, num_heads, dropout, bias, batch_first, device, dtype)
        name = type(self).__name__
        self.block_size = check_length(name, "block_size", block_size)
        self.num_window_blocks = check_length(name, "num_window_blocks", num_window_blocks)
        if num_window_blocks % 2 != 1:
            got = num_window_blocks
            raise ValueError(f"{name}: expected an odd num_window_blocks (centred on the query), got {got}")
        self.num_global_blocks = check_length(name, "num_global_blocks", num_global_blocks, minimum=0)
        self.num_random_blocks = check_length(name, "num_random_blocks", num_random_blocks, minimum=0)
        self.seed = int(seed)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, block_size={self.block_size}, "
            f"num_window_blocks={self.num_window_blocks}, num_global_blocks={self.num_global_blocks}, "
            f"num_random_blocks={self.num_random_blocks}, seed={self.seed}"
        )

    def _num_blocks(self, T: int) -> int:
        if T % self.block_size:
            raise ValueError(
                f"{type(self).__name__}: expected a sequence length divisible by block_size = {self.block_size}, "
                f"got T = {T}"
            )
        return T // self.block_size

    def key_blocks(self, T: int, device=None) -> torch.Tensor:
        """(nb, Kb) key block indices of each query block, -1 where unused: window, then global, then random."""
        nb = self._num_blocks(T)
        r, g = self.num_window_blocks // 2, min(self.num_global_blocks, nb)
        n = torch.arange(nb)[:, None]  # (nb, 1): query block
        window = n + torch.arange(-r, r + 1)  # (nb, 2r + 1)
        window = window.masked_fill((window < 0) | (window >= nb), -1)
        glob = torch.arange(g).expand(nb, g)
        glob = glob.masked_fill((glob - n).abs() <= r, -1)  # already in the window
        # Random blocks: among those neither in the window nor global, without replacement.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + nb)
        draw = torch.rand(nb, nb, generator=generator)
        others = torch.arange(nb)[None, :]
        draw = draw.masked_fill(((others - n).abs() <= r) | (others < g), math.inf)
        values, chosen = draw.topk(min(self.num_random_blocks, nb), dim=1, largest=False)
        chosen = chosen.masked_fill(torch.isinf(values), -1)
        return torch.cat([window, glob, chosen], dim=1).to(device)  # (nb, Kb)

    def mask(self, T: int, device=None) -> torch.Tensor:
        """The pattern as a (T, T) boolean mask, True = blocked."""
        nb, b = self._num_blocks(T), self.block_size
        blocks = self.key_blocks(T)
        allowed = torch.zeros(nb, nb + 1, dtype=torch.bool)  # column nb collects the unused (-1) entries
        allowed.scatter_(1, blocks.masked_fill(blocks < 0, nb), True)
        allowed = allowed[:, :nb]
        allowed[: min(self.num_global_blocks, nb)] = True  # global query blocks attend to every key
        dense = allowed.repeat_interleave(b, dim=0).repeat_interleave(b, dim=1)  # (T, T)
        return (~dense).to(device)

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
    ) -> tuple[torch.Tensor, BlockWeights | None]:
        q, k, v, pad = self._inputs(query, key, value, key_padding_mask, attn_mask, is_causal, same_length=True)
        B, H, T, E = q.shape
        nb, b = self._num_blocks(T), self.block_size
        G = min(self.num_global_blocks, nb) * b  # global query rows
        q = q * (1.0 / math.sqrt(E))  # scaled once here rather than on every score
        blocks = self.key_blocks(T, q.device)  # (nb, Kb)
        Kb = blocks.shape[1]
        index = blocks.clamp(min=0)
        key_mask = q.new_zeros(B, T) if pad is None else pad  # (B, T)

        # Gather each query block's key blocks: O(T Kb b) memory, never T x T. The gathered keys and values are
        # Kb E / (Kb b) = E / b of the weights' size; the scores and weights are the peak.
        k_sel = k.view(B, H, nb, b, E)[:, :, index].flatten(-3, -2)  # (B, H, nb, Kb b, E)
        v_sel = v.view(B, H, nb, b, E)[:, :, index].flatten(-3, -2)  # (B, H, nb, Kb b, E)
        unused = torch.zeros(nb, Kb, dtype=q.dtype, device=q.device).masked_fill(blocks < 0, float("-inf"))
        mask = (key_mask.view(B, nb, b)[:, index] + unused[None, :, :, None]).flatten(-2)  # (B, nb, Kb b)
        # s = q . k / sqrt(E) for each query of block n and each key of its key blocks
        scores = q.view(B, H, nb, b, E) @ k_sel.transpose(-2, -1)  # (B, H, nb, b, Kb b)
        scores += mask[:, None, :, None]  # in place: the product is not needed for backward
        weights, blocked = _lean_softmax(scores)  # (B, H, nb, b, Kb b), (B, H, nb, b, 1)
        out = _zero_blocked(self._dropout(weights) @ v_sel, blocked).view(B, H, T, E)  # (B, H, T, E)

        # Global queries (the first blocks) attend to every key: G full rows.
        rows = masked_softmax(q[:, :, :G] @ k.transpose(-2, -1) + key_mask[:, None, None])  # (B, H, G, T)
        out = torch.cat([self._dropout(rows) @ v, out[:, :, G:]], dim=2)

        if not (need_weights or tracing()):
            return self._output(out), None
        weights = _zero_blocked(weights, blocked)
        record("bigbird.blocks", weights)
        record("bigbird.key_blocks", blocks)
        record("bigbird.global_rows", rows)
        if not need_weights:
            return self._output(out), None
        a = average_attn_weights
        return self._output(out), BlockWeights(_average(weights, a), blocks, _average(rows, a))


# ---------------------------------------------------------------------------------------------
# Linformer: keys and values projected to a fixed length k.
# ---------------------------------------------------------------------------------------------


class LinformerAttention(_ProjectedAttention):
    """Linformer attention (Wang et al. 2020, section 4): head_i = softmax(Q W^Q (E K W^K)^T / sqrt(E)) F V W^V.

    E and F (k, n) project the n keys and values down to k, so the weights are Tq x k: linear in the length.
    E and F are shared by the heads (the paper's headwise sharing). Inputs shorter than ``seq_len`` use the first
    Tk columns of E and F; longer ones are an error. Padding (a boolean ``key_padding_mask``) zeroes the padded
    keys and values before the projection: after it, positions are mixed and cannot be masked.

    Parameters: MultiHeadAttention's, and ``E``, ``F`` (k, n). Outside a trace and with ``need_weights=False``
    it calls ``F.scaled_dot_product_attention`` on the projected keys and values. Weights (B, [H,] Tq, k).
    Traced as ``linformer.weights`` (B, H, Tq, k) and ``linformer.keys`` (B, H, k, E).

    >>> attn = LinformerAttention(8, 2, seq_len=16, k=4, batch_first=True)
    >>> x = torch.zeros(2, 16, 8)
    >>> out, weights = attn(x, x, x)
    >>> out.shape, weights.shape  # each query sees k projected keys
    (torch.Size([2, 16, 8]), torch.Size([2, 16, 4]))
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        seq_len: int,
        k: int,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        *,
        device=None,
        dtype=None,
    ):
        super().__init__(embed_dim, num_heads, dropout, bias, batch_first, device, dtype)
        name = type(self).__name__
        self.seq_len, self.k = check_length(name, "seq_len", seq_len), check_length(name, "k", k)
        if k > seq_len:
            raise ValueError(f"{name}: expected k <= seq_len (a projection down), got k = {k} and seq_len = {seq_len}")
        self.E = nn.Parameter(torch.empty(k, seq_len, device=device, dtype=dtype))
        self.F = nn.Parameter(torch.empty(k, seq_len, device=device, dtype=dtype))
        nn.init.xavier_normal_(self.E)
        nn.init.xavier_normal_(self.F)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, seq_len={self.seq_len}, k={self.k}"

    def dense_weights(self, weights: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """The map from the ``length`` value positions to the outputs that ``weights`` (..., Tq, k) apply: P F.

        head = P (F V) = (P F) V, so P F (..., Tq, Tk) plays the part of full attention's Tq x Tk weights (for
        small inputs, tests and plots, like the sparse patterns' ``to_dense()``). It is low rank, not sparse: its
        rank is at most k, and it has no structural zeros; its entries take either sign and its rows need not sum
        to one, since F is a learned projection, not a distribution. ``length`` (Tk) defaults to ``seq_len``.

        >>> attn = LinformerAttention(8, 2, seq_len=16, k=4, batch_first=True)
        >>> x = torch.randn(1, 16, 8)
        >>> dense = attn.dense_weights(attn(x, x, x)[1])
        >>> dense.shape, int(torch.linalg.matrix_rank(dense[0]))  # (B, Tq, Tk), rank at most k
        (torch.Size([1, 16, 16]), 4)
        """
        name = type(self).__name__
        Tk = self.seq_len if length is None else check_length(name, "length", length)
        if Tk > self.seq_len:
            raise ValueError(f"{name}: expected length <= seq_len = {self.seq_len}, got {Tk}")
        if not isinstance(weights, torch.Tensor) or weights.dim() < 2 or weights.shape[-1] != self.k:
            got = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
            raise ValueError(f"{name}: expected weights of shape (..., Tq, k = {self.k}), got {got}")
        # (..., Tq, k) @ (k, Tk) -> (..., Tq, Tk)
        return weights @ self.F[:, :Tk].to(weights.dtype)

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
        if isinstance(key_padding_mask, torch.Tensor) and key_padding_mask.is_floating_point():
            raise TypeError(
                f"{name}: expected a boolean key_padding_mask (True = padding): a float mask cannot be added to "
                f"projected scores, got {key_padding_mask.dtype}"
            )
        q, k, v, pad = self._inputs(query, key, value, key_padding_mask, attn_mask, is_causal, same_length=False)
        Tk = k.shape[2]
        if Tk > self.seq_len:
            raise ValueError(f"{name}: expected at most seq_len = {self.seq_len} keys, got Tk = {Tk}")
        if pad is not None:
            keep = torch.isfinite(pad)[:, None, :, None]  # (B, 1, Tk, 1)
            k, v = k * keep, v * keep
        # K_bar = E K, V_bar = F V: (k, Tk) @ (B, H, Tk, E) -> (B, H, k, E)
        k_bar, v_bar = self.E[:, :Tk] @ k, self.F[:, :Tk] @ v
        dropout_p = self.dropout if self.training else 0.0
        if not capability.use_fused("attention", q, type(self).__name__, need_weights or use_reference()):
            # softmax(Q K_bar^T / sqrt(E)) V_bar
            out, weights = scaled_dot_product_attention(q, k_bar, v_bar, dropout_p=dropout_p)  # (B, H, Tq, E)
            record("linformer.weights", weights)
            record("linformer.keys", k_bar)
        else:
            out, weights = F.scaled_dot_product_attention(q, k_bar, v_bar, dropout_p=dropout_p), None
        if not need_weights:
            return self._output(out), None
        return self._output(out), _average(weights, average_attn_weights)
