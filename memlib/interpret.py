"""Attributions for memlib sequence models: a thin layer over Captum (Kokhlikyan et al. 2020).

``attribute(model, inputs, method)`` answers one question for any model that maps a batch of sequences to
an output: how much did each time step (and each feature of it) contribute to the output? It wraps Captum's
IntegratedGradients (Sundararajan et al. 2017), Saliency (Simonyan et al. 2014), DeepLift (Shrikumar et al.
2017), Occlusion (Zeiler & Fergus 2014), LayerIntegratedGradients and LayerConductance (Dhamdhere et al. 2019).

Shapes: ``B`` batch, ``T`` time, ``F`` features per step, ``D`` a layer's width, ``C`` classes, ``V`` vocabulary.

- Float inputs (B, T, F) or (B, T): ``values`` has the input's shape. Token inputs (B, T) of integers are
  attributed through the model's ``nn.Embedding`` (LayerIntegratedGradients): ``values`` is (B, T, D).
- ``per_step`` (B, T) sums ``values`` over everything after the time axis (for occlusion, which already gives
  every feature of a step the same value, it is that value: the output change when the step is occluded).
- ``target`` picks the output that is explained: ``None`` for an output (B,) (a regressor); a class index
  (int or (B,) tensor) for logits (B, C); a tuple ``(t, v)`` for outputs (B, T, V) (a language model).
- Models that return a tuple: ``output_index`` selects the element explained (default 0). Further model
  arguments (``lengths``) go in ``forward_args``.
- Scores: :func:`top_k_steps` ranks steps by ``|per_step|`` (a step's net contribution: its features' signed
  attributions may cancel; on the adding problem, against the zero baseline, a marked step's value and marker
  often do) or, with ``reduce="l1"``, by the sum of its features' ``|attribution|``. :func:`ground_truth_score` and
  :func:`deletion_curve` rank the same way.

Known pitfalls, handled here:

- cuDNN cannot run an RNN backward pass in eval mode. Captum's FAQ gives two ways out: put the model in train
  mode (which also turns dropout on, so the explained function is not the one used for prediction) or switch
  cuDNN off. ``attribute`` does the second: the model runs in eval mode (dropout off) with
  ``torch.backends.cudnn.enabled = False`` (torch's own CUDA kernels take the RNN), and both the cuDNN flag and
  every module's train/eval state are restored afterwards. On the CPU the flag changes nothing.
- DeepLift's rescale rule is applied by hooks on nonlinearity *modules* (``nn.Sigmoid``, ``nn.Tanh``,
  ``nn.ReLU``, ...). memlib's recurrent cells and attention compute their sigmoids, tanhs and softmaxes as
  functions, on the fused path and on the reference path alike (``memlib.reference_path()`` does not add
  modules), so inside them DeepLift's multipliers are plain gradients at the input and DeepLift reduces to
  gradient x (input - baseline). It stays exact for models built from module nonlinearities (``nn.Sequential``
  of ``nn.Linear`` and ``nn.Tanh``). ``convergence_delta`` shows the gap.
- LayerConductance on a recurrent layer attributes to the layer's output sequence (B, T, H). A model that reads
  only the last hidden state (``SequenceRegressor``) gets every unit's conductance at the last step: the
  recurrence runs inside the layer, so earlier outputs do not reach the readout. ``layer_input=True``
  attributes to the layer's input instead (for a first layer reading the raw input, that is Integrated
  Gradients again). Layers returning a tuple (a recurrent layer's ``(output, state)``) are read through a probe
  on their first element.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
from torch import nn

from memlib.validate import check_int, is_int, is_number

#: The attribution methods :func:`attribute` takes.
METHODS = (
    "integrated_gradients",
    "saliency",
    "deeplift",
    "occlusion",
    "layer_integrated_gradients",
    "layer_conductance",
)
_LAYER_METHODS = ("layer_integrated_gradients", "layer_conductance")
_TOKEN_METHODS = ("integrated_gradients", *_LAYER_METHODS)  # integrated_gradients on tokens: through the embedding


class Attribution(NamedTuple):
    """What :func:`attribute` returns.

    ``values``: (B, T, F) or (B, T) for float inputs, the layer's (B, T, D) for layer methods and token inputs.
    ``per_step``: (B, T), ``values`` summed over everything after the time axis.
    ``method``: the method that ran. ``convergence_delta``: (B,) for the methods that give one (integrated
    gradients, deeplift, the layer methods): the sum of the attributions minus (output - baseline output).

    >>> Attribution._fields
    ('values', 'per_step', 'method', 'convergence_delta')
    """

    values: torch.Tensor
    per_step: torch.Tensor
    method: str
    convergence_delta: torch.Tensor | None


class DeletionCurve(NamedTuple):
    """What :func:`deletion_curve` returns: for each k in ``steps``, the mean ``|output change|`` over the batch
    when the k most attributed steps (``attributed``) or k random steps (``random``) are set to the baseline.

    >>> DeletionCurve._fields
    ('steps', 'attributed', 'random')
    """

    steps: list[int]
    attributed: torch.Tensor  # (len(steps),)
    random: torch.Tensor  # (len(steps),)


class _Explained(nn.Module):
    """The model with its output selected (tuple outputs) and kept as a module (DeepLift hooks its submodules)."""

    def __init__(self, model: nn.Module, output_index: int):
        super().__init__()
        self.model = model
        self.output_index = output_index

    def forward(self, *args):
        out = self.model(*args)
        if isinstance(out, tuple | list):
            out = out[self.output_index]
        return out


# ---------------------------------------------------------------------------------------------
# Checks and defaults.
# ---------------------------------------------------------------------------------------------


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"attribute: expected model as an nn.Module, got {type(model).__name__}")
    return model


def _check_inputs(inputs: object) -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(
            f"attribute: expected inputs as a tensor (B, T, F), (B, T) or tokens (B, T), got {type(inputs).__name__}"
        )
    if inputs.dim() < 2:
        raise ValueError(
            f"attribute: expected batched inputs (B, T, ...), got shape {tuple(inputs.shape)}; "
            "add a batch axis with inputs[None]"
        )
    if 0 in inputs.shape:
        raise ValueError(f"attribute: expected a non-empty batch and sequence, got shape {tuple(inputs.shape)}")
    if not inputs.is_floating_point() and inputs.dtype not in (torch.long, torch.int, torch.int16, torch.uint8):
        raise TypeError(f"attribute: expected float inputs or integer tokens, got {inputs.dtype}")
    return inputs


def _is_tokens(inputs: torch.Tensor) -> bool:
    return not inputs.is_floating_point()


def _check_method(method: object) -> str:
    if method not in METHODS:
        raise ValueError(f"attribute: unknown method {method!r}; expected one of {', '.join(METHODS)}")
    return method


def _check_target(target: object, output: torch.Tensor) -> object:
    """Validate ``target`` against the model's output (B, ...) and return what Captum takes."""
    shape = tuple(output.shape)
    B = shape[0]
    if output.dim() == 1:
        if target is not None:
            raise ValueError(
                f"attribute: the model returns one value per sequence {shape}; expected target=None, got {target!r}"
            )
        return None
    if output.dim() == 2 and shape[1] == 1 and target is None:
        return 0
    if target is None:
        raise ValueError(
            f"attribute: the model returns an output of shape {shape}; pass target= (an index into "
            f"the dimensions after the batch: {shape[1:]})"
        )
    if output.dim() == 2:
        if isinstance(target, torch.Tensor):
            if target.is_floating_point() or target.shape not in ((B,), ()):
                raise ValueError(
                    f"attribute: expected target as an int or an integer tensor ({B},), got "
                    f"{target.dtype} {tuple(target.shape)}"
                )
            bad = (target < 0) | (target >= shape[1])
            if bool(bad.any()):
                raise ValueError(
                    f"attribute: target out of range: expected indices in [0, {shape[1]}) for an "
                    f"output of shape {shape}, got {target.tolist()}"
                )
            return target.to(output.device)
        check_int("attribute", "target", target, expected=f"target as an int or an integer tensor ({B},)",
                  error=TypeError)
        if not 0 <= target < shape[1]:
            raise ValueError(
                f"attribute: target out of range: expected an index in [0, {shape[1]}) for an output "
                f"of shape {shape}, got {target}"
            )
        return target
    index = (target,) if isinstance(target, int) else target
    if (
        not isinstance(index, tuple)
        or len(index) != output.dim() - 1
        or not all(is_int(i) for i in index)
    ):
        raise ValueError(
            f"attribute: the model returns an output of shape {shape}; expected target as a tuple of "
            f"{output.dim() - 1} ints, got {target!r}"
        )
    for i, (k, n) in enumerate(zip(index, shape[1:], strict=True)):
        if not 0 <= k < n:
            raise ValueError(
                f"attribute: target out of range: index {i} is {k}, expected [0, {n}) for an output of shape {shape}"
            )
    return index


def _baseline(baseline: object, inputs: torch.Tensor) -> torch.Tensor:
    """The reference input: same shape, dtype and device as ``inputs``."""
    if _is_tokens(inputs):
        if isinstance(baseline, str) and baseline == "zeros":
            return torch.zeros_like(inputs)
        if is_int(baseline):
            return torch.full_like(inputs, baseline)
        if isinstance(baseline, torch.Tensor) and not baseline.is_floating_point():
            return _broadcast(baseline, inputs)
        raise ValueError(
            f"attribute: for token inputs expected baseline 'zeros' (token 0), a token id (int) or an "
            f"integer tensor, got {baseline!r}"
        )
    if isinstance(baseline, str):
        if baseline == "zeros":
            return torch.zeros_like(inputs)
        if baseline == "mean":  # one constant sequence: each feature's mean over the batch and time
            dims = (0, 1)
            return inputs.mean(dim=dims, keepdim=True).expand_as(inputs).contiguous()
        raise ValueError(f"attribute: unknown baseline {baseline!r}; expected 'zeros', 'mean', a number or a tensor")
    if is_number(baseline):
        return torch.full_like(inputs, float(baseline))
    if isinstance(baseline, torch.Tensor):
        return _broadcast(baseline.to(inputs.dtype), inputs)
    raise TypeError(
        f"attribute: expected baseline 'zeros', 'mean', a number or a tensor, got {type(baseline).__name__}"
    )


def _broadcast(baseline: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    try:
        return baseline.to(inputs.device).expand_as(inputs).contiguous()
    except RuntimeError:
        raise ValueError(
            f"attribute: baseline of shape {tuple(baseline.shape)} does not broadcast to the inputs' "
            f"shape {tuple(inputs.shape)}"
        ) from None


def _embedding(model: nn.Module) -> nn.Module:
    found = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    if len(found) != 1:
        raise ValueError(
            f"attribute: token inputs are attributed through the model's nn.Embedding; found "
            f"{len(found)}, pass layer= to choose one"
        )
    return found[0]


def _recurrent(model: nn.Module) -> nn.Module:
    from memlib.recurrent import RecurrentBase

    found = [m for m in model.modules() if isinstance(m, RecurrentBase | nn.RNNBase)]
    if not found:
        raise ValueError("attribute: layer_conductance needs layer= (the model has no recurrent layer to default to)")
    return found[0]


# ---------------------------------------------------------------------------------------------
# The run: eval mode without cuDNN, a probe on tuple-returning layers.
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _attribution_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (dropout off) with cuDNN off, so an RNN backward runs on CUDA; both restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    cudnn = torch.backends.cudnn.enabled  # only this flag: cudnn.flags() would also reset benchmark, tf32, ...
    model.eval()
    torch.backends.cudnn.enabled = False
    try:
        with torch.enable_grad():
            yield
    finally:
        torch.backends.cudnn.enabled = cudnn
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def _probe(layer: nn.Module, tuple_output: bool) -> Iterator[nn.Module]:
    """The module Captum hooks: ``layer`` itself, or an identity on its output's first element."""
    if not tuple_output:
        yield layer
        return
    probe = nn.Identity()

    def hook(module, args, output):
        return (probe(output[0]), *output[1:])

    handle = layer.register_forward_hook(hook)
    try:
        yield probe
    finally:
        handle.remove()


def _layer_output_kind(explained: nn.Module, layer: nn.Module, inputs: torch.Tensor, args: tuple) -> bool:
    """Run once and report whether ``layer`` returns a tuple (checking that it runs at all and is batch-first)."""
    seen: list[object] = []
    handle = layer.register_forward_hook(lambda module, a, out: seen.append(out))
    try:
        with torch.no_grad():
            explained(inputs, *args)
    finally:
        handle.remove()
    if not seen:
        raise ValueError(f"attribute: layer {type(layer).__name__} did not run in the model's forward pass")
    out = seen[0]
    tuple_output = isinstance(out, tuple | list)
    first = out[0] if tuple_output else out
    if not isinstance(first, torch.Tensor):
        raise TypeError(f"attribute: layer {type(layer).__name__} returns {type(first).__name__}, not a tensor")
    if first.dim() < 2 or first.shape[0] != inputs.shape[0] or first.shape[1] != inputs.shape[1]:
        raise ValueError(
            f"attribute: expected layer {type(layer).__name__} to return (B, T, ...) = "
            f"({inputs.shape[0]}, {inputs.shape[1]}, ...), got {tuple(first.shape)} (a layer must be "
            "batch-first)"
        )
    return tuple_output


def _per_step(values: torch.Tensor) -> torch.Tensor:
    return values if values.dim() == 2 else values.flatten(2).sum(-1)


def attribute(
    model: nn.Module,
    inputs: torch.Tensor,
    method: str = "integrated_gradients",
    *,
    target: object = None,
    baseline: str | float | torch.Tensor = "zeros",
    layer: nn.Module | None = None,
    n_steps: int = 50,
    forward_args: Sequence[object] = (),
    output_index: int = 0,
    layer_input: bool = False,
    absolute: bool = True,
    internal_batch_size: int | None = None,
) -> Attribution:
    """Attribute ``model``'s output on ``inputs`` (B, T, F), (B, T) or tokens (B, T) to its time steps.

    ``method``: one of :data:`METHODS`. ``baseline``: ``"zeros"``, ``"mean"`` (each feature's mean over the
    batch and time), a number, or a tensor broadcasting to the inputs (token inputs: ``"zeros"`` = token 0, a
    token id, or a tensor of ids). ``layer``: for the layer methods (defaults: the model's ``nn.Embedding`` for
    tokens, its recurrent layer for ``layer_conductance``). ``forward_args``: further arguments the model takes
    after the inputs (e.g. ``lengths``). ``n_steps``: integral steps of the path methods. ``absolute``: saliency
    returns ``|gradient|`` (else the signed gradient). See the module docstring for the pitfalls handled.

    >>> import memlib
    >>> model = memlib.SequenceClassifier("lstm", input_size=3, hidden_size=8, num_classes=2)
    >>> a = attribute(model, torch.randn(2, 5, 3), "integrated_gradients", target=0, n_steps=8)
    >>> a.values.shape, a.per_step.shape, a.method  # per feature, and summed per time step
    (torch.Size([2, 5, 3]), torch.Size([2, 5]), 'integrated_gradients')
    """
    model = _check_model(model)
    method = _check_method(method)
    inputs = _check_inputs(inputs)
    check_int("attribute", "n_steps", n_steps, low=1, expected="n_steps as a positive int")
    tokens = _is_tokens(inputs)
    method, layer = _method_for_inputs(model, inputs, method, layer)
    args = tuple(forward_args)
    explained = _Explained(model, output_index)
    base = _baseline(baseline, inputs.detach())
    if not tokens:  # a leaf of our own: Captum would otherwise set requires_grad on the caller's tensor
        inputs = inputs.detach().requires_grad_(True)

    with _attribution_mode(model), warnings.catch_warnings():
        # Captum announces the hooks DeepLift sets (and removes) on nonlinearity modules: expected, not news.
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks", category=UserWarning)
        output = _checked_output(explained, inputs, args)
        kwargs = {"target": _check_target(target, output), "additional_forward_args": args or None}
        if method in _LAYER_METHODS:
            values, delta = _layer_attribution(
                model, explained, inputs, base, method, layer, args, kwargs,
                n_steps=n_steps, layer_input=layer_input, internal_batch_size=internal_batch_size,
            )
            per_step = None
        else:
            values, delta, per_step = _input_attribution(
                explained, inputs, base, method, kwargs,
                n_steps=n_steps, absolute=absolute, internal_batch_size=internal_batch_size,
            )
    values = values.detach()
    per_step = _per_step(values) if per_step is None else per_step.detach()
    delta = None if delta is None else delta.detach().reshape(-1)
    return Attribution(values, per_step, method, delta)


def _method_for_inputs(
    model: nn.Module, inputs: torch.Tensor, method: str, layer: nn.Module | None
) -> tuple[str, nn.Module | None]:
    """Token inputs have no gradient: integrated gradients then runs through the model's embedding layer."""
    if not _is_tokens(inputs):
        return method, layer
    if method not in _TOKEN_METHODS:
        raise ValueError(
            f"attribute: token inputs (integer {inputs.dtype}) have no gradient; method {method!r} "
            "cannot take them: use 'layer_integrated_gradients' (through the embedding)"
        )
    if method == "integrated_gradients":
        method = "layer_integrated_gradients"
    if layer is None and method == "layer_integrated_gradients":
        layer = _embedding(model)
    return method, layer


def _checked_output(explained: nn.Module, inputs: torch.Tensor, args: tuple) -> torch.Tensor:
    """The explained output, once, without gradients: a tensor (B, ...) with the inputs' batch size."""
    with torch.no_grad():
        output = explained(inputs, *args)
    if not isinstance(output, torch.Tensor) or output.dim() == 0 or output.shape[0] != inputs.shape[0]:
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(
            f"attribute: expected the model to return a tensor (B, ...) with B = {inputs.shape[0]}, got {got}"
        )
    return output


def _input_attribution(
    explained: nn.Module,
    inputs: torch.Tensor,
    base: torch.Tensor,
    method: str,
    kwargs: dict,
    *,
    n_steps: int,
    absolute: bool,
    internal_batch_size: int | None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Attributions to the inputs themselves: (values, convergence delta or None, per-step scores or None)."""
    from captum.attr import DeepLift, IntegratedGradients, Occlusion, Saliency

    if method == "integrated_gradients":
        values, delta = IntegratedGradients(explained).attribute(
            inputs,
            baselines=base,
            n_steps=n_steps,
            internal_batch_size=internal_batch_size,
            return_convergence_delta=True,
            **kwargs,
        )
        return values, delta, None
    if method == "saliency":
        return Saliency(explained).attribute(inputs, abs=absolute, **kwargs), None, None
    if method == "deeplift":
        values, delta = DeepLift(explained).attribute(inputs, baselines=base, return_convergence_delta=True, **kwargs)
        return values, delta, None
    # occlusion
    window = (1, *inputs.shape[2:])  # one whole time step
    values = (
        Occlusion(explained)
        .attribute(inputs, sliding_window_shapes=window, strides=window, baselines=base, **kwargs)
        .to(inputs.dtype)
    )  # Captum averages in float32 (so float64 models get float32 precision)
    per_step = values if values.dim() == 2 else values.flatten(2)[..., 0]
    return values, None, per_step


def _layer_attribution(
    model: nn.Module,
    explained: nn.Module,
    inputs: torch.Tensor,
    base: torch.Tensor,
    method: str,
    layer: nn.Module | None,
    args: tuple,
    kwargs: dict,
    *,
    n_steps: int,
    layer_input: bool,
    internal_batch_size: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attributions to a layer's output (or input): (values, convergence delta)."""
    from captum.attr import LayerConductance, LayerIntegratedGradients

    if layer is None:
        layer = _recurrent(model) if method == "layer_conductance" else None
    if layer is None:
        raise ValueError(
            "attribute: layer_integrated_gradients on float inputs needs layer= (the module "
            "whose output is attributed)"
        )
    if not isinstance(layer, nn.Module) or not any(m is layer for m in model.modules()):
        raise ValueError("attribute: expected layer to be a submodule of the model")
    tuple_output = _layer_output_kind(explained, layer, inputs, args) if not layer_input else False
    with _probe(layer, tuple_output) as hooked:
        cls = LayerIntegratedGradients if method == "layer_integrated_gradients" else LayerConductance
        values, delta = cls(explained, hooked).attribute(
            inputs,
            baselines=base,
            n_steps=n_steps,
            return_convergence_delta=True,
            attribute_to_layer_input=layer_input,
            internal_batch_size=internal_batch_size,
            **kwargs,
        )
    if isinstance(values, tuple | list):
        values = values[0]
    return values, delta


# ---------------------------------------------------------------------------------------------
# Scores: agreement with a known answer, faithfulness.
# ---------------------------------------------------------------------------------------------


_REDUCE = ("sum", "l1")


def _check_attribution(name: str, attribution: object) -> torch.Tensor:
    if not isinstance(attribution, Attribution):
        raise TypeError(
            f"{name}: expected an Attribution (from memlib.interpret.attribute), got {type(attribution).__name__}"
        )
    return attribution.per_step


def _step_scores(name: str, attribution: object, absolute: bool, reduce: str) -> torch.Tensor:
    """(B, T) how much each step counts: ``|per_step|`` (``"sum"``), or the sum of ``|values|`` over features
    (``"l1"``)."""
    per_step = _check_attribution(name, attribution)
    if reduce not in _REDUCE:
        raise ValueError(f"{name}: expected reduce in {_REDUCE}, got {reduce!r}")
    if reduce == "l1":
        values = attribution.values.abs()
        return values if values.dim() == 2 else values.flatten(2).sum(-1)
    return per_step.abs() if absolute else per_step


def top_k_steps(attribution: Attribution, k: int, *, absolute: bool = True, reduce: str = "sum") -> torch.Tensor:
    """(B, k) the time steps with the largest attribution, largest first.

    ``reduce="sum"`` ranks steps by ``per_step`` (its absolute value when ``absolute``): a step's net
    contribution, where features of one step may cancel. ``reduce="l1"`` ranks them by the sum of ``|values|`` over
    the step's features: how much the step's features matter, whatever their signs.

    >>> a = Attribution(torch.zeros(1, 4, 1), torch.tensor([[0.1, -3.0, 2.0, 0.0]]), "saliency", None)
    >>> top_k_steps(a, 2)
    tensor([[1, 2]])
    """
    scores = _step_scores("top_k_steps", attribution, absolute, reduce)
    T = scores.shape[1]
    check_int("top_k_steps", "k", k, low=1, high=T, expected=f"k as an int in [1, {T}]")
    return scores.topk(k, dim=1).indices


def ground_truth_score(
    attribution: Attribution, marker_positions: torch.Tensor, *, absolute: bool = True, reduce: str = "sum"
) -> float:
    """The fraction of sequences whose k most attributed steps (:func:`top_k_steps`) are exactly their k marked steps.

    ``marker_positions``: (B, k) step indices, or a (B, T) 0/1 mask with k ones per row (for the adding problem,
    ``inputs[..., 1]``).

    >>> a = Attribution(torch.zeros(1, 4, 1), torch.tensor([[0.0, 3.0, 0.0, 1.0]]), "saliency", None)
    >>> ground_truth_score(a, torch.tensor([[1]]))  # the marked step holds the largest score
    1.0
    """
    per_step = _check_attribution("ground_truth_score", attribution)
    B, T = per_step.shape
    if not isinstance(marker_positions, torch.Tensor):
        raise TypeError(
            f"ground_truth_score: expected marker_positions as a tensor, got {type(marker_positions).__name__}"
        )
    marks = marker_positions.to(per_step.device)
    if marks.dim() == 2 and marks.shape == (B, T) and (marks.is_floating_point() or marks.dtype == torch.bool):
        counts = (marks != 0).sum(1)
        if not bool((counts == counts[0]).all()) or int(counts[0]) < 1:
            raise ValueError(
                f"ground_truth_score: expected the same number (>= 1) of marked steps in every row, got "
                f"{counts.tolist()}"
            )
        truth = marks != 0
    elif marks.dim() == 2 and marks.shape[0] == B and not marks.is_floating_point():
        if marks.numel() == 0 or bool(((marks < 0) | (marks >= T)).any()):
            raise ValueError(f"ground_truth_score: expected marker positions in [0, {T}), got {marks.tolist()}")
        truth = torch.zeros(B, T, dtype=torch.bool, device=per_step.device)
        truth[torch.arange(B, device=per_step.device)[:, None], marks] = True
        if bool((truth.sum(1) != marks.shape[1]).any()):
            raise ValueError("ground_truth_score: expected distinct marker positions in each row")
    else:
        raise ValueError(
            f"ground_truth_score: expected marker_positions (B, k) indices or a (B, T) 0/1 mask with "
            f"B = {B}, T = {T}, got {marks.dtype} {tuple(marks.shape)}"
        )
    k = int(truth[0].sum())
    top = top_k_steps(attribution, k, absolute=absolute, reduce=reduce)  # (B, k)
    hit = truth.gather(1, top).all(1)  # (B,)
    return float(hit.float().mean())


def _delete(inputs: torch.Tensor, base: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """``inputs`` with the steps (B, k) replaced by the baseline's."""
    mask = torch.zeros(inputs.shape[:2], dtype=torch.bool, device=inputs.device)
    mask[torch.arange(inputs.shape[0], device=inputs.device)[:, None], steps] = True
    mask = mask.reshape(*mask.shape, *([1] * (inputs.dim() - 2)))
    return torch.where(mask, base, inputs)


def deletion_curve(
    model: nn.Module,
    inputs: torch.Tensor,
    attribution: Attribution,
    steps: Sequence[int],
    target: object = None,
    *,
    baseline: str | float | torch.Tensor = "zeros",
    forward_args: Sequence[object] = (),
    output_index: int = 0,
    repeats: int = 5,
    seed: int = 0,
    reduce: str = "sum",
) -> DeletionCurve:
    """Faithfulness: the output change when the most attributed steps are deleted, against random deletion.

    For each k in ``steps``, the k most attributed steps of each sequence (ranked as :func:`top_k_steps` ranks
    them, by ``reduce``) are set to the baseline (as :func:`attribute` builds it), and the mean ``|output change|``
    over the batch is recorded; the same for k steps drawn at random (``repeats`` draws, seeded by ``seed``).
    A faithful attribution changes the output more, and sooner, than random deletion.
    """
    model = _check_model(model)
    inputs = _check_inputs(inputs)
    per_step = _check_attribution("deletion_curve", attribution)
    B, T = inputs.shape[:2]
    if tuple(per_step.shape) != (B, T):
        raise ValueError(
            f"deletion_curve: expected an attribution of these inputs, per_step ({B}, {T}), got {tuple(per_step.shape)}"
        )
    steps = list(steps)
    if not steps or any(not is_int(k) or not 0 <= k <= T for k in steps):
        raise ValueError(f"deletion_curve: expected steps as ints in [0, {T}], got {steps!r}")
    check_int("deletion_curve", "repeats", repeats, low=1, expected="repeats as a positive int")
    explained = _Explained(model, output_index)
    args = tuple(forward_args)
    base = _baseline(baseline, inputs.detach())
    scores = _step_scores("deletion_curve", attribution, True, reduce)
    order = scores.argsort(dim=1, descending=True).to(inputs.device)  # (B, T)
    gen = torch.Generator().manual_seed(seed)
    shuffles = [torch.rand(B, T, generator=gen).argsort(dim=1).to(inputs.device) for _ in range(repeats)]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            out = explained(inputs, *args)
            captum_target = _check_target(target, out)

            def pick(o: torch.Tensor) -> torch.Tensor:
                if captum_target is None:
                    return o
                if isinstance(captum_target, tuple):
                    return o[(slice(None), *captum_target)]
                index = torch.as_tensor(captum_target, device=o.device).expand(o.shape[0])
                return o.gather(1, index[:, None])[:, 0]

            ref = pick(out)
            attributed, random = [], []
            for k in steps:
                changed = pick(explained(_delete(inputs, base, order[:, :k]), *args))
                attributed.append((changed - ref).abs().mean())
                draws = [pick(explained(_delete(inputs, base, s[:, :k]), *args)) for s in shuffles]
                random.append(torch.stack([(d - ref).abs().mean() for d in draws]).mean())
    finally:
        for m, training in modes:
            m.training = training
    return DeletionCurve(steps, torch.stack(attributed).cpu(), torch.stack(random).cpu())
