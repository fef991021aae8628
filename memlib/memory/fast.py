"""The fast steps of the controller-driven memory models (NTM, DNC, MANN, NSM): ``torch.compile`` of their time steps.

A memory model's step is about a thousand tiny tensor operations (addressing, reads, writes, the controller),
so eager PyTorch spends most of a step dispatching them. With the switch on, every memory model's loop
(:class:`memlib.memory.controller.MemoryAugmented` and :class:`memlib.memory.nsm.NSM`) calls its step
through ``torch.compile`` (inductor: generated C++ on the CPU, Triton on CUDA), so the same equations run
as a few fused kernels forward and backward. The eager step stays the readable reference: the compiled one
traces exactly that code, and tests/unit/test_fast_memory.py checks outputs and gradients against it.

One switch, in one place (here), honoured by every memory model:

- ``fast_steps(True)`` / ``fast_steps(False)`` sets it; ``with fast_steps(): ...`` sets it for a block;
- the environment variable ``MEMLIB_FAST_MEMORY=1`` turns it on at import.

Over a sequence (:func:`run`), one compiled call runs ``STEPS_PER_CALL`` time steps, and a last step left over
runs as a compiled single step (:func:`step_function`). The compiled step is used only where it can give the same
result: outside ``memlib.trace()`` (records are taken by the eager step) and outside ``memlib.reference_path()``, and
not inside another compile. Where autograd records, the state going into the first compiled call is made to need
gradients (through detached views: the caller's tensors are left alone), as every later call's does, so that one
graph serves the whole sequence instead of two compiled one after the other.

A sequence's steps compile once per model size, batch, dtype and device, whatever the sequence length (once more for
a single step, if one is left over); inductor keeps what it generated on disk (``TORCHINDUCTOR_CACHE_DIR``, by default
under the system's temporary folder), so a second process with the same model and sizes skips most of the compile.
Where ``torch.compile`` cannot work (no C++ compiler, an unsupported platform), the first use prints one line saying
so and every step runs eager.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch

from memlib.tracing import tracing, use_reference

ENV = "MEMLIB_FAST_MEMORY"
# Each new size of model (or batch, dtype, device) is one more compile of the same step code; a second instance of
# the same sizes, or a new sequence length, reuses it (torch 2.13, counted in tests/unit/test_fast_memory.py). Room
# for many sizes in one process (a test suite, a benchmark) before dynamo gives up and runs eager.
RECOMPILE_LIMIT = 64



def _switched_on(value: str | None) -> bool:
    """Whether the environment variable's value turns the switch on: 1, true, yes or on (any case)."""
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


_enabled = _switched_on(os.environ.get(ENV))
_compiler_ok: bool | None = None  # None: not probed yet


class fast_steps:  # lower case: a switch read like a call, as torch.set_grad_enabled
    """Turn the compiled step of every memory model on (``True``) or off; as a ``with`` block, only inside it.

    >>> fast_steps(False)  # doctest: +ELLIPSIS
    <memlib.memory.fast.fast_steps object at ...>
    >>> enabled()
    False
    >>> with fast_steps(False):  # a block: the previous setting comes back after it
    ...     enabled()
    False
    """

    def __init__(self, enabled: bool = True):
        global _enabled
        if not isinstance(enabled, bool):
            raise TypeError(f"fast_steps: expected enabled as a bool, got {type(enabled).__name__}")
        self._before, _enabled = _enabled, enabled

    def __enter__(self) -> fast_steps:
        return self

    def __exit__(self, *exc: object) -> None:
        global _enabled
        _enabled = self._before


def enabled() -> bool:
    """Whether the switch is on (the compiled step may still fall back: see :func:`step_function`).

    >>> with fast_steps(True):
    ...     enabled()
    True
    """
    return _enabled


def _probe() -> bool:
    """Compile and run a tiny function once; on any failure print one line and say no."""
    global _compiler_ok
    if _compiler_ok is None:
        try:
            probe = torch.compile(lambda x: torch.sin(x) * 2 + 1, dynamic=False, fullgraph=True)
            _compiler_ok = bool(torch.allclose(probe(torch.ones(4)), torch.sin(torch.ones(4)) * 2 + 1))
            if not _compiler_ok:
                raise RuntimeError("the compiled probe gave a wrong value")
        except Exception as error:  # noqa: BLE001 - any failure of the toolchain means: run eager
            _compiler_ok = False
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"memlib: fast memory steps are off: torch.compile does not work here ({reason}); running eager",
                  file=sys.stderr)
    return _compiler_ok


def _call(step: Callable[..., Any], x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
    return step(x, state)


def _call_steps(
    step: Callable[..., Any], inputs: tuple[torch.Tensor, ...], state: Any
) -> tuple[list[torch.Tensor], Any]:
    outputs = []
    for x in inputs:  # a fixed number of steps: dynamo unrolls the loop into one graph
        y, state = step(x, state)
        outputs.append(y)
    return outputs, state


# Time steps per compiled call over a sequence. Training step on copy (L = 10, N = 128, one thread, CPU time, medians of
# 9 interleaved repeats, load about 3): the NTM at B = 1 took 0.70x the time with two steps per call and 0.70x with
# four, whose graph took 93 s to compile cold against 54 s for two; the DNC at B = 16 0.95x with two.
STEPS_PER_CALL = 2

# One compiled function per (function, device type) for every model, made on first use: dynamo guards on the bound
# step (its module), so each model gets its own graphs, and none of them is kept on the module.
_compiled_calls: dict[tuple[str, str], Callable[..., Any]] = {}
# On the CPU, inductor's C++ wrapper calls the kernels of a graph from C++ instead of from generated Python: a
# training step of the NTM at batch 1 took 0.28x eager's time with it, 0.33x without (one measurement, 1 thread).
# Elsewhere the default: CUDA graphs ("reduce-overhead") would replay over state that the next step overwrites,
# and were not measured here.
OPTIONS = {"cpu": {"cpp_wrapper": True}}


def _device_type(step: Callable[..., Any]) -> str:
    module = getattr(step, "__self__", None)
    parameter = next(module.parameters(), None) if isinstance(module, torch.nn.Module) else None
    return "cpu" if parameter is None else parameter.device.type


def _usable() -> bool:
    """Whether a compiled step can run here and now and give the eager step's result."""
    return _enabled and not tracing() and not use_reference() and not torch.compiler.is_compiling() and _probe()


def _compiled(function: Callable[..., Any], step: Callable[..., Any]) -> Callable[..., Any]:
    kind = _device_type(step)
    if (function.__name__, kind) not in _compiled_calls:
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        _compiled_calls[function.__name__, kind] = torch.compile(
            function, dynamic=False, fullgraph=True, options=OPTIONS.get(kind)
        )
    return _compiled_calls[function.__name__, kind]


def _needing_grad(step: Callable[..., Any], state: Any) -> Any:
    """``state`` with every floating-point tensor needing gradients (a detached view where it did not), where autograd
    records and the step's module has parameters that need them: then the first step's state looks like every later
    step's, and one compiled graph serves both. Otherwise ``state`` itself."""
    module = getattr(step, "__self__", None)
    if not (torch.is_grad_enabled() and isinstance(module, torch.nn.Module)):
        return state
    if not any(p.requires_grad for p in module.parameters()):
        return state

    def needing_grad(t: Any) -> Any:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not t.requires_grad:
            return t.detach().requires_grad_()
        return t

    return torch.utils._pytree.tree_map(needing_grad, state)


def step_function(step: Callable[..., Any]) -> Callable[..., Any]:
    """``step`` itself (a bound method, e.g. ``model._step``, called as ``step(x, state)``), or its compiled twin where
    the switch is on and a compile can give the same result (outside a trace and the reference path, not inside
    another compile).

    >>> import memlib
    >>> ntm = memlib.NTM(input_size=3, output_size=3, controller_size=8, memory_slots=4, memory_width=2)
    >>> with fast_steps(False):
    ...     step_function(ntm._step) == ntm._step  # switched off: the eager step itself
    True
    """
    if not _usable():
        return step
    compiled = _compiled(_call, step)

    def call(x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        return compiled(step, x, _needing_grad(step, state))

    return call


def run(step: Callable[..., Any], inputs: Sequence[torch.Tensor], state: Any) -> tuple[list[torch.Tensor], Any]:
    """``step`` (a bound method, called as ``step(x, state) -> (y, state)``) over the time steps ``inputs``, from
    ``state``: the outputs ``[y_1, ..., y_T]`` and the last state. Where the switch is on and a compile can give the
    same result, ``STEPS_PER_CALL`` steps at a time run as one compiled call, and a step left over as a compiled single
    step (:func:`step_function`); otherwise every step runs eager. Each input should have the strides of a fresh
    tensor (e.g. ``unbind(0)`` of a contiguous time-major tensor): the compiled graphs guard on strides.

    >>> import memlib
    >>> ntm = memlib.NTM(input_size=3, output_size=2, controller_size=8, memory_slots=4, memory_width=2)
    >>> with fast_steps(False):
    ...     outputs, state = run(ntm._step, torch.zeros(5, 1, 3).unbind(0), ntm.initial_state(1))
    >>> len(outputs), outputs[0].shape
    (5, torch.Size([1, 2]))
    """
    outputs: list[torch.Tensor] = []
    if not _usable():
        for x in inputs:
            y, state = step(x, state)
            outputs.append(y)
        return outputs, state
    steps = _compiled(_call_steps, step)
    whole = len(inputs) - len(inputs) % STEPS_PER_CALL
    state = _needing_grad(step, state)
    for t in range(0, whole, STEPS_PER_CALL):
        ys, state = steps(step, tuple(inputs[t : t + STEPS_PER_CALL]), state)
        outputs += ys
    for x in inputs[whole:]:
        y, state = step_function(step)(x, state)
        outputs.append(y)
    return outputs, state
