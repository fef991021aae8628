"""Memory addressing shared by the NTM, the DNC and the MANN (Graves, Wayne & Danihelka 2014, section 3).

Shapes: ``B`` batch, ``N`` memory slots, ``W`` slot width, ``H`` heads addressed together (``R`` read
heads), ``S`` shift kernel size (odd: offsets ``-(S // 2) .. S // 2``).

A head's weighting over the ``N`` slots is built in four steps (section 3.3, Figure 2), one function each:

1. :func:`content_weighting`: cosine similarity between a key and every slot, sharpened by the key
   strength ``beta`` and normalised by a softmax (eqs. 5-6);
2. :func:`interpolate`: gate ``g`` blends it with the head's previous weighting (eq. 7);
3. :func:`shift`: circular convolution with a shift kernel ``s`` moves the focus (eq. 8);
4. :func:`sharpen`: raising to the power ``gamma >= 1`` and renormalising undoes the blur of the shift (eq. 9).

:func:`address` runs all four and returns every stage. :func:`read` (eq. 2) and :func:`write` (eqs. 3-4,
erase then add) use a weighting. Every function is pure (no state, no traces: the models record), works
in the dtype and on the device of its inputs, and is differentiable (``torch.autograd.gradcheck`` passes
in float64). Weightings are non-negative and sum to 1 over the ``N`` slots (eq. 1) whenever their inputs do.

Numerical safety: the cosine similarity divides by ``||k|| ||M_i|| + eps``, so an all-zero memory (the
usual initial state) gives similarity 0, a uniform content weighting and finite gradients; sharpening
raises ``w + eps`` rather than ``w``, so a slot with weight exactly 0 keeps a finite gradient.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# The book prints write()'s source (chapter 3) with this name: keep it until the page is re-run.
from memlib.validate import check_shape as _expect

COSINE_EPS = 1e-8  # far below any slot or key norm that carries information; only guards 0 / 0
SHARPEN_EPS = 1e-12  # in float32 it changes no weight above 1e-5: only exact zeros feel it


def _expect_weights(fn: str, label: str, x: object) -> torch.Tensor:
    """Check that ``x`` is a floating-point weighting (..., N) with at least one slot."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: expected {label} as a tensor of shape (..., N), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{fn}: expected {label} as a floating-point tensor, got {x.dtype}")
    if x.dim() == 0 or x.shape[-1] == 0:
        raise ValueError(f"{fn}: expected {label} of shape (..., N) with N >= 1, got {tuple(x.shape)}")
    return x


def _expect_memory(fn: str, memory: object) -> torch.Tensor:
    return _expect(fn, "memory", memory, "(B, N, W)", (None, None, None))


def cosine_similarity(memory: torch.Tensor, key: torch.Tensor, eps: float = COSINE_EPS) -> torch.Tensor:
    """Cosine similarity between each head's key and each memory slot (Graves et al. 2014, eq. 6).

    ``memory`` (B, N, W), ``key`` (B, H, W) -> (B, H, N), each entry in [-1, 1].

    >>> memory = torch.eye(3)[None]  # (1, 3 slots, 3 wide)
    >>> cosine_similarity(memory, torch.tensor([[[0.0, 2.0, 0.0]]])).round(decimals=3)
    tensor([[[0., 1., 0.]]])
    """
    _expect_memory("cosine_similarity", memory)
    B, N, W = memory.shape
    _expect("cosine_similarity", "key", key, "(B, H, W)", (B, None, W))
    dot = key @ memory.transpose(1, 2)  # (B, H, N)
    key_norm = torch.linalg.vector_norm(key, dim=-1)  # (B, H)
    slot_norm = torch.linalg.vector_norm(memory, dim=-1)  # (B, N)
    # K[u, v] = u . v / (||u|| ||v||)   (+ eps: a zero slot or key has similarity 0, not 0/0)
    return dot / (key_norm[:, :, None] * slot_norm[:, None, :] + eps)


def content_weighting(
    memory: torch.Tensor, key: torch.Tensor, beta: torch.Tensor, eps: float = COSINE_EPS
) -> torch.Tensor:
    """Content-based addressing (Graves et al. 2014, section 3.3.1, eqs. 5-6).

    ``memory`` (B, N, W), ``key`` (B, H, W), key strength ``beta`` (B, H), ``beta >= 0`` (0 gives the
    uniform weighting; larger values focus on the most similar slot) -> weighting (B, H, N).
    The DNC uses the same lookup (Graves et al. 2016, Methods, "Content-based addressing"), and the
    MANN with ``beta = 1`` (Santoro et al. 2016, section 3).

    >>> memory = torch.eye(3)[None]
    >>> w = content_weighting(memory, torch.tensor([[[0.0, 1.0, 0.0]]]), beta=torch.tensor([[50.0]]))
    >>> w.shape, w.argmax(-1)
    (torch.Size([1, 1, 3]), tensor([[1]]))
    """
    _expect_memory("content_weighting", memory)
    B = memory.shape[0]
    _expect("content_weighting", "key", key, "(B, H, W)", (B, None, memory.shape[2]))
    _expect("content_weighting", "beta", beta, "(B, H)", (B, key.shape[1]))
    similarity = cosine_similarity(memory, key, eps)  # (B, H, N)
    # w^c_t(i) = exp(beta_t K[k_t, M_t(i)]) / sum_j exp(beta_t K[k_t, M_t(j)])
    return torch.softmax(beta[..., None] * similarity, dim=-1)


def interpolate(content: torch.Tensor, previous: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Interpolation with the previous weighting (Graves et al. 2014, section 3.3.2, eq. 7).

    ``content`` and ``previous`` (..., N), typically (B, H, N); gate ``g`` (...) in [0, 1]:
    1 takes the content weighting, 0 keeps the previous one (so that location addressing can step on
    from it). Returns (..., N).

    >>> interpolate(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor(0.25))
    tensor([0.2500, 0.7500])
    """
    _expect_weights("interpolate", "content", content)
    _expect("interpolate", "previous", previous, "(..., N)", tuple(content.shape))
    _expect("interpolate", "g", g, "(...)", tuple(content.shape[:-1]))
    # w^g_t = g_t w^c_t + (1 - g_t) w_{t-1}
    return g[..., None] * content + (1 - g[..., None]) * previous


def shift(weights: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Rotation by a circular convolution with the shift kernel ``s`` (Graves et al. 2014, section 3.3.2, eq. 8).

    ``weights`` (..., N); ``s`` (..., S) with ``S`` odd, a distribution over the offsets
    ``-(S // 2) .. S // 2`` (entry ``S // 2`` is "stay"). A kernel with all its mass on offset ``+1``
    moves the weight of slot ``i`` to slot ``i + 1`` (mod N). Returns (..., N).

    >>> shift(torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]]))  # shift by +1, circular
    tensor([[0., 1., 0.]])
    """
    _expect_weights("shift", "weights", weights)
    _expect("shift", "s", s, "(..., S)", (*weights.shape[:-1], None))
    N, S = weights.shape[-1], s.shape[-1]
    if S % 2 == 0:
        raise ValueError(f"shift: expected an odd kernel size S (offsets -(S//2)..S//2), got S={S}")
    if torch.compiler.is_compiling() and S // 2 <= N:
        return _shift_by_slices(weights, s)
    offsets = torch.arange(S, device=weights.device) - S // 2  # (S,)
    slots = torch.arange(N, device=weights.device)  # (N,)
    source = (slots[:, None] - offsets[None, :]) % N  # (N, S): the slot i - offset that lands on slot i
    # w~_t(i) = sum_j w^g_t(j) s_t(i - j)   (indices mod N), written as a sum over the S offsets
    return (weights[..., source] * s[..., None, :]).sum(-1)  # (..., N, S) -> (..., N)


def _shift_by_slices(weights: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """:func:`shift` for ``S // 2 <= N``, with the same (..., N, S) terms and sum, gathered from slices of a circularly
    padded copy instead of by index: the compiled step's form. Inductor made the indexed gather into indexed loads and
    its gradient into a scatter-add loop; slices are plain loops. The NTM's compiled training step on copy (B = 16,
    L = 10, N = 128, one thread, CPU time, medians of 9 interleaved) took 0.72x the time with it. Eager, the index
    form stays: this one gives the same values, but gradients that differ in the last bits (another order of sums).
    """
    N, h = weights.shape[-1], s.shape[-1] // 2
    padded = torch.cat([weights[..., N - h :], weights, weights[..., :h]], dim=-1)  # (..., N + 2h): w(k - h mod N)
    # offset o brings slot i - o to slot i: padded index i - o + h
    taken = torch.stack([padded[..., h - o : h - o + N] for o in range(-h, h + 1)], dim=-1)  # (..., N, S)
    return (taken * s[..., None, :]).sum(-1)  # (..., N, S) -> (..., N)


def sharpen(weights: torch.Tensor, gamma: torch.Tensor, eps: float = SHARPEN_EPS) -> torch.Tensor:
    """Sharpening (Graves et al. 2014, section 3.3.2, eq. 9).

    ``weights`` (..., N) non-negative, ``gamma`` (...) with ``gamma >= 1``: the largest weight never
    decreases and the entropy never increases. Returns (..., N), summing to 1.

    >>> sharpen(torch.tensor([0.5, 0.25, 0.25]), torch.tensor(2.0))  # w^gamma, renormalised
    tensor([0.6667, 0.1667, 0.1667])
    """
    _expect_weights("sharpen", "weights", weights)
    _expect("sharpen", "gamma", gamma, "(...)", tuple(weights.shape[:-1]))
    # w_t(i) = w~_t(i)^gamma_t / sum_j w~_t(j)^gamma_t
    powered = (weights + eps) ** gamma[..., None]
    return powered / powered.sum(dim=-1, keepdim=True)


class Addressing(NamedTuple):
    """Every stage of one addressing step (Graves et al. 2014, Figure 2), each (B, H, N).

    >>> Addressing._fields  # each stage of the pipeline, for traces and figures
    ('content', 'gated', 'shifted', 'sharpened')
    """

    content: torch.Tensor  # w^c: eqs. 5-6
    gated: torch.Tensor  # w^g: eq. 7
    shifted: torch.Tensor  # w~: eq. 8
    sharpened: torch.Tensor  # w: eq. 9, the weighting the head uses


def address(
    memory: torch.Tensor,
    previous: torch.Tensor,
    key: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor,
    s: torch.Tensor,
    gamma: torch.Tensor,
) -> Addressing:
    """The whole NTM addressing mechanism (Graves et al. 2014, section 3.3) for ``H`` heads at once.

    ``memory`` (B, N, W), ``previous`` weighting (B, H, N), ``key`` (B, H, W), ``beta`` (B, H),
    ``g`` (B, H), ``s`` (B, H, S), ``gamma`` (B, H) -> :class:`Addressing` with four (B, H, N) stages.

    >>> memory = torch.eye(4)[None]  # (B=1, N=4, W=4)
    >>> a = address(memory, previous=torch.full((1, 1, 4), 0.25), key=torch.eye(4)[None, 2:3],
    ...             beta=torch.tensor([[20.0]]), g=torch.tensor([[1.0]]),
    ...             s=torch.tensor([[[0.0, 1.0, 0.0]]]), gamma=torch.tensor([[1.0]]))
    >>> a.sharpened.argmax(-1)  # content finds slot 2; no shift
    tensor([[2]])
    """
    _expect_memory("address", memory)
    B, N, _ = memory.shape
    _expect("address", "previous", previous, "(B, H, N)", (B, None, N))
    content = content_weighting(memory, key, beta)
    gated = interpolate(content, previous, g)
    shifted = shift(gated, s)
    return Addressing(content, gated, shifted, sharpen(shifted, gamma))


def read(memory: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Read vectors: the weighted sum of the slots (Graves et al. 2014, section 3.1, eq. 2).

    ``memory`` (B, N, W), ``weights`` (B, R, N) -> (B, R, W).

    >>> memory = torch.arange(6.0).view(1, 3, 2)  # (B, N, W)
    >>> read(memory, torch.tensor([[[0.0, 1.0, 0.0]]]))  # one head reading slot 1
    tensor([[[2., 3.]]])
    """
    _expect_memory("read", memory)
    B, N, _ = memory.shape
    _expect("read", "weights", weights, "(B, R, N)", (B, None, N))
    # r_t = sum_i w_t(i) M_t(i)
    return weights @ memory  # (B, R, N) @ (B, N, W) -> (B, R, W)


def write(memory: torch.Tensor, weights: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """Erase, then add (Graves et al. 2014, section 3.2, eqs. 3-4), for ``H`` write heads.

    ``memory`` (B, N, W), ``weights`` (B, H, N), ``erase`` (B, H, W) in [0, 1], ``add`` (B, H, W)
    -> the new memory (B, N, W). With several heads the erasures multiply and the adds sum, so the
    order of the heads does not matter (section 3.2). The DNC's write is the same with H = 1
    (Graves et al. 2016, Methods, "Reading and writing to memory"); the MANN's is ``erase = 0``.
    """
    _expect_memory("write", memory)
    B, N, W = memory.shape
    _expect("write", "weights", weights, "(B, H, N)", (B, None, N))
    H = weights.shape[1]
    _expect("write", "erase", erase, "(B, H, W)", (B, H, W))
    _expect("write", "add", add, "(B, H, W)", (B, H, W))
    # M~_t(i) = M_{t-1}(i) [1 - w_t(i) e_t]   (a product over heads)
    kept = (1 - weights[..., None] * erase[:, :, None, :]).prod(dim=1)  # (B, H, N, W) -> (B, N, W)
    # M_t(i) = M~_t(i) + w_t(i) a_t   (a sum over heads)
    return memory * kept + weights.transpose(1, 2) @ add  # (B, N, H) @ (B, H, W) -> (B, N, W)
