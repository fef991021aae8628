"""Neural Turing Machine (Graves, Wayne & Danihelka 2014, "Neural Turing Machines", section 3).

Shapes: ``B`` batch, ``T`` time, ``I`` input features, ``O`` output features, ``H`` controller width,
``N`` memory slots, ``W`` slot width, ``R`` read heads, ``S`` shift kernel size (``2 * shift_range + 1``).

At each step the controller (an LSTM, or a one-layer tanh network: section 3.4) sees the input and the
read vectors of the previous step, and emits every head's parameters: key ``k``, key strength
``beta = softplus(.) >= 0``, gate ``g = sigmoid(.)``, shift kernel ``s = softmax(.)`` over the offsets
``-shift_range .. shift_range``, sharpening ``gamma = 1 + softplus(.) >= 1``; the write head also emits
the erase vector ``e = sigmoid(.)`` and the add vector ``a = tanh(.)``. The write head addresses the
memory ``M_{t-1}`` and writes (eqs. 3-4); then the read heads address the new memory ``M_t`` and read
(eq. 2). The output is a linear map of the controller's output and the new read vectors: raw scores
(apply a sigmoid, or use ``BCEWithLogitsLoss``, for bit targets).

State (:class:`NTMState`) goes in and comes out of every call; nothing is kept on the module. The
initial state (:meth:`NTM.initial_state`) has a zero memory, zero read vectors, a zero controller
state, and every head focused on slot 0, so location addressing has a definite place to start from.

Trace names (inside ``memlib.trace()``, each recorded once per step):

- ``ntm.read_weights`` (B, R, N) and ``ntm.write_weights`` (B, N): the weightings the heads used;
- ``ntm.memory`` (B, N, W): the memory after the step's write;
- ``ntm.erase`` (B, W), ``ntm.add`` (B, W): the write head's erase and add vectors;
- ``ntm.read_vectors`` (B, R, W);
- the addressing pipeline (Figure 2), for the read heads ``ntm.read.content``, ``ntm.read.gated``,
  ``ntm.read.shifted``, ``ntm.read.sharpened`` (B, R, N) and for the write head ``ntm.write.content``,
  ``ntm.write.gated``, ``ntm.write.shifted``, ``ntm.write.sharpened`` (B, N);
- the head parameters that drive it: ``ntm.read.key`` (B, R, W), ``ntm.read.beta``, ``ntm.read.g``,
  ``ntm.read.gamma`` (B, R), ``ntm.read.s`` (B, R, S); ``ntm.write.key`` (B, W), ``ntm.write.beta``,
  ``ntm.write.g``, ``ntm.write.gamma`` (B,), ``ntm.write.s`` (B, S).

An LSTM controller also records its own names (``lstm.hidden`` and the rest, see ``memlib.recurrent``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from memlib.memory.addressing import address, read, write
from memlib.memory.controller import MemoryAugmented
from memlib.recurrent import LSTMCell
from memlib.tracing import record
from memlib.validate import check_sizes

CONTROLLERS = ("lstm", "feedforward")


class NTMState(NamedTuple):
    """The NTM's state, taken and returned by an :class:`NTM`.

    >>> NTM(4, 2, memory_slots=8, memory_width=5).initial_state(3).memory.shape
    torch.Size([3, 8, 5])
    """
    controller: tuple[torch.Tensor, ...]  # (h, c) each (B, H) for the LSTM controller; () for feed-forward
    memory: torch.Tensor  # (B, N, W)
    read_weights: torch.Tensor  # (B, R, N)
    write_weights: torch.Tensor  # (B, N)
    read_vectors: torch.Tensor  # (B, R, W)


class _HeadParams(NamedTuple):
    key: torch.Tensor  # (B, heads, W)
    beta: torch.Tensor  # (B, heads)
    g: torch.Tensor  # (B, heads)
    s: torch.Tensor  # (B, heads, S)
    gamma: torch.Tensor  # (B, heads)


def _head_params(raw: torch.Tensor, W: int, S: int) -> tuple[_HeadParams, torch.Tensor]:
    """Split and squash one kind of head's raw outputs (B, heads, W + 3 + S + rest) -> parameters, rest."""
    key, beta, g, s, gamma, rest = raw.split([W, 1, 1, S, 1, raw.shape[-1] - W - 3 - S], dim=-1)
    # beta >= 0 (section 3.3.1); g in (0, 1) (3.3.2); s a distribution over the shifts; gamma >= 1 (eq. 9)
    params = _HeadParams(
        key, F.softplus(beta[..., 0]), torch.sigmoid(g[..., 0]), torch.softmax(s, dim=-1), 1 + F.softplus(gamma[..., 0])
    )
    return params, rest


class NTM(MemoryAugmented):
    """A Neural Turing Machine with ``read_heads`` read heads and one write head (Graves et al. 2014).

    Defaults follow the paper's copy experiment (section 4.1: 128 x 20 memory, 100 LSTM units, one
    head of each kind, shifts of -1, 0, +1). The controller sees ``[x_t, r_{t-1}]`` (I + R*W features).

    ``forward(x (B, T, I), state = initial) -> (y (B, T, O), state)``; ``step(x (B, I), state) -> (y (B, O),
    state)``. See the module docstring for the step order, the initial state and the trace names.

    >>> ntm = NTM(input_size=6, output_size=4, controller_size=16, memory_slots=8, memory_width=5)
    >>> y, state = ntm(torch.zeros(2, 3, 6))  # (B, T, I)
    >>> y.shape, state.memory.shape
    (torch.Size([2, 3, 4]), torch.Size([2, 8, 5]))
    >>> y, state = ntm(torch.zeros(2, 3, 6), state)  # state in, state out
    """

    state_type = NTMState

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        controller_size: int = 100,
        memory_slots: int = 128,
        memory_width: int = 20,
        read_heads: int = 1,
        shift_range: int = 1,
        controller: str = "lstm",
        device=None,
        dtype=None,
    ):
        super().__init__()
        check_sizes(
            "NTM",
            input_size=input_size,
            output_size=output_size,
            controller_size=controller_size,
            memory_slots=memory_slots,
            memory_width=memory_width,
            read_heads=read_heads,
            shift_range=shift_range,
        )
        if controller not in CONTROLLERS:
            raise ValueError(f"NTM: expected controller 'lstm' or 'feedforward', got {controller!r}")
        self.input_size, self.output_size, self.controller_size = input_size, output_size, controller_size
        self.memory_slots, self.memory_width, self.read_heads = memory_slots, memory_width, read_heads
        self.shift_range, self.controller_kind = shift_range, controller
        factory = {"device": device, "dtype": dtype}
        W, R, S = memory_width, read_heads, 2 * shift_range + 1
        controller_input = input_size + R * W
        if controller == "lstm":
            self.controller = LSTMCell(controller_input, controller_size, **factory)
        else:
            self.controller = nn.Linear(controller_input, controller_size, **factory)
        self._read_size = W + 3 + S  # key, beta, g, s, gamma
        self._write_size = W + 3 + S + 2 * W  # ... and erase, add
        self.heads = nn.Linear(controller_size, R * self._read_size + self._write_size, **factory)
        self.output = nn.Linear(controller_size + R * W, output_size, **factory)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.output_size}, controller={self.controller_kind!r}, "
            f"memory=({self.memory_slots}, {self.memory_width}), read_heads={self.read_heads}, "
            f"shift_range={self.shift_range}"
        )

    def _state_shapes(self, B: int) -> dict[str, object]:
        H, N, W, R = self.controller_size, self.memory_slots, self.memory_width, self.read_heads
        controller = ((B, H), (B, H)) if self.controller_kind == "lstm" else ()
        return {
            "controller": controller,
            "memory": (B, N, W),
            "read_weights": (B, R, N),
            "write_weights": (B, N),
            "read_vectors": (B, R, W),
        }

    def initial_state(self, batch_size: int, device=None, dtype=None) -> NTMState:
        """Zero memory, read vectors and controller state; every head focused on slot 0.

        ``device`` and ``dtype`` default to the parameters'.
        """
        check_sizes("NTM.initial_state", batch_size=batch_size)
        factory = self._factory(device, dtype)
        shapes = self._state_shapes(batch_size)
        focus = torch.zeros(self.memory_slots, **factory)
        focus[0] = 1.0
        return NTMState(
            controller=tuple(torch.zeros(shape, **factory) for shape in shapes["controller"]),
            memory=torch.zeros(shapes["memory"], **factory),
            read_weights=focus.expand(shapes["read_weights"]).clone(),
            write_weights=focus.expand(shapes["write_weights"]).clone(),
            read_vectors=torch.zeros(shapes["read_vectors"], **factory),
        )

    def _step(self, x: torch.Tensor, state: NTMState) -> tuple[torch.Tensor, NTMState]:
        B, W, R, S = x.shape[0], self.memory_width, self.read_heads, 2 * self.shift_range + 1
        controller_input = torch.cat([x, state.read_vectors.flatten(1)], dim=1)  # (B, I + R*W)
        if self.controller_kind == "lstm":
            h, c = self.controller(controller_input, state.controller)  # (B, H) each
            controller_state: tuple[torch.Tensor, ...] = (h, c)
        else:
            h, controller_state = torch.tanh(self.controller(controller_input)), ()  # (B, H)

        read_raw, write_raw = self.heads(h).split([R * self._read_size, self._write_size], dim=1)
        reads, _ = _head_params(read_raw.view(B, R, self._read_size), W, S)  # (B, R, ...)
        writes, rest = _head_params(write_raw.view(B, 1, self._write_size), W, S)  # (B, 1, ...)
        erase_raw, add_raw = rest.split([W, W], dim=-1)  # (B, 1, W) each
        erase, add = torch.sigmoid(erase_raw), torch.tanh(add_raw)

        # Write first (eqs. 3-4 turn M_{t-1} into M_t), then read M_t (eq. 2).
        write_stages = address(state.memory, state.write_weights[:, None], *writes)  # 4 x (B, 1, N)
        memory = write(state.memory, write_stages.sharpened, erase, add)  # (B, N, W)
        read_stages = address(memory, state.read_weights, *reads)  # 4 x (B, R, N)
        read_vectors = read(memory, read_stages.sharpened)  # (B, R, W)
        y = self.output(torch.cat([h, read_vectors.flatten(1)], dim=1))  # (B, O)

        for stage, value in read_stages._asdict().items():
            record(f"ntm.read.{stage}", value)
        for stage, value in write_stages._asdict().items():
            record(f"ntm.write.{stage}", value[:, 0])
        for name, value in reads._asdict().items():
            record(f"ntm.read.{name}", value)
        for name, value in writes._asdict().items():
            record(f"ntm.write.{name}", value[:, 0])
        record("ntm.read_weights", read_stages.sharpened)
        record("ntm.write_weights", write_stages.sharpened[:, 0])
        record("ntm.memory", memory)
        record("ntm.erase", erase[:, 0])
        record("ntm.add", add[:, 0])
        record("ntm.read_vectors", read_vectors)
        write_weights = write_stages.sharpened[:, 0]  # (B, N)
        return y, NTMState(controller_state, memory, read_stages.sharpened, write_weights, read_vectors)
