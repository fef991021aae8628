"""Differentiable Neural Computer (Graves et al. 2016, "Hybrid computing using a neural network with dynamic
external memory", Methods).

Shapes: ``B`` batch, ``T`` time, ``I`` input features, ``O`` output features, ``H`` controller width,
``N`` memory slots, ``W`` slot width, ``R`` read heads.

The DNC keeps the NTM's content lookup, read and erase/add write (``memlib.memory.addressing``) and
replaces location addressing with two mechanisms, one pure function per equation below:

- dynamic memory allocation (Methods, "Dynamic memory allocation"): free gates let read heads release
  slots (:func:`retention`), a usage vector tracks which slots hold something (:func:`update_usage`),
  and the allocation weighting points at the least-used slots (:func:`allocation_weighting`); the write
  gate and allocation gate mix it with a content lookup (:func:`write_weighting`, "Write weighting");
- temporal memory linkage ("Temporal memory linkage"): a precedence weighting (:func:`update_precedence`)
  and a link matrix ``L[i, j]``, "slot i was written right after slot j" (:func:`update_link`), let read
  heads step forward or backward in the order of writing (:func:`directional_weightings`); read modes
  mix backward, content and forward weightings (:func:`read_weighting`, "Read weighting").

One step of :class:`DNC`: the LSTM controller sees ``[x_t, r_{t-1}]`` and emits the interface vector;
then retention, usage, allocation, write weighting, write, link and precedence, read weightings, read;
the output is a linear map of ``[h_t, r_t]`` (``y_t = W_y h_t + W_r r_t`` in one matrix). The initial
state is all zeros (an empty memory: usage 0, no links, no precedence).

Trace names (inside ``memlib.trace()``, each recorded once per step):

- ``dnc.usage`` (B, N), ``dnc.allocation`` (B, N), ``dnc.free_gates`` (B, R),
  ``dnc.write_gate`` (B,), ``dnc.allocation_gate`` (B,), ``dnc.write_content`` (B, N);
- ``dnc.write_weights`` (B, N), ``dnc.memory`` (B, N, W) after the write;
- ``dnc.link`` (B, N, N), ``dnc.precedence`` (B, N);
- ``dnc.forward``, ``dnc.backward``, ``dnc.read_content`` (B, R, N) and ``dnc.read_modes`` (B, R, 3), in the
  order (backward, content, forward); ``dnc.read_weights`` (B, R, N); ``dnc.read_vectors`` (B, R, W).

The LSTM controller also records its own names (``lstm.hidden`` and the rest, see ``memlib.recurrent``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from memlib.memory import dnc_cpu
from memlib.memory.addressing import (
    content_weighting,
    read,
    write,
)
from memlib.memory.controller import MemoryAugmented
from memlib.recurrent import LSTMCell
from memlib.tracing import record

# The book prints these functions' code (chapter 11) with this name: keep it until the page is re-run.
from memlib.validate import check_shape as _expect
from memlib.validate import check_sizes

# ---------------------------------------------------------------------------------------------
# The equations, one pure function each.
# ---------------------------------------------------------------------------------------------


def retention(free_gates: torch.Tensor, read_weights: torch.Tensor) -> torch.Tensor:
    """Memory retention: how much of each slot the read heads did not free (Methods, "Dynamic memory allocation").

    ``free_gates`` (B, R) in [0, 1], the previous ``read_weights`` (B, R, N) -> psi (B, N) in [0, 1].

    >>> retention(torch.tensor([[1.0]]), torch.tensor([[[1.0, 0.0]]]))  # slot 0 read and freed
    tensor([[0., 1.]])
    """
    _expect("retention", "read_weights", read_weights, "(B, R, N)", (None, None, None))
    _expect("retention", "free_gates", free_gates, "(B, R)", tuple(read_weights.shape[:2]))
    # psi_t = prod_{i=1}^{R} (1 - f^i_t w^{r,i}_{t-1})
    return (1 - free_gates[..., None] * read_weights).prod(dim=1)


def update_usage(usage: torch.Tensor, write_weights: torch.Tensor, retention: torch.Tensor) -> torch.Tensor:
    """Usage: raised by the last write, lowered by freeing (Methods, "Dynamic memory allocation").

    The previous ``usage`` (B, N), the previous ``write_weights`` (B, N), ``retention`` (B, N) -> (B, N);
    stays in [0, 1] when its inputs are.

    >>> update_usage(torch.tensor([[0.5, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.ones(1, 2))
    tensor([[0.5000, 1.0000]])
    """
    _expect("update_usage", "usage", usage, "(B, N)", (None, None))
    _expect("update_usage", "write_weights", write_weights, "(B, N)", tuple(usage.shape))
    _expect("update_usage", "retention", retention, "(B, N)", tuple(usage.shape))
    # u_t = (u_{t-1} + w^w_{t-1} - u_{t-1} o w^w_{t-1}) o psi_t
    return (usage + write_weights - usage * write_weights) * retention


def allocation_weighting(usage: torch.Tensor) -> torch.Tensor:
    """Allocation weighting over the free slots (Methods, "Dynamic memory allocation").

    ``usage`` (B, N) in [0, 1] -> (B, N), non-negative, summing to ``1 - prod_i u[i] <= 1``. The slot with
    the lowest usage gets ``1 - u``; each next one gets its own ``1 - u`` times the usage of all before it.
    Ties sort by slot index. As in the paper, no gradient flows through the sorting itself.

    >>> allocation_weighting(torch.tensor([[1.0, 0.0, 1.0]]))  # the one free slot
    tensor([[0., 1., 0.]])
    """
    _expect("allocation_weighting", "usage", usage, "(B, N)", (None, None))
    # phi_t: the slot indices sorted by ascending usage
    sorted_usage, phi = torch.sort(usage, dim=-1, stable=True)  # (B, N) each
    # prod_{i=1}^{j-1} u_t[phi_t[i]]: an exclusive cumulative product (1 for the first free slot)
    before = torch.cumprod(torch.cat([torch.ones_like(usage[:, :1]), sorted_usage[:, :-1]], dim=1), dim=1)
    # a_t[phi_t[j]] = (1 - u_t[phi_t[j]]) prod_{i=1}^{j-1} u_t[phi_t[i]]
    return torch.zeros_like(usage).scatter(1, phi, (1 - sorted_usage) * before)


def write_weighting(
    allocation: torch.Tensor, content: torch.Tensor, write_gate: torch.Tensor, allocation_gate: torch.Tensor
) -> torch.Tensor:
    """Write weighting (Methods, "Write weighting").

    ``allocation`` (B, N), write ``content`` weighting (B, N), ``write_gate`` (B,) and ``allocation_gate``
    (B,) in [0, 1] -> (B, N): the write gate says whether to write at all, the allocation gate whether to a
    free slot (1) or to the slot the write key finds (0).

    >>> allocation, content = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    >>> write_weighting(allocation, content, write_gate=torch.tensor([1.0]), allocation_gate=torch.tensor([1.0]))
    tensor([[1., 0.]])
    """
    _expect("write_weighting", "allocation", allocation, "(B, N)", (None, None))
    _expect("write_weighting", "content", content, "(B, N)", tuple(allocation.shape))
    _expect("write_weighting", "write_gate", write_gate, "(B,)", allocation.shape[:1])
    _expect("write_weighting", "allocation_gate", allocation_gate, "(B,)", allocation.shape[:1])
    g_w, g_a = write_gate[:, None], allocation_gate[:, None]  # (B, 1)
    # w^w_t = g^w_t [g^a_t a_t + (1 - g^a_t) c^w_t]
    return g_w * (g_a * allocation + (1 - g_a) * content)


def update_precedence(precedence: torch.Tensor, write_weights: torch.Tensor) -> torch.Tensor:
    """Precedence: where the last write went (Methods, "Temporal memory linkage").

    The previous ``precedence`` (B, N) and this step's ``write_weights`` (B, N) -> (B, N), summing to <= 1.

    >>> update_precedence(torch.zeros(1, 3), torch.tensor([[0.0, 1.0, 0.0]]))
    tensor([[0., 1., 0.]])
    """
    _expect("update_precedence", "precedence", precedence, "(B, N)", (None, None))
    _expect("update_precedence", "write_weights", write_weights, "(B, N)", tuple(precedence.shape))
    # p_t = (1 - sum_i w^w_t[i]) p_{t-1} + w^w_t
    return (1 - write_weights.sum(dim=1, keepdim=True)) * precedence + write_weights


def update_link(link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor) -> torch.Tensor:
    """Temporal link matrix (Methods, "Temporal memory linkage").

    The previous ``link`` (B, N, N), the previous ``precedence`` (B, N) and this step's ``write_weights``
    (B, N) -> (B, N, N) with a zero diagonal, rows and columns summing to <= 1. ``L[i, j]`` near 1 means
    slot ``i`` was written right after slot ``j``.

    >>> L = update_link(torch.zeros(1, 2, 2), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    >>> L  # slot 1 was written after slot 0; the diagonal stays 0
    tensor([[[0., 0.],
             [1., 0.]]])
    """
    _expect("update_link", "link", link, "(B, N, N)", (None, None, None))
    B, N = link.shape[0], link.shape[1]
    _expect("update_link", "link", link, "(B, N, N)", (B, N, N))
    _expect("update_link", "precedence", precedence, "(B, N)", (B, N))
    _expect("update_link", "write_weights", write_weights, "(B, N)", (B, N))
    return _LinkUpdate.apply(link, precedence, write_weights)


def _link_forward(link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor) -> torch.Tensor:
    """:func:`update_link`'s value, on checked input: one new (B, N, N) tensor, updated in place."""
    w_i, w_j = write_weights[:, :, None], write_weights[:, None, :]  # (B, N, 1), (B, 1, N)
    # L_t[i, j] = (1 - w^w_t[i] - w^w_t[j]) L_{t-1}[i, j] + w^w_t[i] p_{t-1}[j]
    updated = torch.addcmul(link, w_i, link, value=-1)  # (B, N, N): L - w_i L
    updated.addcmul_(w_j, link, value=-1)  # - w_j L
    updated.addcmul_(w_i, precedence[:, None, :])  # + w_i p_j, the outer product (B, N, 1) x (B, 1, N)
    # L_t[i, i] = 0
    updated.diagonal(dim1=1, dim2=2).zero_()
    return updated


def _link_backward(
    grad: torch.Tensor, link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of :func:`_link_forward` for the gradient ``grad`` (B, N, N) of its value: (link, precedence,
    write_weights). Products of a (B, N, N) tensor with a vector keep the vector on the left (``v @ G``, ``v @ G^T``):
    MKL ran ``G @ v`` 5x slower at B = 16, N = 128 (one thread)."""
    w_i, w_j = write_weights[:, :, None], write_weights[:, None, :]  # (B, N, 1), (B, 1, N)
    on_diagonal = grad.diagonal(dim1=1, dim2=2)  # (B, N): gradients of entries the update sets to 0
    # dL_t[i, j] / dL_{t-1}[i, j] = 1 - w_i - w_j off the diagonal, 0 on it
    grad_link = torch.addcmul(grad, grad, w_i, value=-1)  # (B, N, N)
    grad_link.addcmul_(grad, w_j, value=-1)
    grad_link.diagonal(dim1=1, dim2=2).zero_()
    # dL_t[i, j] / dp[j] = w_i for i != j
    grad_precedence = (w_j @ grad)[:, 0] - on_diagonal * write_weights  # (B, 1, N) @ (B, N, N) -> (B, N)
    # w[k] enters row k (as w_i: -L[k, j] + p[j]) and column k (as w_j: -L[i, k]), off the diagonal
    grad_times_link = grad * link  # (B, N, N)
    grad_times_link.diagonal(dim1=1, dim2=2).zero_()
    grad_write = (
        (precedence[:, None, :] @ grad.transpose(1, 2))[:, 0]  # sum_j G[k, j] p[j]: (B, 1, N) @ (B, N, N) -> (B, N)
        - on_diagonal * precedence
        - grad_times_link.sum(dim=2)
        - grad_times_link.sum(dim=1)
    )
    return grad_link, grad_precedence, grad_write


class _LinkUpdate(torch.autograd.Function):
    """:func:`update_link` with one new (B, N, N) tensor per step and a hand-written backward pass.

    Written as plain tensor algebra, the update makes four more (B, N, N) tensors per step than its
    result, and autograd keeps one of them, ``1 - w_i - w_j``, alive until the backward pass, at every
    step of a sequence. Here the forward pass updates its result in place and keeps only the inputs
    (``L_{t-1}`` is alive anyway, as the previous state), and the backward pass makes two (B, N, N)
    temporaries beside the gradient it returns, as plain tensor algebra, so that it can be differentiated again.
    tests/unit/test_dnc.py checks values and gradients (and second derivatives).
    """

    @staticmethod
    def forward(ctx, link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(link, precedence, write_weights)
        return _link_forward(link, precedence, write_weights)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _link_backward(grad.contiguous(), *ctx.saved_tensors)


def directional_weightings(link: torch.Tensor, read_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward weightings (Methods, "Temporal memory linkage").

    ``link`` (B, N, N), the previous ``read_weights`` (B, R, N) -> (forward, backward), each (B, R, N):
    forward moves each read focus to the slot written after it, backward to the one written before.

    >>> link = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])  # slot 1 follows slot 0
    >>> forward, backward = directional_weightings(link, torch.tensor([[[1.0, 0.0]]]))
    >>> forward
    tensor([[[0., 1.]]])
    """
    _expect("directional_weightings", "link", link, "(B, N, N)", (None, None, None))
    B, N = link.shape[:2]
    _expect("directional_weightings", "read_weights", read_weights, "(B, R, N)", (B, None, N))
    return _directional(link, read_weights)


def _directional(link: torch.Tensor, read_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`directional_weightings` on checked input."""
    # f^i_t = L_t w^{r,i}_{t-1}
    forward = read_weights @ link.transpose(1, 2)  # (B, R, N)
    # b^i_t = L_t^T w^{r,i}_{t-1}
    backward = read_weights @ link  # (B, R, N)
    return forward, backward


def _directional_backward(
    grad_forward: torch.Tensor, grad_backward: torch.Tensor, link: torch.Tensor, read_weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of :func:`_directional` for those of its two values (B, R, N): (link, read_weights)."""
    # dL[i, j] = sum_r df[r, i] w[r, j] + w[r, i] db[r, j]: one product over the 2R stacked rows
    left = torch.cat([grad_forward, read_weights], dim=1).transpose(1, 2)  # (B, N, 2R)
    grad_link = left @ torch.cat([read_weights, grad_backward], dim=1)  # (B, N, 2R) @ (B, 2R, N) -> (B, N, N)
    # dw[r] = df[r] L + db[r] L^T
    grad_read = (grad_forward @ link).baddbmm_(grad_backward, link.transpose(1, 2))  # (B, R, N)
    return grad_link, grad_read


def temporal_linkage(
    link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor, read_weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of temporal linkage: :func:`update_link`, then :func:`directional_weightings` of the new link.

    The previous ``link`` (B, N, N) and ``precedence`` (B, N), this step's ``write_weights`` (B, N) and the previous
    ``read_weights`` (B, R, N) -> (link (B, N, N), forward (B, R, N), backward (B, R, N)). Inside ``torch.compile``,
    for a large link, one custom operator computes all three (below).

    >>> link, forward, backward = temporal_linkage(torch.zeros(1, 2, 2), torch.tensor([[1.0, 0.0]]),
    ...                                            torch.tensor([[0.0, 1.0]]), torch.tensor([[[1.0, 0.0]]]))
    >>> forward  # slot 1 was just written after slot 0: a focus on slot 0 moves forward to slot 1
    tensor([[[0., 1.]]])
    """
    _expect("temporal_linkage", "read_weights", read_weights, "(B, R, N)", (None, None, None))
    B, R, N = read_weights.shape
    _expect("temporal_linkage", "link", link, "(B, N, N)", (B, N, N))
    _expect("temporal_linkage", "precedence", precedence, "(B, N)", (B, N))
    _expect("temporal_linkage", "write_weights", write_weights, "(B, N)", (B, N))
    if torch.compiler.is_compiling() and link.numel() >= OPAQUE_LINK_ELEMENTS:
        return _LINKAGE_OP(link, precedence, write_weights, read_weights)
    link = _LinkUpdate.apply(link, precedence, write_weights)
    return (link, *_directional(link, read_weights))


# The link update and the directional weightings as one custom operator, which torch.compile calls as it is instead of
# tracing into it, where the link matrix is large. Traced, they and their gradients fused with the rest of the step
# into one loop nest over (B, N, N) that transposed 8 x 8 tiles of several (B, N, N) tensors: at B = 16, N = 128 the
# DNC's compiled training step on copy spent two thirds of its time there (measured with and without the link matrix).
# On the CPU (float32, float64) the operator runs memlib.memory.dnc_cpu's loops, one pass over the link matrix each
# way; elsewhere the tensor code below (the functions above). A call of a custom operator costs more than a traced
# kernel, so small links stay traced: the compiled training step on copy (L = 10, N = 128, one thread, CPU time,
# medians of 9 interleaved) took 1.11x the traced step's time with the operator at B = 1, 1.00x at B = 2, 0.79x at
# B = 4, and its graphs compiled in 27-34 s against 39-47 s traced.
OPAQUE_LINK_ELEMENTS = 2**15  # B N^2: B = 2 at N = 128


def _linkage(
    link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor, read_weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`temporal_linkage` on checked input, as the custom operator runs it."""
    if dnc_cpu.supports(link):
        return dnc_cpu.linkage(link, precedence, write_weights, read_weights)
    updated = _link_forward(link, precedence, write_weights)  # (B, N, N)
    return (updated, *_directional(updated, read_weights))


def _linkage_backward(
    grad_link: torch.Tensor,
    grad_forward: torch.Tensor,
    grad_backward: torch.Tensor,
    link: torch.Tensor,
    precedence: torch.Tensor,
    write_weights: torch.Tensor,
    read_weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of :func:`_linkage`'s inputs (link, precedence, write_weights, read_weights) for those of its
    values (B, N, N), (B, R, N), (B, R, N)."""
    if dnc_cpu.supports(link):
        return dnc_cpu.linkage_backward(
            grad_link, grad_forward, grad_backward, link, precedence, write_weights, read_weights
        )
    updated = _link_forward(link, precedence, write_weights)  # (B, N, N): recomputed rather than kept
    grad_updated, grad_read = _directional_backward(grad_forward, grad_backward, updated, read_weights)
    return (*_link_backward(grad_link + grad_updated, link, precedence, write_weights), grad_read)


# The two operators, registered with torch.library's plain calls rather than torch.library.custom_op: a compiled step
# calls them through the dispatcher, where custom_op's layers in Python (the autograd kernel, which runs even where
# autograd does not record, and checks of each result) took about 30 us of each call's 100-200 us (B = 16, N = 128).
# Here the forward operator keeps an autograd kernel (about 12 us), which AOTAutograd traces into the backward graph;
# the backward operator, never differentiated, has none. (A torch.autograd.Function around them cost less again, but
# AOTAutograd's cache on disk refuses graphs that hold one: the DNC's graph then took 6 s more to load in each process.)
_LIBRARY = torch.library.Library("memlib", "FRAGMENT")
_LIBRARY.define(
    "linkage(Tensor link, Tensor precedence, Tensor write_weights, Tensor read_weights) -> (Tensor, Tensor, Tensor)"
)
_LIBRARY.define(
    "linkage_backward(Tensor grad_link, Tensor grad_forward, Tensor grad_backward, Tensor link, Tensor precedence, "
    "Tensor write_weights, Tensor read_weights) -> (Tensor, Tensor, Tensor, Tensor)"
)
_LIBRARY.impl("linkage", _linkage, "CompositeExplicitAutograd")
_LIBRARY.impl("linkage_backward", _linkage_backward, "CompositeExplicitAutograd")


@torch.library.register_fake("memlib::linkage", lib=_LIBRARY)
def _(
    link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor, read_weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.empty_like(link), torch.empty_like(read_weights), torch.empty_like(read_weights)


@torch.library.register_fake("memlib::linkage_backward", lib=_LIBRARY)
def _(
    grad_link: torch.Tensor,
    grad_forward: torch.Tensor,
    grad_backward: torch.Tensor,
    link: torch.Tensor,
    precedence: torch.Tensor,
    write_weights: torch.Tensor,
    read_weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.empty_like(link), torch.empty_like(precedence), torch.empty_like(write_weights),
            torch.empty_like(read_weights))


def _save_inputs(ctx, inputs: tuple[torch.Tensor, ...], output: object) -> None:
    ctx.save_for_backward(*inputs)


torch.library.register_autograd(
    "memlib::linkage",
    lambda ctx, grad_link, grad_forward, grad_backward: torch.ops.memlib.linkage_backward(
        grad_link, grad_forward, grad_backward, *ctx.saved_tensors
    ),
    setup_context=_save_inputs,
    lib=_LIBRARY,
)
_LINKAGE_OP = torch.ops.memlib.linkage.default


def read_weighting(
    backward: torch.Tensor, content: torch.Tensor, forward: torch.Tensor, modes: torch.Tensor
) -> torch.Tensor:
    """Read weighting (Methods, "Read weighting").

    ``backward``, ``content``, ``forward`` (B, R, N) and read ``modes`` (B, R, 3), a distribution over
    (backward, content, forward) per head -> (B, R, N).

    >>> modes = torch.tensor([[[0.0, 1.0, 0.0]]])  # backward, content, forward: all content
    >>> read_weighting(torch.zeros(1, 1, 2), torch.tensor([[[0.3, 0.7]]]), torch.zeros(1, 1, 2), modes)
    tensor([[[0.3000, 0.7000]]])
    """
    _expect("read_weighting", "content", content, "(B, R, N)", (None, None, None))
    _expect("read_weighting", "backward", backward, "(B, R, N)", tuple(content.shape))
    _expect("read_weighting", "forward", forward, "(B, R, N)", tuple(content.shape))
    _expect("read_weighting", "modes", modes, "(B, R, 3)", (*content.shape[:2], 3))
    pi = modes[..., None]  # (B, R, 3, 1)
    # w^{r,i}_t = pi^i_t[1] b^i_t + pi^i_t[2] c^{r,i}_t + pi^i_t[3] f^i_t
    return pi[:, :, 0] * backward + pi[:, :, 1] * content + pi[:, :, 2] * forward


def _oneplus(x: torch.Tensor) -> torch.Tensor:
    # oneplus(x) = 1 + log(1 + e^x): strengths in [1, inf)
    return 1 + F.softplus(x)


# ---------------------------------------------------------------------------------------------
# The model.
# ---------------------------------------------------------------------------------------------


class DNCState(NamedTuple):
    """The DNC's state, taken and returned by a :class:`DNC`: controller state, memory, usage, link matrix,
    precedence, the last read and write weightings and read vectors.

    >>> DNC(4, 2, memory_slots=8).initial_state(3).link.shape
    torch.Size([3, 8, 8])
    """
    controller: tuple[torch.Tensor, torch.Tensor]  # (h, c) each (B, H)
    memory: torch.Tensor  # (B, N, W)
    usage: torch.Tensor  # (B, N)
    link: torch.Tensor  # (B, N, N)
    precedence: torch.Tensor  # (B, N)
    read_weights: torch.Tensor  # (B, R, N)
    write_weights: torch.Tensor  # (B, N)
    read_vectors: torch.Tensor  # (B, R, W)


class DNC(MemoryAugmented):
    """A Differentiable Neural Computer with an LSTM controller, ``read_heads`` read heads and one write head.

    Defaults are small so that it trains on a CPU (the paper's bAbI model had 256 x 64 memory, 4 read heads,
    256 LSTM units). The interface vector (Methods, "Interface parameters") is split into read keys
    (R, W), read strengths ``oneplus`` (R,), write key (W,), write strength ``oneplus``, erase vector
    ``sigmoid`` (W,), write vector (W,), free gates ``sigmoid`` (R,), allocation gate and write gate
    ``sigmoid``, read modes ``softmax`` (R, 3): R*W + 3W + 5R + 3 numbers.

    ``forward(x (B, T, I), state = zeros) -> (y (B, T, O), state)``; ``step(x (B, I), state) -> (y (B, O),
    state)``. See the module docstring for the trace names.

    >>> dnc = DNC(input_size=6, output_size=4, controller_size=16, memory_slots=8, memory_width=5, read_heads=2)
    >>> y, state = dnc(torch.zeros(2, 3, 6))
    >>> y.shape, state.memory.shape, state.link.shape
    (torch.Size([2, 3, 4]), torch.Size([2, 8, 5]), torch.Size([2, 8, 8]))
    """

    state_type = DNCState

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        controller_size: int = 64,
        memory_slots: int = 32,
        memory_width: int = 16,
        read_heads: int = 2,
        device=None,
        dtype=None,
    ):
        super().__init__()
        check_sizes(
            "DNC",
            input_size=input_size,
            output_size=output_size,
            controller_size=controller_size,
            memory_slots=memory_slots,
            memory_width=memory_width,
            read_heads=read_heads,
        )
        self.input_size, self.output_size, self.controller_size = input_size, output_size, controller_size
        self.memory_slots, self.memory_width, self.read_heads = memory_slots, memory_width, read_heads
        factory = {"device": device, "dtype": dtype}
        W, R = memory_width, read_heads
        self.controller = LSTMCell(input_size + R * W, controller_size, **factory)
        self._interface_sizes = [R * W, R, W, 1, W, W, R, 1, 1, 3 * R]
        self.interface = nn.Linear(controller_size, sum(self._interface_sizes), **factory)
        self.output = nn.Linear(controller_size + R * W, output_size, **factory)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.output_size}, controller_size={self.controller_size}, "
            f"memory=({self.memory_slots}, {self.memory_width}), read_heads={self.read_heads}"
        )

    def _state_shapes(self, B: int) -> dict[str, object]:
        H, N, W, R = self.controller_size, self.memory_slots, self.memory_width, self.read_heads
        return {
            "controller": ((B, H), (B, H)),
            "memory": (B, N, W),
            "usage": (B, N),
            "link": (B, N, N),
            "precedence": (B, N),
            "read_weights": (B, R, N),
            "write_weights": (B, N),
            "read_vectors": (B, R, W),
        }

    def _step(self, x: torch.Tensor, state: DNCState) -> tuple[torch.Tensor, DNCState]:
        B, W, R = x.shape[0], self.memory_width, self.read_heads
        h, c = self.controller(torch.cat([x, state.read_vectors.flatten(1)], dim=1), state.controller)  # (B, H)
        parts = self.interface(h).split(self._interface_sizes, dim=1)
        read_keys = parts[0].view(B, R, W)
        read_strengths = _oneplus(parts[1])  # (B, R)
        write_key = parts[2].view(B, 1, W)
        write_strength = _oneplus(parts[3])  # (B, 1)
        erase = torch.sigmoid(parts[4]).view(B, 1, W)
        write_vector = parts[5].view(B, 1, W)
        free_gates = torch.sigmoid(parts[6])  # (B, R)
        allocation_gate = torch.sigmoid(parts[7][:, 0])  # (B,)
        write_gate = torch.sigmoid(parts[8][:, 0])  # (B,)
        read_modes = torch.softmax(parts[9].view(B, R, 3), dim=-1)  # (B, R, 3): backward, content, forward

        usage = update_usage(state.usage, state.write_weights, retention(free_gates, state.read_weights))
        allocation = allocation_weighting(usage)  # (B, N)
        write_content = content_weighting(state.memory, write_key, write_strength)[:, 0]  # (B, N)
        write_weights = write_weighting(allocation, write_content, write_gate, allocation_gate)  # (B, N)
        memory = write(state.memory, write_weights[:, None], erase, write_vector)  # (B, N, W)
        # update_link, then directional_weightings of the new link: (B, N, N), (B, R, N), (B, R, N)
        link, forward, backward = temporal_linkage(state.link, state.precedence, write_weights, state.read_weights)
        precedence = update_precedence(state.precedence, write_weights)  # (B, N)
        read_content = content_weighting(memory, read_keys, read_strengths)  # (B, R, N)
        read_weights = read_weighting(backward, read_content, forward, read_modes)  # (B, R, N)
        read_vectors = read(memory, read_weights)  # (B, R, W)
        y = self.output(torch.cat([h, read_vectors.flatten(1)], dim=1))  # (B, O)

        for name, value in (
            ("usage", usage),
            ("allocation", allocation),
            ("free_gates", free_gates),
            ("write_gate", write_gate),
            ("allocation_gate", allocation_gate),
            ("write_content", write_content),
            ("write_weights", write_weights),
            ("memory", memory),
            ("link", link),
            ("precedence", precedence),
            ("forward", forward),
            ("backward", backward),
            ("read_content", read_content),
            ("read_modes", read_modes),
            ("read_weights", read_weights),
            ("read_vectors", read_vectors),
        ):
            record(f"dnc.{name}", value)
        new_state = DNCState((h, c), memory, usage, link, precedence, read_weights, write_weights, read_vectors)
        return y, new_state
