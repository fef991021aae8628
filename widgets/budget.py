"""MemoryBudgetExplorer: how much memory one training step takes, part by part, and which GPU it fits on.

The reader picks a model, a batch size, a sequence length, a precision (fp32, bf16, mixed), an optimizer (SGD,
SGD with momentum, Adam) and gradient checkpointing (for a model made of blocks); the explorer shows

- a stacked bar of the estimate's five parts: parameters, gradients, optimizer state, activations, workspace
  (:func:`memlib.hardware.estimate_training_memory`);
- for every GPU of the catalogue (:data:`memlib.hardware.GPUS`) the largest batch that fits
  (:func:`memlib.hardware.largest_batch`, with its 10% reserve), as bars on a log axis against the chosen batch;
- a table of the GPUs: memory, whether the chosen batch fits (:func:`memlib.hardware.fits`), the largest batch,
  and the host RAM the article's rule asks for (:func:`memlib.hardware.recommended_ram`).

Where the numbers come from. :meth:`MemoryBudgetExplorer.prepare` runs memlib's estimator on each model at a small
example batch ``b0`` and at one to three sequence lengths, for every precision (and with and without checkpointing
where the model has blocks); the optimizer changes only the counted parts (optimizer state, the step's temporaries),
which are read from one more estimate per optimizer. Everything else is a formula over those numbers, the same in
Python (:func:`estimate_at`, :func:`view`) and in the page's JavaScript:

- **batch**: memlib's own :meth:`~memlib.hardware.MemoryEstimate.at_batch`: activations and the backward workspace
  are ``fixed + per-sample x batch``; the rest does not depend on the batch;
- **length**: each of the four length-dependent numbers (activations, their fixed part, backward workspace, its
  fixed part) is the polynomial through the measured lengths (Lagrange form; degree 2 with three lengths: a
  recurrent model's activations are linear in ``T``, attention's ``T x T`` weights quadratic), rounded to bytes. At
  a measured length it is memlib's number exactly; between them it is an interpolation (the tests compare it with
  a fresh estimate). The length slider stays within the measured lengths: no extrapolation.

Static (Bokeh + CustomJS, no kernel): the formula runs in the browser over the precomputed numbers. Live
(ipywidgets): pass the models as :class:`BudgetModel` s (any ``nn.Module``); each change runs
:func:`memlib.hardware.estimate_training_memory` at the chosen length and the same figures redraw.

What a live change may cost. Each estimate is a real forward and backward pass at the example batch, so a length
is refused before it runs where its cost would exceed :attr:`MemoryBudgetExplorer.max_bytes` or
:attr:`~MemoryBudgetExplorer.max_seconds` (:func:`live_cost`): the cost is scaled from the model's own last run
(the time it took, and its bytes: what grows with the steps linearly, as a recurrent or memory model's state per
step, plus the attention's ``T x T`` scores per head and layer, quadratically). A model not run yet runs first at
the longest of its own ``lengths``, which its spec declares affordable.

Sizes are bytes; shown in KiB, MiB or GiB (powers of two), GPU memory as memlib's catalogue gives it (GiB).
Shapes: ``M`` models, ``P`` precisions, ``O`` optimizers, ``K`` lengths (at most 3), ``G`` GPUs.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import (
    Checkbox,
    CustomJS,
    Div,
    FactorRange,
    LabelSet,
    Range1d,
    Select,
    Slider,
    Span,
    Spinner,
)
from bokeh.plotting import figure

from memlib.validate import check_choice, check_int, is_int
from widgets.base import Explorer, Prepared, Refused, custom_js, merge_settings

WIDTH = 660  # fits the book's output column (688 px in a 1280 px window)
KiB, MiB, GiB = 2**10, 2**20, 2**30
PARTS = ("parameters", "gradients", "optimizer_state", "activations", "workspace")
PART_LABEL = {
    "parameters": "parameters", "gradients": "gradients", "optimizer_state": "optimizer state",
    "activations": "activations", "workspace": "workspace",
}
PART_COLOR = {
    "parameters": "#4c72b0", "gradients": "#dd8452", "optimizer_state": "#55a868", "activations": "#c44e52",
    "workspace": "#8172b3",
}
PRECISION_LABEL = {"fp32": "fp32", "bf16": "bf16 (weights too)", "fp16": "fp16 (weights too)",
                   "amp": "mixed (autocast)"}
OPTIMIZER_LABEL = {"sgd": "SGD", "sgd_momentum": "SGD with momentum", "adam": "Adam", "adamw": "AdamW"}
PRECISIONS = ("fp32", "bf16", "amp")
OPTIMIZERS = ("sgd", "sgd_momentum", "adam")
# What depends on the length (and on precision and checkpointing), and what on precision and optimizer only.
LENGTH_FIELDS = ("activations", "activations_fixed", "backward_workspace", "backward_workspace_fixed")
COUNT_FIELDS = ("parameters", "gradients", "optimizer_state", "step_workspace")
MAX_LENGTHS = 3
MAX_BATCH = 10**7  # the batch box's upper end
MAX_LENGTH = 100_000  # the live length box's upper end (the cost limits refuse much less for most models)
EXAMPLE_BATCH = 4  # prepare's batch: memlib splits what grows with the batch with a second count at half of it
SCORE_BYTES = 16  # per attention score and training step: score, softmax, dropout's output and mask, with room
MISSING = -1.0  # a setting that was not estimated (checkpointing of a model without blocks; a shorter length list)


class BudgetModel(NamedTuple):
    """A model for the explorer: ``example(batch, length)`` gives what :func:`estimate_training_memory` takes
    (a shape or tensors) for that batch and sequence length; ``lengths`` are the lengths to estimate at (1 to 3,
    increasing; one length for a model without a sequence). ``options`` go to the estimator (``loss_fn``,
    ``batch_dim``).

    >>> from torch import nn
    >>> spec = BudgetModel(nn.Linear(8, 8), lambda batch, length: (batch, length, 8), lengths=(4, 8))
    >>> spec.example(2, 4), spec.options  # a (B, T, I) shape at batch 2, length 4; no estimator options
    ((2, 4, 8), {})
    """

    model: Any  # torch.nn.Module
    example: Callable[[int, int], object]
    lengths: Sequence[int] = (16, 64, 128)
    options: Mapping[str, Any] = {}


def book_models(quick: bool = False) -> dict[str, BudgetModel]:
    """The book's four kinds of model at the sizes its chapters train: 2-layer LSTM and GRU (128 units), a 4-layer
    Transformer encoder (width 64, 4 heads), an NTM on the copy task (100 controller units, 128 x 20 memory).

    ``quick`` uses shorter lengths (the NTM's estimate runs its Python loop over the steps).

    >>> models = book_models(quick=True)
    >>> list(models), models["LSTM"].lengths
    (['LSTM', 'GRU', 'Transformer encoder', 'NTM'], (8, 16, 32))
    """
    import memlib

    long = (8, 16, 32) if quick else (16, 64, 128)
    layer = memlib.TransformerEncoderLayer(64, 4, 256, dropout=0.1, batch_first=True)
    return {
        "LSTM": BudgetModel(memlib.LSTM(16, 128, num_layers=2, batch_first=True), lambda b, t: (b, t, 16), long),
        "GRU": BudgetModel(memlib.GRU(16, 128, num_layers=2, batch_first=True), lambda b, t: (b, t, 16), long),
        "Transformer encoder": BudgetModel(memlib.TransformerEncoder(layer, 4), lambda b, t: (b, t, 64),
                                           (16, 32, 64) if quick else (16, 128, 256)),
        "NTM": BudgetModel(memlib.NTM(10, 8, controller_size=100, memory_slots=128, memory_width=20),
                           lambda b, t: (b, t, 10), (4, 8, 16) if quick else (8, 16, 32)),
    }


# ---------------------------------------------------------------------------------------------------------------
# The formula, in Python. The page's JavaScript (below) does the same operations in the same order.
# ---------------------------------------------------------------------------------------------------------------


def interpolate(xs: Sequence[float], ys: Sequence[float], t: float) -> float:
    """The polynomial through ``(xs, ys)`` at ``t`` (Lagrange form): exactly ``ys[j]`` at ``t = xs[j]``.

    >>> interpolate([0, 1, 2], [0, 1, 4], 3.0)  # the parabola through the points: 3**2
    9.0
    >>> interpolate([16, 64], [10, 40], 32)
    20.0
    """
    total = 0.0
    for k in range(len(xs)):
        w = 1.0
        for j in range(len(xs)):
            if j != k:
                w *= (t - xs[j]) / (xs[k] - xs[j])
        total += w * ys[k]
    return total


def _index(where: str, what: str, value: Any, options: Sequence[str]) -> int:
    return list(options).index(check_choice(where, what, value, list(options)))


def estimate_at(data: Prepared, model: str, precision: str, optimizer: str, checkpointing: bool,
                length: int) -> Any:
    """memlib's :class:`~memlib.hardware.MemoryEstimate` at the example batch for these settings.

    At a measured length it is the estimator's own; between measured lengths the length-dependent parts are
    interpolated (see the module docstring). Scale it with ``.at_batch(b)``.
    """
    from memlib.hardware import MemoryEstimate

    where = "MemoryBudgetExplorer"
    m = _index(where, "model", model, [str(n) for n in data["names"]])
    p = _index(where, "precision", precision, [str(n) for n in data["precisions"]])
    o = _index(where, "optimizer", optimizer, [str(n) for n in data["optimizers"]])
    if checkpointing and not data["checkpointable"][m]:
        raise ValueError(f"{where}: {model!r} has no blocks to checkpoint (checkpointing=True is for a model "
                         f"with a ModuleList or Sequential of blocks)")
    xs = [float(x) for x in data["lengths"][m, : int(data["n_lengths"][m])]]
    length = _check_length(where, length, xs)
    c = int(bool(checkpointing))

    def at(field: str) -> int:
        ys = [float(y) for y in data[field][m, p, c, : len(xs)]]
        return max(0, round(interpolate(xs, ys, float(length))))

    activations, backward = at("activations"), at("backward_workspace")
    return MemoryEstimate(
        parameters=int(data["parameters"][m, p, o]),
        gradients=int(data["gradients"][m, p, o]),
        optimizer_state=int(data["optimizer_state"][m, p, o]),
        activations=activations,
        backward_workspace=backward,
        step_workspace=int(data["step_workspace"][m, p, o]),
        batch_size=int(data["example_batch"][m]),
        optimizer=optimizer,
        precision=precision,
        checkpointing=bool(checkpointing),
        activations_fixed=min(at("activations_fixed"), activations),
        backward_workspace_fixed=min(at("backward_workspace_fixed"), backward),
        notes=_notes(data, m, p),
    )


def _notes(data: Prepared, m: int, p: int) -> tuple[str, ...]:
    """The estimator's notes on the path it took for model ``m`` at precision ``p`` (one per line in ``paths``)."""
    path = str(data["paths"][m][p]) if "paths" in data else ""
    return tuple(path.split("\n")) if path else ()


def _check_length(where: str, length: Any, xs: Sequence[float]) -> int:
    lo, hi = int(xs[0]), int(xs[-1])
    return check_int(where, "length", check_int(where, "length", length), low=lo, high=hi, got=str(length),
                     expected=f"length in [{lo}, {hi}] (the lengths estimated; no extrapolation)")


def _check_batch(where: str, batch: Any) -> int:
    return check_int(where, "batch", batch, low=1, high=MAX_BATCH)


def fixed_decimals(x: float, digits: int) -> str:
    """``x`` with ``digits`` decimals as JavaScript's ``toFixed`` writes it (ties away from zero, on the exact
    binary value), so that the page and Python print the same text."""
    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def format_bytes(n: float) -> str:
    """Bytes in the largest of GiB, MiB, KiB that is at most ``n`` (bytes below 1 KiB as bytes)."""
    if n >= GiB:
        return f"{fixed_decimals(n / GiB, 2)} GiB"
    if n >= MiB:
        return f"{fixed_decimals(n / MiB, 2)} MiB"
    if n >= KiB:
        return f"{fixed_decimals(n / KiB, 1)} KiB"
    return f"{int(n)} B"


def _grow(estimate: Any) -> int:
    """Bytes per sample beyond the example batch's fixed parts (0: nothing grows with the batch)."""
    e = estimate
    return e.activations - e.activations_fixed + e.backward_workspace - e.backward_workspace_fixed


class Measured(NamedTuple):
    """One live estimate's own cost, at ``length``: ``fixed`` bytes (weights, gradients, optimizer state), ``grows``
    bytes (activations and backward workspace: what grows with the steps), both at the example batch, and the
    ``seconds`` it took."""

    length: int
    fixed: int
    grows: int
    seconds: float


class Cost(NamedTuple):
    """What a live estimate would take: ``bytes`` at the example batch, and ``seconds``."""

    bytes: float
    seconds: float


def attention_heads(model: Any) -> int:
    """Attention heads summed over ``model``'s layers: every module with an integer ``num_heads``."""
    return sum(m.num_heads for m in model.modules() if isinstance(getattr(m, "num_heads", None), int))


def live_cost(measured: Measured, length: int, heads: int, batch: int = EXAMPLE_BATCH) -> Cost:
    """The cost of a live estimate at ``length``, scaled from one ``measured`` at another length.

    Memory: the fixed bytes stay; the attention's scores take ``batch x heads x T^2 x SCORE_BYTES`` (scores,
    softmax, dropout; ``heads`` summed over layers); the rest of what grows is linear in the steps: steps x the
    width measured per step (for a recurrent or memory model: its state per step). Time: the measured seconds,
    scaled by the steps or, where they grow faster (attention), by the growing bytes. Both lean high: the measured
    per-step part still holds the scores and any per-run overhead.
    """
    T0, T = measured.length, length
    quadratic = batch * heads * SCORE_BYTES  # bytes per T^2
    per_step = max(measured.grows - quadratic * T0 * T0, 0) / T0
    grows = per_step * T + quadratic * T * T
    scale = max(T / T0, grows / max(measured.grows, 1))
    return Cost(measured.fixed + grows, measured.seconds * scale)


class GPUInfo(NamedTuple):
    name: str
    memory: int
    usable: int  # memory less the reserve
    ram_minimum: int
    ram_recommended: int


def gpu_table(gpus: Sequence[str], reserve: float) -> list[GPUInfo]:
    """The catalogue's GPUs by name, with the memory usable after ``reserve`` and the RAM rule."""
    from memlib.hardware import gpu, recommended_ram, usable_memory

    out = []
    for name in gpus:
        g = gpu(name)
        ram = recommended_ram(g)
        out.append(GPUInfo(g.name, g.memory, usable_memory(g, reserve, where="MemoryBudgetExplorer"), ram.minimum,
                           ram.recommended))
    return out


def view(data: Prepared, settings: Mapping[str, Any], gpus: Sequence[GPUInfo], reserve: float) -> dict[str, Any]:
    """Everything the figures show for ``settings`` (keys model, precision, optimizer, checkpointing, batch,
    length), computed with memlib.hardware: ``estimate`` (at the batch), ``largest`` (per GPU, None when nothing
    grows with the batch), ``fits``, and the captions' text."""
    from memlib.hardware import fits, largest_batch

    s = settings
    batch = _check_batch("MemoryBudgetExplorer", s["batch"])
    base = estimate_at(data, s["model"], s["precision"], s["optimizer"], s["checkpointing"], s["length"])
    e = base.at_batch(batch)
    grows = _grow(base) > 0
    largest = [largest_batch(base, device=g.name, reserve=reserve) if grows else None for g in gpus]
    fit = [fits(e, g.name, reserve) for g in gpus]
    return {"estimate": e, "largest": largest, "fits": fit,
            "caption": _caption(data, s, e), "table": _table(gpus, e, fit, largest, reserve)}


def _caption(data: Prepared, s: Mapping[str, Any], e: Any) -> str:
    m = [str(n) for n in data["names"]].index(s["model"])
    xs = [int(x) for x in data["lengths"][m, : int(data["n_lengths"][m])]]
    measured = int(s["length"]) in xs
    parts = ", ".join(f"{PART_LABEL[k]} {format_bytes(v)}" for k, v in e.parts.items())
    how = "a measured length" if measured else "between the measured lengths: interpolated"
    ckpt = ", checkpointing" if s["checkpointing"] else ""
    p = [str(x) for x in data["precisions"]].index(str(s["precision"]))
    path = " ".join(_notes(data, m, p))
    note = f"<br><span style=\"color:#555\">Path: {_escape_js(path)}</span>" if path else ""
    return (f"<b>{html.escape(str(s['model']))}</b> ({int(data['n_parameters'][m])} weights), "
            f"{PRECISION_LABEL.get(str(s['precision']), str(s['precision']))}, "
            f"{OPTIMIZER_LABEL.get(str(s['optimizer']), str(s['optimizer']))}{ckpt}, batch {e.batch_size}, "
            f"length {int(s['length'])}: <b>{format_bytes(e.total)}</b> = {parts}.<br>"
            f"<span style=\"color:#555\">Estimated at batch {int(data['example_batch'][m])} and lengths "
            f"{', '.join(map(str, xs))} ({how}); other batches: scaled linearly from two measured batches.</span>"
            f"{note}")


def _escape_js(text: str) -> str:
    """HTML-escaped as the page's JavaScript ``esc`` does it (``&``, ``<``, ``>``, ``"``; not ``'``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _table(gpus: Sequence[GPUInfo], e: Any, fit: Sequence[bool], largest: Sequence[int | None],
           reserve: float) -> str:
    head = ("<tr><th style=\"text-align:left\">GPU</th><th>memory</th>"
            f"<th>batch {e.batch_size} fits?</th><th>largest batch</th><th>host RAM: at least / better</th></tr>")
    rows = []
    for g, ok, lb in zip(gpus, fit, largest, strict=True):
        mark = "<span style=\"color:#1b7837\">yes</span>" if ok else "<span style=\"color:#b2182b\">no</span>"
        rows.append(f"<tr><td style=\"text-align:left\">{html.escape(g.name)}</td><td>{format_bytes(g.memory)}</td>"
                    f"<td>{mark}</td><td>{'any' if lb is None else lb}</td>"
                    f"<td>{format_bytes(g.ram_minimum)} / {format_bytes(g.ram_recommended)}</td></tr>")
    note = (f"<p style=\"margin:0.3em 0 0 0;font-size:85%;color:#555\">A GPU's usable memory is its memory less "
            f"{fixed_decimals(100 * reserve, 0)}% (CUDA context, libraries, fragmentation). Host RAM: at least the "
            f"GPU's memory, 25% more to be comfortable.</p>")
    return ("<table style=\"border-collapse:collapse;font-size:90%;text-align:right\" cellpadding=\"3\">"
            + head + "".join(rows) + "</table>" + note)


# ---------------------------------------------------------------------------------------------------------------
# The same, in the page's JavaScript.
# ---------------------------------------------------------------------------------------------------------------



# ---------------------------------------------------------------------------------------------------------------
# The explorer.
# ---------------------------------------------------------------------------------------------------------------

SETTING_KEYS = ("model", "precision", "optimizer", "checkpointing", "batch", "length")


class MemoryBudgetExplorer(Explorer):
    """A memory budget for training: parts of the estimate, GPUs it fits on, host RAM to pair with them.

    ``data`` comes from :meth:`prepare`. ``gpus``: names from :data:`memlib.hardware.GPUS` (default: all);
    ``reserve``: the fraction of each GPU kept free (memlib's default 0.1). ``batch``, ``length``, ``model``,
    ``precision``, ``optimizer``, ``checkpointing``: the starting settings (defaults: the first model, its
    middle length, batch 32, fp32, Adam, no checkpointing).

    Live: give ``models`` (name -> :class:`BudgetModel`, the same names as in ``data``, or any others) and the
    ipywidgets controls rerun memlib's estimator for the chosen model, length and settings; or give your own
    ``compute(settings) -> prepared data``. With ``models``, a length whose estimate would take more than
    ``max_bytes`` or ``max_seconds`` is refused before it runs (see the module docstring).
    """

    live_needs = "models or compute function"
    max_bytes: float = GiB  # a live estimate that would take more memory (at the example batch) is refused
    max_seconds: float = 2.0  # ... or more time: the kernel blocks while it runs

    def __init__(
        self,
        data: Prepared,
        compute: Callable[[dict[str, Any]], Prepared] | None = None,
        *,
        models: Mapping[str, BudgetModel] | None = None,
        gpus: Sequence[str] | None = None,
        reserve: float | None = None,
        batch: int = 32,
        length: int | None = None,
        model: str | None = None,
        precision: str = "fp32",
        optimizer: str = "adam",
        checkpointing: bool = False,
    ):
        from memlib.hardware import DEFAULT_RESERVE, GPUS

        where = "MemoryBudgetExplorer"
        _check_prepared(where, data)
        self.reserve = DEFAULT_RESERVE if reserve is None else reserve
        self.gpus = gpu_table(list(GPUS) if gpus is None else list(gpus), self.reserve)
        if not self.gpus:
            raise ValueError(f"{where}: expected at least one GPU, got none")
        self.models = dict(models) if models is not None else {}
        for name, spec in self.models.items():
            _check_spec(f"{where}: model {name!r}", spec)
        self._live_models = compute is None and bool(self.models)  # the explorer runs memlib: it checks the cost
        if self._live_models:
            compute = self._estimate_live
        self._measured: dict[tuple[str, str], Measured] = {}  # (model, precision) -> its last live estimate
        self.live_controls: dict[str, Any] = {}  # setting -> its ipywidget, once controls() made them
        names = [str(n) for n in data["names"]]
        model = names[0] if model is None else model
        _index(where, "model", model, names)
        m = names.index(model)
        xs = data["lengths"][m, : int(data["n_lengths"][m])]
        self.settings: dict[str, Any] = {
            "model": model, "precision": precision, "optimizer": optimizer, "checkpointing": bool(checkpointing),
            "batch": _check_batch(where, batch), "length": int(xs[len(xs) // 2]) if length is None else length,
        }
        self._view = view(data, self.settings, self.gpus, self.reserve)  # validates every setting
        self._built = False
        self.callback: CustomJS | None = None
        super().__init__(data, compute)

    # Layer 1: prepare ------------------------------------------------------------------------------------------

    @staticmethod
    def prepare(
        models: Mapping[str, BudgetModel],
        *,
        example_batch: int = EXAMPLE_BATCH,
        precisions: Sequence[str] = PRECISIONS,
        optimizers: Sequence[str] = OPTIMIZERS,
    ) -> Prepared:
        """Run memlib's estimator on every model at ``example_batch`` and its lengths; return the numbers.

        Per model and precision: one estimate per length (and per length with checkpointing, for a model with
        blocks), with the first optimizer; then one per other optimizer at the first length and a batch of one
        (the optimizer changes only the counted parts, which do not depend on the batch). Keep ``example_batch``
        at 4 or more: memlib splits what grows with the batch from what does not with a second count at half of it.

        Returns ``names``, ``n_parameters``, ``example_batch``, ``checkpointable``, ``n_lengths`` (M,);
        ``lengths`` (M, 3) (padded with -1); ``precisions`` (P,), ``optimizers`` (O,); one (M, P, 2, 3) array per
        length-dependent field (index 2: without, with checkpointing; -1 where not estimated) and one (M, P, O)
        array per counted field, in bytes.
        """
        from memlib.hardware import OPTIMIZER_STATES, checkpoint_blocks, estimate_training_memory

        where = "MemoryBudgetExplorer.prepare"
        if not isinstance(models, Mapping):
            raise TypeError(f"{where}: expected a mapping of name -> BudgetModel, got {type(models).__name__}")
        if not models:
            raise ValueError(f"{where}: expected at least one model, got none")
        check_int(where, "example_batch", example_batch, low=1)
        precisions, optimizers = tuple(precisions), tuple(optimizers)
        for what, chosen, allowed in (("precisions", precisions, tuple(PRECISION_LABEL)),
                                      ("optimizers", optimizers, tuple(OPTIMIZER_STATES))):
            bad = [x for x in chosen if x not in allowed]
            if bad or not chosen or len(set(chosen)) != len(chosen):
                raise ValueError(f"{where}: expected {what} as distinct names from {', '.join(map(repr, allowed))}, "
                                 f"got {list(chosen)!r}")
        M, P, n_opt = len(models), len(precisions), len(optimizers)
        out: Prepared = {
            "names": np.array([str(n) for n in models]),
            "precisions": np.array(precisions),
            "optimizers": np.array(optimizers),
            "n_parameters": np.zeros(M, dtype=np.int64),
            "example_batch": np.full(M, example_batch, dtype=np.int64),
            "checkpointable": np.zeros(M, dtype=bool),
            "n_lengths": np.zeros(M, dtype=np.int64),
            "lengths": np.full((M, MAX_LENGTHS), MISSING),
        }
        for f in LENGTH_FIELDS:
            out[f] = np.full((M, P, 2, MAX_LENGTHS), MISSING)
        for f in COUNT_FIELDS:
            out[f] = np.full((M, P, n_opt), MISSING)
        # (M, P): which path the estimate took where a kernel could not run this precision here (memlib.capability)
        out["paths"] = np.full((M, P), "", dtype=object)
        for m, (name, spec) in enumerate(models.items()):
            lengths = _check_spec(f"{where}: model {name!r}", spec)
            blocks = bool(checkpoint_blocks(spec.model))
            out["n_parameters"][m] = sum(w.numel() for w in spec.model.parameters())
            out["checkpointable"][m] = blocks
            out["n_lengths"][m] = len(lengths)
            out["lengths"][m, : len(lengths)] = lengths

            def estimate(length: int, optimizer: str, precision: str, checkpointing: bool, batch: int = example_batch,
                         name=name, spec=spec, m=m):
                e = estimate_training_memory(spec.model, spec.example(batch, length), optimizer, precision,
                                             checkpointing, **dict(spec.options))
                if e.batch_size != batch:
                    raise ValueError(f"{where}: model {name!r}: expected example(batch, length) to give a batch of "
                                     f"{batch}, got one of {e.batch_size}")
                p = precisions.index(precision)
                notes = [*_notes(out, m, p), *e.notes]
                out["paths"][m, p] = "\n".join(dict.fromkeys(notes))
                return e

            for p, precision in enumerate(precisions):
                for c in (0, 1) if blocks else (0,):
                    for k, length in enumerate(lengths):
                        e = estimate(length, optimizers[0], precision, bool(c))
                        for f in LENGTH_FIELDS:
                            out[f][m, p, c, k] = getattr(e, f)
                        if c == 0 and k == 0:
                            for f in COUNT_FIELDS:
                                out[f][m, p, 0] = getattr(e, f)
                for o, optimizer in enumerate(optimizers[1:], start=1):
                    # only the counted parts are read: a batch of one (a single count) is enough
                    e = estimate(lengths[0], optimizer, precision, False, batch=1)
                    for f in COUNT_FIELDS:
                        out[f][m, p, o] = getattr(e, f)
        return out

    @classmethod
    def for_models(
        cls,
        models: Mapping[str, BudgetModel],
        *,
        model: str | None = None,
        length: int | None = None,
        precision: str = "fp32",
        optimizer: str = "adam",
        **options: Any,
    ) -> MemoryBudgetExplorer:
        """A live explorer over any models, estimated on demand: only the starting setting is estimated here
        (at ``length``, default each model's first length). ``options`` go to the constructor."""
        where = "MemoryBudgetExplorer.for_models"
        if not isinstance(models, Mapping) or not models:
            raise ValueError(f"{where}: expected a non-empty mapping of name -> BudgetModel, got {models!r:.80}")
        name = next(iter(models)) if model is None else model
        _index(where, "model", name, list(models))
        spec = models[name]
        first = _check_spec(f"{where}: model {name!r}", spec)[0] if length is None else _check_live_length(length)
        data = cls.prepare({name: spec._replace(lengths=(first,))}, precisions=(precision,), optimizers=(optimizer,))
        return cls(data, models=models, model=name, precision=precision, optimizer=optimizer, **options)

    # Live compute: memlib's estimator at the chosen length ---------------------------------------------------

    def _estimate_live(self, settings: Mapping[str, Any]) -> Prepared:
        """The chosen model at the chosen length, precision and optimizer (both checkpointing settings where it
        has blocks), estimated now; its cost is kept for :meth:`check_cost`."""
        name, precision, length = settings["model"], settings["precision"], settings["length"]
        one = self.models[name]._replace(lengths=(int(length),))
        start = time.perf_counter()
        data = self.prepare({name: one}, precisions=(precision,), optimizers=(settings["optimizer"],))
        seconds = time.perf_counter() - start
        e = estimate_at(data, name, precision, settings["optimizer"], False, int(length))
        # the last run, whatever its length: a slow first run (a kernel's one-time set-up) is replaced by the next
        self._measured[name, precision] = Measured(int(length), e.parameters + e.gradients + e.optimizer_state,
                                                   e.activations + e.backward_workspace, seconds)
        return data

    # Layer 2: the static Bokeh layout ---------------------------------------------------------------------------

    def source_data(self, data: Prepared) -> Mapping[str, dict[str, Any]]:
        v = self._view if self._view is not None else view(data, self.settings, self.gpus, self.reserve)
        e = v["estimate"]
        M = len(data["names"])
        store = {
            "name": [str(n) for n in data["names"]],
            "n_parameters": [int(n) for n in data["n_parameters"]],
            "example_batch": [int(n) for n in data["example_batch"]],
            "checkpointable": [bool(x) for x in data["checkpointable"]],
            "n_lengths": [int(n) for n in data["n_lengths"]],
            "lengths": [[float(x) for x in data["lengths"][m]] for m in range(M)],
            "paths": [[str(x) for x in data["paths"][m]] if "paths" in data else [""] * len(data["precisions"])
                      for m in range(M)],
        }
        for f in (*LENGTH_FIELDS, *COUNT_FIELDS):
            store[f] = [[float(x) for x in data[f][m].ravel()] for m in range(M)]
        top = max(2, e.batch_size, *(1 if lb is None else lb for lb in v["largest"]))
        gpus = {
            "gpu": [g.name for g in self.gpus],
            "memory": [g.memory for g in self.gpus],
            "usable": [g.usable for g in self.gpus],
            "ram_minimum": [g.ram_minimum for g in self.gpus],
            "ram_recommended": [g.ram_recommended for g in self.gpus],
            "largest": [top * 10 if lb is None else max(lb, 1) for lb in v["largest"]],
            "label": ["any" if lb is None else str(lb) for lb in v["largest"]],
            "color": ["#1b7837" if ok else "#b2182b" for ok in v["fits"]],
        }
        bar = {"y": ["estimate"], **{k: [val / MiB] for k, val in e.parts.items()}}
        usable: dict[int, list[str]] = {}  # GPUs by usable memory: one line per size
        for g in self.gpus:
            usable.setdefault(g.usable, []).append(g.name)
        lines = {"x": [u / MiB for u in usable], "label": [", ".join(n) for n in usable.values()]}
        return {"budget_store": store, "budget_gpus": gpus, "budget_bar": bar, "budget_gpu_lines": lines}

    def build(self):
        s, d = self.settings, self.data
        names = [str(n) for n in d["names"]]
        m = names.index(s["model"])
        self.model_select = Select(title="model", options=names, value=s["model"], width=210,
                                   name="budget_model_select")
        self.precision_select = Select(title="precision", value=s["precision"], width=210,
                                       options=[(str(p), PRECISION_LABEL[str(p)]) for p in d["precisions"]],
                                       name="budget_precision_select")
        self.optimizer_select = Select(title="optimizer", value=s["optimizer"], width=210,
                                       options=[(str(o), OPTIMIZER_LABEL[str(o)]) for o in d["optimizers"]],
                                       name="budget_optimizer_select")
        self.batch_spinner = Spinner(title="batch size", low=1, high=MAX_BATCH, step=1, value=s["batch"], width=120,
                                     mode="int", name="budget_batch")
        xs = d["lengths"][m, : int(d["n_lengths"][m])]
        self.length_slider = Slider(title="sequence length", start=int(xs[0]), end=max(int(xs[-1]), int(xs[0]) + 1),
                                    step=1, value=s["length"], width=330, disabled=len(xs) < 2,
                                    name="budget_length")
        self.checkpoint_box = Checkbox(label="gradient checkpointing", active=s["checkpointing"],
                                       disabled=not bool(d["checkpointable"][m]), width=180,
                                       name="budget_checkpointing")
        self.caption = Div(text=self._view["caption"], width=WIDTH, name="budget_caption")
        self.table = Div(text=self._view["table"], width=WIDTH, name="budget_table")

        e = self._view["estimate"]
        self.bar_fig = figure(width=WIDTH, height=130, y_range=FactorRange(factors=["estimate"]),
                              x_range=Range1d(0, 1.08 * max(e.total / MiB, 1e-6)),
                              title="memory of one training step (dashed: a GPU's usable memory, once reached)",
                              x_axis_label="MiB", tools="", toolbar_location=None, name="budget_bar_figure")
        self.bar_fig.hbar_stack(list(PARTS), y="y", height=0.6, source=self.sources["budget_bar"],
                                color=[PART_COLOR[k] for k in PARTS],
                                legend_label=[PART_LABEL[k] for k in PARTS])
        self.bar_fig.legend.orientation = "horizontal"
        self.bar_fig.legend.update(padding=2, margin=0, label_text_font_size="8pt", location="top_left")
        self.bar_fig.add_layout(self.bar_fig.legend[0], "below")
        self.bar_fig.yaxis.visible = False
        lines = self.sources["budget_gpu_lines"]
        self.bar_fig.vspan(x="x", source=lines, line_color="#333333", line_dash="dashed", line_width=1.5)
        self.bar_fig.add_layout(LabelSet(x="x", y=0, y_units="screen", text="label", source=lines, angle=0,
                                         x_offset=-3, y_offset=4, text_align="right", text_font_size="8pt",
                                         text_color="#333333"))

        gpu_names = [g.name for g in self.gpus]
        top = max(2, e.batch_size, *(1 if lb is None else lb for lb in self._view["largest"]))
        self.gpu_fig = figure(width=WIDTH, height=40 + 24 * len(self.gpus),
                              y_range=FactorRange(factors=gpu_names[::-1]),
                              x_axis_type="log", x_range=Range1d(1, top * 30), x_axis_label="largest batch that fits",
                              title="largest batch per GPU (green: the chosen batch fits; line: the chosen batch)",
                              tools="", toolbar_location=None, name="budget_gpu_figure")
        self.gpu_fig.hbar(y="gpu", left=1, right="largest", height=0.7, color="color",
                          source=self.sources["budget_gpus"])
        self.gpu_fig.add_layout(LabelSet(x="largest", y="gpu", text="label", source=self.sources["budget_gpus"],
                                         x_offset=3, y_offset=-6, text_font_size="8pt"))
        self.batch_line = Span(location=e.batch_size, dimension="height", line_color="#333333", line_dash="dashed",
                               line_width=2)
        self.gpu_fig.add_layout(self.batch_line)

        self.callback = custom_js(
            "budget", store=self.sources["budget_store"], gpus=self.sources["budget_gpus"],
            bars=self.sources["budget_bar"], model=self.model_select, precision=self.precision_select,
            optimizer=self.optimizer_select, batch=self.batch_spinner, length=self.length_slider,
            checkpoint=self.checkpoint_box, caption=self.caption, table=self.table,
            bar_x=self.bar_fig.x_range, gpu_x=self.gpu_fig.x_range, batch_line=self.batch_line,
            PARTS=list(PARTS), PART_LABEL=PART_LABEL, PREC_LABEL=PRECISION_LABEL, OPT_LABEL=OPTIMIZER_LABEL,
            reserve=float(self.reserve), MAX_BATCH=MAX_BATCH,
        )
        for widget in (self.model_select, self.precision_select, self.optimizer_select, self.batch_spinner,
                       self.length_slider):
            widget.js_on_change("value", self.callback)
        self.checkpoint_box.js_on_change("active", self.callback)
        self.controls_box = column(
            row(self.model_select, self.precision_select, self.optimizer_select),
            row(self.batch_spinner, self.length_slider, self.checkpoint_box), name="budget_controls",
        )
        self._built = True
        return column(self.controls_box, self.caption, self.bar_fig, self.gpu_fig, self.table, width=WIDTH,
                      name="memory_budget_explorer")

    # Live updates ---------------------------------------------------------------------------------------------

    def update(self, data: Prepared) -> None:
        _check_prepared("MemoryBudgetExplorer.update", data)
        _ = self.layout  # built for the current data and settings before either changes
        names = [str(n) for n in data["names"]]
        s = dict(self.settings)
        if s["model"] not in names:
            s["model"] = names[0]
        m = names.index(s["model"])
        xs = [int(x) for x in data["lengths"][m, : int(data["n_lengths"][m])]]
        s["length"] = min(max(int(s["length"]), xs[0]), xs[-1])
        for key, axis in (("precision", "precisions"), ("optimizer", "optimizers")):
            if s[key] not in [str(x) for x in data[axis]]:
                s[key] = str(data[axis][0])
        s["checkpointing"] = bool(s["checkpointing"] and data["checkpointable"][m])
        self._view = view(data, s, self.gpus, self.reserve)
        self.settings = s
        super().update(data)

    def on_update(self, data: Prepared) -> None:
        s, v = self.settings, self._view
        names = [str(n) for n in data["names"]]
        m = names.index(s["model"])
        xs = data["lengths"][m, : int(data["n_lengths"][m])]
        self.model_select.update(options=names, value=s["model"])
        self.precision_select.update(options=[(str(p), PRECISION_LABEL[str(p)]) for p in data["precisions"]],
                                     value=s["precision"])
        self.optimizer_select.update(options=[(str(o), OPTIMIZER_LABEL[str(o)]) for o in data["optimizers"]],
                                     value=s["optimizer"])
        self.length_slider.update(start=int(xs[0]), end=max(int(xs[-1]), int(xs[0]) + 1), value=s["length"],
                                  disabled=len(xs) < 2)
        self.batch_spinner.value = s["batch"]
        self.checkpoint_box.update(active=s["checkpointing"], disabled=not bool(data["checkpointable"][m]))
        e = v["estimate"]
        self.bar_fig.x_range.update(start=0, end=1.08 * max(e.total / MiB, 1e-6))
        top = max(2, e.batch_size, *(1 if lb is None else lb for lb in v["largest"]))
        self.gpu_fig.x_range.end = top * 30
        self.batch_line.location = e.batch_size
        self.caption.text = v["caption"]
        self.table.text = v["table"]

    def request(self, value: Any) -> dict[str, Any]:
        """``settings`` with the changed ones in ``value`` (a dict), each checked before anything runs."""
        s = merge_settings(self.settings, value, SETTING_KEYS)
        _check_batch("MemoryBudgetExplorer", s["batch"])
        s["length"] = _check_live_length(s["length"])
        if not isinstance(s["checkpointing"], bool | np.bool_):
            raise ValueError(f"expected checkpointing as True or False, got {s['checkpointing']!r}")
        if self._live_models:
            from memlib.hardware import checkpoint_blocks

            _index("MemoryBudgetExplorer", "model", s["model"], list(self.models))
            _index("MemoryBudgetExplorer", "precision", s["precision"], list(PRECISION_LABEL))
            _index("MemoryBudgetExplorer", "optimizer", s["optimizer"], list(OPTIMIZER_LABEL))
            if s["checkpointing"] and not checkpoint_blocks(self.models[s["model"]].model):
                raise ValueError(f"{s['model']!r} has no blocks to checkpoint (checkpointing=True is for a model "
                                 f"with a ModuleList or Sequential of blocks): untick checkpointing first")
        return s

    def check_cost(self, request: dict[str, Any]) -> None:
        """Refuse a length whose live estimate would exceed ``max_bytes`` or ``max_seconds`` (:func:`live_cost`,
        scaled from the model's last run; a model not run yet at this precision runs first at the longest of its
        own ``lengths``). Nothing to check for a compute function of the page's own."""
        if not self._live_models:
            return
        name, precision, length = request["model"], request["precision"], request["length"]
        spec = self.models[name]
        measured = self._measured.get((name, precision))
        if measured is None:
            longest = max(spec.lengths)
            if length <= longest:  # one of the spec's own lengths: declared affordable, and measured as it runs
                return
            self._estimate_live({**request, "length": longest})
            measured = self._measured[name, precision]
        heads = attention_heads(spec.model)
        cost = live_cost(measured, length, heads)
        over = [f"the memory limit of {format_bytes(self.max_bytes)}"] if cost.bytes > self.max_bytes else []
        over += [f"the time limit of {self.max_seconds:g} s"] if cost.seconds > self.max_seconds else []
        if over:
            scores = f", the T x T scores of {heads} attention heads" if heads else ""
            raise Refused(
                f"length {length} would take about {format_bytes(cost.bytes)} and {cost.seconds:.2g} s for "
                f"{name!r} (scaled from its run at length {measured.length}: "
                f"{format_bytes(measured.fixed + measured.grows)} in {measured.seconds:.2g} s{scores}), "
                f"over {' and '.join(over)}; it is not run"
            )

    def accept(self, request: dict[str, Any], data: Prepared) -> None:
        _check_prepared("compute", data)
        candidate = view(data, request, self.gpus, self.reserve)  # refuses bad settings before anything moves
        self.settings = request
        self._view = candidate
        Explorer.update(self, data)

    def _save(self) -> dict[str, Any]:
        return {**super()._save(), "view": self._view}

    def _restore(self, saved: Mapping[str, Any]) -> None:
        self._view = saved["view"]
        super()._restore(saved)

    def show_settings(self) -> None:
        """The controls on the settings the figures show; checkpointing off limits for a model without blocks."""
        super().show_settings()
        box = self.live_controls.get("checkpointing")
        if box is not None:
            names = [str(n) for n in self.data["names"]]
            m = names.index(self.settings["model"]) if self.settings["model"] in names else 0
            box.disabled = not bool(self.data["checkpointable"][m]) and not self.settings["checkpointing"]

    # Layer 3: live controls -------------------------------------------------------------------------------------

    def controls(self) -> list:
        """Model, precision, optimizer, checkpointing, batch and length; each change reruns the estimator. The
        static Bokeh controls are hidden (the ipywidgets drive the figures)."""
        import ipywidgets

        _ = self.layout
        self.controls_box.visible = False
        s = self.settings

        def offered(choices: Sequence[str], current: str) -> list[str]:  # the shown setting is always among them
            return [*choices, current] if current not in choices else list(choices)

        names = offered(list(self.models) if self.models else [str(n) for n in self.data["names"]], s["model"])
        self.live_controls = {
            "model": ipywidgets.Dropdown(options=names, value=s["model"], description="model"),
            "precision": ipywidgets.Dropdown(options=[(PRECISION_LABEL.get(p, p), p)
                                                      for p in offered(PRECISIONS, s["precision"])],
                                             value=s["precision"], description="precision"),
            "optimizer": ipywidgets.Dropdown(options=[(OPTIMIZER_LABEL.get(o, o), o)
                                                      for o in offered(OPTIMIZERS, s["optimizer"])],
                                             value=s["optimizer"], description="optimizer"),
            # plain integer boxes: a bounded box would clamp a bad value silently; request() names it instead
            "batch": ipywidgets.IntText(value=s["batch"], description="batch"),
            "length": ipywidgets.IntText(value=s["length"], description="length"),
            "checkpointing": ipywidgets.Checkbox(value=s["checkpointing"], description="gradient checkpointing"),
        }
        for key, widget in self.live_controls.items():
            self.bind(key, widget)
        self.show_settings()
        w = self.live_controls
        return [ipywidgets.HBox([w["model"], w["precision"], w["optimizer"]]),
                ipywidgets.HBox([w["batch"], w["length"], w["checkpointing"]])]


def _check_live_length(length: Any) -> int:
    return check_int("", "length", length, low=1, high=MAX_LENGTH)


def _check_spec(where: str, spec: Any) -> list[int]:
    """A BudgetModel's lengths, after checking its fields."""
    from torch import nn

    if not isinstance(spec, BudgetModel):
        raise TypeError(f"{where}: expected a BudgetModel(model, example, lengths), got {type(spec).__name__}")
    if not isinstance(spec.model, nn.Module):
        raise TypeError(f"{where}: expected model as an nn.Module, got {type(spec.model).__name__}")
    if not callable(spec.example):
        raise TypeError(f"{where}: expected example as a function (batch, length) -> example input, "
                        f"got {type(spec.example).__name__}")
    lengths = list(spec.lengths)
    if (not 1 <= len(lengths) <= MAX_LENGTHS
            or any(not is_int(x) or x < 1 for x in lengths)
            or any(b <= a for a, b in zip(lengths, lengths[1:], strict=False))):
        raise ValueError(f"{where}: expected 1 to {MAX_LENGTHS} increasing positive integer lengths, "
                         f"got {spec.lengths!r}")
    return [int(x) for x in lengths]


def _check_prepared(where: str, data: Any) -> None:
    needed = ("names", "precisions", "optimizers", "n_parameters", "example_batch", "checkpointable", "n_lengths",
              "lengths", *LENGTH_FIELDS, *COUNT_FIELDS)
    if not isinstance(data, Mapping) or any(k not in data for k in needed):
        got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(f"{where}: expected data from MemoryBudgetExplorer.prepare (keys {list(needed)}), got {got}")


__all__ = ["BudgetModel", "MemoryBudgetExplorer", "book_models", "estimate_at", "interpolate", "view"]
