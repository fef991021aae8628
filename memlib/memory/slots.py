"""Slot-based memory: a few slots, a write policy that chooses which slot to overwrite, and a read by content.

With ``N`` slots and more than ``N`` things worth keeping, something must be forgotten: the write policy
decides what. Two policies share one module, so they can be measured against each other as the load grows
past capacity:

- ``"learned"``: a gate decides *whether* to write, and attention over the slots (scored from each slot's
  content, the input and the slot's recency) decides *where*; both are trained with the rest of the model;
- ``"lrw"``: a fixed baseline that always writes, into the least recently written slot (ties to the lowest
  index): a FIFO buffer of the last ``N`` inputs;
- ``"random"``: a fixed baseline that always writes, into a slot drawn uniformly at random (from torch's
  global generator on the input's device: seed it, e.g. with ``memlib.seed_everything``, to repeat a run),
  empty or not: random replacement, as in a cache.

This is our own minimal design, assembled from standard parts: write-by-attention with an erase toward the
new value as in the Neural Turing Machine (Graves et al. 2014, sec. 3.2), additive attention scores
(Bahdanau et al. 2015) for choosing the slot, and content-based reading with a key strength (Graves et al.
2014, sec. 3.3.1). It is not the model of one paper.

Each step reads first (from the memory before this step's write, so a query never finds itself) and then
writes.

Shapes: ``B`` batch, ``T`` time, ``I`` input features, ``N`` slots, ``W`` slot width, ``O`` outputs.

Trace names (each once per step):

- ``slots.read_weights`` (B, N): the read weighting (sums to 1);
- ``slots.write_weights`` (B, N): where the write goes (sums to 1; one-hot for ``"lrw"`` and ``"random"``);
- ``slots.write_gate`` (B,): how much is written (in (0, 1); 1 for ``"lrw"`` and ``"random"``);
- ``slots.memory`` (B, N, W): the slots after the write;
- ``slots.recency`` (B, N): 1 for a slot just written, decaying by ``decay`` each step after; 0 if never written.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from memlib.tracing import record
from memlib.validate import check_float, check_sizes

POLICIES = ("learned", "lrw", "random")


class SlotState(NamedTuple):
    """The slot memory's state, taken and returned by :meth:`SlotMemoryCell.forward`.

    >>> SlotState._fields
    ('memory', 'recency')
    """
    memory: torch.Tensor  # (B, N, W) slot contents
    recency: torch.Tensor  # (B, N) in [0, 1]: 1 just written, times `decay` per step since; 0 never written


def _check_float(name: str, label: str, x: object, shape: tuple[int | None, ...], legend: str, dtype: torch.dtype):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected {label} as a tensor {legend}, got {type(x).__name__}")
    if x.dtype != dtype:
        raise TypeError(f"{name}: expected {label} of dtype {dtype} (the weights' dtype), got {x.dtype}")
    if x.dim() != len(shape) or any(
        want is not None and got != want for got, want in zip(x.shape, shape, strict=False)
    ):
        wanted = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected {label} of shape {legend} = {wanted}, got {tuple(x.shape)}")


class SlotMemoryCell(nn.Module):
    """One step of the slot memory: ``forward(x (B, I), state) -> (read (B, W), state)``.

    ``state=None`` starts from empty slots (zeros, recency 0) on ``x``'s device and dtype.

    Learned policy (per step, from the input ``x_t`` and the state before it):

    - value ``v_t = tanh(W_v x_t + b_v)``, gate ``g_t = sigma(w_g . x_t + b_g)``;
    - write weights ``w^w_t = softmax_i(phi . tanh(U_M M_{t-1,i} + U_x x_t + u_r rho_{t-1,i} + a_i + b))``, where
      ``a_i`` is a learned address per slot: without it, slots that start equal (empty) stay equal forever;
    - write ``M_t,i = M_{t-1,i} + g_t w^w_t,i (v_t - M_{t-1,i})`` (slot i moves toward ``v_t``);
    - recency ``rho_t,i = decay * rho_{t-1,i} * (1 - g_t w^w_t,i) + g_t w^w_t,i``.

    ``"lrw"`` uses the same value and read, with ``g_t = 1`` and ``w^w_t`` one-hot at ``argmin_i rho_{t-1,i}``
    (exact while ``decay ** (N - 1)`` stays above the dtype's smallest number: hundreds of slots in float32).
    ``"random"`` likewise, with ``w^w_t`` one-hot at a slot drawn uniformly from the ``N``.

    Read: key ``k_t = W_k x_t + b_k``, strength ``beta_t = softplus(w_beta . x_t + b_beta)``,
    ``w^r_t = softmax_i(beta_t cos(k_t, M_{t-1,i}))``, ``r_t = sum_i w^r_t,i M_{t-1,i}``.

    >>> cell = SlotMemoryCell(input_size=6, slots=4, slot_size=3, policy="lrw")
    >>> read, state = cell(torch.zeros(2, 6))
    >>> read.shape, state.memory.shape
    (torch.Size([2, 3]), torch.Size([2, 4, 3]))
    """

    def __init__(
        self, input_size: int, slots: int = 8, slot_size: int = 16, policy: str = "learned", decay: float = 0.9
    ):
        super().__init__()
        check_sizes("SlotMemoryCell", input_size=input_size, slots=slots, slot_size=slot_size)
        if policy not in POLICIES:
            raise ValueError(f"SlotMemoryCell: expected policy in {POLICIES}, got {policy!r}")
        check_float("SlotMemoryCell", "decay", decay, low=0, high=1, low_open=True, high_open=True,
                    expected="decay in (0, 1)")
        self.input_size, self.slots, self.slot_size = input_size, slots, slot_size
        self.policy, self.decay = policy, float(decay)
        W = slot_size
        self.value = nn.Linear(input_size, W)  # W_v, b_v
        self.key = nn.Linear(input_size, W)  # W_k, b_k
        self.strength = nn.Linear(input_size, 1)  # w_beta, b_beta
        if policy == "learned":
            self.gate = nn.Linear(input_size, 1)  # w_g, b_g
            self.score_memory = nn.Linear(W, W, bias=False)  # U_M
            self.score_input = nn.Linear(input_size, W)  # U_x, b
            self.score_recency = nn.Parameter(torch.empty(W))  # u_r
            self.score_out = nn.Parameter(torch.empty(W))  # phi
            self.slot_address = nn.Parameter(torch.randn(slots, W))  # a_i: tells the slots apart
            bound = 1 / math.sqrt(W)
            nn.init.uniform_(self.score_recency, -bound, bound)
            nn.init.uniform_(self.score_out, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, slots={self.slots}, slot_size={self.slot_size}, policy={self.policy!r}"

    def initial_state(self, batch_size: int, like: torch.Tensor) -> SlotState:
        """Empty slots for ``batch_size`` rows, on ``like``'s device and dtype."""
        memory = like.new_zeros(batch_size, self.slots, self.slot_size)
        return SlotState(memory, like.new_zeros(batch_size, self.slots))

    def _check_state(self, state: object, x: torch.Tensor) -> SlotState:
        if not isinstance(state, tuple) or len(state) != 2:
            raise TypeError(
                f"SlotMemoryCell: expected state as a SlotState (memory, recency), got {type(state).__name__}"
            )
        B, N, W = x.shape[0], self.slots, self.slot_size
        _check_float("SlotMemoryCell", "state.memory", state[0], (B, N, W), "(B, N, W)", x.dtype)
        _check_float("SlotMemoryCell", "state.recency", state[1], (B, N), "(B, N)", x.dtype)
        for label, s in zip(("memory", "recency"), state, strict=True):
            if s.device != x.device:
                raise ValueError(f"SlotMemoryCell: expected state.{label} on {x.device} (the input's), got {s.device}")
        return SlotState(*state)

    def _write_policy(self, x: torch.Tensor, state: SlotState) -> tuple[torch.Tensor, torch.Tensor]:
        """(write weights (B, N), gate (B,)) from the input and the state before the write."""
        if self.policy == "lrw":
            # the least recently written slot; argmin takes the first of ties, so empty slots fill in order
            weights = F.one_hot(state.recency.argmin(-1), self.slots).to(x.dtype)  # (B, N)
            return weights, x.new_ones(x.shape[0])
        if self.policy == "random":
            # any slot, each with probability 1/N, whether empty or not
            pick = torch.randint(self.slots, (x.shape[0],), device=x.device)  # (B,)
            return F.one_hot(pick, self.slots).to(x.dtype), x.new_ones(x.shape[0])
        # g_t = sigma(w_g . x_t + b_g)
        g = torch.sigmoid(self.gate(x)).squeeze(-1)  # (B,)
        # e_i = phi . tanh(U_M M_{t-1,i} + U_x x_t + u_r rho_{t-1,i} + a_i + b);  w^w = softmax_i(e_i)
        hidden = self.score_memory(state.memory) + self.score_input(x)[:, None]  # (B, N, W)
        hidden = hidden + state.recency[..., None] * self.score_recency + self.slot_address
        scores = torch.tanh(hidden) @ self.score_out  # (B, N)
        return torch.softmax(scores, dim=-1), g

    def forward(self, x: torch.Tensor, state: SlotState | None = None) -> tuple[torch.Tensor, SlotState]:
        _check_float("SlotMemoryCell", "input", x, (None, self.input_size), "(B, I)", self.value.weight.dtype)
        state = self.initial_state(x.shape[0], x) if state is None else self._check_state(state, x)
        M = state.memory  # (B, N, W)

        # Read from the memory before this step's write.
        # w^r_i = softmax_i(beta cos(k, M_i)),  beta = softplus(w_beta . x + b_beta)
        k = self.key(x)  # (B, W)
        beta = F.softplus(self.strength(x))  # (B, 1)
        similarity = torch.einsum("bw,bnw->bn", F.normalize(k, dim=-1), F.normalize(M, dim=-1))  # (B, N)
        read_weights = torch.softmax(beta * similarity, dim=-1)
        # r = sum_i w^r_i M_i
        read = torch.einsum("bn,bnw->bw", read_weights, M)  # (B, W)

        # v_t = tanh(W_v x_t + b_v)
        v = torch.tanh(self.value(x))  # (B, W)
        weights, g = self._write_policy(x, state)
        amount = g[:, None] * weights  # (B, N): g_t w^w_t,i
        # M_t,i = M_{t-1,i} + g_t w^w_t,i (v_t - M_{t-1,i})
        memory = M + amount[..., None] * (v[:, None] - M)
        # rho_t,i = decay rho_{t-1,i} (1 - g_t w^w_t,i) + g_t w^w_t,i
        recency = self.decay * state.recency * (1 - amount) + amount

        record("slots.read_weights", read_weights)
        record("slots.write_weights", weights)
        record("slots.write_gate", g)
        record("slots.memory", memory)
        record("slots.recency", recency)
        return read, SlotState(memory, recency)


class SlotMemory(nn.Module):
    """A slot memory over a sequence, with a linear readout of each step's input and read.

    ``y_t = W_o [x_t; r_t] + b_o``.
    ``forward(x (B, T, I), state=None) -> (y (B, T, O), state)``; see :class:`SlotMemoryCell`.

    >>> memory = SlotMemory(input_size=6, output_size=4, slots=5, slot_size=3, policy="lrw")
    >>> y, state = memory(torch.zeros(2, 7, 6))
    >>> y.shape, state.memory.shape, state.recency.shape
    (torch.Size([2, 7, 4]), torch.Size([2, 5, 3]), torch.Size([2, 5]))
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        slots: int = 8,
        slot_size: int = 16,
        policy: str = "learned",
        decay: float = 0.9,
    ):
        super().__init__()
        check_sizes("SlotMemory", output_size=output_size)
        self.cell = SlotMemoryCell(input_size, slots, slot_size, policy, decay)
        self.readout = nn.Linear(input_size + slot_size, output_size)

    def forward(self, x: torch.Tensor, state: SlotState | None = None) -> tuple[torch.Tensor, SlotState]:
        _check_float(
            "SlotMemory", "input", x, (None, None, self.cell.input_size), "(B, T, I)", self.readout.weight.dtype
        )
        if 0 in x.shape:
            raise ValueError(
                f"SlotMemory: expected a non-empty batch and sequence, got input of shape {tuple(x.shape)}"
            )
        outputs = []
        for x_t in x.unbind(1):  # T x (B, I)
            read, state = self.cell(x_t, state)
            outputs.append(self.readout(torch.cat([x_t, read], dim=-1)))
        return torch.stack(outputs, dim=1), state  # (B, T, O)
