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
estimate with a measured step. :func:`estimate_inference_memory` does the same for one forward pass without
autograd: the weights and the most memory the pass holds at once.

Models too large to build: the same estimators take a model built on ``torch.device("meta")``, whose tensors
have shapes and dtypes but no data. The weights, gradients and optimizer state are counted from the parameters
as before; the activations are counted by the same saved-tensor hooks (so a meta model's count equals a CPU
model's wherever both devices take the same kernels); the peaks (the backward pass's workspace, the inference
pass) are tracked op by op with a ``TorchDispatchMode`` that adds each new storage when an op makes it and
subtracts it when its last tensor dies, instead of asking an allocator. On the meta device attention takes
PyTorch's math path, which keeps the ``T x T`` weights (as the original BERT and GPT-3 implementations did; a
fused kernel such as FlashAttention, Dao et al. 2022, keeps neither); autocast has no meta backend, so ``"amp"``
counts the activations of a float16 copy of the model plus a float16 copy of its weights; and the optimizer step
is taken as on CUDA. :func:`bert`, :func:`gpt3` and :func:`evoformer` build the published configurations of BERT
(Devlin et al. 2019), GPT-3 (Brown et al. 2020) and AlphaFold 2's Evoformer (Jumper et al. 2021) this way.
"""

from __future__ import annotations

import contextlib
import copy
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from memlib import capability
from memlib.profiling import peak_memory
from memlib.transformer import TransformerEncoder, TransformerEncoderLayer
from memlib.validate import check_choice, check_float, check_int, fail, is_int

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
            if factory.get("device", torch.device("cpu")).type == "meta":  # no data to draw
                return (torch.empty(*example_input, **factory),)
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
    """The tensors in nested tuples, lists and dicts (a model's output, an op's arguments or results): what torch's
    ``tree_flatten`` finds there, for a fraction of its cost, which :class:`_LiveBytes` pays on every op."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _tensors(item)]
    if isinstance(output, dict):
        return [t for item in output.values() for t in _tensors(item)]
    return []


def _key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata  # the storage itself: views of one storage share it


def _autocast(dev: torch.device, precision: str):
    """Autocast as mixed precision uses it: bfloat16 on the CPU, float16 on CUDA; a no-op otherwise."""
    if dev.type == "meta":
        return contextlib.nullcontext()  # autocast has no meta backend: "amp" counts a float16 copy instead
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

    return _peak(forward_backward, dev)


class _LiveBytes(TorchDispatchMode):
    """The bytes of tensor storage alive at once, op by op: what an allocator without a cache would hold.

    Each storage an op returns is added when it first appears and subtracted when the last tensor on it dies
    (a finalizer per tensor; views of one storage share it). Storages made before the mode are not counted,
    as :func:`memlib.profiling.peak_memory` counts only what a call adds. Temporaries inside a kernel are not
    seen (on the meta device there are none).
    """

    def __init__(self) -> None:
        super().__init__()
        self.views: dict[int, int] = {}  # storage -> live tensors on it
        self.nbytes: dict[int, int] = {}  # storage -> bytes
        self.now = self.peak = 0

    def _release(self, key: int) -> None:
        self.views[key] -= 1
        if self.views[key] == 0:
            self.now -= self.nbytes.pop(key)
            del self.views[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = None  # the storages of the op's tensor arguments, found when an output's storage is new to the mode
        for t in _tensors(out):
            key = _key(t)
            if key not in self.views:
                if inputs is None:
                    inputs = {_key(a) for a in _tensors((args, kwargs))}
                if key in inputs:
                    continue  # a view of (or an in-place op on) a storage made before the call: not new memory
                self.views[key], self.nbytes[key] = 0, t.untyped_storage().nbytes()
                self.now += self.nbytes[key]
                self.peak = max(self.peak, self.now)
            self.views[key] += 1
            weakref.finalize(t, self._release, key)
        return out


def _peak(fn: Callable[[], Any], dev: torch.device) -> int:
    """Peak bytes one call of ``fn`` adds: the allocator's (CPU profiler, CUDA) or, on the meta device, tracked."""
    if dev.type != "meta":
        return peak_memory(fn, dev)[0]
    live = _LiveBytes()
    with live:
        fn()
    return live.peak


_META_NOTE = (
    "counted on the meta device (shapes, no data): attention by PyTorch's math path, which keeps the T x T "
    "weights; peaks tracked op by op; the optimizer step as on CUDA"
)
_META_AMP_NOTE = (
    "amp on the meta device: autocast does not run there, so the activations are those of a float16 copy of "
    "the model, plus a float16 copy of every weight (autocast's cache)"
)


def _step_workspace(optimizer: str, trainable: list[torch.Tensor], dev: torch.device, bytes_per: float) -> int:
    """Temporaries of the optimizer step (see the module docstring: measured on the CPU, assumed on CUDA)."""
    if optimizer not in ("adam", "adamw") or not trainable:
        return 0  # SGD updates in place
    if dev.type in ("cuda", "meta"):  # a meta model stands for one trained on a GPU
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
    dev = inputs[0].device
    meta_amp = dev.type == "meta" and precision == "amp"
    half = torch.float16 if meta_amp else _HALF.get(precision)
    counted = copy.deepcopy(model).to(half) if half is not None else model
    if half is not None:
        inputs = tuple(x.to(half) if x.is_floating_point() else x for x in inputs)
    if meta_amp:
        gradients //= 2  # the float16 copy's gradients, which its backward pass holds
    was_training = counted.training
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
    if meta_amp:  # autocast's float16 copies of the weights, made once per step whatever the batch
        copies = 2 * sum(p.numel() for p in model.parameters() if p.is_floating_point())
        activations, activations_fixed = activations + copies, activations_fixed + copies
    meta = (_META_NOTE, _META_AMP_NOTE) if meta_amp else (_META_NOTE,) if dev.type == "meta" else ()
    return _Counts(activations, workspace, activations_fixed, workspace_fixed, (*notes, *meta))


# ---------------------------------------------------------------------------------------------
# Inference: one forward pass, no autograd graph.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InferenceEstimate:
    """Bytes of one forward pass in eval mode without autograd: the weights, and the most memory the pass holds
    at once beyond them (the input, the intermediate results alive together, the output).

    >>> e = estimate_inference_memory(torch.nn.Linear(8, 1), (4, 8))
    >>> e.parameters, e.at_batch(64).batch_size
    (36, 64)
    """

    parameters: int  # weights and buffers at the precision
    activations: int  # the forward pass's peak beyond the weights, input included
    batch_size: int
    precision: str
    activations_fixed: int = 0  # the part that does not grow with the batch
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.parameters + self.activations

    @property
    def parts(self) -> dict[str, int]:
        """The two parts by name, in the order of a stacked bar."""
        return {"parameters": self.parameters, "activations": self.activations}

    def at_batch(self, batch_size: int) -> InferenceEstimate:
        """The same estimate for another batch: the activations beyond their fixed part scale linearly."""
        _check_batch("InferenceEstimate.at_batch", batch_size)
        grows = (self.activations - self.activations_fixed) * batch_size / self.batch_size
        return replace(self, activations=self.activations_fixed + round(grows), batch_size=batch_size)

    def __str__(self) -> str:
        rows = [f"  {name:<16} {value / MiB:>10.2f} MiB" for name, value in self.parts.items()]
        notes = [f"  note: {n}" for n in self.notes]
        head = f"Inference memory at batch {self.batch_size} ({self.precision})"
        return "\n".join([head, *rows, f"  {'total':<16} {self.total / MiB:>10.2f} MiB", *notes])


INFERENCE_PRECISIONS = ("fp32", "bf16", "fp16")


def estimate_inference_memory(
    model: nn.Module,
    example_input: object,
    precision: str = "fp32",
    batch_size: int | None = None,
    *,
    batch_dim: int | None = None,
) -> InferenceEstimate:
    """Bytes one forward pass of ``model`` takes in eval mode under ``torch.no_grad()``, by part.

    ``example_input``, ``batch_size`` and ``batch_dim`` as for :func:`estimate_training_memory`. ``precision``:
    ``"fp32"``, or ``"bf16"`` / ``"fp16"`` for the model cast to that dtype (how a model is served in half
    precision). The peak is measured as :func:`memlib.profiling.peak_memory` measures it (on the CPU, torch's
    profiler; on CUDA, the caching allocator), or tracked op by op for a model on the meta device; the part that
    does not grow with the batch is found by a second pass at half the example's batch.

    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    >>> e = estimate_inference_memory(model, (4, 8))
    >>> e.parameters == (8 * 16 + 16 + 16 + 1) * 4, e.activations >= 4 * 16 * 4  # the widest result is alive
    (True, True)
    """
    where = "estimate_inference_memory"
    check_choice(where, "precision", precision, INFERENCE_PRECISIONS)
    inputs, dim, example_batch, batch = _checked_example(
        where, model, example_input, "sgd", precision, False, batch_size, batch_dim
    )
    dev = inputs[0].device
    parameters = _state_bytes(model, "sgd", precision, dev).parameters
    half = _HALF.get(precision)
    served = copy.deepcopy(model).to(half) if half is not None else model
    if half is not None:
        inputs = tuple(x.to(half) if x.is_floating_point() else x for x in inputs)
    was_training = served.training

    def peak(xs: Inputs) -> int:
        def forward() -> None:
            served(*(x.clone() for x in xs))  # the input copied inside the call, so that it is counted

        with torch.no_grad():
            return _peak(forward, dev)

    with capability.fallbacks() as notes:
        try:
            served.eval()
            activations = peak(inputs)
            fixed = 0  # one sample: all of it is taken to grow with the batch
            if example_batch >= 2:
                half_batch = example_batch // 2
                at_half = peak(_narrow(inputs, dim, example_batch, half_batch))
                fixed = _intercept(activations, at_half, example_batch, half_batch)
        finally:
            served.train(was_training)
    meta = (_META_NOTE.replace("; the optimizer step as on CUDA", ""),) if dev.type == "meta" else ()
    estimate = InferenceEstimate(parameters, activations, example_batch, precision, fixed, (*notes, *meta))
    return estimate if batch == example_batch else estimate.at_batch(batch)


def at_depth(
    shallow: MemoryEstimate | InferenceEstimate, deeper: MemoryEstimate | InferenceEstimate, depths: tuple[int, int],
    depth: int,
) -> MemoryEstimate | InferenceEstimate:
    """The estimate of a stack of ``depth`` identical blocks (Transformer layers, Evoformer blocks) from the
    estimates of the same model with ``depths[0]`` and ``depths[1]`` blocks.

    Each block adds the same weights, gradients, optimizer state and saved tensors (with checkpointing: the same
    input and the same recomputed block), so every part is a + b x blocks, which two depths fix; the inference
    peak stops growing after two blocks (the stack's own input and the last block's results are held while a
    block runs), so take ``depths`` of at least 2 for inference. The tests check this against whole stacks.
    It spares the per-op cost of counting a deep model on the meta device.

    >>> def mlp(n):
    ...     return torch.nn.Sequential(*(torch.nn.Linear(8, 8) for _ in range(n)))
    >>> e = at_depth(*(estimate_training_memory(mlp(n), (4, 8)) for n in (2, 3)), (2, 3), 6)
    >>> e == estimate_training_memory(mlp(6), (4, 8))
    True
    """
    where = "at_depth"
    if type(shallow) is not type(deeper) or not isinstance(shallow, (MemoryEstimate, InferenceEstimate)):
        fail(where, "two estimates of one kind", f"{type(shallow).__name__} and {type(deeper).__name__}", TypeError)
    d1, d2 = depths
    check_int(where, "depths[0]", d1, low=1)
    check_int(where, "depths[1]", d2, low=d1 + 1, expected=f"depths[1] > depths[0] = {d1}", got=str(d2))
    check_int(where, "depth", depth, low=1)
    same = [f.name for f in fields(shallow) if not isinstance(getattr(shallow, f.name), int) or f.name == "batch_size"]
    differ = [name for name in same if getattr(shallow, name) != getattr(deeper, name)]
    if differ:
        fail(where, "estimates that differ only in depth", f"different {', '.join(differ)}")
    parts = {
        f.name: round(getattr(shallow, f.name) + (getattr(deeper, f.name) - getattr(shallow, f.name)) * (depth - d1)
                      / (d2 - d1))
        for f in fields(shallow) if f.name not in same
    }
    return replace(shallow, **parts)


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


def fits(estimate: MemoryEstimate | InferenceEstimate, device: str | GPU, reserve: float = DEFAULT_RESERVE) -> bool:
    """Whether ``estimate.total`` (of training or of inference) fits in the GPU's memory less the ``reserve`` fraction.

    >>> estimate = estimate_training_memory(torch.nn.Linear(8, 1), (4, 8))
    >>> fits(estimate, "RTX 3090")
    True
    """
    return estimate.total <= usable_memory(device, reserve, where="fits")


def largest_batch(
    model: nn.Module | MemoryEstimate | InferenceEstimate,
    example_input: object = None,
    device: str | GPU = "RTX 3090",
    reserve: float = DEFAULT_RESERVE,
    **options: Any,
) -> int:
    """The largest batch whose estimate fits on ``device`` (0 if not even one sample fits).

    Give a model and an example input (``options`` go to :func:`estimate_training_memory`), or an estimate of
    training or of inference (:func:`estimate_inference_memory`). The estimate is fixed + per-sample x batch, so
    the batch is solved for, then checked by the estimate.

    >>> largest_batch(torch.nn.Linear(8, 1), (4, 8), device="RTX 3090") > 1000
    True
    """
    where = "largest_batch"
    if isinstance(model, (MemoryEstimate, InferenceEstimate)):
        estimate = model
    else:
        if example_input is None:
            raise ValueError(f"{where}: expected an example_input with a model, got None")
        estimate = estimate_training_memory(model, example_input, **options)
    budget = usable_memory(device, reserve, where=where)
    e = estimate
    if isinstance(e, InferenceEstimate):
        grows, fixed = e.activations - e.activations_fixed, e.parameters + e.activations_fixed
    else:
        grows = e.activations - e.activations_fixed + e.backward_workspace - e.backward_workspace_fixed
        # Linear branch of the total: fixed + per_sample * batch (the step's workspace only matters at small batches).
        fixed = e.parameters + e.gradients + e.optimizer_state + e.activations_fixed + e.backward_workspace_fixed
    per_sample = grows / e.batch_size
    if per_sample <= 0:
        raise ValueError(f"{where}: expected an estimate that grows with the batch, got {per_sample} bytes per sample")
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


# ---------------------------------------------------------------------------------------------
# Published configurations, built where no memory is needed (``device="meta"``).
# ---------------------------------------------------------------------------------------------


class Bert(nn.Module):
    """BERT (Devlin et al. 2019, section 3): token, position and segment embeddings, LayerNorm, a post-norm
    Transformer encoder with GELU, and the pooler (a tanh layer on the first token).

    ``forward(tokens (B, T) long) -> (sequence output (B, T, D), pooled (B, D))``: what a fine-tuning head reads
    (the pre-training heads are left out). Every segment id is 0. Token ids are not range-checked, so that the
    model runs on the meta device. Dropout 0.1 on the embeddings, the attention weights and each sub-layer's
    output, as in the paper.

    >>> model = Bert(vocab_size=100, d_model=16, layers=2, heads=2, d_ff=32, max_len=8)
    >>> [o.shape for o in model(torch.zeros(3, 8, dtype=torch.long))]
    [torch.Size([3, 8, 16]), torch.Size([3, 16])]
    """

    def __init__(
        self, vocab_size: int = 30522, d_model: int = 768, layers: int = 12, heads: int = 12, d_ff: int = 3072,
        max_len: int = 512, dropout: float = 0.1,
    ):
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(max_len, d_model)
        self.segment = nn.Embedding(2, d_model)
        self.norm = nn.LayerNorm(d_model, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        layer = TransformerEncoderLayer(
            d_model, heads, d_ff, dropout, activation="gelu", layer_norm_eps=1e-12, batch_first=True
        )
        layer.dropout = nn.Identity()  # BERT drops out attention weights and sub-layer outputs, not inside the FF
        self.encoder = TransformerEncoder(layer, layers)
        self.pooler = nn.Linear(d_model, d_model)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = tokens.shape[1]
        positions = torch.arange(T, device=tokens.device)
        x = self.token(tokens) + self.position(positions) + self.segment(torch.zeros_like(tokens))  # (B, T, D)
        h = self.encoder(self.dropout(self.norm(x)))  # (B, T, D)
        return h, torch.tanh(self.pooler(h[:, 0]))  # (B, T, D), (B, D)


class GPT(nn.Module):
    """A GPT-2/GPT-3 language model (Radford et al. 2019; Brown et al. 2020, section 2.1): token and learned
    position embeddings, pre-norm causal Transformer layers with GELU and a final LayerNorm; the output layer
    shares the token embedding's weights. GPT-3 alternates dense and locally banded sparse attention layers;
    every layer here is dense (an upper bound on attention's memory).

    ``forward(tokens (B, T) long) -> logits (B, T, V)``. Token ids are not range-checked (meta device).

    >>> GPT(vocab_size=50, d_model=16, layers=2, heads=2, max_len=8)(torch.zeros(2, 8, dtype=torch.long)).shape
    torch.Size([2, 8, 50])
    """

    def __init__(
        self, vocab_size: int = 50257, d_model: int = 12288, layers: int = 96, heads: int = 96, max_len: int = 2048,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(max_len, d_model)
        self.dropout = nn.Dropout(dropout)
        layer = TransformerEncoderLayer(
            d_model, heads, 4 * d_model, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        layer.dropout = nn.Identity()  # as in GPT-2: no dropout inside the feed-forward network
        self.decoder = TransformerEncoder(layer, layers, norm=nn.LayerNorm(d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.dropout(self.token(tokens) + self.position(positions))  # (B, T, D)
        h = self.decoder(x, is_causal=True)  # (B, T, D): position t attends to 0..t
        return h @ self.token.weight.T  # (B, T, V): the embedding, tied


def _chunked(
    fn: Callable[..., torch.Tensor], chunk: int | None, dim: int, x: torch.Tensor, *shared: torch.Tensor,
    out_dim: int | None = None,
) -> torch.Tensor:
    """``fn(x, *shared)`` computed ``chunk`` entries of ``x``'s axis ``dim`` at a time and concatenated along
    ``out_dim`` (default ``dim``): AlphaFold's inference "subbatching" (Jumper et al. 2021, Supplementary 1.11.8),
    the same result with a smaller peak. ``None``: all at once. Only for layers whose outputs are independent
    along that axis; ``shared`` inputs (a bias common to every entry) are passed whole. On the meta device without
    autograd, the ops of three chunks stand for all (:func:`_chunks_on_meta`)."""
    n = x.shape[dim]
    if chunk is None or chunk >= n:
        return fn(x, *shared)
    if x.device.type == "meta" and not torch.is_grad_enabled():
        parts = _chunks_on_meta(fn, chunk, dim, x, shared)
    else:
        parts = [fn(x.narrow(dim, start, min(chunk, n - start)), *shared) for start in range(0, n, chunk)]
    return torch.cat(parts, dim if out_dim is None else out_dim)


def _chunks_on_meta(
    fn: Callable[..., torch.Tensor], chunk: int, dim: int, x: torch.Tensor, shared: tuple[torch.Tensor, ...]
) -> list[torch.Tensor]:
    """The parts of :func:`_chunked` on the meta device without autograd, for the ops of at most three chunks.

    There every chunk of ``chunk`` entries runs the same ops on the same shapes, and holds the same temporaries on
    top of the parts made before it; so the peak, op by op (:class:`_LiveBytes`), is reached in the last full chunk
    (or the shorter remainder). The first and the last full chunk and the remainder are computed; the chunks between
    are stood in for by empty tensors of the first part's shape, which hold the same bytes. Where the first part is
    not a whole contiguous storage, every chunk is computed."""
    n = x.shape[dim]
    full, rest = divmod(n, chunk)  # chunks of `chunk` entries, then one of `rest`
    first = fn(x.narrow(dim, 0, chunk), *shared)
    whole = first.is_contiguous() and first.untyped_storage().nbytes() == first.numel() * first.element_size()
    middle = [
        torch.empty_like(first) if whole else fn(x.narrow(dim, i * chunk, chunk), *shared) for i in range(1, full - 1)
    ]
    last = [fn(x.narrow(dim, (full - 1) * chunk, chunk), *shared)] if full > 1 else []
    remainder = [fn(x.narrow(dim, full * chunk, rest), *shared)] if rest else []
    return [first, *middle, *last, *remainder]


class _GatedAttention(nn.Module):
    """Gated self-attention along axis 2 of x (B, N1, N2, C), independently for each of the N1 rows, with an
    optional bias (B, H, N2, N2) shared by the rows (Jumper et al. 2021, Supplementary Algorithms 7, 8, 13, 14).

    a = softmax(q k^T / sqrt(c) + b); o = sigmoid(W_g x) * (a v); out = W_o o. The weights a are materialised.
    """

    def __init__(self, c_in: int, c: int, heads: int, c_bias: int | None = None):
        super().__init__()
        self.c, self.heads = c, heads
        self.norm = nn.LayerNorm(c_in)
        self.qkv = nn.Linear(c_in, 3 * heads * c, bias=False)
        self.gate = nn.Linear(c_in, heads * c)
        self.out = nn.Linear(heads * c, c_in)
        if c_bias is not None:
            self.bias_norm = nn.LayerNorm(c_bias)
            self.bias = nn.Linear(c_bias, heads, bias=False)

    def pair_bias(self, z: torch.Tensor) -> torch.Tensor:
        """(B, N2, N2, c_bias) -> (B, H, N2, N2)."""
        return self.bias(self.bias_norm(z)).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        B, N1, N2, _ = x.shape
        x = self.norm(x)
        q, k, v = self.qkv(x).view(B, N1, N2, 3, self.heads, self.c).permute(3, 0, 1, 4, 2, 5)  # (B, N1, H, N2, c)
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.c)  # (B, N1, H, N2, N2)
        if bias is not None:
            logits = logits + bias[:, None]
        o = (logits.softmax(-1) @ v).permute(0, 1, 3, 2, 4).reshape(B, N1, N2, self.heads * self.c)
        return self.out(torch.sigmoid(self.gate(x)) * o)  # (B, N1, N2, C)


class _Transition(nn.Module):
    """LayerNorm, then a ReLU layer n times wider, then back (Supplementary Algorithms 9 and 15)."""

    def __init__(self, c: int, n: int = 4):
        super().__init__()
        # no Sequential: the stack's list of blocks stays the longest list, the one checkpointing wraps
        self.norm, self.up, self.down = nn.LayerNorm(c), nn.Linear(c, n * c), nn.Linear(n * c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(self.norm(x))))


class _OuterProductMean(nn.Module):
    """MSA (B, S, R, c_m) -> pair update (B, R, R, c_z): the mean over the S rows of a_si (x) b_sj, flattened
    (c * c) and projected (Supplementary Algorithm 10)."""

    def __init__(self, c_m: int, c_z: int, c: int = 32):
        super().__init__()
        self.norm = nn.LayerNorm(c_m)
        self.a, self.b = nn.Linear(c_m, c), nn.Linear(c_m, c)
        self.out = nn.Linear(c * c, c_z)

    def forward(self, m: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        m = self.norm(m)
        a, b = self.a(m), self.b(m)  # (B, S, R, c)

        def rows(a_i: torch.Tensor) -> torch.Tensor:  # (B, S, r, c) -> (B, r, R, c_z)
            o = torch.einsum("bsic,bsjd->bijcd", a_i, b) / m.shape[1]  # (B, r, R, c, c)
            return self.out(o.flatten(-2))

        return _chunked(rows, chunk, 2, a, out_dim=1)  # residues i of a: rows i of the update


class _TriangleMultiplication(nn.Module):
    """Pair (B, R, R, c_z) update through the third edge of each triangle: "outgoing" x_ij = sum_k a_ik b_jk,
    "incoming" x_ij = sum_k a_ki b_kj; a, b gated projections, out = sigmoid(W_g z) * W_o LN(x)
    (Supplementary Algorithms 11 and 12)."""

    def __init__(self, c_z: int, c: int = 128, outgoing: bool = True):
        super().__init__()
        self.outgoing = outgoing
        self.norm = nn.LayerNorm(c_z)
        self.a, self.a_gate = nn.Linear(c_z, c), nn.Linear(c_z, c)
        self.b, self.b_gate = nn.Linear(c_z, c), nn.Linear(c_z, c)
        self.gate = nn.Linear(c_z, c_z)
        self.out_norm = nn.LayerNorm(c)
        self.out = nn.Linear(c, c_z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = self.norm(z)
        a = torch.sigmoid(self.a_gate(z)) * self.a(z)  # (B, R, R, c)
        b = torch.sigmoid(self.b_gate(z)) * self.b(z)
        if self.outgoing:  # x_ij = sum_k a_ik b_jk
            x = a.permute(0, 3, 1, 2) @ b.permute(0, 3, 2, 1)  # (B, c, R, R)
        else:  # x_ij = sum_k a_ki b_kj
            x = a.permute(0, 3, 2, 1) @ b.permute(0, 3, 1, 2)
        return torch.sigmoid(self.gate(z)) * self.out(self.out_norm(x.permute(0, 2, 3, 1)))


class EvoformerBlock(nn.Module):
    """One Evoformer block (Jumper et al. 2021, Supplementary Algorithm 6), without dropout: the MSA
    representation m (B, S, R, c_m) is updated by row attention with pair bias, column attention and a
    transition; the pair representation z (B, R, R, c_z) by the outer product mean of m, the two triangle
    multiplications, the two triangle attentions and a transition. Each update is added (residual).

    ``chunk``: compute the attention, transition and outer-product layers that many rows at a time (as AlphaFold
    does at inference); ``None``: all at once. ``forward(m, z) -> (m, z)``.

    >>> block = EvoformerBlock(c_m=8, c_z=4, heads_msa=2, heads_pair=2, c=4)
    >>> [t.shape for t in block(torch.zeros(1, 3, 5, 8), torch.zeros(1, 5, 5, 4))]
    [torch.Size([1, 3, 5, 8]), torch.Size([1, 5, 5, 4])]
    """

    def __init__(
        self, c_m: int = 256, c_z: int = 128, heads_msa: int = 8, heads_pair: int = 4, c: int = 32,
        c_opm: int = 32, c_mul: int = 128, chunk: int | None = None,
    ):
        super().__init__()
        self.chunk = chunk
        self.row_attention = _GatedAttention(c_m, c, heads_msa, c_bias=c_z)
        self.column_attention = _GatedAttention(c_m, c, heads_msa)
        self.msa_transition = _Transition(c_m)
        self.outer_product_mean = _OuterProductMean(c_m, c_z, c_opm)
        self.triangle_out = _TriangleMultiplication(c_z, c_mul, outgoing=True)
        self.triangle_in = _TriangleMultiplication(c_z, c_mul, outgoing=False)
        self.triangle_start = _GatedAttention(c_z, c, heads_pair, c_bias=c_z)
        self.triangle_end = _GatedAttention(c_z, c, heads_pair, c_bias=c_z)
        self.pair_transition = _Transition(c_z)

    def forward(self, m: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.chunk
        # MSA stack: rows attend along residues with a bias from the pair; columns attend along sequences
        m = m + _chunked(self.row_attention, n, 1, m, self.row_attention.pair_bias(z))
        mt = m.transpose(1, 2)  # (B, R, S, c_m)
        m = m + _chunked(self.column_attention, n, 1, mt).transpose(1, 2)
        m = m + _chunked(self.msa_transition, n, 1, m)
        # pair stack: communication from the MSA, then triangles
        z = z + self.outer_product_mean(m, n)
        z = z + self.triangle_out(z)
        z = z + self.triangle_in(z)
        # starting node: z_ij attends to z_ik (rows of z); ending node: z_ij attends to z_kj (its columns)
        z = z + _chunked(self.triangle_start, n, 1, z, self.triangle_start.pair_bias(z))
        zt = z.transpose(1, 2)
        z = z + _chunked(self.triangle_end, n, 1, zt, self.triangle_end.pair_bias(zt)).transpose(1, 2)
        z = z + _chunked(self.pair_transition, n, 1, z)
        return m, z


class Evoformer(nn.Module):
    """AlphaFold 2's Evoformer stack (Jumper et al. 2021): ``blocks`` :class:`EvoformerBlock` in turn.

    ``forward(m (B, S, R, c_m), z (B, R, R, c_z)) -> (m, z)``; the blocks are in ``self.blocks``, the list that
    gradient checkpointing wraps. The extra-MSA stack, templates and structure module are not included.

    >>> stack = Evoformer(blocks=2, c_m=8, c_z=4, heads_msa=2, heads_pair=2, c=4)
    >>> [t.shape for t in stack(torch.zeros(1, 3, 5, 8), torch.zeros(1, 5, 5, 4))]
    [torch.Size([1, 3, 5, 8]), torch.Size([1, 5, 5, 4])]
    """

    def __init__(self, blocks: int = 48, **block: Any):
        super().__init__()
        self.blocks = nn.ModuleList(EvoformerBlock(**block) for _ in range(blocks))

    def forward(self, m: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for block in self.blocks:
            m, z = block(m, z)
        return m, z


def both_outputs_loss(output: object) -> torch.Tensor:
    """A stand-in loss over every floating output (the Evoformer's m and z), so the backward pass reaches both.

    >>> both_outputs_loss((torch.ones(2), torch.ones(3))).item()
    2.0
    """
    return sum(t.float().pow(2).mean() for t in _tensors(output) if t.is_floating_point())


# The published sizes: (layers, width, heads, feed-forward width) for BERT (Devlin et al. 2019, section 3) and
# (layers, width, heads) for GPT-3 (Brown et al. 2020, Table 2.1), with the parameter counts the papers give.
BERT_SIZES = {"base": (12, 768, 12, 3072), "large": (24, 1024, 16, 4096)}
# (Table 2.1's 1.3B and 13B rows list more heads x head width than their width; they are left out.)
GPT3_SIZES = {"125M": (12, 768, 12), "2.7B": (32, 2560, 32), "6.7B": (32, 4096, 32), "175B": (96, 12288, 96)}
PUBLISHED_PARAMETERS = {
    "BERT-base": 110e6, "BERT-large": 340e6, "GPT-3 125M": 125e6, "GPT-3 2.7B": 2.7e9, "GPT-3 6.7B": 6.7e9,
    "GPT-3 175B": 175e9,
}


def bert(size: str = "base", *, layers: int | None = None, device: str | torch.device = "meta") -> Bert:
    """BERT-base (110M parameters) or BERT-large (340M) as Devlin et al. (2019) configured them, on ``device``;
    ``layers`` overrides the depth (see :func:`at_depth`).

    >>> round(sum(p.numel() for p in bert("base").parameters()) / 1e6, 1)
    109.5
    """
    depth, width, heads, d_ff = BERT_SIZES[check_choice("bert", "size", size, tuple(BERT_SIZES))]
    with torch.device(device):
        depth = depth if layers is None else check_int("bert", "layers", layers, low=1)
        return Bert(d_model=width, layers=depth, heads=heads, d_ff=d_ff)


def gpt3(size: str = "175B", *, layers: int | None = None, device: str | torch.device = "meta") -> GPT:
    """A GPT-3 model of Brown et al. (2020), Table 2.1 (context 2048 tokens, vocabulary 50257), on ``device``;
    ``layers`` overrides the depth (see :func:`at_depth`).

    >>> round(sum(p.numel() for p in gpt3("175B").parameters()) / 1e9, 1)
    174.6
    """
    depth, width, heads = GPT3_SIZES[check_choice("gpt3", "size", size, tuple(GPT3_SIZES))]
    with torch.device(device):
        return GPT(d_model=width, layers=depth if layers is None else check_int("gpt3", "layers", layers, low=1),
                   heads=heads)


def evoformer(blocks: int = 48, *, chunk: int | None = None, device: str | torch.device = "meta") -> Evoformer:
    """AlphaFold 2's Evoformer stack as Jumper et al. (2021) configured it (48 blocks, MSA channels c_m = 256, pair
    channels c_z = 128, 8 MSA and 4 pair attention heads of 32 channels), on ``device``; its inputs are the MSA
    representation (B, N_seq, N_res, 256) and the pair representation (B, N_res, N_res, 128).

    >>> round(sum(p.numel() for p in evoformer().parameters()) / 1e6, 1)
    87.9
    """
    check_int("evoformer", "blocks", blocks, low=1)
    with torch.device(device):
        return Evoformer(blocks, chunk=chunk)
