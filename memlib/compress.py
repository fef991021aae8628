"""Making a model smaller or cheaper to train, with torch's own tools, and measuring what each change saves.

Techniques (each returns a new model or changes the given one in place, as its docstring says):

- **gradient checkpointing** (Chen et al. 2016; ``torch.utils.checkpoint`` with ``use_reentrant=False``):
  :func:`enable_checkpointing` keeps only each block's input in the forward pass and recomputes the block's
  inside during the backward pass: over the blocks of a deep model (the entries of its longest ModuleList or
  Sequential, as :func:`memlib.hardware.checkpoint_blocks` finds them), or over chunks of ``time_chunk`` steps
  of a recurrent stack (memlib's or torch's RNN / LSTM / GRU), with the state carried from chunk to chunk.
- **mixed precision** (Micikevicius et al. 2018): :func:`autocast` (bfloat16 on the CPU, float16 on CUDA) and
  :func:`amp_step`, one training step with a gradient scaler on CUDA (``torch.amp.GradScaler``; bfloat16 needs
  none).
- **pruning** (``torch.nn.utils.prune``): :func:`prune`, unstructured by L1 magnitude (per layer or global) or
  structured (whole rows, by L2 norm), on every weight matrix; :func:`fine_tune` trains with the masks held;
  :func:`sparsity`; :func:`make_permanent` folds the masks into the weights.
- **quantization** to int8 with ``torch.ao.quantization`` in eager mode: :func:`quantize_dynamic` (weights stored
  int8, activations quantized on the fly; Linear, LSTM, GRU), :func:`quantize_static` (weights and activations
  int8, scales from calibration batches) and quantization-aware training (:func:`prepare_qat`, then
  :func:`convert_qat`), for models with ``QuantStub`` / ``DeQuantStub`` such as :class:`QuantizableMLP`.
  torch 2.13 marks ``torch.ao.quantization`` deprecated in favour of the separate ``torchao`` package (its
  ``quantize_`` API), which this project does not install and which has no int8 LSTM; the eager-mode API still
  works in 2.13, and these helpers silence its deprecation warnings. Quantized models run on the CPU only.
- **knowledge distillation** (Hinton et al. 2015): :func:`distillation_loss` and :func:`distill`.
- **low-rank factorisation** (truncated SVD): :func:`low_rank_linear` replaces a Linear by two thinner ones,
  :func:`low_rank` does so across a model, with the rank given or chosen by retained energy
  (:func:`rank_for_energy`); :func:`low_rank_recurrent` stores a recurrent stack's weight matrices as two factors.

Sizes: :func:`count_parameters` (every weight a model computes with, quantized and pruned ones included),
:func:`size_on_disk` (bytes of the saved ``state_dict``). Copies: :func:`clone` (a deepcopy that also takes a
pruned model).

Shapes: ``B`` batch, ``T`` time, ``C`` classes; a weight matrix is (out, in).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as torch_prune
from torch.nn.utils.rnn import PackedSequence
from torch.utils.checkpoint import checkpoint

from memlib import recurrent
from memlib.hardware import checkpoint_blocks
from memlib.train import FitResult, fit
from memlib.validate import check_float, check_int, is_int

#: The techniques :func:`compress` applies, by name.
TECHNIQUES = ("checkpointing", "pruning", "dynamic_quantization", "static_quantization", "low_rank")


# ---------------------------------------------------------------------------------------------
# Sizes.
# ---------------------------------------------------------------------------------------------


def _is_quantized_module(module: nn.Module) -> bool:
    path = type(module).__module__  # torch.ao.nn.quantized..., torch.ao.nn.intrinsic.quantized...
    return path.startswith("torch.ao.nn.") and ".quantized" in path


def named_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Every weight ``model`` computes with, by name: its parameters, where a pruned weight is the masked one
    (``weight``, not ``weight_orig``), and the int8 weights (with their float biases) of quantized modules.

    >>> [name for name, _ in named_weights(torch.nn.Linear(3, 2))]
    ['weight', 'bias']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"named_weights: expected an nn.Module, got {type(model).__name__}")
    for prefix, module in model.named_modules():
        dot = prefix + "." if prefix else ""
        if _is_quantized_module(module):
            if callable(getattr(module, "weight", None)):  # quantized Linear (dynamic or static)
                yield dot + "weight", module.weight()
                bias = module.bias()
                if bias is not None:
                    yield dot + "bias", bias
                continue
            if hasattr(module, "_all_weight_values"):  # dynamic quantized LSTM / GRU: a dict of dicts
                for kind in module._weight_bias().values():
                    for name, t in kind.items():
                        if t is not None:
                            yield dot + name, t
                continue
        for name, p in module.named_parameters(recurse=False):
            if name.endswith("_orig") and isinstance(getattr(module, name[:-5], None), torch.Tensor):
                yield dot + name[:-5], getattr(module, name[:-5])  # pruned: the masked weight
            else:
                yield dot + name, p


def count_parameters(model: nn.Module, *, nonzero: bool = False) -> int:
    """Number of weights in ``model`` (see :func:`named_weights`); ``nonzero=True`` counts only those not zero.

    >>> count_parameters(torch.nn.Linear(3, 2))
    8
    """
    total = 0
    for _, t in named_weights(model):
        if nonzero:
            total += int(torch.count_nonzero(t.dequantize() if t.is_quantized else t))
        else:
            total += t.numel()
    return total


def size_on_disk(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` in a temporary file (what a checkpoint of the weights takes).

    A pruned model that is not yet :func:`make_permanent` saves both ``weight_orig`` and ``weight_mask``; a dense
    file does not shrink with zeros either way.

    >>> size_on_disk(torch.nn.Linear(100, 100)) > 100 * 100 * 4
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"size_on_disk: expected an nn.Module, got {type(model).__name__}")
    fd, path = tempfile.mkstemp(suffix=".pt")
    os.close(fd)
    try:
        with _quiet_quantization():
            torch.save(model.state_dict(), path)
        return os.path.getsize(path)
    finally:
        os.remove(path)


def clone(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)``, which also works on a pruned model that still holds its masks (torch cannot
    deepcopy the masked weight a forward pass left behind: it is computed, not a leaf; here it is recomputed
    without a graph first, as the next forward pass would).

    >>> a = torch.nn.Linear(2, 2)
    >>> b = clone(a)
    >>> b is a, torch.equal(a.weight, b.weight)
    (False, True)
    """
    _check_module("clone", model)
    with torch.no_grad():
        for module in model.modules():
            for hook in module._forward_pre_hooks.values():
                if isinstance(hook, torch_prune.BasePruningMethod):
                    setattr(module, hook._tensor_name, hook.apply_mask(module))
    return copy.deepcopy(model)


# ---------------------------------------------------------------------------------------------
# Gradient checkpointing.
# ---------------------------------------------------------------------------------------------

_RECURRENT_TYPES = (recurrent.RecurrentBase, nn.RNNBase)
_checkpointed_classes: dict[tuple[type, str], type] = {}


def _block_forward(base: type) -> Callable:
    def forward(self, *args, **kwargs):
        if not torch.is_grad_enabled():  # nothing is kept for a backward pass: a plain call
            return base.forward(self, *args, **kwargs)
        return checkpoint(base.forward, self, *args, use_reentrant=False, **kwargs)

    return forward


def _time_chunk_forward(base: type) -> Callable:
    def forward(self, input, hx=None):
        if isinstance(input, PackedSequence):
            raise ValueError(
                f"{base.__name__} with time-chunk checkpointing: expected a padded tensor, got a PackedSequence"
            )
        if not torch.is_grad_enabled():
            return base.forward(self, input, hx)
        dim = 1 if self.batch_first and input.dim() == 3 else 0  # the time dimension
        outputs, state = [], hx
        for chunk in input.split(self._checkpoint_time_chunk, dim=dim):  # state carried from chunk to chunk
            out, state = checkpoint(base.forward, self, chunk, state, use_reentrant=False)
            outputs.append(out)
        return torch.cat(outputs, dim=dim), state

    return forward


def _checkpointed_class(base: type, kind: str) -> type:
    """A subclass of ``base`` whose forward is checkpointed: swapping a module's class to it keeps its
    parameters, names and state_dict keys, and ``isinstance`` still holds."""
    key = (base, kind)
    if key not in _checkpointed_classes:
        forward = _block_forward(base) if kind == "block" else _time_chunk_forward(base)
        _checkpointed_classes[key] = type(
            f"Checkpointed{base.__name__}", (base,), {"forward": forward, "_checkpoint_base": base}
        )
    return _checkpointed_classes[key]


def _check_module(where: str, model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: expected an nn.Module, got {type(model).__name__}")
    return model


def enable_checkpointing(
    model: nn.Module, *, time_chunk: int | None = None, blocks: Sequence[nn.Module] | None = None
) -> nn.Module:
    """Checkpoint ``model`` in place and return it (parameters and ``state_dict`` keys are unchanged).

    Without ``time_chunk``: each of ``blocks`` (default :func:`memlib.hardware.checkpoint_blocks`, the entries of
    the model's longest ModuleList or Sequential) keeps only its inputs for the backward pass and runs its forward
    again there. With ``time_chunk``: every recurrent stack in ``model`` (memlib's or torch's RNN / LSTM / GRU,
    ``model`` itself included) runs ``time_chunk`` steps at a time, each chunk checkpointed, the state carried
    across (packed sequences are not supported). Gradients equal the plain model's (up to float rounding); with
    dropout between recurrent layers the chunks draw different masks. Outside ``torch.enable_grad`` (evaluation)
    the model runs as before. Undo with :func:`disable_checkpointing`.

    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    >>> model = enable_checkpointing(model, blocks=list(model))
    >>> model(torch.randn(2, 4, requires_grad=True)).sum().backward()  # activations recomputed in backward
    >>> model = disable_checkpointing(model)
    """
    where = "enable_checkpointing"
    _check_module(where, model)
    if time_chunk is not None:
        check_int(where, "time_chunk", time_chunk, low=1, expected="time_chunk as a positive int")
        stacks = [m for m in model.modules() if isinstance(m, _RECURRENT_TYPES)]
        if not stacks:
            raise ValueError(f"{where}: time_chunk given, but {type(model).__name__} holds no RNN, LSTM or GRU")
        for m in stacks:
            if not hasattr(m, "_checkpoint_base"):
                m.__class__ = _checkpointed_class(type(m), "time")
            m._checkpoint_time_chunk = time_chunk
        return model
    chosen = checkpoint_blocks(model) if blocks is None else list(blocks)
    if not chosen:
        raise ValueError(
            f"{where}: {type(model).__name__} has no ModuleList or Sequential of blocks to checkpoint; "
            "pass blocks=..., or time_chunk=... for a recurrent model"
        )
    owned = {id(m) for m in model.modules()}
    for block in chosen:
        if not isinstance(block, nn.Module) or id(block) not in owned:
            raise ValueError(f"{where}: expected blocks to be submodules of the model, got {type(block).__name__}")
        if not hasattr(block, "_checkpoint_base"):
            block.__class__ = _checkpointed_class(type(block), "block")
    return model


def disable_checkpointing(model: nn.Module) -> nn.Module:
    """Undo :func:`enable_checkpointing` in place and return ``model``.

    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> disable_checkpointing(enable_checkpointing(model, blocks=list(model)))(torch.zeros(1, 2)).shape
    torch.Size([1, 2])
    """
    _check_module("disable_checkpointing", model)
    for m in model.modules():
        base = type(m).__dict__.get("_checkpoint_base")
        if base is not None:
            m.__class__ = base
            m.__dict__.pop("_checkpoint_time_chunk", None)
    return model


# ---------------------------------------------------------------------------------------------
# Mixed precision.
# ---------------------------------------------------------------------------------------------


def autocast_dtype(device: torch.device | str) -> torch.dtype:
    """The half precision autocast uses here: bfloat16 on the CPU, float16 on CUDA.

    >>> autocast_dtype("cpu")
    torch.bfloat16
    """
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"autocast: expected a cpu or cuda device, got {dev}")
    return torch.float16 if dev.type == "cuda" else torch.bfloat16


def autocast(device: torch.device | str, enabled: bool = True) -> torch.autocast:
    """``torch.autocast`` with :func:`autocast_dtype`: matrix products in half precision, reductions in float32.

    >>> with autocast("cpu"):
    ...     y = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    >>> y.dtype
    torch.bfloat16
    """
    dev = torch.device(device)
    return torch.autocast(dev.type, dtype=autocast_dtype(dev), enabled=enabled)


def grad_scaler(device: torch.device | str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled on CUDA (float16 gradients underflow without it), disabled on the CPU
    (bfloat16 has float32's exponent range).

    >>> type(grad_scaler("cpu")).__name__
    'GradScaler'
    """
    dev = torch.device(device)
    autocast_dtype(dev)  # checks the device
    return torch.amp.GradScaler(dev.type, enabled=dev.type == "cuda")


def amp_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    batch: Any,
    scaler: torch.amp.GradScaler | None = None,
) -> float:
    """One mixed-precision training step: forward and loss under :func:`autocast`, backward of the (scaled) loss,
    optimizer step through ``scaler`` (default: :func:`grad_scaler` of the model's device). Returns the loss."""
    dev = next(model.parameters()).device
    scaler = grad_scaler(dev) if scaler is None else scaler
    with autocast(dev):
        loss = loss_fn(model, batch)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


# ---------------------------------------------------------------------------------------------
# Pruning.
# ---------------------------------------------------------------------------------------------


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, name) of every weight matrix in ``model``: parameters of two or more dimensions (Linear and
    convolution weights, a recurrent stack's ``weight_ih_l*`` and ``weight_hh_l*``, embeddings); a weight already
    pruned is listed under its own name.

    >>> [name for _, name in prunable_weights(torch.nn.Sequential(torch.nn.Linear(2, 2)))]
    ['weight']
    """
    found = []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if p.dim() >= 2:
                found.append((module, name[:-5] if name.endswith("_orig") else name))
    return found


def _check_amount(where: str, amount: object) -> float:
    expected = "amount as a fraction in [0, 1)"
    return check_float(where, "amount", amount, low=0, high=1, high_open=True, expected=expected)


def prune(
    model: nn.Module,
    amount: float,
    *,
    structured: bool = False,
    scope: str = "layer",
    weights: Sequence[tuple[nn.Module, str]] | None = None,
) -> nn.Module:
    """Zero a fraction ``amount`` of ``model``'s weight matrices in place (masks via ``torch.nn.utils.prune``)
    and return ``model``.

    Unstructured (default): the weights of smallest magnitude (L1), ``amount`` of each matrix
    (``scope="layer"``) or of all of them pooled (``scope="global"``). ``structured=True``: whole rows (output
    units; for a recurrent weight, gate rows) of smallest L2 norm, ``amount`` of each matrix's rows (a layer
    scope only). Pruning a weight that still holds its mask takes ``amount`` of the weights it kept (a weight
    made permanent starts afresh, its zeros counted among the smallest). ``weights``: (module, name) pairs (default
    :func:`prunable_weights`). The masks stay until :func:`make_permanent`.

    >>> model = prune(torch.nn.Linear(10, 10), 0.5)
    >>> round(sparsity(model), 2)
    0.5
    """
    where = "prune"
    _check_module(where, model)
    amount = _check_amount(where, amount)
    if scope not in ("layer", "global"):
        raise ValueError(f"{where}: expected scope 'layer' or 'global', got {scope!r}")
    if structured and scope == "global":
        raise ValueError(f"{where}: structured pruning is per layer; use scope='layer'")
    targets = prunable_weights(model) if weights is None else list(weights)
    if not targets:
        raise ValueError(f"{where}: {type(model).__name__} has no weight matrix to prune")
    if scope == "global":
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=amount)
        return model
    for module, name in targets:
        if structured:
            torch_prune.ln_structured(module, name, amount=amount, n=2, dim=0)
        else:
            torch_prune.l1_unstructured(module, name, amount=amount)
    return model


def sparsity(model: nn.Module) -> float:
    """Fraction of zeros among ``model``'s weight matrices (:func:`prunable_weights`), masks applied.

    >>> sparsity(torch.nn.Linear(4, 4))
    0.0
    """
    _check_module("sparsity", model)
    zeros = total = 0
    for module, name in prunable_weights(model):
        w = getattr(module, name)
        zeros += int((w == 0).sum())
        total += w.numel()
    if total == 0:
        raise ValueError(f"sparsity: {type(model).__name__} has no weight matrix")
    return zeros / total


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weight (``torch.nn.utils.prune.remove``), in place; return ``model``.

    The zeros stay; the masks, the ``*_orig`` copies and the forward pre-hooks go, so the ``state_dict`` has
    its original keys and size.

    >>> model = make_permanent(prune(torch.nn.Linear(10, 10), 0.5))
    >>> [name for name, _ in model.named_parameters()], round(sparsity(model), 2)
    (['bias', 'weight'], 0.5)
    """
    _check_module("make_permanent", model)
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
    return model


def fine_tune(
    model: nn.Module,
    batches: Callable[[int], Any],
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    *,
    steps: int,
    lr: float = 1e-3,
    **fit_options: Any,
) -> FitResult:
    """Train a pruned model with its masks held (the pruned weights get no update and stay zero):
    :func:`~memlib.train.fit` with the same arguments."""
    return fit(model, batches, loss_fn, steps=steps, lr=lr, **fit_options)


# ---------------------------------------------------------------------------------------------
# Quantization (torch.ao.quantization, eager mode).
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_quantization() -> Iterator[None]:
    """Silence torch 2.13's deprecation notes on ``torch.ao.quantization`` and quantized tensors."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel")
        warnings.filterwarnings("ignore", message=r"Please use quant_min and quant_max")
        yield


def _to_torch_recurrent(module: nn.Module) -> nn.Module:
    """A torch.nn copy of a memlib recurrent stack or cell (same weights), which quantize_dynamic can take."""
    if isinstance(module, recurrent.RecurrentBase):
        kind = {recurrent.LSTM: nn.LSTM, recurrent.GRU: nn.GRU}.get(type(module))
        if kind is None:
            return module  # no dynamic-quantized Elman stack in torch: left float
        new = kind(
            module.input_size,
            module.hidden_size,
            num_layers=module.num_layers,
            bias=module.bias,
            batch_first=module.batch_first,
            dropout=module.dropout,
            bidirectional=module.bidirectional,
        )
    elif isinstance(module, recurrent.CellBase):
        cells = {recurrent.LSTMCell: nn.LSTMCell, recurrent.GRUCell: nn.GRUCell, recurrent.RNNCell: nn.RNNCell}
        kind = cells[type(module)]
        extra = {"nonlinearity": module.nonlinearity} if isinstance(module, recurrent.RNNCell) else {}
        new = kind(module.input_size, module.hidden_size, bias=module.bias, **extra)
    else:
        return module
    new.load_state_dict(module.state_dict())
    return new.to(next(module.parameters()).dtype)


def _swap_recurrent(model: nn.Module) -> nn.Module:
    if isinstance(model, (recurrent.RecurrentBase, recurrent.CellBase)):
        return _to_torch_recurrent(model)
    for name, child in model.named_children():
        setattr(model, name, _swap_recurrent(child))
    return model


def quantize_dynamic(model: nn.Module, dtype: torch.dtype = torch.qint8) -> nn.Module:
    """A copy of ``model`` (in eval mode, on the CPU) with its Linear, LSTM and GRU layers (and cells)
    dynamically quantized: weights stored in int8 (or float16 with ``dtype=torch.float16``), activations
    quantized on the fly at each product. memlib's LSTM / GRU become their torch.nn twins first (same weights).

    >>> q = quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(8, 4)))
    >>> q(torch.zeros(2, 8)).shape
    torch.Size([2, 4])
    """
    where = "quantize_dynamic"
    _check_module(where, model)
    if dtype not in (torch.qint8, torch.float16):
        raise ValueError(f"{where}: expected dtype torch.qint8 or torch.float16, got {dtype}")
    float_model = _swap_recurrent(clone(model).cpu().float().eval())
    kinds = {nn.Linear, nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell, nn.RNNCell}
    if not any(type(m) in kinds for m in float_model.modules()):
        raise ValueError(f"{where}: {type(model).__name__} has no Linear, LSTM or GRU layer to quantize")
    with _quiet_quantization():
        return torch.ao.quantization.quantize_dynamic(float_model, kinds, dtype=dtype)


class QuantizableMLP(nn.Module):
    """A multilayer perceptron that eager-mode static quantization and quantization-aware training can take:
    ``QuantStub`` -> (Linear -> ReLU) x (len(sizes) - 2) -> Linear -> ``DeQuantStub``.

    ``sizes``: input features, hidden widths..., outputs. Input (B, ...) is flattened to (B, sizes[0]).
    Parameters ``layers.k.0.weight`` (hidden k) and ``layers.{last}.weight``. In float the stubs do nothing.

    >>> QuantizableMLP([8, 16, 3])(torch.zeros(2, 8)).shape
    torch.Size([2, 3])
    """

    def __init__(self, sizes: Sequence[int]):
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2 or any(not is_int(s) or s < 1 for s in sizes):
            raise ValueError(f"QuantizableMLP: expected two or more positive int sizes, got {sizes!r}")
        self.sizes = sizes
        self.quant = torch.ao.quantization.QuantStub()
        hidden = [nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in zip(sizes[:-2], sizes[1:-1], strict=True)]
        self.layers = nn.Sequential(*hidden, nn.Linear(sizes[-2], sizes[-1]))
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() < 2 or x[0].numel() != self.sizes[0]:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"QuantizableMLP: expected input (B, ...) of {self.sizes[0]} features, got {got}")
        return self.dequant(self.layers(self.quant(x.flatten(1))))

    def fuse(self, qat: bool = False) -> None:
        """Fuse each Linear with its ReLU (in place), as static quantization wants."""
        groups = [[f"layers.{k}.0", f"layers.{k}.1"] for k in range(len(self.sizes) - 2)]
        if not groups:
            return
        fuse = torch.ao.quantization.fuse_modules_qat if qat else torch.ao.quantization.fuse_modules
        with _quiet_quantization():
            fuse(self, groups, inplace=True)


def _check_static(where: str, model: nn.Module, backend: str | None) -> str:
    _check_module(where, model)
    if not any(isinstance(m, torch.ao.quantization.QuantStub) for m in model.modules()):
        raise ValueError(
            f"{where}: {type(model).__name__} has no QuantStub: eager-mode static quantization needs a model that "
            "marks where tensors enter and leave int8 (QuantStub / DeQuantStub), e.g. QuantizableMLP"
        )
    backend = torch.backends.quantized.engine if backend is None else backend
    if backend not in torch.backends.quantized.supported_engines or backend == "none":
        raise ValueError(f"{where}: expected backend in {torch.backends.quantized.supported_engines}, got {backend!r}")
    return backend


def quantize_static(model: nn.Module, calibration: Iterable[torch.Tensor], backend: str | None = None) -> nn.Module:
    """A copy of ``model`` with int8 weights and activations: Linear+ReLU fused (when the model has ``fuse``),
    observers placed, ``calibration`` inputs run through to fix each activation's scale, then converted.
    ``backend``: a quantized engine (default the current one, ``torch.backends.quantized.engine``)."""
    where = "quantize_static"
    backend = _check_static(where, model, backend)
    m = clone(model).cpu().float().eval()
    if hasattr(m, "fuse"):
        m.fuse(qat=False)
    with _quiet_quantization():
        m.qconfig = torch.ao.quantization.get_default_qconfig(backend)
        torch.ao.quantization.prepare(m, inplace=True)
        seen = 0
        with torch.no_grad():
            for x in calibration:
                m(x.cpu())
                seen += 1
        if seen == 0:
            raise ValueError(f"{where}: expected at least one calibration batch, got none")
        torch.ao.quantization.convert(m, inplace=True)
    return m


def prepare_qat(model: nn.Module, backend: str | None = None) -> nn.Module:
    """A copy of ``model`` ready for quantization-aware training: fused, with fake quantization of weights and
    activations in the forward pass (straight-through gradients). Train it (e.g. :func:`~memlib.train.fit`), then
    :func:`convert_qat`.

    >>> qat = prepare_qat(QuantizableMLP([4, 8, 2]))  # train it as usual, then convert_qat(qat.eval())
    >>> any(hasattr(m, "weight_fake_quant") for m in qat.modules())
    True
    """
    backend = _check_static("prepare_qat", model, backend)
    m = clone(model).cpu().float().train()
    if hasattr(m, "fuse"):
        m.fuse(qat=True)
    with _quiet_quantization():
        m.qconfig = torch.ao.quantization.get_default_qat_qconfig(backend)
        torch.ao.quantization.prepare_qat(m, inplace=True)
    return m


def convert_qat(model: nn.Module) -> nn.Module:
    """The int8 model from one trained after :func:`prepare_qat` (a copy, in eval mode)."""
    _check_module("convert_qat", model)
    if not any(hasattr(m, "weight_fake_quant") for m in model.modules()):
        raise ValueError("convert_qat: expected a model from prepare_qat (no fake-quantized layer found)")
    with _quiet_quantization():
        return torch.ao.quantization.convert(clone(model).eval(), inplace=False)


# ---------------------------------------------------------------------------------------------
# Knowledge distillation.
# ---------------------------------------------------------------------------------------------


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> torch.Tensor:
    """Hinton et al. (2015): ``alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
    + (1 - alpha) * CE(student, targets)``, the KL averaged over the batch.

    Logits (B, C), targets (B,) class indices. The T^2 keeps the soft term's gradients on the scale of the hard
    term's as T changes (their section 2).

    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> loss = distillation_loss(logits, logits, torch.tensor([0, 1]))
    >>> loss.shape, bool(loss > 0)
    (torch.Size([]), True)
    """
    where = "distillation_loss"
    check_float(where, "temperature", temperature, low=0, low_open=True, expected="a positive temperature")
    check_float(where, "alpha", alpha, low=0, high=1, expected="alpha in [0, 1]")
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(
            f"{where}: expected student and teacher logits of one shape (B, C), got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    t = float(temperature)
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    hard = F.cross_entropy(student_logits, targets)
    return alpha * t * t * soft + (1 - alpha) * hard


def distill(
    student: nn.Module,
    teacher: nn.Module,
    batches: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    *,
    steps: int,
    temperature: float = 4.0,
    alpha: float = 0.9,
    lr: float = 1e-3,
    **fit_options: Any,
) -> FitResult:
    """Train ``student`` on :func:`distillation_loss` against the frozen ``teacher`` (in eval mode, no gradients):
    :func:`~memlib.train.fit` with ``batches(step) -> (x, targets)``."""
    _check_module("distill", student)
    _check_module("distill", teacher)
    teacher.eval()

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        with torch.no_grad():
            soft_targets = teacher(x)
        return distillation_loss(model(x), soft_targets, y, temperature, alpha)

    return fit(student, batches, loss_fn, steps=steps, lr=lr, **fit_options)


# ---------------------------------------------------------------------------------------------
# Low rank.
# ---------------------------------------------------------------------------------------------


def rank_for_energy(weight: torch.Tensor, energy: float) -> int:
    """The smallest rank r whose truncated SVD keeps ``energy`` of the matrix's squared singular values
    (``sum(s[:r]**2) >= energy * sum(s**2)``, the Frobenius norm kept).

    >>> rank_for_energy(torch.diag(torch.tensor([3.0, 1.0, 0.0])), 0.9)  # 9 / 10 of the energy in one direction
    1
    """
    check_float("rank_for_energy", "energy", energy, low=0, high=1, low_open=True, expected="energy in (0, 1]")
    s = torch.linalg.svdvals(weight.detach().double())
    cumulative = (s**2).cumsum(0) / (s**2).sum().clamp_min(torch.finfo(torch.float64).tiny)
    return min(int((cumulative < energy - 1e-12).sum()) + 1, s.numel())


def _check_rank(where: str, rank: object, shape: Sequence[int], label: str) -> int:
    full = min(shape)
    check_int(where, "rank", rank, low=1, expected="rank as a positive int")
    if rank > full:
        raise ValueError(f"{where}: rank {rank} is above {label}'s rank limit min{tuple(shape)} = {full}")
    return rank


def _factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (out, r), B (r, in)) with A @ B the best rank-r approximation of ``weight`` (Eckart-Young),
    the singular values split evenly between the factors."""
    u, s, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).to(weight.dtype), (root[:, None] * vh[:rank]).to(weight.dtype)


def low_rank_linear(linear: nn.Linear, rank: int) -> nn.Sequential:
    """Two Linears, ``in -> rank`` (no bias) then ``rank -> out`` (the original bias), whose product is the
    rank-``rank`` truncated SVD of ``linear.weight``: ``rank * (in + out)`` weights instead of ``in * out``.

    >>> factored = low_rank_linear(torch.nn.Linear(8, 6), rank=2)
    >>> [tuple(m.weight.shape) for m in factored]  # (r, I) then (O, r)
    [(2, 8), (6, 2)]
    """
    where = "low_rank_linear"
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"{where}: expected an nn.Linear, got {type(linear).__name__}")
    rank = _check_rank(where, rank, linear.weight.shape, "the layer")
    a, b = _factors(linear.weight, rank)
    factory = {"device": linear.weight.device, "dtype": linear.weight.dtype}
    first = nn.Linear(linear.in_features, rank, bias=False, **factory)
    second = nn.Linear(rank, linear.out_features, bias=linear.bias is not None, **factory)
    with torch.no_grad():
        first.weight.copy_(b)
        second.weight.copy_(a)
        if linear.bias is not None:
            second.bias.copy_(linear.bias)
    return nn.Sequential(first, second)


def low_rank(
    model: nn.Module,
    *,
    rank: int | None = None,
    energy: float | None = None,
    layers: Sequence[str] | None = None,
) -> nn.Module:
    """A copy of ``model`` with Linear layers replaced by :func:`low_rank_linear`.

    Give ``rank`` (the same for every layer; an error for a layer whose ``min(in, out)`` is below it) or
    ``energy`` (each layer's rank from :func:`rank_for_energy`; a layer is left whole when its factors would not
    be smaller than it). ``layers``: names of the Linear modules (default: all of them).

    >>> model = low_rank(torch.nn.Sequential(torch.nn.Linear(8, 8)), rank=2)
    >>> model(torch.zeros(1, 8)).shape, count_parameters(model) < 8 * 8 + 8
    (torch.Size([1, 8]), True)
    """
    where = "low_rank"
    _check_module(where, model)
    if (rank is None) == (energy is None):
        raise ValueError(f"{where}: expected exactly one of rank or energy")
    m = clone(model)
    linears = {name: mod for name, mod in m.named_modules() if isinstance(mod, nn.Linear)}
    names = list(linears) if layers is None else list(layers)
    for name in names:
        if name not in linears:
            raise ValueError(f"{where}: expected names of Linear layers from {sorted(linears)}, got {name!r}")
    for name in names:
        linear = linears[name]
        out_f, in_f = linear.weight.shape
        if rank is not None:
            r = _check_rank(where, rank, linear.weight.shape, f"layer {name!r}")
        else:
            r = rank_for_energy(linear.weight, energy)
            if r * (in_f + out_f) >= in_f * out_f:
                continue  # factors would be no smaller
        parent_name, _, child = name.rpartition(".")
        parent = m.get_submodule(parent_name) if parent_name else m
        replacement = low_rank_linear(linear, r)
        if name == "":  # the model is itself a Linear
            return replacement
        setattr(parent, child, replacement)
    return m


class _Product(nn.Module):
    """A weight stored as two factors (out, r) and (r, in): ``parametrize`` rebuilds it as their product."""

    def __init__(self, rank: int):
        super().__init__()
        self.rank = rank

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b

    def right_inverse(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _factors(weight, self.rank)


def low_rank_recurrent(rnn: nn.Module, *, rank: int | None = None, energy: float | None = None) -> nn.Module:
    """A copy of a memlib recurrent stack (RNN, LSTM, GRU) whose ``weight_ih_l*`` and ``weight_hh_l*`` are each
    stored as two factors of rank ``rank`` (or the rank keeping ``energy``), through
    ``torch.nn.utils.parametrize``: the state_dict holds the factors; the full matrix is rebuilt at each forward,
    so this saves storage, not time. A matrix whose factors would be no smaller is left whole (with ``energy``).

    >>> from memlib.recurrent import LSTM
    >>> lstm = low_rank_recurrent(LSTM(8, 8), rank=2)
    >>> lstm(torch.zeros(3, 1, 8))[0].shape
    torch.Size([3, 1, 8])
    """
    where = "low_rank_recurrent"
    if not isinstance(rnn, recurrent.RecurrentBase):
        raise TypeError(f"{where}: expected a memlib RNN, LSTM or GRU, got {type(rnn).__name__}")
    if (rank is None) == (energy is None):
        raise ValueError(f"{where}: expected exactly one of rank or energy")
    m = clone(rnn)
    for name in [n for n in m._flat_weights_names if n.startswith("weight_")]:
        w = getattr(m, name)
        if rank is not None:
            r = _check_rank(where, rank, w.shape, f"weight {name!r}")
        else:
            r = rank_for_energy(w, energy)
            if r * sum(w.shape) >= math.prod(w.shape):
                continue
        parametrize.register_parametrization(m, name, _Product(r), unsafe=True)
    return m


# ---------------------------------------------------------------------------------------------
# One entry point.
# ---------------------------------------------------------------------------------------------


def compress(model: nn.Module, technique: str, **options: Any) -> nn.Module:
    """Apply one of :data:`TECHNIQUES` with its options: ``checkpointing`` -> :func:`enable_checkpointing`
    (in place), ``pruning`` -> :func:`prune` (in place), ``dynamic_quantization`` -> :func:`quantize_dynamic`,
    ``static_quantization`` -> :func:`quantize_static`, ``low_rank`` -> :func:`low_rank` (copies).
    Distillation and mixed precision change training, not a model: see :func:`distill` and :func:`amp_step`.

    >>> model = compress(torch.nn.Sequential(torch.nn.Linear(10, 10)), "pruning", amount=0.5)
    >>> round(sparsity(model), 2)
    0.5
    """
    functions = {
        "checkpointing": enable_checkpointing,
        "pruning": prune,
        "dynamic_quantization": quantize_dynamic,
        "static_quantization": quantize_static,
        "low_rank": low_rank,
    }
    if technique not in functions:
        raise ValueError(f"compress: unknown technique {technique!r}; expected one of {list(TECHNIQUES)}")
    return functions[technique](model, **options)
