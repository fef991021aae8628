"""Memory-augmented neural network with least-recently-used access (LRUA) (Santoro et al. 2016,
"Meta-learning with memory-augmented neural networks", section 3.2).

Shapes: ``B`` batch, ``T`` time, ``I`` input features, ``O`` output features, ``H`` controller width,
``N`` memory slots, ``W`` slot width, ``R`` heads (each head reads, and writes its key).

A pure content-based memory for one-shot learning: the LSTM controller emits a key per head; heads read
by cosine similarity (``memlib.memory.addressing.content_weighting`` with ``beta = 1``, their section 3.1)
and write the key either where they last read (to update a memory) or to the least-used slots (to store
a new one), mixed by a learned sigmoid gate. One pure function per equation: :func:`update_usage`, :func:`least_used`,
:func:`lrua_write_weights`.

One step of :class:`MANN`, in the paper's order: the controller sees ``[x_t, r_{t-1}]``; the least-used
weighting of the previous usage picks slots; the least-used slot is erased (set to zero, as in the
paper, "prior to writing to memory"); each head writes its key with ``w^w_t``; the heads read the new
memory with their keys; usage decays by ``gamma`` and adds this step's reads and writes. The output is a
linear map of ``[h_t, r_t]`` (raw class scores: Santoro et al. apply a softmax). The initial state is all
zeros: the first writes go to the least-used slots ``0 .. R-1``.

The paper writes ``w^lu`` with ones at the ``n`` smallest usages, ``n`` the number of reads: here
``n = R``, and every head shares that vector, as in the paper's equations.

Trace names (inside ``memlib.trace()``, each recorded once per step):

- ``mann.least_used`` (B, N): the previous step's least-used weighting, 0/1 with R ones;
- ``mann.write_gate`` (B, R): ``sigmoid(alpha)``, 1 for "write where I read", 0 for "write to a free slot";
- ``mann.write_weights`` (B, R, N), ``mann.memory`` (B, N, W) after the write;
- ``mann.read_weights`` (B, R, N), ``mann.read_vectors`` (B, R, W), ``mann.keys`` (B, R, W);
- ``mann.usage`` (B, N) after the step.

The LSTM controller also records its own names (``lstm.hidden`` and the rest, see ``memlib.recurrent``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from memlib.memory.addressing import (
    content_weighting,
    read,
    write,
)
from memlib.memory.controller import MemoryAugmented
from memlib.recurrent import LSTMCell
from memlib.tracing import record
from memlib.validate import check_float, check_sizes

# The book prints these functions' code (chapter 11) with this name: keep it until the page is re-run.
from memlib.validate import check_shape as _expect

# ---------------------------------------------------------------------------------------------
# The equations, one pure function each.
# ---------------------------------------------------------------------------------------------


def update_usage(
    usage: torch.Tensor, read_weights: torch.Tensor, write_weights: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Usage weights (Santoro et al. 2016, section 3.2): a decaying sum of every head's reads and writes.

    The previous ``usage`` (B, N), this step's ``read_weights`` and ``write_weights`` (B, R, N), decay
    ``gamma`` in [0, 1] -> (B, N), non-negative.

    >>> update_usage(torch.tensor([[1.0, 0.0]]), torch.tensor([[[0.0, 1.0]]]), torch.zeros(1, 1, 2), gamma=0.5)
    tensor([[0.5000, 1.0000]])
    """
    _expect("update_usage", "usage", usage, "(B, N)", (None, None))
    B, N = usage.shape
    _expect("update_usage", "read_weights", read_weights, "(B, R, N)", (B, None, N))
    _expect("update_usage", "write_weights", write_weights, "(B, R, N)", tuple(read_weights.shape))
    if not 0 <= gamma <= 1:
        raise ValueError(f"update_usage: expected gamma in [0, 1], got {gamma!r}")
    # w^u_t = gamma w^u_{t-1} + w^r_t + w^w_t   (summed over the heads)
    return gamma * usage + read_weights.sum(dim=1) + write_weights.sum(dim=1)


def least_used(usage: torch.Tensor, n: int) -> torch.Tensor:
    """Least-used weights (Santoro et al. 2016, section 3.2): 1 at the ``n`` least-used slots, else 0.

    ``usage`` (B, N) -> (B, N) of 0/1 with exactly ``n`` ones (ties go to the lower slot index).

    >>> least_used(torch.tensor([[0.9, 0.1, 0.5]]), n=1)
    tensor([[0., 1., 0.]])
    """
    _expect("least_used", "usage", usage, "(B, N)", (None, None))
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= usage.shape[1]:
        raise ValueError(f"least_used: expected n as an integer in [1, N = {usage.shape[1]}], got {n!r}")
    order = torch.sort(usage, dim=1, stable=True).indices  # (B, N), least used first
    # w^lu_t(i) = 0 if w^u_t(i) > m(w^u_t, n), else 1   (m(v, n): the n-th smallest element of v)
    return torch.zeros_like(usage).scatter(1, order[:, :n], 1.0)


def lrua_write_weights(read_weights: torch.Tensor, least_used: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """LRUA write weights (Santoro et al. 2016, section 3.2).

    The previous ``read_weights`` (B, R, N), the previous ``least_used`` weights (B, N), ``gate``
    ``sigmoid(alpha)`` (B, R) in [0, 1] -> (B, R, N).

    >>> lrua_write_weights(torch.tensor([[[1.0, 0.0]]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0]]))
    tensor([[[1., 0.]]])
    """
    _expect("lrua_write_weights", "read_weights", read_weights, "(B, R, N)", (None, None, None))
    B, R, N = read_weights.shape
    _expect("lrua_write_weights", "least_used", least_used, "(B, N)", (B, N))
    _expect("lrua_write_weights", "gate", gate, "(B, R)", (B, R))
    # w^w_t = sigma(alpha) w^r_{t-1} + (1 - sigma(alpha)) w^lu_{t-1}
    return gate[..., None] * read_weights + (1 - gate[..., None]) * least_used[:, None, :]


# ---------------------------------------------------------------------------------------------
# The model.
# ---------------------------------------------------------------------------------------------


class MANNState(NamedTuple):
    """The MANN's state, taken and returned by a :class:`MANN`.

    >>> MANN(4, 2, memory_slots=8).initial_state(3).usage.shape
    torch.Size([3, 8])
    """
    controller: tuple[torch.Tensor, torch.Tensor]  # (h, c) each (B, H)
    memory: torch.Tensor  # (B, N, W)
    read_weights: torch.Tensor  # (B, R, N)
    usage: torch.Tensor  # (B, N)
    read_vectors: torch.Tensor  # (B, R, W)


class MANN(MemoryAugmented):
    """A memory-augmented network with LRUA and an LSTM controller (Santoro et al. 2016).

    Default sizes are those reported for the paper's Omniglot model (200 LSTM units, 128 x 40 memory,
    4 heads); ``gamma`` is the usage decay (0.95, our choice: an unused slot's usage halves in about 14
    steps). Per head the controller emits a key (``tanh``, W numbers: read and written) and the gate
    ``alpha`` (1 number).

    ``forward(x (B, T, I), state = zeros) -> (y (B, T, O), state)``; ``step(x (B, I), state) -> (y (B, O),
    state)``. See the module docstring for the step order and the trace names.

    >>> mann = MANN(input_size=6, output_size=4, controller_size=16, memory_slots=8, memory_width=5, read_heads=2)
    >>> y, state = mann(torch.zeros(2, 3, 6))
    >>> y.shape, state.usage.shape
    (torch.Size([2, 3, 4]), torch.Size([2, 8]))
    """

    state_type = MANNState

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        controller_size: int = 200,
        memory_slots: int = 128,
        memory_width: int = 40,
        read_heads: int = 4,
        gamma: float = 0.95,
        device=None,
        dtype=None,
    ):
        super().__init__()
        check_sizes(
            "MANN",
            input_size=input_size,
            output_size=output_size,
            controller_size=controller_size,
            memory_slots=memory_slots,
            memory_width=memory_width,
            read_heads=read_heads,
        )
        if read_heads > memory_slots:
            raise ValueError(f"MANN: expected read_heads <= memory_slots = {memory_slots}, got {read_heads}")
        check_float("MANN", "gamma", gamma, low=0, high=1, expected="gamma (usage decay) in [0, 1]")
        self.input_size, self.output_size, self.controller_size = input_size, output_size, controller_size
        self.memory_slots, self.memory_width, self.read_heads = memory_slots, memory_width, read_heads
        self.gamma = float(gamma)
        factory = {"device": device, "dtype": dtype}
        W, R = memory_width, read_heads
        self.controller = LSTMCell(input_size + R * W, controller_size, **factory)
        self.heads = nn.Linear(controller_size, R * (W + 1), **factory)  # per head: key (W), alpha (1)
        self.output = nn.Linear(controller_size + R * W, output_size, **factory)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.output_size}, controller_size={self.controller_size}, "
            f"memory=({self.memory_slots}, {self.memory_width}), read_heads={self.read_heads}, gamma={self.gamma}"
        )

    def _state_shapes(self, B: int) -> dict[str, object]:
        H, N, W, R = self.controller_size, self.memory_slots, self.memory_width, self.read_heads
        return {
            "controller": ((B, H), (B, H)),
            "memory": (B, N, W),
            "read_weights": (B, R, N),
            "usage": (B, N),
            "read_vectors": (B, R, W),
        }

    def _step(self, x: torch.Tensor, state: MANNState) -> tuple[torch.Tensor, MANNState]:
        B, W, R = x.shape[0], self.memory_width, self.read_heads
        h, c = self.controller(torch.cat([x, state.read_vectors.flatten(1)], dim=1), state.controller)  # (B, H)
        keys, alpha = self.heads(h).view(B, R, W + 1).split([W, 1], dim=-1)  # (B, R, W), (B, R, 1)
        keys, gate = torch.tanh(keys), torch.sigmoid(alpha[..., 0])  # (B, R, W), (B, R)

        previous_least_used = least_used(state.usage, R)  # w^lu_{t-1}: (B, N)
        write_weights = lrua_write_weights(state.read_weights, previous_least_used, gate)  # (B, R, N)
        # The least-used slot is set to zero before the write (section 3.2).
        emptied = torch.ones_like(state.usage).scatter(1, state.usage.argmin(dim=1, keepdim=True), 0.0)  # (B, N)
        # M_t(i) = M_{t-1}(i) + sum over heads of w^w_t(i) k_t   (an add without erase)
        memory = write(state.memory * emptied[..., None], write_weights, torch.zeros_like(keys), keys)  # (B, N, W)
        # w^r_t(i) = exp(K(k_t, M_t(i))) / sum_j exp(K(k_t, M_t(j)))
        read_weights = content_weighting(memory, keys, torch.ones_like(gate))  # (B, R, N)
        read_vectors = read(memory, read_weights)  # (B, R, W)
        usage = update_usage(state.usage, read_weights, write_weights, self.gamma)  # (B, N)
        y = self.output(torch.cat([h, read_vectors.flatten(1)], dim=1))  # (B, O)

        for name, value in (
            ("least_used", previous_least_used),
            ("write_gate", gate),
            ("write_weights", write_weights),
            ("memory", memory),
            ("keys", keys),
            ("read_weights", read_weights),
            ("read_vectors", read_vectors),
            ("usage", usage),
        ):
            record(f"mann.{name}", value)
        return y, MANNState((h, c), memory, read_weights, usage, read_vectors)
