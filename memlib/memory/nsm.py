"""Neural stored-program memory (NSM): Le, Tran & Venkatesh 2020, "Neural Stored-program Memory" (ICLR).

A memory-augmented network stores *data* in its memory and one *program* in its controller's weights. NSM
adds a second memory that stores programs: ``P`` weight matrices of the interface network (the layer that
turns the controller's state into memory instructions), each with a key. At every step a program interface
network reads the controller's state and emits a key and a strength; content attention over the program
keys gives program weights, and the interface network runs with the attention-weighted mixture of the
stored weights. So the machine can switch programs from step to step (the paper's Neural Universal Turing
Machine, NUTM, is an NTM with this memory).

Here: an LSTM controller (or, as the NTM allows, a one-layer tanh feed-forward one), a data memory of
``N`` slots with one NTM write head and one NTM read head (content, interpolation, shift and sharpening:
Graves et al. 2014, sec. 3.3, computed by the functions of ``memlib.memory.addressing`` that the NTM
uses), and the program memory around the interface network (Le et al. 2020, sec. 3). Simplified against
the paper: one read head; no loss term of any kind on the program keys (they are learned through the task
alone); the output layer reads the controller state and the new read vector (as in the NTM), and is not
programmed. Unlike ``memlib.memory.NTM``, the add vector is not squashed by a tanh.

Shapes: ``B`` batch, ``T`` time, ``I`` inputs, ``O`` outputs, ``H`` controller width, ``N`` memory slots,
``W`` slot width, ``P`` programs, ``K`` program key width, ``X`` interface vector width.

Trace names (each once per step):

- ``nsm.program_weights`` (B, P): the attention over programs (sums to 1);
- ``nsm.write_weights`` (B, N) and ``nsm.read_weights`` (B, N): the heads' weightings (each sums to 1);
- ``nsm.memory`` (B, N, W): the data memory after the write;
- ``nsm.read`` (B, W): the read vector.

An LSTM controller (``memlib.LSTMCell``) records its own ``lstm.*`` names too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from memlib.memory import fast
from memlib.memory.addressing import address, read, write
from memlib.recurrent import LSTMCell
from memlib.tracing import record
from memlib.validate import check_int

CONTROLLERS = ("lstm", "feedforward")


@dataclass(frozen=True)
class NSMConfig:
    """The sizes of an :class:`NSM`, checked when made.

    >>> NSMConfig(input_size=4, output_size=2, shift_range=40)
    Traceback (most recent call last):
    ...
    ValueError: NSMConfig: expected shift_range in [0, memory_slots), got 40
    """
    input_size: int  # I
    output_size: int  # O
    hidden_size: int = 64  # H: the controller's width
    memory_slots: int = 32  # N: enough for copy sequences of up to ~30 vectors
    slot_size: int = 16  # W
    programs: int = 4  # P: the paper's algorithmic tasks use a handful of programs
    program_key_size: int = 8  # K: keys only need to tell P programs apart
    shift_range: int = 1  # shifts -1, 0, +1, as in the NTM's experiments
    controller: str = "lstm"  # or "feedforward": no recurrent state, so everything kept must go to memory

    def __post_init__(self) -> None:
        for name in ("input_size", "output_size", "hidden_size", "memory_slots", "slot_size", "programs"):
            value = getattr(self, name)
            check_int("NSMConfig", name, value, low=1)
        check_int("NSMConfig", "program_key_size", self.program_key_size, low=1)
        if self.controller not in CONTROLLERS:
            raise ValueError(f"NSMConfig: expected controller 'lstm' or 'feedforward', got {self.controller!r}")
        check_int("NSMConfig", "shift_range", self.shift_range, low=0, high=self.memory_slots - 1,
                  expected="shift_range in [0, memory_slots)")


class NSMState(NamedTuple):
    """The NSM's state, taken and returned by :meth:`NSMCell.forward` and :meth:`NSM.forward`.

    >>> NSMState._fields[:3]
    ('h', 'c', 'memory')
    """
    h: torch.Tensor  # (B, H) controller hidden state
    c: torch.Tensor  # (B, H) controller cell state (zero with a feed-forward controller)
    memory: torch.Tensor  # (B, N, W) data memory
    read: torch.Tensor  # (B, W) the last read vector
    read_weights: torch.Tensor  # (B, N) the read head's last weighting
    write_weights: torch.Tensor  # (B, N) the write head's last weighting


def _head_sizes(W: int, shifts: int, write: bool) -> dict[str, int]:
    """The slices of an NTM head's part of the interface vector (Graves et al. 2014, sec. 3)."""
    sizes = {"key": W, "beta": 1, "g": 1, "s": shifts, "gamma": 1}
    return sizes | ({"e": W, "a": W} if write else {})


class NSMCell(nn.Module):
    """One step of an NTM-style machine whose interface network is drawn from a program memory.

    Per step (Le et al. 2020, sec. 3, with an NTM's memory):

    1. controller: ``h_t, c_t = LSTM([x_t; r_{t-1}], (h_{t-1}, c_{t-1}))``, or feed-forward
       ``h_t = tanh(W_h [x_t; r_{t-1}] + b_h)``;
    2. program interface: ``[k^p_t; beta^p_t] = W_p h_t + b_p``, ``beta^p_t = softplus(.)``;
    3. program attention: ``w^p_t(i) = softmax_i(beta^p_t cos(k^p_t, M_p^K(i)))``;
    4. working interface weights: ``W^c_t = sum_i w^p_t(i) M_p^V(i)`` (and biases alike);
    5. interface vector ``xi_t = W^c_t h_t + b^c_t``, split into the write and read heads' parameters;
    6. write: ``M_t = M_{t-1} * (1 - w^w_t e_t^T) + w^w_t a_t^T``; read: ``r_t = M_t^T w^r_t``;
    7. output ``y_t = W_o [h_t; r_t] + b_o``.

    Parameters: ``program_keys`` (P, K) is ``M_p^K``; ``program_weights`` (P, X, H) and
    ``program_biases`` (P, X) are ``M_p^V``, the stored interface networks.

    ``forward(x (B, I), state=None) -> (y (B, O), state)``; ``state=None`` starts on ``x``'s device and dtype
    with a memory of 1e-6 everywhere, zero controller state and read, and both heads on slot 0.

    >>> cell = NSMCell(NSMConfig(input_size=6, output_size=4, hidden_size=16, memory_slots=8, slot_size=5))
    >>> y, state = cell(torch.zeros(2, 6))  # one step (B, I)
    >>> y.shape
    torch.Size([2, 4])
    """

    def __init__(self, config: NSMConfig):
        super().__init__()
        if not isinstance(config, NSMConfig):
            raise TypeError(f"NSMCell: expected an NSMConfig, got {type(config).__name__}")
        self.config = c = config
        shifts = 2 * c.shift_range + 1
        self._write_sizes = _head_sizes(c.slot_size, shifts, write=True)
        self._read_sizes = _head_sizes(c.slot_size, shifts, write=False)
        X = sum(self._write_sizes.values()) + sum(self._read_sizes.values())
        if c.controller == "lstm":
            self.controller = LSTMCell(c.input_size + c.slot_size, c.hidden_size)
        else:
            self.controller = nn.Linear(c.input_size + c.slot_size, c.hidden_size)
        self.program_interface = nn.Linear(c.hidden_size, c.program_key_size + 1)  # W_p, b_p
        self.program_keys = nn.Parameter(torch.randn(c.programs, c.program_key_size))  # M_p^K
        bound = c.hidden_size**-0.5  # nn.Linear's initialisation, one per program
        self.program_weights = nn.Parameter(torch.empty(c.programs, X, c.hidden_size).uniform_(-bound, bound))
        self.program_biases = nn.Parameter(torch.empty(c.programs, X).uniform_(-bound, bound))
        self.output = nn.Linear(c.hidden_size + c.slot_size, c.output_size)  # W_o, b_o

    def extra_repr(self) -> str:
        c = self.config
        sizes = f"I={c.input_size}, O={c.output_size}, H={c.hidden_size} ({c.controller})"
        return f"{sizes}, N={c.memory_slots}, W={c.slot_size}, P={c.programs}, K={c.program_key_size}"

    def initial_state(self, batch_size: int, like: torch.Tensor) -> NSMState:
        """The starting state for ``batch_size`` rows, on ``like``'s device and dtype."""
        c = self.config
        zeros = like.new_zeros(batch_size, c.hidden_size)
        memory = like.new_full((batch_size, c.memory_slots, c.slot_size), 1e-6)
        first_slot = F.one_hot(like.new_zeros(batch_size, dtype=torch.long), c.memory_slots).to(like.dtype)
        return NSMState(zeros, zeros.clone(), memory, like.new_zeros(batch_size, c.slot_size), first_slot, first_slot)

    def _check_state(self, state: object, x: torch.Tensor) -> NSMState:
        if not isinstance(state, tuple) or len(state) != len(NSMState._fields):
            raise TypeError(f"NSMCell: expected state as an NSMState {NSMState._fields}, got {type(state).__name__}")
        c, B = self.config, x.shape[0]
        N, W, H = c.memory_slots, c.slot_size, c.hidden_size
        shapes = {"h": (B, H), "c": (B, H), "memory": (B, N, W), "read": (B, W), "read_weights": (B, N)}
        shapes["write_weights"] = (B, N)
        for (label, want), value in zip(shapes.items(), state, strict=True):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"NSMCell: expected state.{label} as a tensor {want}, got {type(value).__name__}")
            if value.dtype != x.dtype:
                raise TypeError(f"NSMCell: expected state.{label} of dtype {x.dtype} (the input's), got {value.dtype}")
            if tuple(value.shape) != want:
                raise ValueError(f"NSMCell: expected state.{label} of shape {want}, got {tuple(value.shape)}")
            if value.device != x.device:
                raise ValueError(f"NSMCell: expected state.{label} on {x.device} (the input's), got {value.device}")
        return NSMState(*state)

    def _head(self, xi: torch.Tensor, sizes: dict[str, int]) -> dict[str, torch.Tensor]:
        """Split and activate one head's slice (B, X_head) of the interface vector (Graves et al. 2014, sec. 3.3).

        Returns the head's parameters with a head axis of 1, as ``memlib.memory.addressing`` takes them:
        ``key`` (B, 1, W), ``beta``, ``g``, ``gamma`` (B, 1), ``s`` (B, 1, S); a write head adds
        ``e`` and ``a`` (B, 1, W).
        """
        raw = dict(zip(sizes, xi[:, None].split(list(sizes.values()), dim=-1), strict=True))  # (B, 1, .) each
        head = {
            "key": raw["key"],
            "beta": F.softplus(raw["beta"][..., 0]),  # beta >= 0
            "g": torch.sigmoid(raw["g"][..., 0]),  # g in (0, 1)
            "s": torch.softmax(raw["s"], dim=-1),  # a distribution over shifts
            "gamma": 1 + F.softplus(raw["gamma"][..., 0]),  # gamma >= 1
        }
        if "e" in raw:
            head["e"] = torch.sigmoid(raw["e"])  # erase in (0, 1)
            head["a"] = raw["a"]
        return head

    def forward(self, x: torch.Tensor, state: NSMState | None = None) -> tuple[torch.Tensor, NSMState]:
        c = self.config
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"NSMCell: expected input as a tensor (B, I), got {type(x).__name__}")
        if x.dtype != self.program_weights.dtype:
            raise TypeError(
                f"NSMCell: expected input of dtype {self.program_weights.dtype} (the weights'), got {x.dtype}"
            )
        if x.dim() != 2 or x.shape[1] != c.input_size or x.shape[0] == 0:
            raise ValueError(f"NSMCell: expected input of shape (B, I={c.input_size}), B > 0, got {tuple(x.shape)}")
        state = self.initial_state(x.shape[0], x) if state is None else self._check_state(state, x)

        # 1. h_t, c_t = LSTM([x_t; r_{t-1}], (h_{t-1}, c_{t-1}))   or   h_t = tanh(W_h [x_t; r_{t-1}] + b_h)
        controller_input = torch.cat([x, state.read], dim=-1)  # (B, I + W)
        if c.controller == "lstm":
            h, cell = self.controller(controller_input, (state.h, state.c))
        else:
            h, cell = torch.tanh(self.controller(controller_input)), state.c
        # 2. [k^p; beta^p] = W_p h_t + b_p
        k_p, beta_p = self.program_interface(h).split([c.program_key_size, 1], dim=-1)
        beta_p = F.softplus(beta_p)  # (B, 1)
        # 3. w^p(i) = softmax_i(beta^p cos(k^p, M_p^K(i)))
        similarity = F.normalize(k_p, dim=-1) @ F.normalize(self.program_keys, dim=-1).T  # (B, P)
        program_weights = torch.softmax(beta_p * similarity, dim=-1)
        # 4. W^c_t = sum_i w^p(i) M_p^V(i)
        working_weight = torch.einsum("bp,pxh->bxh", program_weights, self.program_weights)  # (B, X, H)
        working_bias = program_weights @ self.program_biases  # (B, X)
        # 5. xi_t = W^c_t h_t + b^c_t
        xi = torch.einsum("bxh,bh->bx", working_weight, h) + working_bias  # (B, X)
        n_write = sum(self._write_sizes.values())
        write_head = self._head(xi[:, :n_write], self._write_sizes)
        read_head = self._head(xi[:, n_write:], self._read_sizes)

        # 6. write (eqs. 3-4 turn M_{t-1} into M_t), then read M_t (eq. 2); addressing: eqs. 5-9
        e, a = write_head.pop("e"), write_head.pop("a")  # (B, 1, W) each
        write_weights = address(state.memory, state.write_weights[:, None], **write_head).sharpened  # (B, 1, N)
        # M_t = M_{t-1} * (1 - w^w e^T) + w^w a^T
        memory = write(state.memory, write_weights, e, a)  # (B, N, W)
        read_weights = address(memory, state.read_weights[:, None], **read_head).sharpened  # (B, 1, N)
        # r_t = sum_i w^r_t(i) M_t(i)
        r = read(memory, read_weights)[:, 0]  # (B, 1, W) -> (B, W)
        read_weights, write_weights = read_weights[:, 0], write_weights[:, 0]  # (B, N) each

        record("nsm.program_weights", program_weights)
        record("nsm.write_weights", write_weights)
        record("nsm.read_weights", read_weights)
        record("nsm.memory", memory)
        record("nsm.read", r)
        # 7. y_t = W_o [h_t; r_t] + b_o
        y = self.output(torch.cat([h, r], dim=-1))
        return y, NSMState(h, cell, memory, r, read_weights, write_weights)


class NSM(nn.Module):
    """:class:`NSMCell` over a sequence: ``forward(x (B, T, I), state=None) -> (y (B, T, O), state)``.

    >>> nsm = NSM(NSMConfig(input_size=6, output_size=4, hidden_size=16, memory_slots=8, slot_size=5))
    >>> y, state = nsm(torch.zeros(2, 3, 6))
    >>> y.shape
    torch.Size([2, 3, 4])
    """

    def __init__(self, config: NSMConfig):
        super().__init__()
        self.cell = NSMCell(config)
        self.config = config

    def forward(self, x: torch.Tensor, state: NSMState | None = None) -> tuple[torch.Tensor, NSMState]:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"NSM: expected input as a tensor (B, T, I), got {type(x).__name__}")
        if x.dim() != 3 or 0 in x.shape:
            raise ValueError(f"NSM: expected input of shape (B, T, I), non-empty, got {tuple(x.shape)}")
        cell = self.cell
        state = cell.initial_state(x.shape[0], x) if state is None else cell._check_state(state, x)
        # Time-major and contiguous, so every step's input has the strides of a fresh (B, I) tensor: the compiled
        # steps guard on strides, and slices of (B, T, I) would compile once more for every sequence length T.
        inputs = x.transpose(0, 1).contiguous().unbind(0)  # T x (B, I)
        outputs, state = fast.run(cell.forward, inputs, state)  # compiled steps where memlib.memory.fast_steps is on
        return torch.stack(outputs, dim=1), state  # (B, T, O)
