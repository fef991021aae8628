"""The loop every controller-driven memory model shares (NTM, DNC, MANN).

A subclass defines its state NamedTuple (``state_type``), the shapes of that state
(``_state_shapes``), and one time step (``_step``); this base runs it over a sequence, checks
input and state at the public boundary, and makes the initial state (all zeros unless the model
says otherwise). State goes in and comes out: nothing is kept on the module between calls.

Shapes: ``B`` batch, ``T`` time, ``I`` input features, ``O`` outputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from memlib.memory import fast
from memlib.validate import check_input, check_sizes, check_state


class MemoryAugmented(nn.Module):
    """Base of NTM, DNC and MANN: ``forward`` over (B, T, I), ``step`` over (B, I), ``initial_state``.

    >>> import memlib
    >>> [issubclass(cls, MemoryAugmented) for cls in (memlib.NTM, memlib.DNC, memlib.MANN)]
    [True, True, True]
    """

    state_type: type  # the model's state NamedTuple; its first field is the controller state
    input_size: int
    output: nn.Linear  # the output layer: its weight gives the default device and dtype

    def _state_shapes(self, B: int) -> dict[str, Any]:
        """The shape of every state field for batch ``B`` (a tuple of shapes for the controller)."""
        raise NotImplementedError

    def _step(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One time step on checked input: ``x`` (B, I) -> output (B, O) and the new state."""
        raise NotImplementedError

    def _factory(self, device, dtype) -> dict[str, Any]:
        like = self.output.weight
        return {"device": like.device if device is None else device, "dtype": like.dtype if dtype is None else dtype}

    def initial_state(self, batch_size: int, device=None, dtype=None):
        """All zeros: an empty memory. ``device`` and ``dtype`` default to the parameters'."""
        check_sizes(f"{type(self).__name__}.initial_state", batch_size=batch_size)
        factory = self._factory(device, dtype)
        shapes = self._state_shapes(batch_size)
        controller = tuple(torch.zeros(shape, **factory) for shape in shapes["controller"])
        fields = self.state_type._fields[1:]
        return self.state_type(controller, *(torch.zeros(shapes[field], **factory) for field in fields))

    def _validate(self, x: torch.Tensor, state: Any, sequence: bool):
        name = type(self).__name__
        dims, shapes = ((3,), "(B, T, I)") if sequence else ((2,), "(B, I)")
        dtype = self.output.weight.dtype
        check_input(name, x, self.input_size, dims=dims, shapes=shapes, dtype=dtype, size_label="I = ")
        if state is None:
            return self.initial_state(x.shape[0], x.device, x.dtype)
        check_state(name, state, self.state_type, self._state_shapes(x.shape[0]), x)
        return state

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """Run over a sequence: ``x`` (B, T, I) -> outputs (B, T, O) and the state after the last step."""
        state = self._validate(x, state, sequence=True)
        # Time-major and contiguous, so every step's input has the strides of a fresh (B, I) tensor: the compiled
        # steps guard on strides, and slices of (B, T, I) would compile once more for every sequence length T.
        inputs = x.transpose(0, 1).contiguous().unbind(0)  # T x (B, I)
        outputs, state = fast.run(self._step, inputs, state)  # compiled steps where memlib.memory.fast_steps is on
        return torch.stack(outputs, dim=1), state  # (B, T, O)

    def step(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """One time step: ``x`` (B, I) -> output (B, O) and the new state."""
        return fast.step_function(self._step)(x, self._validate(x, state, sequence=False))
