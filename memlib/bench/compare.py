"""The ``compare`` suite: RNN, LSTM, GRU and Transformer (and an NTM and a Linformer) measured on the four
metrics the article rates from opinion (its section 5): long-term dependencies, training speed, memory
footprint and interpretability.

Every model maps a batch of sequences ``x`` (B, T, I) to an output at every step (B, T, O), with the same
width and about the same parameter count (the table prints each model's count):

- ``rnn``, ``lstm``, ``gru``: one memlib recurrent layer of ``HIDDEN`` units and a linear readout;
- ``transformer``: an input projection, sinusoidal positions, ``LAYERS`` memlib encoder layers (post-norm,
  ``D_MODEL`` wide, ``HEADS`` heads, feed-forward ``2 D_MODEL``, full bidirectional attention) and a readout;
- ``linformer``: the same Transformer with :class:`~memlib.efficient.LinformerAttention` (keys and values projected to
  ``min(LINFORMER_K, T)`` rows; Wang et al. 2020) in every layer;
- ``ntm``: :class:`~memlib.memory.ntm.NTM` with an LSTM controller of ``HIDDEN`` units, ``NTM_SLOTS`` x
  ``NTM_WIDTH`` memory.

Metrics (a ``Size`` fixes the sizes; :data:`SIZES` holds ``smoke``, ``quick`` and ``full``):

1. **Long-term dependencies.** Each model trains from scratch for its rung's step budget (:func:`step_budget`: at
   most ``size.steps``) of Adam steps of ``BATCH`` sequences on the adding problem (Hochreiter & Schmidhuber 1997;
   :func:`~memlib.tasks.sequences.adding_batch`) at each length of a ladder, and on copy (Graves et al. 2014;
   :func:`~memlib.tasks.sequences.copy_batch`, ``COPY_BITS`` bits) at each copy length. A rung is solved when the
   held-out metric meets the criterion: adding, test MSE <= ``ADDING_SOLVED`` (always answering 1.0 scores 1/6);
   copy, bit error <= ``COPY_SOLVED``. The ladder stops at a model's first rung not solved. The *lag* of a rung
   is the number of steps between the earliest input the answer needs and the answer: ``T - 1`` on adding (a
   marker may sit at step 0, the answer is read at step ``T - 1``), ``L + 1`` on copy (vector ``i`` enters at
   step ``i`` and is due at step ``L + 1 + i``).
2. **Training speed.** At each ``T`` of ``size.lengths``: median time of a training step (forward, MSE on
   the adding problem, backward, Adam step) over ``size.repeats`` repeats run interleaved across models,
   and sequences per second (``BATCH`` / median); latency of one forward pass of one sequence, no grad.
   The time to reach a target loss is the ladder's: each rung records the training time (evaluation not
   counted) and steps it took to reach the solved criterion, so on the adding problem it is the time to
   test MSE <= ``ADDING_SOLVED`` at each ``T`` of the ladder (:func:`time_to_solve`).
3. **Memory footprint.** Peak memory of one training step (forward, backward; B = ``BATCH``) at each ``T``
   of ``size.memory_lengths`` (:func:`memlib.profiling.peak_memory`: torch's CPU allocator events, or the
   CUDA allocator's peak), and the fitted growth exponent ``b`` of ``peak ~ T^b``.
4. **Interpretability.** On the adding problem at ``T = size.interpret_length`` (the model trained in the
   ladder at that length), :func:`memlib.interpret.ground_truth_score` of Integrated Gradients (L1 per
   step): the fraction of held-out sequences whose two most attributed steps are their two marked steps.
   It means something only where the model solved that rung; the table says so.

A rung's step budget is fixed before it trains, from constants: ``size.steps``, or fewer where their modelled
cost (:data:`STEP_COST`: milliseconds of a training step against ``T``, measured once) passes
``size.rung_seconds``. No clock decides how long a model learns, so two runs of the same size and seed learn the
same rungs, serial or spread over workers, on a loaded machine or an idle one (on the same CPU type, torch
build and thread count: those change the floating-point sums). A rung that spends a budget cut below
``size.steps`` without being solved is *capped*: the ladder stops and the largest lag is a lower bound; one
that spends all ``size.steps`` has *failed*. A memory cell is skipped (with the reason under ``skipped``) when
the modelled cost of its step passes ``size.cell_seconds``, or its peak, projected from the model's previous
length, passes :data:`MEMORY_LIMIT_GIB`; a speed cell, when the modelled cost of its timed steps (and warm-up)
does: which cells exist never depends on the machine's load. ``summary`` collects what
:func:`~memlib.advise.advise` reads. Shapes: ``B`` batch, ``T`` steps, ``I`` input features, ``O`` outputs, ``L`` copy
length, ``K`` bits.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from memlib.bench import Report
from memlib.bench.attention import growth_exponent
from memlib.efficient import LinformerAttention
from memlib.memory import NTM
from memlib.profiling import peak_memory, synchronize, time_call
from memlib.recurrent import GRU, LSTM, RNN
from memlib.tasks.sequences import adding_batch, copy_batch
from memlib.train import device as pick_device
from memlib.train import seed_everything
from memlib.transformer import SinusoidalPositionalEncoding, TransformerEncoder, TransformerEncoderLayer
from memlib.validate import check_float, check_int, fail, is_int

#: The compared models, in table order.
MODELS = ("rnn", "lstm", "gru", "transformer", "ntm", "linformer")
LABELS = dict(rnn="RNN", lstm="LSTM", gru="GRU", transformer="Transformer", ntm="NTM", linformer="Linformer")
ARTICLE = ("rnn", "lstm", "gru", "transformer")  # the models the article rates; the others are extra rows
BATCH = 32
HIDDEN = 64  # recurrent units (and the NTM's controller)
D_MODEL, HEADS, LAYERS = 32, 4, 2
LINFORMER_K = 32
NTM_SLOTS, NTM_WIDTH = 32, 16
COPY_BITS = 4
LR = dict(rnn=5e-3, lstm=5e-3, gru=5e-3, transformer=1e-3, ntm=3e-3, linformer=1e-3)  # Adam
ADDING_SOLVED = 0.01  # test MSE under which the adding problem counts as solved (chapter 2)
COPY_SOLVED = 0.02  # bit error under which copy counts as solved
TEST_SIZE = 256
EVAL_EVERY = 25  # training steps between held-out checks in the ladder
DEFAULT_REPEATS = None  # each size has its own


class Size(NamedTuple):
    """The settings of one run size (``smoke``, ``quick`` or ``full``): steps and budget per rung, length ladders,
    repeats and the limit per speed or memory cell. :func:`check_size` says what each field must be.

    >>> SIZES['quick'].repeats >= 1
    True
    """
    steps: int  # training steps per ladder rung, at most
    adding_lengths: tuple[int, ...]  # T of the adding ladder
    copy_lengths: tuple[int, ...]  # L of the copy ladder
    lengths: tuple[int, ...]  # T of the speed measurements
    memory_lengths: tuple[int, ...]  # T of the memory measurements
    interpret_length: int  # T of the interpretability score (a rung of the adding ladder)
    rung_seconds: float  # a rung's training budget in modelled seconds (STEP_COST): fixes its step budget
    cell_seconds: float  # a speed or memory cell modelled (STEP_COST) to take longer is skipped
    repeats: int  # timed repeats of a training step


#: The run sizes by name: smoke, quick and full. A rung's budget is about what its time limit was before the
#: budget was modelled (40 s in quick, 300 s in full), so the sizes take about as long as they did.
SIZES = {
    "smoke": Size(30, (10,), (2,), (25, 50), (25, 50), 10, 10.0, 10.0, 2),
    "quick": Size(
        1000, (10, 25, 50, 100, 200), (4, 8, 16, 32), (50, 200, 1000), (50, 200, 500, 1000), 25, 40.0, 40.0, 3
    ),
    "full": Size(
        2000,
        (10, 25, 50, 100, 200, 500, 1000),
        (4, 8, 16, 32, 64),
        (50, 200, 1000),
        (50, 100, 200, 500, 1000, 2000),
        50,
        300.0,
        300.0,
        5,
    ),
}


class StepCost(NamedTuple):
    """The modelled time of one training step (forward, loss, backward, clipping, Adam; ``BATCH`` sequences) of a
    model at ``T`` time steps: ``fixed + per_step T + per_pair T^2`` milliseconds.

    >>> StepCost(1.0, 0.5, 0.01).seconds(10)
    0.007
    """
    fixed: float  # ms whatever T: the optimizer step, the readout, Python
    per_step: float  # ms per time step: a recurrence's steps, a layer's positions
    per_pair: float = 0.0  # ms per pair of time steps: full attention's T^2 scores

    def seconds(self, T: int) -> float:
        """Modelled seconds of one training step at ``T`` time steps."""
        return (self.fixed + self.per_step * T + self.per_pair * T * T) / 1e3


#: Modelled cost of a training step per model (:class:`StepCost`), from which every rung's step budget is fixed
#: before it trains (:func:`step_budget`). Measured once, on the machine that built the book (a 2-core AMD EPYC
#: VM shared with other work, torch 2.13 CPU, 1 thread, flushed denormals): the adding problem's training step at
#: T = 10, 25, 50, 100, 200, 500 and 1000, the least over 5 interleaved rounds of each round's median of 3 steps
#: (wall time, and in 3 more rounds CPU time; the least of both), fitted by non-negative least squares on the
#: relative error: a quadratic term for the Transformer only. The fits are within 17% of those measurements
#: (the LSTM at T = 1000: 27% under) and within 25% on copy (T = 66). They are constants of the suite, not a
#: description of another machine: a faster machine spends the same steps in less time.
STEP_COST = dict(
    rnn=StepCost(1.21, 0.0991),
    lstm=StepCost(1.36, 0.107),
    gru=StepCost(1.14, 0.272),
    transformer=StepCost(4.94, 0.107, 0.00218),
    ntm=StepCost(2.09, 4.22),
    linformer=StepCost(5.50, 0.195),
)


class Recurrent(nn.Module):
    """A memlib RNN, LSTM or GRU layer and a linear readout at every step: ``x`` (B, T, I) -> (B, T, O)."""

    def __init__(self, cell: str, input_size: int, output_size: int, hidden_size: int = HIDDEN):
        super().__init__()
        layer = dict(rnn=RNN, lstm=LSTM, gru=GRU)[cell]
        self.rnn = layer(input_size, hidden_size, batch_first=True)
        self.readout = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(x)  # (B, T, H)
        return self.readout(h)  # (B, T, O)


class Encoder(nn.Module):
    """Input projection, sinusoidal positions, memlib encoder layers, readout: ``x`` (B, T, I) -> (B, T, O).

    ``linformer_length`` swaps every layer's attention for a :class:`~memlib.efficient.LinformerAttention` built for
    sequences up to that length (keys and values projected to ``min(LINFORMER_K, length)`` rows).
    """

    def __init__(self, input_size: int, output_size: int, linformer_length: int | None = None):
        super().__init__()
        self.inp = nn.Linear(input_size, D_MODEL)
        self.pe = SinusoidalPositionalEncoding(D_MODEL, batch_first=True)
        layer = TransformerEncoderLayer(D_MODEL, HEADS, dim_feedforward=2 * D_MODEL, dropout=0.0, batch_first=True)
        self.encoder = TransformerEncoder(layer, LAYERS)
        if linformer_length is not None:
            k = min(LINFORMER_K, linformer_length)
            for block in self.encoder.layers:
                block.self_attn = LinformerAttention(D_MODEL, HEADS, linformer_length, k, batch_first=True)
        self.readout = nn.Linear(D_MODEL, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.encoder(self.pe(self.inp(x))))  # (B, T, O)


class MemoryModel(nn.Module):
    """:class:`~memlib.memory.ntm.NTM` with its state dropped: ``x`` (B, T, I) -> (B, T, O)."""

    def __init__(self, input_size: int, output_size: int):
        super().__init__()
        self.ntm = NTM(input_size, output_size, controller_size=HIDDEN, memory_slots=NTM_SLOTS, memory_width=NTM_WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.ntm(x)
        return y  # (B, T, O)


def build(name: str, input_size: int, output_size: int, T: int) -> nn.Module:
    """A fresh model ``name`` (one of :data:`MODELS`) for sequences of up to ``T`` steps."""
    if name in ("rnn", "lstm", "gru"):
        return Recurrent(name, input_size, output_size)
    if name == "transformer":
        return Encoder(input_size, output_size)
    if name == "linformer":
        return Encoder(input_size, output_size, linformer_length=T)
    if name == "ntm":
        return MemoryModel(input_size, output_size)
    raise ValueError(f"compare: expected a model in {MODELS}, got {name!r}")


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- tasks: a batch, a loss and a held-out metric per task -------------------------------------------------


class Task(NamedTuple):
    """One task of the comparison: its sizes, training steps, the dependency length ``lag`` and whether it was solved.

    >>> Task._fields[:3]
    ('name', 'input_size', 'output_size')
    """
    name: str
    input_size: int
    output_size: int
    batch: Callable[..., Any]  # (batch_size, length, seed, step, device) -> batch
    steps: Callable[[int], int]  # sequence length T of a rung of length ``length``
    lag: Callable[[int], int]  # the rung's lag
    solved: float  # the held-out metric's threshold


def _adding(batch_size: int, length: int, seed: int, step: int, dev: torch.device):
    return adding_batch(batch_size, length, seed=seed, step=step, device=dev)


def _copy(batch_size: int, length: int, seed: int, step: int, dev: torch.device):
    return copy_batch(batch_size, length, COPY_BITS, seed=seed, step=step, device=dev)


TASKS = {
    "adding": Task("adding", 2, 1, _adding, lambda T: T, lambda T: T - 1, ADDING_SOLVED),
    "copy": Task("copy", COPY_BITS + 2, COPY_BITS, _copy, lambda L: 2 * L + 2, lambda L: L + 1, COPY_SOLVED),
}


def loss(task: str, model: nn.Module, batch) -> torch.Tensor:
    y = model(batch.inputs)  # (B, T, O)
    if task == "adding":
        return F.mse_loss(y[:, -1, 0], batch.target)
    L = batch.targets.shape[1]
    return F.binary_cross_entropy_with_logits(y[:, -L:], batch.targets)


@torch.no_grad()
def metric(task: str, model: nn.Module, batch) -> float:
    """Held-out metric: the adding problem's MSE, copy's bit error rate."""
    y = model(batch.inputs)
    if task == "adding":
        return F.mse_loss(y[:, -1, 0], batch.target).item()
    L = batch.targets.shape[1]
    return ((y[:, -L:] > 0).float() != batch.targets).float().mean().item()


class LastOutput(nn.Module):
    """``model``'s first output at the last step, (B,): the adding problem's answer, for attribution."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, -1, 0]


def _quiet(_: str) -> None:
    pass


class _Run(NamedTuple):
    size: Size
    dev: torch.device
    seed: int
    log: Callable[[str], None]
    skipped: list  # {"section", "model", "T" or "length", "reason"}


def _skip(run: _Run, section: str, name: str, where: str, reason: str) -> None:
    run.skipped.append(dict(section=section, model=name, at=where, reason=reason))
    run.log(f"  {section}: {LABELS[name]} skipped at {where}: {reason}")


def _optimizer(name: str, model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=LR[name])


def _train_step(task: str, model: nn.Module, optimizer: torch.optim.Optimizer, batch) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss(task, model, batch).backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


# --- 1. long-term dependencies ------------------------------------------------------------------------------


def step_budget(size: Size, name: str, T: int) -> int:
    """The training steps a ladder rung of model ``name`` at ``T`` time steps may take: ``size.steps``, or
    ``floor(size.rung_seconds / cost)`` where that is fewer, ``cost`` being the modelled seconds of one of its
    training steps (:data:`STEP_COST`); at least one. Constants only: the same on every machine and in every run.

    >>> quick = SIZES["quick"]
    >>> step_budget(quick, "rnn", 25), step_budget(quick, "transformer", 200), step_budget(quick, "ntm", 25)
    (1000, 352, 371)
    """
    if name not in STEP_COST:
        raise ValueError(f"step_budget: expected a model in {MODELS}, got {name!r}")
    check_int("step_budget", "T", T, low=1)
    return max(1, min(size.steps, math.floor(size.rung_seconds / STEP_COST[name].seconds(T))))


def _rung(run: _Run, name: str, task: str, length: int, section: str = "long_term") -> tuple[dict, nn.Module]:
    """Train ``name`` from scratch on one rung until it is solved (checked every ``EVAL_EVERY`` steps and after
    the last) or its step budget (:func:`step_budget`) is spent; the rung's record and the model.

    ``status``: ``"solved"``; ``"failed"``: all ``size.steps`` spent, or the held-out metric not finite;
    ``"capped"``: a budget cut below ``size.steps`` by the rung's modelled cost spent first (the rung neither
    solved nor failed). No clock decides anything here: ``seconds`` (training time, evaluation not counted) is
    recorded, not read. A capped rung is listed under ``skipped`` in ``section`` (the one that trained it)."""
    spec, size = TASKS[task], run.size
    T = spec.steps(length)
    budget = step_budget(size, name, T)
    seed_everything(run.seed)
    model = build(name, spec.input_size, spec.output_size, T).to(run.dev)
    optimizer = _optimizer(name, model)
    test = spec.batch(TEST_SIZE, length, run.seed + 1000, 0, run.dev)
    seconds, value, status, step = 0.0, math.inf, "failed", 0
    while step < budget:
        batch = spec.batch(BATCH, length, run.seed, step, run.dev)
        model.train()
        seconds += time_call(lambda b=batch: _train_step(task, model, optimizer, b), run.dev)
        step += 1
        if step % EVAL_EVERY == 0 or step == budget:
            model.eval()
            value = metric(task, model, test)
            if value <= spec.solved:
                status = "solved"
                break
            if not math.isfinite(value):
                break
    if status == "failed" and math.isfinite(value) and budget < size.steps:
        status = "capped"
        cost = STEP_COST[name].seconds(T)
        _skip(
            run,
            section,
            name,
            f"{task} T={T}",
            f"step budget spent: {budget} of {size.steps} steps ({size.rung_seconds:g} s at a modelled "
            f"{cost * 1e3:.1f} ms per step), test metric {value:.4f}",
        )
    model.eval()
    record = dict(
        length=length,
        T=T,
        lag=spec.lag(length),
        budget=budget,
        steps=step,
        seconds=seconds,
        metric=value,
        status=status,
        solved=status == "solved",
    )
    return record, model


def long_term(run: _Run, models: Sequence[str]) -> tuple[dict, dict]:
    """Each model's ladder on each task, stopping at its first rung not solved (a capped one: then the largest lag is
    a lower bound); also the adding models at ``size.interpret_length`` (for the interpretability score)."""
    out, kept = {}, {}
    for task in TASKS:
        spec = TASKS[task]
        lengths = run.size.adding_lengths if task == "adding" else run.size.copy_lengths
        rows, largest, capped = {}, {}, {}
        for name in models:
            rows[name], largest[name], capped[name] = [], 0, False
            for length in lengths:
                record, model = _rung(run, name, task, length)
                rows[name].append(record)
                if task == "adding" and length == run.size.interpret_length:
                    kept[name] = (model, record)
                run.log(
                    f"  {task} {LABELS[name]} T={record['T']}: {record['metric']:.4f} {record['status']} "
                    f"after {record['steps']} steps, {record['seconds']:.1f} s"
                )
                if not record["solved"]:
                    capped[name] = record["status"] == "capped"
                    break
                largest[name] = record["lag"]
        out[task] = dict(
            lengths=list(lengths),
            lags=[spec.lag(n) for n in lengths],
            steps=run.size.steps,
            batch=BATCH,
            criterion=f"test MSE <= {ADDING_SOLVED:g}" if task == "adding" else f"bit error <= {COPY_SOLVED:g}",
            rows=rows,
            largest_lag=largest,
            lower_bound=capped,
        )
    return out, kept


# --- 2. training speed ---------------------------------------------------------------------------------------


def speed(run: _Run, models: Sequence[str], repeats: int) -> dict:
    """Median training-step time and forward latency at each T, interleaved across models. A model's cell is
    skipped where its ``repeats + 1`` steps (warm-up and timed) are modelled (:data:`STEP_COST`, no clock: the same
    rows in every run) to pass ``size.cell_seconds``."""
    size, rows = run.size, {name: [] for name in models}
    for T in size.lengths:
        seed_everything(run.seed)
        batch = adding_batch(BATCH, T, seed=run.seed, device=run.dev)
        single = adding_batch(1, T, seed=run.seed, device=run.dev).inputs  # (1, T, 2)
        steps, forwards = {}, {}
        for name in models:
            modelled = (repeats + 1) * STEP_COST[name].seconds(T)
            if modelled > size.cell_seconds:
                _skip(run, "speed", name, f"T={T}", f"{repeats + 1} steps modelled at {modelled:.3g} s > "
                      f"{size.cell_seconds:g} s")
                continue
            model = build(name, 2, 1, T).to(run.dev)
            optimizer = _optimizer(name, model)
            steps[name] = lambda m=model, o=optimizer, b=batch: _train_step("adding", m, o, b)
            forwards[name] = lambda m=model, x=single: _forward(m, x)
        for name in steps:  # warm-up, untimed
            steps[name]()
            forwards[name]()
        step_s = {name: [] for name in steps}
        forward_s = {name: [] for name in steps}
        names = list(steps)
        for i in range(repeats):
            for name in names[i % len(names) :] + names[: i % len(names)] if names else []:
                step_s[name].append(time_call(steps[name], run.dev))
                forward_s[name].append(time_call(forwards[name], run.dev))
        for name in names:
            median = statistics.median(step_s[name])
            rows[name].append(
                dict(
                    T=T,
                    step_ms=median * 1e3,
                    seq_per_s=BATCH / median,
                    step_ms_repeats=[s * 1e3 for s in step_s[name]],
                    latency_ms=statistics.median(forward_s[name]) * 1e3,
                    latency_ms_repeats=[s * 1e3 for s in forward_s[name]],
                )
            )
            run.log(f"  speed {LABELS[name]} T={T}: {BATCH / median:.0f} seq/s")
    exponents = {
        name: growth_exponent([r["T"] for r in rows[name]], [r["step_ms"] for r in rows[name]]) for name in models
    }
    return dict(
        lengths=list(size.lengths),
        batch=BATCH,
        repeats=repeats,
        rows=rows,
        time_exponent=exponents,
    )


@torch.no_grad()
def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    y = model(x)
    model.train()
    return y


def time_to_solve(data: dict) -> dict[str, dict[int, tuple[float, int] | None]]:
    """``{model: {T: (seconds, steps) or None}}``: the training time and steps each adding rung took to be solved
    (None where it was not: failed, capped, or beyond the model's first rung not solved)."""
    rungs = data["long_term"]["adding"]
    out = {}
    for m in data["models"]:
        rows = {r["T"]: r for r in rungs["rows"][m]}
        out[m] = {
            T: (rows[T]["seconds"], rows[T]["steps"]) if T in rows and rows[T]["solved"] else None
            for T in rungs["lengths"]
        }
    return out


# --- 3. memory footprint -------------------------------------------------------------------------------------

#: GiB: a memory cell whose peak, projected from the model's previous length, passes this is skipped (the CPU machine
#: has 24 GiB, shared with other work).
MEMORY_LIMIT_GIB = 6.0


def memory(run: _Run, models: Sequence[str]) -> dict:
    """Peak memory of one training step (forward and backward) against T, and its growth exponent. A model's
    lengths stop where its step's modelled cost (:data:`STEP_COST`, no clock: the same rows in every run) passes
    ``size.cell_seconds`` or its peak, grown quadratically from the previous length, passes the memory limit."""
    size, rows, method = run.size, {name: [] for name in models}, None
    for name in models:
        previous = None  # (T, peak bytes) at the model's previous length
        for T in size.memory_lengths:
            modelled = STEP_COST[name].seconds(T)
            grown = None if previous is None else previous[1] * (T / previous[0]) ** 2 / 2**30  # the worst growth
            if modelled > size.cell_seconds or (grown is not None and grown > MEMORY_LIMIT_GIB):
                _skip(
                    run,
                    "memory",
                    name,
                    f"T={T}",
                    f"a step modelled at {modelled:.3g} s > {size.cell_seconds:g} s"
                    if modelled > size.cell_seconds
                    else f"projected {grown:.1f} GiB (from T={previous[0]}) > {MEMORY_LIMIT_GIB:g} GiB",
                )
                break
            seed_everything(run.seed)
            model = build(name, 2, 1, T).to(run.dev)
            batch = adding_batch(BATCH, T, seed=run.seed, device=run.dev)

            def step(model: nn.Module = model, batch=batch) -> None:
                for p in model.parameters():
                    p.grad = None  # each call allocates its gradients: a training step's real peak
                loss("adding", model, batch).backward()

            step()  # warm-up: lazy first-call allocations are not the step's peak
            peak, method = peak_memory(step, run.dev)
            rows[name].append(dict(T=T, peak_mib=peak / 2**20))
            previous = (T, peak)
        run.log(f"  memory {LABELS[name]}: " + ", ".join(f"T={r['T']} {r['peak_mib']:.1f} MiB" for r in rows[name]))
    exponents = {
        name: growth_exponent([r["T"] for r in rows[name]], [r["peak_mib"] for r in rows[name]]) for name in models
    }
    return dict(lengths=list(size.memory_lengths), batch=BATCH, method=method, rows=rows, exponent=exponents)


# --- 4. interpretability -------------------------------------------------------------------------------------


def interpretability(run: _Run, models: Sequence[str], kept: dict) -> dict:
    """Ground-truth score of Integrated Gradients on the adding models trained at ``size.interpret_length``."""
    from memlib import interpret  # captum is imported only here

    T = run.size.interpret_length
    test = adding_batch(TEST_SIZE, T, seed=run.seed + 1000, device=run.dev)
    marks = test.inputs[..., 1]  # (B, T): the two marked steps of each sequence
    rows = {}
    for name in models:
        if name in kept:
            model, record = kept[name]
        else:  # its ladder stopped below T: train one for this score
            record, model = _rung(run, name, "adding", T, "interpretability")
        attribution = interpret.attribute(LastOutput(model), test.inputs, "integrated_gradients", n_steps=32)
        score = interpret.ground_truth_score(attribution, marks, reduce="l1")
        rows[name] = dict(score=score, test_mse=record["metric"], solved=record["solved"])
        run.log(f"  interpretability {LABELS[name]}: {score:.3f} (test MSE {record['metric']:.4f})")
    return dict(T=T, method="integrated_gradients", reduce="l1", n_steps=32, sequences=TEST_SIZE, rows=rows)


# --- the suite -------------------------------------------------------------------------------------------------

SECTIONS = ("long_term", "speed", "memory", "interpretability")


def summary(data: dict) -> dict:
    """What :func:`~memlib.advise.advise` reads: per model, the largest lags solved and [T, value] lists."""
    models = {}
    for name in data["models"]:
        entry: dict[str, Any] = dict(label=LABELS[name], params=data["params"][name])
        if "long_term" in data:
            entry["largest_lag"] = {task: data["long_term"][task]["largest_lag"][name] for task in TASKS}
        if "speed" in data:
            rows = data["speed"]["rows"][name]
            entry["step_ms"] = [[r["T"], r["step_ms"]] for r in rows]
            entry["latency_ms"] = [[r["T"], r["latency_ms"]] for r in rows]
        if "memory" in data:
            entry["peak_mib"] = [[r["T"], r["peak_mib"]] for r in data["memory"]["rows"][name] if r["peak_mib"] > 0]
        if "interpretability" in data:
            row = data["interpretability"]["rows"][name]
            entry["interpretability"] = row["score"] if row["solved"] else None
        models[name] = entry
    return dict(batch=BATCH, models=models)


def check_size(size: object) -> Size:
    """``size`` if it is a valid :class:`Size`, else a ``TypeError`` or ``ValueError`` that names the field, what it
    must be and what it is: ``steps`` and ``repeats`` positive ints; every ladder and measured length an int (at
    least 2 for an adding or measured ``T``, 1 for a copy ``L``), none repeated, in increasing order;
    ``interpret_length`` an int >= 2; ``rung_seconds`` a finite number of modelled seconds > 0 (a rung's budget);
    ``cell_seconds`` a finite number of seconds >= 0.

    >>> check_size(SIZES["quick"]) is SIZES["quick"]
    True
    >>> check_size(SIZES["quick"]._replace(rung_seconds=0))
    Traceback (most recent call last):
    ...
    ValueError: compare: expected Size.rung_seconds as a finite number of modelled seconds > 0, got 0
    """
    if not isinstance(size, Size):
        fail("compare", f"a Size with the fields {', '.join(Size._fields)}", type(size).__name__, TypeError)
    least = dict(adding_lengths=2, copy_lengths=1, lengths=2, memory_lengths=2)
    for field, low in least.items():
        values = getattr(size, field)
        if (
            not isinstance(values, (tuple, list))
            or not values
            or any(not is_int(v) or v < low for v in values)
            or any(b <= a for a, b in zip(values, values[1:], strict=False))
        ):
            fail("compare", f"Size.{field} as a non-empty increasing tuple of ints >= {low}", repr(values))
    for field in ("steps", "repeats", "interpret_length"):
        low = 2 if field == "interpret_length" else 1
        check_int("compare", field, getattr(size, field), low=low, expected=f"Size.{field} as an int >= {low}")
    check_float("compare", "rung_seconds", size.rung_seconds, low=0, low_open=True, finite=True,
                expected="Size.rung_seconds as a finite number of modelled seconds > 0")
    check_float("compare", "cell_seconds", size.cell_seconds, low=0, finite=True,
                expected="Size.cell_seconds as a finite number of seconds >= 0")
    return size


def measure(
    size: str | Size = "quick",
    *,
    models: Sequence[str] = MODELS,
    sections: Sequence[str] = SECTIONS,
    repeats: int | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run the chosen sections for the chosen models; the JSON-ready results (without the machine)."""
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"compare: expected size in {sorted(SIZES)} or a Size, got {size!r}")
        size_name, size = size, SIZES[size]
    elif isinstance(size, Size):
        size_name = "custom"
        check_size(size)
    else:
        raise TypeError(f"compare: expected size as a name in {sorted(SIZES)} or a Size, got {type(size).__name__}")
    unknown = [m for m in models if m not in MODELS] if not isinstance(models, str) else [models]
    if unknown or not models:
        raise ValueError(
            f"compare: expected models from {MODELS}, got {list(models) if not isinstance(models, str) else models!r}"
        )
    bad = [s for s in sections if s not in SECTIONS] if not isinstance(sections, str) else [sections]
    if bad or not sections:
        raise ValueError(f"compare: expected sections from {SECTIONS}, got {sections!r}")
    repeats = size.repeats if repeats is None else repeats
    check_int("compare", "repeats", repeats, low=1, expected="repeats as a positive int")
    run = _Run(size, pick_device(device), seed, log or _quiet, [])
    # Vanishing signals underflow to denormal floats, which some CPUs process 10-100x slower (chapter 2, RNN):
    # flushed during the run, so that no model's speed depends on how close its gradients sit to zero.
    with flushed_denormals():
        return _measure(run, size, size_name, models, sections, repeats, seed)


@contextlib.contextmanager
def flushed_denormals() -> Iterator[None]:
    """Denormal floats flushed to zero inside the block (where the CPU supports it), the caller's setting after."""
    before = (torch.tensor([1e-310], dtype=torch.float64) * 1.0).item() == 0.0  # already flushed?
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def _measure(
    run: _Run, size: Size, size_name: str, models: list[str], sections: Sequence[str], repeats: int, seed: int
) -> dict:
    models = [m for m in MODELS if m in models]
    started = time.perf_counter()
    data: dict[str, Any] = dict(
        suite="compare",
        size=size_name,
        settings=dict(
            **{k: list(v) if isinstance(v, tuple) else v for k, v in size._asdict().items()},
            batch=BATCH,
            hidden=HIDDEN,
            d_model=D_MODEL,
            heads=HEADS,
            layers=LAYERS,
            linformer_k=LINFORMER_K,
            ntm_slots=NTM_SLOTS,
            ntm_width=NTM_WIDTH,
            copy_bits=COPY_BITS,
            lr=dict(LR),
            step_cost={m: cost._asdict() for m, cost in STEP_COST.items()},  # ms: what fixes each budget
            adding_solved=ADDING_SOLVED,
            copy_solved=COPY_SOLVED,
            test_size=TEST_SIZE,
            seed=seed,
            threads=torch.get_num_threads(),
        ),
        device=str(run.dev),
        torch=torch.__version__,
        models=models,
        params={m: parameter_count(build(m, 2, 1, size.lengths[0])) for m in models},
    )
    kept: dict = {}
    if "long_term" in sections:
        run.log("long-term dependencies")
        data["long_term"], kept = long_term(run, models)
    if "speed" in sections:
        run.log("training speed")
        data["speed"] = speed(run, models, repeats)
    if "memory" in sections:
        run.log("memory footprint")
        data["memory"] = memory(run, models)
    if "interpretability" in sections:
        run.log("interpretability")
        data["interpretability"] = interpretability(run, models, kept)
    synchronize(run.dev)
    data["skipped"] = run.skipped
    data["seconds"] = time.perf_counter() - started
    data["summary"] = summary(data)
    return data


def _fmt(value: float | None, spec: str, missing: str = "--") -> str:
    return missing if value is None else format(value, spec)


def tables(data: dict) -> str:
    """The results as text tables, one per section present."""
    s, models = data["settings"], data["models"]
    lines = [
        f"compare ({data['size']}): {data['device']}, torch {data['torch']}, {s['threads']} threads, "
        f"batch {s['batch']}, "
        f"seed {s['seed']}; {data['seconds']:.0f} s",
        "params: " + ", ".join(f"{LABELS[m]} {data['params'][m]:,}" for m in models),
    ]
    if "long_term" in data:
        lt = data["long_term"]
        lines += [
            "",
            f"long-term dependencies: largest lag solved in at most {s['steps']} steps of {s['batch']} per rung, "
            f"fewer where a rung's modelled cost passes {s['rung_seconds']:g} s "
            f"(adding: {lt['adding']['criterion']}; copy: {lt['copy']['criterion']}); held-out metric per rung",
        ]
        for task in TASKS:
            rungs = lt[task]
            head = f"{task + ' T':<12}" + "".join(
                f"{T if task == 'adding' else 2 * T + 2:>9}" for T in rungs["lengths"]
            )
            lines.append(head + f"{'lag':>9}")
            for m in models:
                cells = {r["length"]: r for r in rungs["rows"][m]}
                row = "".join(
                    f"{'':>9}"
                    if n not in cells
                    else f"{cells[n]['metric']:>8.4f}" + dict(solved="*", capped="+", failed=" ")[cells[n]["status"]]
                    for n in rungs["lengths"]
                )
                bound = ">=" if rungs["lower_bound"][m] else ""
                lines.append(f"{LABELS[m]:<12}{row}{bound + str(rungs['largest_lag'][m]):>9}")
        lines.append(
            f"(* solved; + capped: a step budget cut below {s['steps']} by the rung's modelled cost, spent "
            "before the rung was solved: the lag is a lower bound; a ladder stops at its first rung not solved)"
        )
    if "speed" in data:
        sp = data["speed"]
        Ts = sp["lengths"]
        lines += [
            "",
            f"training speed: sequences/s (median of {sp['repeats']} interleaved steps) and forward latency of "
            "one sequence (ms)",
        ]
        lines.append(
            f"{'model':<12}"
            + "".join(f"{'seq/s ' + str(T):>12}" for T in Ts)
            + "".join(f"{'lat ' + str(T):>10}" for T in Ts)
        )
        for m in models:
            cells = {r["T"]: r for r in sp["rows"][m]}
            seq = "".join(f"{_fmt(cells[T]['seq_per_s'] if T in cells else None, '.0f'):>12}" for T in Ts)
            lat = "".join(f"{_fmt(cells[T]['latency_ms'] if T in cells else None, '.2f'):>10}" for T in Ts)
            lines.append(f"{LABELS[m]:<12}{seq}{lat}")
    if "long_term" in data:
        solve = time_to_solve(data)
        Ts = data["long_term"]["adding"]["lengths"]
        lines += [
            "",
            f"time to reach test MSE <= {ADDING_SOLVED:g} on adding: seconds of training (steps); "
            "-- where the ladder stopped before",
        ]
        lines.append(f"{'model':<12}" + "".join(f"{'T=' + str(T):>15}" for T in Ts))
        for m in models:
            lines.append(
                f"{LABELS[m]:<12}"
                + "".join(
                    f"{'--' if solve[m].get(T) is None else f'{solve[m][T][0]:.1f} ({solve[m][T][1]})':>15}" for T in Ts
                )
            )
    if "memory" in data:
        mem = data["memory"]
        Ts = mem["lengths"]
        lines += [
            "",
            f"memory footprint: peak MiB of one training step, batch {mem['batch']} ({mem['method']}); "
            "b: fitted exponent of peak ~ T^b",
        ]
        lines.append(f"{'model':<12}" + "".join(f"{T:>9}" for T in Ts) + f"{'b':>7}")
        for m in models:
            cells = {r["T"]: r["peak_mib"] for r in mem["rows"][m]}
            lines.append(
                f"{LABELS[m]:<12}"
                + "".join(f"{_fmt(cells.get(T), '.1f'):>9}" for T in Ts)
                + f"{_fmt(mem['exponent'][m], '.2f'):>7}"
            )
    if "interpretability" in data:
        it = data["interpretability"]
        lines += [
            "",
            f"interpretability: fraction of {it['sequences']} held-out adding sequences (T={it['T']}) whose two "
            f"most attributed steps ({it['method']}, L1) are the marked ones; counts only where solved",
        ]
        for m in models:
            row = it["rows"][m]
            state = (
                "--" if row["solved"] is None else ("solved" if row["solved"] else "NOT solved: score not meaningful")
            )
            lines.append(
                f"{LABELS[m]:<12}{_fmt(row['score'], '.3f'):>7}   test MSE {_fmt(row['test_mse'], '.4f')}, {state}"
            )
    if data.get("skipped"):
        lines += [
            "",
            "skipped: " + "; ".join(f"{k['section']} {LABELS[k['model']]} {k['at']}" for k in data["skipped"]),
        ]
    return "\n".join(lines)


def run(
    repeats: int | None = None,
    quick: bool = False,
    *,
    device: str = "auto",
    sections: Sequence[str] = SECTIONS,
    size: str | None = None,
    log: Callable[[str], None] | None = print,
) -> Report:
    """The suite as ``python -m memlib.bench compare`` runs it: ``size`` (``smoke``, ``quick``, ``full``), else
    ``quick`` picks the ``quick`` size and its absence ``full``. Progress goes to ``log`` as it runs."""
    chosen = size if size is not None else ("quick" if quick else "full")
    data = measure(chosen, repeats=repeats, device=device, sections=sections, log=log)
    return Report(tables(data), data)


def diff(a: dict, b: dict) -> dict:
    """Two results of this suite side by side: for each model and length measured in both, the ratio b / a of
    sequences per second, latency and peak memory; and whether the largest lags agree. ``a`` and ``b`` are
    the dicts :func:`measure` returns (or the JSON the command line writes)."""
    for name, data in (("a", a), ("b", b)):
        if not isinstance(data, dict) or data.get("suite") != "compare":
            raise ValueError(
                f"diff: expected {name} to be a result of the compare suite, got "
                f"{type(data).__name__}{'' if not isinstance(data, dict) else ' of suite ' + repr(data.get('suite'))}"
            )
    models = [m for m in a["models"] if m in b["models"]]
    out: dict[str, Any] = dict(models=models, speed={}, memory={}, long_term={})
    if "speed" in a and "speed" in b:
        for m in models:
            rows_a = {r["T"]: r for r in a["speed"]["rows"][m]}
            out["speed"][m] = [
                dict(
                    T=r["T"],
                    seq_per_s=r["seq_per_s"] / rows_a[r["T"]]["seq_per_s"],
                    latency_ms=r["latency_ms"] / rows_a[r["T"]]["latency_ms"],
                )
                for r in b["speed"]["rows"][m]
                if r["T"] in rows_a
            ]
    if "memory" in a and "memory" in b:
        for m in models:
            rows_a = {r["T"]: r["peak_mib"] for r in a["memory"]["rows"][m]}
            out["memory"][m] = [
                dict(T=r["T"], peak_mib=r["peak_mib"] / rows_a[r["T"]])
                for r in b["memory"]["rows"][m]
                if rows_a.get(r["T"])
            ]
    if "long_term" in a and "long_term" in b:
        for task in TASKS:
            la, lb = a["long_term"][task]["largest_lag"], b["long_term"][task]["largest_lag"]
            out["long_term"][task] = {m: (la[m], lb[m]) for m in models}
    return out


# --- checking ratings against the measurements ------------------------------------------------------------------

METRICS = ("long_term", "training_speed", "memory_footprint", "interpretability")
#: Ratio bands within which two models count as comparable, per metric.
TIE = dict(long_term=2.0, training_speed=1.25, memory_footprint=1.25, interpretability=0.1)  # "comparable" bands


def measured(data: dict, metric_name: str) -> dict[str, dict[str, float | None]]:
    """``{condition: {model: value}}`` for one metric, larger is better: largest lag per task; sequences per second
    per T; minus peak MiB per T; the interpretability score (None where the model did not solve its task)."""
    models = data["models"]
    if metric_name == "long_term":
        return {task: dict(data["long_term"][task]["largest_lag"]) for task in TASKS}
    if metric_name == "training_speed":
        rows = data["speed"]["rows"]
        return {
            f"T={T}": {m: next((r["seq_per_s"] for r in rows[m] if r["T"] == T), None) for m in models}
            for T in data["speed"]["lengths"]
        }
    if metric_name == "memory_footprint":
        rows = data["memory"]["rows"]
        return {
            f"T={T}": {m: next((-r["peak_mib"] for r in rows[m] if r["T"] == T), None) for m in models}
            for T in data["memory"]["lengths"]
        }
    if metric_name == "interpretability":
        rows = data["interpretability"]["rows"]
        return {
            f"T={data['interpretability']['T']}": {m: rows[m]["score"] if rows[m]["solved"] else None for m in models}
        }
    raise ValueError(f"measured: expected a metric in {METRICS}, got {metric_name!r}")


def _order(metric_name: str, a: float, b: float) -> int:
    """+1 if ``a`` is clearly better than ``b``, -1 if clearly worse, 0 if comparable (within the TIE band)."""
    tie = TIE[metric_name]
    if metric_name == "interpretability":
        return 0 if abs(a - b) <= tie else (1 if a > b else -1)
    if metric_name == "memory_footprint":
        a, b = -b, -a  # compare the peaks themselves: a is better when its peak is smaller
    if metric_name == "long_term" and min(a, b) == 0:
        return 0 if a == b else (1 if a > b else -1)
    ratio = a / b
    return 0 if 1 / tie <= ratio <= tie else (1 if ratio > 1 else -1)


def check_ratings(data: dict, ratings: dict[str, dict[str, int]]) -> dict[str, dict[str, dict]]:
    """Each rating against the measurements, pair by pair.

    ``ratings[metric][model]`` is a claimed level (a larger int is a better claim: more range, faster, a smaller
    footprint, more interpretable). For every condition (a task or a length) of the metric, each pair of rated
    models with different levels must be measured in that order (clearly, beyond the :data:`TIE` band) and each
    pair with the same level must be comparable (within it). A model's cell **holds** where every pair it is part
    of agrees at every condition, **holds with a condition** where that is so at some conditions, **does not
    hold** at none, and is **untested** where no condition has its number.

    Returns ``{metric: {model: dict(verdict, holds_at, fails_at, disagreements)}}``; ``disagreements`` names each
    failing pair and condition.
    """
    if not isinstance(ratings, dict) or not ratings:
        raise ValueError(f"check_ratings: expected ratings as {{metric: {{model: level}}}}, got {ratings!r}")
    out = {}
    for metric_name, levels in ratings.items():
        if metric_name not in METRICS:
            raise ValueError(f"check_ratings: expected metrics from {METRICS}, got {metric_name!r}")
        unknown = [m for m in levels if m not in data["models"]]
        if unknown:
            raise ValueError(f"check_ratings: {metric_name} rates {unknown}, which the results do not hold")
        values = measured(data, metric_name)
        cells = {}
        for m in levels:
            holds_at, fails_at, disagreements = [], [], []
            for condition, row in values.items():
                if row.get(m) is None:
                    continue
                ok = True
                for other in levels:
                    if other == m or row.get(other) is None:
                        continue
                    claimed = (levels[m] > levels[other]) - (levels[m] < levels[other])
                    found = _order(metric_name, row[m], row[other])
                    if claimed != found:
                        ok = False
                        word = {1: "better than", 0: "comparable to", -1: "worse than"}
                        disagreements.append(
                            f"{condition}: rated {word[claimed]} {LABELS[other]}, measured {word[found]}"
                        )
                (holds_at if ok else fails_at).append(condition)
            if not holds_at and not fails_at:
                verdict = "untested"
            elif not fails_at:
                verdict = "holds"
            elif holds_at:
                verdict = "holds with a condition"
            else:
                verdict = "does not hold"
            cells[m] = dict(verdict=verdict, holds_at=holds_at, fails_at=fails_at, disagreements=disagreements)
        out[metric_name] = cells
    return out
