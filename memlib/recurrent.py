"""Recurrent networks (Elman RNN, LSTM, GRU) built cell -> layer -> stack, drop-in compatible with ``torch.nn``.

Shapes: ``T`` time steps, ``B`` batch, ``I`` input features, ``H`` hidden width, ``L`` layers,
``D`` directions (2 when bidirectional, else 1), ``G`` gates (1 RNN, 4 LSTM, 3 GRU).

``RNN``, ``LSTM`` and ``GRU`` (and their cells) take ``torch.nn``'s constructor arguments (``proj_size``
is not supported), hold parameters under ``torch.nn``'s names and shapes (``weight_ih_l0`` (G*H, I),
``weight_hh_l0`` (G*H, H), ``bias_ih_l0`` and ``bias_hh_l0`` (G*H,), ``_reverse`` for the backward
direction; gates stacked in the order i, f, g, o for the LSTM and r, z, n for the GRU), and take and
return what ``torch.nn`` does: input (T, B, I), (B, T, I) with ``batch_first``, unbatched (T, I), or a
``PackedSequence``; state (L*D, B, H). So ``m.load_state_dict(torch_module.state_dict())`` works and the
outputs match.

Two paths, one math. Inside ``memlib.trace()``, or inside ``with memlib.reference_path():``,
a stack runs the reference path: the gates computed step by step in Python, as in the equations
(Hochreiter & Schmidhuber 1997 with the forget gate of Gers et al. 2000; Cho et al. 2014 in PyTorch's
form, where the reset gate multiplies ``W_hn h + b_hn``). Otherwise it calls torch's fused kernels
(``torch._VF.lstm``, ``gru``, ``rnn_tanh``, ``rnn_relu``), as ``torch.nn`` does. The cells always run
the reference math: one step has nothing to fuse across time.

Trace names (each recorded once per step, a tensor (B, H)):

- LSTM: ``lstm.input_gate``, ``lstm.forget_gate``, ``lstm.output_gate``, ``lstm.candidate``,
  ``lstm.cell``, ``lstm.hidden``
- GRU: ``gru.reset_gate``, ``gru.update_gate``, ``gru.candidate``, ``gru.hidden``
- RNN: ``rnn.preactivation``, ``rnn.hidden``

A cell records the bare names. A stack adds the layer and direction, like its parameter names:
``lstm.forget_gate.l0``, ``lstm.forget_gate.l1``, ``lstm.forget_gate.l0_reverse``. Values under a
``_reverse`` name run from the last time step to the first (``tr.stack(name).flip(0)`` puts them in
time order). Unbatched input records B = 1. Packed input records ``batch_sizes[t]`` rows at step ``t``,
in the packed (longest first) order, since shorter sequences have stopped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import _VF, nn
from torch.nn.utils.rnn import PackedSequence

from memlib import capability
from memlib.tracing import record, use_reference
from memlib.validate import check_float, check_input, check_int, check_sizes, check_state_tensor

State = tuple[torch.Tensor, ...]  # (h,) for RNN and GRU, (h, c) for LSTM; each (B, H) in a step
Weights = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]  # w_ih, w_hh, b_ih, b_hh
Step = Callable[[torch.Tensor, State], State]

# ---------------------------------------------------------------------------------------------
# Cells: one time step of each recurrence. x (B, I), state of (B, H) tensors -> new state.
# ---------------------------------------------------------------------------------------------


def _rnn_step(x: torch.Tensor, state: State, weights: Weights, nonlinearity: str, suffix: str) -> State:
    w_ih, w_hh, b_ih, b_hh = weights
    (h,) = state
    # a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    a = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)  # (B, H)
    # h_t = tanh(a_t)  (or relu(a_t))
    h = torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)
    record("rnn.preactivation" + suffix, a)
    record("rnn.hidden" + suffix, h)
    return (h,)


def _lstm_step(x: torch.Tensor, state: State, weights: Weights, suffix: str) -> State:
    w_ih, w_hh, b_ih, b_hh = weights
    h, c = state
    gates = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)  # (B, 4H), stacked i, f, g, o
    a_i, a_f, a_g, a_o = gates.chunk(4, dim=1)  # 4 x (B, H)
    # i_t = sigma(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
    i = torch.sigmoid(a_i)
    # f_t = sigma(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
    f = torch.sigmoid(a_f)
    # g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
    g = torch.tanh(a_g)
    # o_t = sigma(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
    o = torch.sigmoid(a_o)
    # c_t = f_t * c_{t-1} + i_t * g_t
    c = f * c + i * g
    # h_t = o_t * tanh(c_t)
    h = o * torch.tanh(c)
    for name, value in (("input_gate", i), ("forget_gate", f), ("output_gate", o), ("candidate", g)):
        record(f"lstm.{name}{suffix}", value)
    record("lstm.cell" + suffix, c)
    record("lstm.hidden" + suffix, h)
    return h, c


def _gru_step(x: torch.Tensor, state: State, weights: Weights, suffix: str) -> State:
    w_ih, w_hh, b_ih, b_hh = weights
    (h,) = state
    x_r, x_z, x_n = F.linear(x, w_ih, b_ih).chunk(3, dim=1)  # 3 x (B, H): W_i* x_t + b_i*
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=1)  # 3 x (B, H): W_h* h_{t-1} + b_h*
    # r_t = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    r = torch.sigmoid(x_r + h_r)
    # z_t = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    z = torch.sigmoid(x_z + h_z)
    # n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
    n = torch.tanh(x_n + r * h_n)
    # h_t = (1 - z_t) * n_t + z_t * h_{t-1}
    h = (1 - z) * n + z * h
    record("gru.reset_gate" + suffix, r)
    record("gru.update_gate" + suffix, z)
    record("gru.candidate" + suffix, n)
    record("gru.hidden" + suffix, h)
    return (h,)


# ---------------------------------------------------------------------------------------------
# Layer: a step run over time in one direction, over sequences that may stop early.
# ---------------------------------------------------------------------------------------------


def _run_layer(
    step: Step, xs: list[torch.Tensor], state0: State, batch_sizes: list[int], reverse: bool
) -> tuple[list[torch.Tensor], State]:
    """Run ``step`` over ``xs`` (T tensors (batch_sizes[t], I)) from ``state0`` (tensors (B, H)).

    Sequences are sorted longest first (as in a ``PackedSequence``), so at step ``t`` the first
    ``batch_sizes[t]`` rows are the sequences still running. Returns the hidden state of every step
    (T tensors (batch_sizes[t], H)) and each sequence's state after its own last step (tensors (B, H)).
    """
    ys = list(xs)  # replaced step by step
    if not reverse:
        state, stopped = state0, []
        for t, x in enumerate(xs):
            running = batch_sizes[t]
            if running < state[0].shape[0]:  # rows running: stopped after step t - 1: keep their state
                stopped.append(tuple(s[running:] for s in state))
                state = tuple(s[:running] for s in state)
            state = step(x, state)
            ys[t] = state[0]
        stopped.append(state)
        # Pieces were split off from the bottom rows up: reversed, they stack in row order.
        final = tuple(torch.cat([piece[k] for piece in reversed(stopped)]) for k in range(len(state0)))
        return ys, final
    # Backward in time, a sequence starts at its own last step, from its initial state.
    state = tuple(s[: batch_sizes[-1]] for s in state0)
    for t in reversed(range(len(xs))):
        started = state[0].shape[0]
        if batch_sizes[t] > started:
            state = tuple(torch.cat([s, s0[started : batch_sizes[t]]]) for s, s0 in zip(state, state0, strict=True))
        state = step(xs[t], state)
        ys[t] = state[0]
    return ys, state


# ---------------------------------------------------------------------------------------------
# Validation shared by cells and stacks.
# ---------------------------------------------------------------------------------------------


def _unpack_hx(name: str, hx: object, n_states: int) -> tuple[object, ...]:
    """The user's state as a tuple: ``h0`` -> (h0,), ``(h0, c0)`` -> (h0, c0)."""
    if n_states == 1:
        return (hx,)
    if not isinstance(hx, tuple | list) or len(hx) != 2:
        raise TypeError(f"{name}: expected hx as a tuple (h0, c0), got {type(hx).__name__}")
    return tuple(hx)


def _register_weights(
    module: nn.Module, suffix: str, input_size: int, hidden_size: int, gates: int, bias: bool, factory: dict
) -> list[str]:
    """Create weight_ih, weight_hh (and biases) with ``suffix``, in torch.nn's order; return their names."""
    shapes = {"weight_ih": (gates * hidden_size, input_size), "weight_hh": (gates * hidden_size, hidden_size)}
    if bias:
        shapes |= {"bias_ih": (gates * hidden_size,), "bias_hh": (gates * hidden_size,)}
    for name, shape in shapes.items():
        module.register_parameter(name + suffix, nn.Parameter(torch.empty(shape, **factory)))
    return [name + suffix for name in shapes]


def _reset_uniform(module: nn.Module, hidden_size: int) -> None:
    # torch.nn's initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)), in registration order.
    bound = 1.0 / math.sqrt(hidden_size)
    for weight in module.parameters():
        nn.init.uniform_(weight, -bound, bound)


# ---------------------------------------------------------------------------------------------
# Cells (public): one step, torch.nn.RNNCell / LSTMCell / GRUCell compatible.
# ---------------------------------------------------------------------------------------------


class CellBase(nn.Module):
    """What RNNCell, LSTMCell and GRUCell share: sizes, parameters in torch.nn's layout, and validation.

    >>> isinstance(GRUCell(2, 3), CellBase)
    True
    """

    _gates: int
    _n_states: int

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, device=None, dtype=None):
        super().__init__()
        check_sizes(type(self).__name__, input_size=input_size, hidden_size=hidden_size)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        factory = {"device": device, "dtype": dtype}
        _register_weights(self, "", input_size, hidden_size, self._gates, bias, factory)
        if not bias:  # torch.nn cells keep the attributes, set to None
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_uniform(self, self.hidden_size)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def _step(self, x: torch.Tensor, state: State, weights: Weights) -> State:
        raise NotImplementedError

    def _run(self, input: torch.Tensor, hx: object) -> State:
        name = type(self).__name__
        check_input(
            name, input, self.input_size, dims=(1, 2), shapes="(B, I) or unbatched (I,)", dtype=self.weight_ih.dtype,
            nonempty="sequence and batch",
        )
        batched = input.dim() == 2
        x = input if batched else input[None]  # (B, I)
        shape = (x.shape[0], self.hidden_size)
        if hx is None:
            state = tuple(x.new_zeros(shape) for _ in range(self._n_states))
        else:
            labels = ("h0", "c0")[: self._n_states]
            given = _unpack_hx(name, hx, self._n_states)
            want = shape if batched else shape[1:]
            state = tuple(check_state_tensor(name, lab, h, want, x) for lab, h in zip(labels, given, strict=True))
            state = state if batched else tuple(s[None] for s in state)
        weights = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        state = self._step(x, state, weights)
        return state if batched else tuple(s[0] for s in state)


class RNNCell(CellBase):
    """An Elman cell: h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu). ``torch.nn.RNNCell`` compatible.

    Weights: ``weight_ih`` (H, I), ``weight_hh`` (H, H), ``bias_ih`` and ``bias_hh`` (H,).
    ``forward(input (B, I) or (I,), hx (B, H) or (H,) = zeros) -> h' (B, H) or (H,)``.

    >>> cell = RNNCell(4, 8)
    >>> cell(torch.zeros(2, 4)).shape  # h' (B, H)
    torch.Size([2, 8])
    """

    _gates, _n_states = 1, 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        device=None,
        dtype=None,
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: expected nonlinearity 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def _step(self, x: torch.Tensor, state: State, weights: Weights) -> State:
        return _rnn_step(x, state, weights, self.nonlinearity, "")

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(input, hx)[0]


class LSTMCell(CellBase):
    """An LSTM cell with a forget gate, ``torch.nn.LSTMCell`` compatible. Gates stacked i, f, g, o.

    Weights: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih`` and ``bias_hh`` (4H,).
    ``forward(input (B, I) or (I,), hx (h, c) each (B, H) or (H,) = zeros) -> (h', c')``.

    >>> h, c = LSTMCell(4, 8)(torch.zeros(2, 4))
    >>> h.shape, c.shape
    (torch.Size([2, 8]), torch.Size([2, 8]))
    """

    _gates, _n_states = 4, 2

    def _step(self, x: torch.Tensor, state: State, weights: Weights) -> State:
        return _lstm_step(x, state, weights, "")

    def forward(
        self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = self._run(input, hx)
        return h, c


class GRUCell(CellBase):
    """A GRU cell in PyTorch's form, ``torch.nn.GRUCell`` compatible. Gates stacked r, z, n.

    Weights: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih`` and ``bias_hh`` (3H,).
    ``forward(input (B, I) or (I,), hx (B, H) or (H,) = zeros) -> h' (B, H) or (H,)``.

    >>> GRUCell(4, 8)(torch.zeros(2, 4)).shape
    torch.Size([2, 8])
    """

    _gates, _n_states = 3, 1

    def _step(self, x: torch.Tensor, state: State, weights: Weights) -> State:
        return _gru_step(x, state, weights, "")

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(input, hx)[0]


# ---------------------------------------------------------------------------------------------
# Stacks (public): L layers x D directions, torch.nn.RNN / LSTM / GRU compatible.
# ---------------------------------------------------------------------------------------------


class RecurrentBase(nn.Module):
    """What RNN, LSTM and GRU share: parameters, validation, and the choice of path.

    >>> isinstance(LSTM(2, 3), RecurrentBase), isinstance(LSTMCell(2, 3), RecurrentBase)
    (True, False)
    """

    _gates: int
    _n_states: int

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        device=None,
        dtype=None,
    ):
        super().__init__()
        name = type(self).__name__
        check_sizes(name, input_size=input_size, hidden_size=hidden_size)
        check_int(name, "num_layers", num_layers, low=1)
        check_float(name, "dropout", dropout, low=0, high=1, expected="dropout as a probability in [0, 1]")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"{name}: dropout applies between layers, so it does nothing with num_layers=1 (dropout={dropout})",
                stacklevel=2,
            )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = bidirectional
        factory = {"device": device, "dtype": dtype}
        self._flat_weights_names: list[str] = []  # torch's order: layer, direction, (w_ih, w_hh, b_ih, b_hh)
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self._directions
            for direction in range(self._directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                names = _register_weights(self, suffix, layer_input, hidden_size, self._gates, bias, factory)
                self._flat_weights_names += names
        self.reset_parameters()
        self.flatten_parameters()

    @property
    def _directions(self) -> int:
        return 2 if self.bidirectional else 1

    def reset_parameters(self) -> None:
        _reset_uniform(self, self.hidden_size)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for key, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0)):
            if getattr(self, key) != default:
                s += f", {key}={getattr(self, key)}"
        return s + (", bidirectional=True" if self.bidirectional else "")

    def flatten_parameters(self) -> None:
        """On CUDA, lay the weights out in one buffer, as cuDNN's fused kernel wants (``torch.nn`` does the same).

        Without it the kernel copies the weights on every call (and warns that they are "not part of
        single contiguous chunk of memory"). A no-op on the CPU, or when cuDNN cannot take the weights.
        """
        weights = [getattr(self, n) for n in self._flat_weights_names]
        first = weights[0]
        if (
            not first.is_cuda
            or not torch.backends.cudnn.is_acceptable(first)
            or any(w.dtype != first.dtype or not w.is_cuda for w in weights)
            or len({w.data_ptr() for w in weights}) != len(weights)  # aliased weights: keep them apart
        ):
            return
        import torch.backends.cudnn.rnn as cudnn_rnn

        with torch.cuda.device_of(first), torch.no_grad():
            if torch._use_cudnn_rnn_flatten_weight():
                torch._cudnn_rnn_flatten_weight(
                    weights, 4 if self.bias else 2, self.input_size, cudnn_rnn.get_cudnn_mode(self._cudnn_mode),
                    self.hidden_size, 0, self.num_layers, self.batch_first, self.bidirectional,
                )

    def _apply(self, fn, recurse=True):
        # .to(), .cuda(), .double() make new parameter tensors: lay them out again
        result = super()._apply(fn, recurse)
        self.flatten_parameters()
        return result

    def _step(self, layer: int, reverse: bool) -> Step:
        """The cell of one layer and direction, bound to its weights and its trace suffix."""
        raise NotImplementedError

    def _fused(self, *args) -> tuple[torch.Tensor, ...]:
        """torch's fused kernel for this family (``torch._VF``), returning (output, *state)."""
        raise NotImplementedError

    def _weights(self, layer: int, reverse: bool) -> Weights:
        suffix = f"_l{layer}" + ("_reverse" if reverse else "")
        bias = (getattr(self, "bias_ih" + suffix), getattr(self, "bias_hh" + suffix)) if self.bias else (None, None)
        return (getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix), *bias)

    def _run(self, input: torch.Tensor | PackedSequence, hx: object) -> tuple[torch.Tensor | PackedSequence, State]:
        name = type(self).__name__
        dtype = self.weight_ih_l0.dtype
        packed = isinstance(input, PackedSequence)
        if packed:
            data, batch_sizes, sorted_indices, unsorted_indices = input
            check_input(
                name, data, self.input_size, dims=(2,), shapes="(sum of lengths, I) in a PackedSequence",
                dtype=dtype, nonempty="sequence and batch",
            )
            x, batched, batch = data, True, int(batch_sizes[0])
        else:
            shapes = "(B, T, I) or unbatched (T, I)" if self.batch_first else "(T, B, I) or unbatched (T, I)"
            check_input(
                name, input, self.input_size, dims=(2, 3), shapes=shapes, dtype=dtype, nonempty="sequence and batch"
            )
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(0 if self.batch_first else 1)  # (B, T, I) or (T, B, I)
            batch = x.shape[0 if self.batch_first else 1]

        shape = (self.num_layers * self._directions, batch, self.hidden_size)  # (L*D, B, H)
        if hx is None:
            state = tuple(x.new_zeros(shape) for _ in range(self._n_states))
        else:
            labels = ("h0", "c0")[: self._n_states]
            want = shape if batched else (shape[0], shape[2])
            given = _unpack_hx(name, hx, self._n_states)
            state = tuple(check_state_tensor(name, lab, h, want, x) for lab, h in zip(labels, given, strict=True))
            state = state if batched else tuple(s.unsqueeze(1) for s in state)
        if packed and sorted_indices is not None:  # the state follows its sequence into the sorted order
            state = tuple(s.index_select(1, sorted_indices) for s in state)

        if not capability.use_fused(self._kernel, x, name, use_reference()):
            output, state = self._reference(x, state, batch_sizes.tolist() if packed else None)
        else:
            weights = [getattr(self, n) for n in self._flat_weights_names]
            hx_arg = state[0] if self._n_states == 1 else state
            flags = (self.bias, self.num_layers, self.dropout, self.training, self.bidirectional)
            if packed:
                result = self._fused(x, batch_sizes, hx_arg, weights, *flags)
            else:
                result = self._fused(x, hx_arg, weights, *flags, self.batch_first)
            output, state = result[0], tuple(result[1:])

        if packed:
            if unsorted_indices is not None:
                state = tuple(s.index_select(1, unsorted_indices) for s in state)
            return PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices), state
        if not batched:
            output = output.squeeze(0 if self.batch_first else 1)  # (T, D*H)
            state = tuple(s.squeeze(1) for s in state)  # (L*D, H)
        return output, state

    def _reference(self, x: torch.Tensor, state0: State, batch_sizes: list[int] | None) -> tuple[torch.Tensor, State]:
        """The stack in Python: x (T, B, I) or (B, T, I), or packed data with its ``batch_sizes``."""
        if batch_sizes is None:
            time_major = x.transpose(0, 1) if self.batch_first else x  # (T, B, I)
            xs = list(time_major.unbind(0))  # T x (B, I)
            batch_sizes = [time_major.shape[1]] * len(xs)
        else:
            xs = list(x.split(batch_sizes))  # T x (batch_sizes[t], I)
        finals: list[State] = []
        for layer in range(self.num_layers):
            if layer > 0:  # torch.nn applies dropout to every layer's output but the last
                xs = [F.dropout(x_t, self.dropout, self.training) for x_t in xs]
            outputs = []
            for direction in range(self._directions):
                k = layer * self._directions + direction
                ys, final = _run_layer(
                    self._step(layer, bool(direction)), xs, tuple(s[k] for s in state0), batch_sizes, bool(direction)
                )
                outputs.append(ys)
                finals.append(final)
            xs = [torch.cat(ys_t, dim=1) for ys_t in zip(*outputs, strict=True)]  # T x (batch_sizes[t], D*H)
        state = tuple(torch.stack([f[i] for f in finals]) for i in range(self._n_states))  # (L*D, B, H) each
        if x.dim() == 2:  # packed data
            return torch.cat(xs), state  # (sum of lengths, D*H)
        return torch.stack(xs, dim=1 if self.batch_first else 0), state  # (B, T, D*H) or (T, B, D*H)


def _suffix(layer: int, reverse: bool) -> str:
    return f".l{layer}" + ("_reverse" if reverse else "")


class RNN(RecurrentBase):
    """A stack of Elman RNN layers, ``torch.nn.RNN`` compatible (``nonlinearity`` 'tanh' or 'relu').

    Weights per layer ``k`` (and ``_reverse``): ``weight_ih_lk`` (H, I or D*H), ``weight_hh_lk`` (H, H),
    ``bias_ih_lk`` and ``bias_hh_lk`` (H,).
    ``forward(input, hx (L*D, B, H) = zeros) -> (output (T, B, D*H), h_n (L*D, B, H))``; see the module docstring.

    >>> out, h = RNN(4, 8, num_layers=2)(torch.zeros(5, 2, 4))  # (T, B, I)
    >>> out.shape, h.shape
    (torch.Size([5, 2, 8]), torch.Size([2, 2, 8]))
    """

    _gates, _n_states = 1, 1
    _kernel = "rnn"

    @property
    def _cudnn_mode(self) -> str:
        # cuDNN lays out tanh and relu weights alike, so the default during __init__ is harmless
        return "RNN_RELU" if getattr(self, "nonlinearity", "tanh") == "relu" else "RNN_TANH"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        device=None,
        dtype=None,
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: expected nonlinearity 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device=device, dtype=dtype
        )
        self.nonlinearity = nonlinearity

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.nonlinearity == "tanh" else ", nonlinearity='relu'")

    def _step(self, layer: int, reverse: bool) -> Step:
        return partial(
            _rnn_step,
            weights=self._weights(layer, reverse),
            nonlinearity=self.nonlinearity,
            suffix=_suffix(layer, reverse),
        )

    def _fused(self, *args) -> tuple[torch.Tensor, ...]:
        return (_VF.rnn_tanh if self.nonlinearity == "tanh" else _VF.rnn_relu)(*args)

    def forward(
        self, input: torch.Tensor | PackedSequence, hx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | PackedSequence, torch.Tensor]:
        output, (h,) = self._run(input, hx)
        return output, h


class LSTM(RecurrentBase):
    """A stack of LSTM layers, ``torch.nn.LSTM`` compatible (without ``proj_size``). Gates stacked i, f, g, o.

    Weights per layer ``k`` (and ``_reverse``): ``weight_ih_lk`` (4H, I or D*H), ``weight_hh_lk`` (4H, H),
    ``bias_ih_lk`` and ``bias_hh_lk`` (4H,).
    ``forward(input, (h0, c0) each (L*D, B, H) = zeros) -> (output (T, B, D*H), (h_n, c_n))``.

    >>> lstm = LSTM(4, 8, batch_first=True)
    >>> out, (h, c) = lstm(torch.zeros(2, 5, 4))
    >>> out.shape, h.shape, c.shape
    (torch.Size([2, 5, 8]), torch.Size([1, 2, 8]), torch.Size([1, 2, 8]))
    >>> _ = lstm.load_state_dict(torch.nn.LSTM(4, 8, batch_first=True).state_dict())  # torch.nn's names and shapes
    """

    _gates, _n_states = 4, 2
    _cudnn_mode, _kernel = "LSTM", "lstm"

    def _step(self, layer: int, reverse: bool) -> Step:
        return partial(_lstm_step, weights=self._weights(layer, reverse), suffix=_suffix(layer, reverse))

    def _fused(self, *args) -> tuple[torch.Tensor, ...]:
        return _VF.lstm(*args)

    def forward(
        self, input: torch.Tensor | PackedSequence, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor | PackedSequence, tuple[torch.Tensor, torch.Tensor]]:
        output, (h, c) = self._run(input, hx)
        return output, (h, c)


class GRU(RecurrentBase):
    """A stack of GRU layers in PyTorch's form, ``torch.nn.GRU`` compatible. Gates stacked r, z, n.

    Weights per layer ``k`` (and ``_reverse``): ``weight_ih_lk`` (3H, I or D*H), ``weight_hh_lk`` (3H, H),
    ``bias_ih_lk`` and ``bias_hh_lk`` (3H,).
    ``forward(input, hx (L*D, B, H) = zeros) -> (output (T, B, D*H), h_n (L*D, B, H))``.

    >>> out, h = GRU(4, 8, bidirectional=True)(torch.zeros(5, 2, 4))
    >>> out.shape, h.shape
    (torch.Size([5, 2, 16]), torch.Size([2, 2, 8]))
    """

    _gates, _n_states = 3, 1
    _cudnn_mode, _kernel = "GRU", "gru"

    def _step(self, layer: int, reverse: bool) -> Step:
        return partial(_gru_step, weights=self._weights(layer, reverse), suffix=_suffix(layer, reverse))

    def _fused(self, *args) -> tuple[torch.Tensor, ...]:
        return _VF.gru(*args)

    def forward(
        self, input: torch.Tensor | PackedSequence, hx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | PackedSequence, torch.Tensor]:
        output, (h,) = self._run(input, hx)
        return output, h
