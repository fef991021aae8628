"""How much memory training takes, which GPU it fits on, and how much host RAM to pair with the GPU.

Shapes: ``B`` batch, ``T`` time, ``I`` input features, ``D`` model width. Sizes are in bytes throughout;
``MiB`` is 2**20 bytes, ``GiB`` 2**30.

The estimate (:func:`estimate_training_memory`) splits one training step (forward, backward, optimizer
step) into the parts that practitioners' guides name (e.g. Hugging Face's "model training anatomy": weights,
optimizer states, gradients, forward activations, temporary buffers):

- ``parameters``: the weights and buffers, at the training precision (counted exactly);
- ``gradients``: one per trainable weight, the size of the weight (exact);
- ``optimizer_state``: what the optimizer keeps between steps: Adam and AdamW two moments per weight
  (Kingma & Ba 2015, Algorithm 1: ``m`` and ``v``) plus a step counter per weight tensor, SGD with momentum
  one buffer, plain SGD nothing (exact, as torch 2.13's optimizers allocate it);
- ``activations``: what the forward pass keeps for the backward pass, *counted*, not modelled: one forward
  at the example batch runs under ``torch.autograd.graph.saved_tensors_hooks``, and every storage a saved
  tensor lives in is added once (views share a storage; weights are left out, they are counted above), with
  the input batch and the outputs (alive until the backward pass);
- ``workspace``: temporaries beyond those, the larger of two: the backward pass's (the gradients of
  intermediate results it holds at once; measured: one forward and backward at the example batch under
  :func:`memlib.profiling.peak_memory`, less the activations and gradients it holds), and the optimizer
  step's less the activations, which are freed by the time the step runs (Adam's ``sqrt(v) + eps``: two
  tensors the size of the largest weight on the CPU, as measured with torch 2.13; on CUDA, torch's
  ``foreach`` Adam is assumed to make one temporary the size of all trainable weights at once, which this
  module has not measured on a GPU; SGD updates in place).

``total`` is the sum of the five: a slight over-estimate of the peak, since the backward pass frees
activations while it makes gradients. Activations and the backward workspace grow linearly with the batch;
the rest does not, so an estimate made at a small batch scales to any other
(:meth:`MemoryEstimate.at_batch`), which is what :func:`largest_batch` solves. :func:`validate` compares the
estimate with a measured step.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
from torch import nn

from memlib import capability
from memlib.profiling import peak_memory
from memlib.validate import check_choice, check_float, check_int, is_int

MiB = 2**20
GiB = 2**30

# Tensors each optimizer keeps per trainable weight, each the weight's size and dtype.
OPTIMIZER_STATES = {"sgd": 0, "sgd_momentum": 1, "adam": 2, "adamw": 2}
PRECISIONS = ("fp32", "bf16", "fp16", "amp")
# Adam and AdamW keep a float32 scalar ``step`` per weight tensor, on the CPU unless fused or capturable.
_STEP_COUNTER_BYTES = 4
_HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


# ---------------------------------------------------------------------------------------------
# The estimate.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one training step, by part (see the module docstring for what each part holds).

    >>> e = estimate_training_memory(torch.nn.Linear(8, 1), (4, 8), optimizer="sgd")
    >>> e.total >= e.parameters + e.gradients, e.at_batch(64).batch_size
    (True, 64)
    """

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int
    backward_workspace: int  # temporaries of the backward pass beyond activations and gradients
    step_workspace: int  # temporaries of the optimizer step
    batch_size: int  # the batch the numbers are for
    optimizer: str
    precision: str
    checkpointing: bool
    # The parts that do not grow with the batch (autocast's low-precision copies of the weights; a recurrent
    # model's per-step weight gradients before they are summed), so that at_batch scales only the rest.
    activations_fixed: int = 0  # 0: all activations grow with the batch
    backward_workspace_fixed: int = 0  # 0: all of the backward workspace grows with the batch
    # Which path the counted step took where it was not the fused kernels' (memlib.capability: a kernel this
    # machine cannot run in half precision); empty when every module ran its usual path.
    notes: tuple[str, ...] = ()

    @property
    def workspace(self) -> int:
        """Temporaries at the peak: the backward pass's, or the optimizer step's less the activations freed
        by then (the step runs after the backward pass has released them), whichever is larger."""
        return max(self.backward_workspace, self.step_workspace - self.activations, 0)

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + self.activations + self.workspace

    @property
    def parts(self) -> dict[str, int]:
        """The five parts by name, in the order of a stacked bar."""
        names = ("parameters", "gradients", "optimizer_state", "activations", "workspace")
        return {name: getattr(self, name) for name in names}

    def at_batch(self, batch_size: int) -> MemoryEstimate:
        """The same estimate for another batch: activations and backward workspace scale linearly."""
        _check_batch("MemoryEstimate.at_batch", batch_size)
        scale = batch_size / self.batch_size
        activations = self.activations_fixed + round((self.activations - self.activations_fixed) * scale)
        fixed = self.backward_workspace_fixed
        backward = fixed + round((self.backward_workspace - fixed) * scale)
        return replace(self, activations=activations, backward_workspace=backward, batch_size=batch_size)

    def __str__(self) -> str:
        head = (
            f"Training memory at batch {self.batch_size} ({self.optimizer}, {self.precision}"
            + (", checkpointing" if self.checkpointing else "")
            + ")"
        )
        rows = [f"  {name:<16} {value / MiB:>10.2f} MiB" for name, value in self.parts.items()]
        notes = [f"  note: {n}" for n in self.notes]
        return "\n".join([head, *rows, f"  {'total':<16} {self.total / MiB:>10.2f} MiB", *notes])


def _check_batch(where: str, batch_size: object) -> int:
    check_int(where, "batch_size", batch_size, low=1)
    return batch_size


Inputs = tuple[torch.Tensor, ...]


def _as_inputs(where: str, model: nn.Module, example_input: object) -> Inputs:
    """A tensor, a tuple of tensors, a shape (ints) or a tuple of shapes -> a tuple of tensors.

    Shapes become random tensors of the model's dtype, on its device (give tensors for other inputs, such as
    token ids).
    """
    if isinstance(example_input, torch.Tensor):
        return (example_input,)
    like = next(iter(model.parameters()), None)
    factory = {"device": like.device, "dtype": like.dtype} if like is not None else {}
    if isinstance(example_input, (tuple, list, torch.Size)) and example_input:
        if all(is_int(d) and d > 0 for d in example_input):
            # a generator of its own, so that the caller's random state is left alone
            generator = torch.Generator(factory.get("device", "cpu")).manual_seed(0)
            return (torch.randn(*example_input, generator=generator, **factory),)
        if all(isinstance(x, torch.Tensor) for x in example_input):
            return tuple(example_input)
        if all(isinstance(s, (tuple, list, torch.Size)) for s in example_input):
            return tuple(_as_inputs(where, model, tuple(s))[0] for s in example_input)
    raise TypeError(
        f"{where}: expected example_input as a tensor, a tuple of tensors, a shape of positive ints or a tuple "
        f"of shapes, got {example_input!r:.80}"
    )


def _infer_batch_dim(model: nn.Module, x: torch.Tensor) -> int:
    """Dimension 0, unless the model follows torch.nn's sequence layout (``batch_first=False``): (T, B, ...)."""
    flags = (m.batch_first for m in model.modules() if isinstance(getattr(m, "batch_first", None), bool))
    batch_first = next(flags, True)
    return 1 if (not batch_first and x.dim() >= 3) else 0


def _first_float(output: object) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output if output.is_floating_point() else None
    if isinstance(output, (tuple, list)):
        for item in output:
            found = _first_float(item)
            if found is not None:
                return found
    return None


def default_loss(output: object) -> torch.Tensor:
    """Mean square of the first floating tensor of the output (the prediction of every memlib model).

    A stand-in for a real loss: it keeps the prediction for the backward pass, as a real loss does.

    >>> default_loss(torch.ones(2, 3)).shape
    torch.Size([])
    """
    y = _first_float(output)
    if y is None:
        raise TypeError(f"default_loss: expected the model to return a floating tensor, got {type(output).__name__}")
    return y.float().pow(2).mean()


def _tensors(output: object) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _tensors(item)]
    return []


def _key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata  # the storage itself: views of one storage share it


def _autocast(dev: torch.device, precision: str):
    """Autocast as mixed precision uses it: bfloat16 on the CPU, float16 on CUDA; a no-op otherwise."""
    if precision != "amp":
        return torch.autocast(dev.type, enabled=False)
    return torch.autocast(dev.type, dtype=torch.float16 if dev.type == "cuda" else torch.bfloat16)


def checkpoint_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks ``torch.utils.checkpoint`` would wrap: the entries of the longest ModuleList or Sequential.

    (A TransformerEncoder's layers, an MLP's layers.) Empty when the model has no such list, as a memlib LSTM.

    >>> len(checkpoint_blocks(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))))
    3
    """
    lists = [m for m in model.modules() if isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m) > 1]
    return list(max(lists, key=len)) if lists else []


class _Forward(NamedTuple):
    activations: int  # storages kept for backward, the input and the outputs
    checkpointed: int  # activations if each block were checkpointed (equal to activations without blocks)


def _count_forward(
    model: nn.Module, inputs: Inputs, loss_fn: Callable[[object], torch.Tensor], precision: str
) -> _Forward:
    """One forward pass and loss, counting every storage saved for backward once (see the module docstring)."""
    weights = {_key(t) for t in (*model.parameters(), *model.buffers())}
    saved: dict[int, int] = {}  # storage -> bytes
    owner: dict[int, int] = {}  # storage -> index of the block that first saved it (-1: outside every block)
    block_inputs: dict[int, int] = {}
    blocks = checkpoint_blocks(model)
    current = [-1]
    keep: list[torch.Tensor] = []  # saved tensors stay alive for the pass, so storage keys stay unique

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _key(t)
        if key not in weights and key not in saved:
            saved[key] = t.untyped_storage().nbytes()
            owner[key] = current[0]
        # A detached alias: the same storage but no grad_fn, so no reference cycle through autograd's C++ graph
        # (which Python's garbage collector cannot see) keeps the whole forward pass alive after the count.
        alias = t.detach()
        keep.append(alias)
        return alias

    def enter(index: int):
        def hook(module, args):
            current[0] = index
            for a in _tensors(args):
                block_inputs.setdefault(_key(a), a.untyped_storage().nbytes())

        return hook

    def leave(module, args, output):
        current[0] = -1

    handles = [b.register_forward_pre_hook(enter(i)) for i, b in enumerate(blocks)]
    handles += [b.register_forward_hook(leave) for b in blocks]
    dev = inputs[0].device
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), _autocast(dev, precision):
            output = model(*inputs)
            loss = loss_fn(output)
    finally:
        for h in handles:
            h.remove()
    for t in (*inputs, *_tensors(output), loss):
        key = _key(t)
        if key not in weights and key not in saved:
            saved[key], owner[key] = t.untyped_storage().nbytes(), -1
    total = sum(saved.values())
    # With checkpointing a block keeps only its input; the rest of what it saves comes back one block at a
    # time, when the backward pass reruns it.
    per_block = [0] * len(blocks)
    for key, nbytes in saved.items():
        if owner[key] >= 0 and key not in block_inputs:
            per_block[owner[key]] += nbytes
    outside = sum(n for k, n in saved.items() if owner[k] < 0)
    kept = sum(n for k, n in block_inputs.items() if owner.get(k, 0) >= 0)  # those outside are counted already
    checkpointed = outside + kept + max(per_block, default=0) if blocks else total
    return _Forward(total, checkpointed)


def _narrow(inputs: Inputs, dim: int, batch: int, size: int) -> Inputs:
    """The first ``size`` samples of each input that has the batch along ``dim``, as copies (a view would keep,
    and so count, the whole example's storage)."""
    return tuple(x.narrow(dim, 0, size).clone() if x.dim() > dim and x.shape[dim] == batch else x for x in inputs)


def _intercept(at_batch: int, at_half: int, batch: int, half: int) -> int:
    """The part of a count that does not grow with the batch: the line through two counts, at batch 0,
    kept within [0, at_batch]."""
    slope = (at_batch - at_half) / (batch - half)
    return min(max(0, round(at_batch - slope * batch)), at_batch)


def _backward_peak(model: nn.Module, inputs: Inputs, loss_fn: Callable[[object], torch.Tensor], precision: str) -> int:
    """Peak bytes of one forward and backward pass (no optimizer step), the input copied inside the call.

    Gradients come back from ``torch.autograd.grad``, so the model's ``.grad`` is left untouched.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    dev = inputs[0].device

    def forward_backward() -> None:
        xs = tuple(x.clone() for x in inputs)
        with _autocast(dev, precision):
            loss = loss_fn(model(*xs))
        torch.autograd.grad(loss, trainable, allow_unused=True)

    return peak_memory(forward_backward, dev)[0]


def _step_workspace(optimizer: str, trainable: list[torch.Tensor], dev: torch.device, bytes_per: float) -> int:
    """Temporaries of the optimizer step (see the module docstring: measured on the CPU, assumed on CUDA)."""
    if optimizer not in ("adam", "adamw") or not trainable:
        return 0  # SGD updates in place
    if dev.type == "cuda":
        return round(sum(p.numel() for p in trainable) * bytes_per)
    return round(2 * max(p.numel() for p in trainable) * bytes_per)


def estimate_training_memory(
    model: nn.Module,
    example_input: object,
    optimizer: str = "adam",
    precision: str = "fp32",
    checkpointing: bool = False,
    batch_size: int | None = None,
    *,
    loss_fn: Callable[[object], torch.Tensor] = default_loss,
    batch_dim: int | None = None,
) -> MemoryEstimate:
    """Bytes one training step of ``model`` takes, by part (see the module docstring for each part).

    ``example_input``: a tensor, a tuple of tensors (passed as ``model(*inputs)``), a shape or a tuple of shapes
    (random tensors of the model's dtype). Keep its batch small: one forward and one backward run at it.
    ``batch_size``: the batch to estimate for (default: the example's); the example's batch is read along
    ``batch_dim`` (default 1 for (T, B, ...) input when the model has ``batch_first=False``, else 0).
    ``loss_fn(output) -> scalar``: the loss whose backward pass is estimated (default :func:`default_loss`).

    ``precision``: ``"fp32"``; ``"bf16"`` or ``"fp16"``: the model trained in that dtype (2 bytes for weights,
    gradients and optimizer state; activations and workspace counted on a copy of the model in that dtype,
    since not every kernel halves its memory: some keep float32 statistics or buffers); ``"amp"``: mixed precision
    with ``torch.autocast`` (bfloat16 on the CPU, float16 on CUDA; Micikevicius et al. 2018): weights,
    gradients and optimizer state stay float32 (the master copy), activations and workspace are counted as
    autocast makes them (half precision after matrix products, float32 where autocast keeps it, and the
    low-precision copies of the weights that autocast caches). A float32 model is expected for every precision.

    The parts that do not grow with the batch (those weight copies; a recurrent model's per-step weight
    gradients in the backward pass) are found by a second count at half the example's batch: the line
    through the two counts at batch 0. With an example batch of 1 everything is taken to grow with the batch,
    which over-estimates larger batches: give an example batch of 4 or more.

    ``checkpointing``: ``torch.utils.checkpoint`` over each of :func:`checkpoint_blocks` (the entries of the
    model's longest ModuleList or Sequential), keeping each block's input and, in the backward pass, one
    block's saved tensors at a time (Chen et al. 2016). The workspace is left as without checkpointing.

    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    >>> estimate = estimate_training_memory(model, (4, 8), optimizer="adam")
    >>> estimate.parameters == (8 * 16 + 16 + 16 + 1) * 4  # float32 bytes
    True
    >>> estimate.optimizer_state >= 2 * estimate.parameters  # Adam: two moments per weight
    True
    """
    where = "estimate_training_memory"
    inputs, dim, example_batch, batch = _checked_example(
        where, model, example_input, optimizer, precision, checkpointing, batch_size, batch_dim
    )
    dev = inputs[0].device
    state = _state_bytes(model, optimizer, precision, dev)
    counts = _count_activations(
        model, inputs, dim, example_batch, precision, loss_fn, checkpointing, state.gradients
    )
    estimate = MemoryEstimate(
        parameters=state.parameters,
        gradients=state.gradients,
        optimizer_state=state.optimizer_state,
        activations=counts.activations,
        backward_workspace=counts.workspace,
        step_workspace=_step_workspace(optimizer, state.trainable, dev, state.bytes_per),
        batch_size=example_batch,
        optimizer=optimizer,
        precision=precision,
        checkpointing=checkpointing,
        activations_fixed=counts.activations_fixed,
        backward_workspace_fixed=counts.workspace_fixed,
        notes=counts.notes,
    )
    return estimate if batch == example_batch else estimate.at_batch(batch)


def _checked_example(
    where: str,
    model: object,
    example_input: object,
    optimizer: object,
    precision: object,
    checkpointing: bool,
    batch_size: object,
    batch_dim: int | None,
) -> tuple[Inputs, int, int, int]:
    """The estimate's arguments checked: (inputs, batch dim, the example's batch, the batch to estimate for)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: expected model as an nn.Module, got {type(model).__name__}")
    check_choice(where, "optimizer", optimizer, tuple(OPTIMIZER_STATES))
    check_choice(where, "precision", precision, PRECISIONS)
    inputs = _as_inputs(where, model, example_input)
    weights = [*model.parameters(), *model.buffers()]
    if any(w.is_floating_point() and w.dtype != torch.float32 for w in weights):
        dtypes = sorted({str(w.dtype) for w in weights})
        raise ValueError(f"{where}: expected a float32 model (precision is chosen by the argument), got {dtypes}")
    dim = _infer_batch_dim(model, inputs[0]) if batch_dim is None else batch_dim
    if not -inputs[0].dim() <= dim < inputs[0].dim():
        raise ValueError(f"{where}: expected batch_dim within the input's {inputs[0].dim()} dims, got {dim}")
    example_batch = inputs[0].shape[dim]
    batch = example_batch if batch_size is None else _check_batch(where, batch_size)
    if checkpointing and not checkpoint_blocks(model):
        raise ValueError(
            f"{where}: checkpointing is estimated over the blocks of a ModuleList or Sequential, and "
            f"{type(model).__name__} has none (checkpointing over time chunks is not modelled)"
        )
    return inputs, dim, example_batch, batch


class _StateBytes(NamedTuple):
    parameters: int
    gradients: int
    optimizer_state: int
    trainable: list[nn.Parameter]
    bytes_per: float


def _state_bytes(model: nn.Module, optimizer: str, precision: str, dev: torch.device) -> _StateBytes:
    """Weights, gradients and optimizer state: counted from the parameters."""
    bytes_per = 2.0 if precision in ("bf16", "fp16") else 4.0
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in model.parameters())
    n_buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    other_buffers = sum(b.numel() * b.element_size() for b in model.buffers() if not b.is_floating_point())
    n_trainable = sum(p.numel() for p in trainable)
    parameters = round((n_params + n_buffers) * bytes_per) + other_buffers
    gradients = round(n_trainable * bytes_per)
    optimizer_state = round(OPTIMIZER_STATES[optimizer] * n_trainable * bytes_per)
    if optimizer in ("adam", "adamw"):
        optimizer_state += _STEP_COUNTER_BYTES * len(trainable) if dev.type == "cpu" else 0
    return _StateBytes(parameters, gradients, optimizer_state, trainable, bytes_per)


class _Counts(NamedTuple):
    activations: int
    workspace: int
    activations_fixed: int
    workspace_fixed: int
    notes: tuple[str, ...]


def _count_activations(
    model: nn.Module,
    inputs: Inputs,
    dim: int,
    example_batch: int,
    precision: str,
    loss_fn: Callable[[object], torch.Tensor],
    checkpointing: bool,
    gradients: int,
) -> _Counts:
    """Activations and backward workspace: counted and measured at the example batch, in train mode, at the
    training precision (a half-precision copy of the model for bf16 / fp16), leaving the caller's random
    state and the model's mode as they were; then again at half the batch, to split each part into what grows
    with the batch and what does not."""
    half = _HALF.get(precision)
    counted = copy.deepcopy(model).to(half) if half is not None else model
    if half is not None:
        inputs = tuple(x.to(half) if x.is_floating_point() else x for x in inputs)
    was_training = counted.training
    dev = inputs[0].device
    devices = [dev] if dev.type == "cuda" else []

    def count(xs: Inputs) -> tuple[int, int]:
        """(activations, backward workspace) at the batch of ``xs``."""
        with torch.random.fork_rng(devices=devices):
            forward = _count_forward(counted, xs, loss_fn, precision)
        with torch.random.fork_rng(devices=devices):
            peak = _backward_peak(counted, xs, loss_fn, precision)
        # the backward pass was measured without checkpointing: its workspace is what exceeds all activations
        workspace = max(0, peak - forward.activations - gradients)
        return (forward.checkpointed if checkpointing else forward.activations), workspace

    with capability.fallbacks() as notes:
        try:
            counted.train()
            activations, workspace = count(inputs)
            if example_batch >= 2:
                half_batch = example_batch // 2
                activations_half, workspace_half = count(_narrow(inputs, dim, example_batch, half_batch))
                activations_fixed = _intercept(activations, activations_half, example_batch, half_batch)
                workspace_fixed = _intercept(workspace, workspace_half, example_batch, half_batch)
            else:
                activations_fixed = workspace_fixed = 0  # one sample: all of it is taken to grow with the batch
        finally:
            counted.train(was_training)
    return _Counts(activations, workspace, activations_fixed, workspace_fixed, tuple(notes))


# ---------------------------------------------------------------------------------------------
# Validation: the estimate against a measured training step.
# ---------------------------------------------------------------------------------------------


class Validation(NamedTuple):
    """What :func:`validate` returns: the estimate, the measured peak of a training step, the part a step adds, and how
    it was measured.

    >>> Validation._fields
    ('estimate', 'measured', 'step_peak', 'method')
    """
    estimate: MemoryEstimate  # made from the first estimate_batch samples, scaled to the measured batch
    measured: int  # parameters + optimizer state (counted on the optimizer) + the step's measured peak
    step_peak: int  # what the step added at its peak (memlib.profiling.peak_memory)
    method: str  # what step_peak counts: memlib.profiling.CPU_METHOD or CUDA_METHOD

    @property
    def relative_error(self) -> float:
        """(estimate - measured) / measured of the whole step: positive when the estimate is too high."""
        return (self.estimate.total - self.measured) / self.measured

    @property
    def step_error(self) -> float:
        """The same for the part a step adds (gradients, activations, workspace): the harder part to estimate."""
        e = self.estimate
        return (e.gradients + e.activations + e.workspace - self.step_peak) / self.step_peak


_OPTIMIZERS: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]] = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=1e-3),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-3),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-3),
}


def validate(
    model: nn.Module,
    example_input: object,
    optimizer: str = "adam",
    precision: str = "fp32",
    *,
    estimate_batch: int | None = None,
    loss_fn: Callable[[object], torch.Tensor] = default_loss,
    batch_dim: int | None = None,
) -> Validation:
    """Estimate, then measure, one training step of a copy of ``model`` on ``example_input``.

    The estimate is made from the first ``estimate_batch`` samples (default: a quarter of them) and scaled to
    the whole batch. A smaller batch keeps the check honest: the estimate measures the backward pass's
    workspace at its own batch, so at the measured batch it would match the backward pass by construction.
    The measurement trains a copy (the model is left untouched): one warm-up step makes the optimizer state,
    as in any step after the first; then the peak of one step (``zero_grad(set_to_none=True)``, the input
    copied in, forward under autocast for ``"amp"``, loss, backward, optimizer step) is measured by
    :func:`memlib.profiling.peak_memory`, which counts only what the step adds: so the weights and the
    optimizer state, which exist before it, are added by count.
    On the CPU this counts tensor memory through torch's allocator (not Python objects, not the memory of
    libraries that allocate on their own); on CUDA the caching allocator's peak. No gradient scaler is used.
    """
    where = "validate"
    check_choice(where, "optimizer", optimizer, tuple(OPTIMIZER_STATES))
    check_choice(where, "precision", precision, PRECISIONS)
    inputs = _as_inputs(where, model, example_input)
    dim = _infer_batch_dim(model, inputs[0]) if batch_dim is None else batch_dim
    batch = inputs[0].shape[dim]
    small = max(1, batch // 4) if estimate_batch is None else _check_batch(where, estimate_batch)
    if small > batch:
        raise ValueError(f"{where}: expected estimate_batch <= the example's batch {batch}, got {small}")
    subset = _narrow(inputs, dim, batch, small)
    estimate = estimate_training_memory(
        model, subset, optimizer, precision, loss_fn=loss_fn, batch_dim=dim, batch_size=batch
    )

    trained = copy.deepcopy(model).train()
    half = _HALF.get(precision)
    if half is not None:
        trained = trained.to(half)
        inputs = tuple(x.to(half) if x.is_floating_point() else x for x in inputs)
    opt = _OPTIMIZERS[optimizer]([p for p in trained.parameters() if p.requires_grad])
    dev = inputs[0].device

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        xs = tuple(x.clone() for x in inputs)
        with _autocast(dev, precision):
            loss = loss_fn(trained(*xs))
        loss.backward()
        opt.step()

    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        step()  # warm-up: the optimizer state now exists, as before any later step
        opt.zero_grad(set_to_none=True)
        step_peak, method = peak_memory(step, dev)
    held = [*trained.parameters(), *trained.buffers()]
    held += [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    before = sum(t.untyped_storage().nbytes() for t in {_key(t): t for t in held if t.device == dev}.values())
    return Validation(estimate, before + step_peak, step_peak, method)


# ---------------------------------------------------------------------------------------------
# GPUs: what fits.
# ---------------------------------------------------------------------------------------------


class GPU(NamedTuple):
    """A card of the catalogue (:data:`GPUS`): its name, memory in bytes, year and memory bandwidth.

    >>> gpu("RTX 3090")._fields
    ('name', 'memory', 'year', 'bandwidth')
    """
    name: str
    memory: int  # bytes: the vendor's "GB" of GPU memory read as GiB (2**30), as nvidia-smi's MiB show
    year: int  # of release
    bandwidth: float | None = None  # memory bandwidth in GB/s (10**9 bytes), from the vendor's data sheet

    def __str__(self) -> str:
        bw = f", {self.bandwidth:g} GB/s" if self.bandwidth is not None else ""
        return f"{self.name} ({self.memory / GiB:g} GiB, {self.year}{bw})"


# The GPUs the article names, then current data-centre GPUs. Bandwidths from NVIDIA's specifications
# (A100 and H100 in their SXM form). The article's "Titan X" is taken as the 2015 GTX Titan X (Maxwell);
# the 2016 Titan X (Pascal) also has 12 GB. The Tesla M40's 24 GB version came out in 2016.
#: The GPU catalogue by name.
GPUS: dict[str, GPU] = {
    g.name: g
    for g in (
        GPU("GTX 960", 4 * GiB, 2015, 112.0),
        GPU("RTX 3060", 12 * GiB, 2021, 360.0),
        GPU("Titan X", 12 * GiB, 2015, 336.5),
        GPU("RTX 3090", 24 * GiB, 2020, 936.0),
        GPU("Titan RTX", 24 * GiB, 2018, 672.0),
        GPU("Tesla M40", 24 * GiB, 2016, 288.0),
        GPU("A100 40GB", 40 * GiB, 2020, 1555.0),
        GPU("A100 80GB", 80 * GiB, 2020, 2039.0),
        GPU("H100 80GB", 80 * GiB, 2022, 3350.0),
        GPU("H200", 141 * GiB, 2024, 4800.0),
    )
}


def gpu(name: str | GPU) -> GPU:
    """A GPU of the catalogue by name (case and spaces ignored), or the GPU given.

    >>> card = gpu("RTX 3090")
    >>> card.name, card.memory // 2**30
    ('RTX 3090', 24)
    """
    if isinstance(name, GPU):
        return name
    if isinstance(name, str):
        wanted = name.replace(" ", "").lower()
        for known in GPUS.values():
            if known.name.replace(" ", "").lower() == wanted:
                return known
    raise ValueError(f"gpu: expected one of {', '.join(map(repr, GPUS))} (or a GPU), got {name!r}")


# The CUDA context, cuDNN/cuBLAS handles and the allocator's fragmentation take memory no tensor holds:
# a tenth of the card is a common safety margin.
DEFAULT_RESERVE = 0.1


def usable_memory(device: str | GPU, reserve: float = DEFAULT_RESERVE, *, where: str = "usable_memory") -> int:
    """The bytes of ``device``'s memory a training run may use: its memory less the ``reserve`` fraction.

    ``where`` names the caller in error messages.

    >>> usable_memory("RTX 3090", reserve=0.5) == gpu("RTX 3090").memory // 2
    True
    """
    check_float(where, "reserve", reserve, low=0, high=1, high_open=True, expected="reserve as a fraction in [0, 1)")
    return int(gpu(device).memory * (1 - reserve))


def fits(estimate: MemoryEstimate, device: str | GPU, reserve: float = DEFAULT_RESERVE) -> bool:
    """Whether ``estimate.total`` fits in the GPU's memory less the ``reserve`` fraction.

    >>> estimate = estimate_training_memory(torch.nn.Linear(8, 1), (4, 8))
    >>> fits(estimate, "RTX 3090")
    True
    """
    return estimate.total <= usable_memory(device, reserve, where="fits")


def largest_batch(
    model: nn.Module | MemoryEstimate,
    example_input: object = None,
    device: str | GPU = "RTX 3090",
    reserve: float = DEFAULT_RESERVE,
    **options: Any,
) -> int:
    """The largest batch whose estimate fits on ``device`` (0 if not even one sample fits).

    Give a model and an example input (``options`` go to :func:`estimate_training_memory`), or an estimate.
    The estimate is fixed + per-sample x batch, so the batch is solved for, then checked by the estimate.

    >>> largest_batch(torch.nn.Linear(8, 1), (4, 8), device="RTX 3090") > 1000
    True
    """
    where = "largest_batch"
    if isinstance(model, MemoryEstimate):
        estimate = model
    else:
        if example_input is None:
            raise ValueError(f"{where}: expected an example_input with a model, got None")
        estimate = estimate_training_memory(model, example_input, **options)
    budget = usable_memory(device, reserve, where=where)
    e = estimate
    grows = e.activations - e.activations_fixed + e.backward_workspace - e.backward_workspace_fixed
    per_sample = grows / e.batch_size
    if per_sample <= 0:
        raise ValueError(f"{where}: expected an estimate that grows with the batch, got {per_sample} bytes per sample")
    # Linear branch of the total: fixed + per_sample * batch (the step's workspace only matters at small batches).
    fixed = e.parameters + e.gradients + e.optimizer_state + e.activations_fixed + e.backward_workspace_fixed
    guess = max(1, int((budget - fixed) // per_sample))

    def fits_at(batch: int) -> bool:
        return batch == 0 or e.at_batch(batch).total <= budget

    # The total never shrinks as the batch grows: check the guess, then bisect to the exact edge.
    low, high = (guess, 2 * guess) if fits_at(guess) else (0, guess)
    while fits_at(high):
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits_at(mid) else (low, mid)
    return low


# ---------------------------------------------------------------------------------------------
# Host memory.
# ---------------------------------------------------------------------------------------------


class RamRecommendation(NamedTuple):
    """What :func:`recommended_ram` returns: the minimum system memory (bytes) and the recommended one.

    >>> RamRecommendation._fields
    ('minimum', 'recommended')
    """
    minimum: int  # bytes: at least the GPUs' memory
    recommended: int  # bytes: 25% more than that

    def __str__(self) -> str:
        return f"RAM: at least {self.minimum / GiB:g} GiB, better {self.recommended / GiB:g} GiB"


def recommended_ram(device: str | GPU | int, gpus: int = 1) -> RamRecommendation:
    """The article's rules for host memory: at least as much RAM as GPU memory, and 25% more to be comfortable.

    Why the host needs that much: whatever the GPU holds passes through host memory first or last. The model
    is built (or loaded from a checkpoint) on the CPU before it moves to the GPU, and a checkpoint of weights
    and optimizer state is copied back to the host to be saved; the data loader keeps batches (and its
    workers' prefetched batches) in host memory, in page-locked (pinned) buffers for fast copies; a data set
    that fits in RAM is read from there rather than from disk. On top of that each process keeps the CUDA
    context and the libraries' code in host memory, and the operating system its file cache. The 25% is the
    margin for those.

    >>> ram = recommended_ram("RTX 3090")
    >>> ram.minimum == gpu("RTX 3090").memory, ram.recommended > ram.minimum
    (True, True)
    """
    where = "recommended_ram"
    if is_int(device):
        memory = check_int(where, "device", device, low=1, expected="GPU memory as a positive number of bytes",
                           got=str(device))
    else:
        memory = gpu(device).memory
    check_int(where, "gpus", gpus, low=1)
    total = memory * gpus
    return RamRecommendation(total, math.ceil(total * 1.25))
