"""The ``memory`` suite: NTM, DNC and LSTM training speed on copy (eager, compiled, a peer), and step time against N.

One training step: forward over a copy batch (:func:`memlib.tasks.sequences.copy_batch`, ``B`` sequences of
``2L + 2`` steps, ``K`` bits), ``binary_cross_entropy_with_logits`` of the last ``L`` outputs against the
targets, backward; gradients reset to None each call, no optimizer step. The models, all with a controller
of ``CONTROLLER`` LSTM units, input ``K + 2`` and output ``K``:

- ``ntm``: :class:`~memlib.memory.ntm.NTM`, LSTM controller, ``W = 20`` and one read head (the paper's copy setting,
  Graves et al. 2014, section 4.1), shifts -1, 0, +1;
- ``dnc``: :class:`~memlib.memory.dnc.DNC`, the module's ``W = 16`` and two read heads;
- ``lstm``: :class:`~memlib.recurrent.LSTM` of the same width as the controllers, and a linear readout: the baseline
  has the controller without the memory and heads (same width, not the same parameter count: the tables
  print each model's parameters).

Part 0 (fast, issue 22): at ``L = FAST_LENGTH``, ``N = SLOTS`` and each batch in ``FAST_BATCHES``, one run times,
interleaved: the NTM and the DNC eager and fast (:func:`~memlib.memory.fast.fast_steps`: the step compiled by
``torch.compile``), the LSTM, the PyPI ``dnc`` package at the DNC's sizes where it is importable (an optional extra:
``pip install --no-deps dnc``; its copy output is ``K + 2`` wide, scored on the first ``K``), and an A/A control: the
eager NTM timed twice as two variants. The A/A band is the widest per-repeat ratio of that pair; a ratio inside it is
printed "within noise". Compile time is what the first two calls of a fast step took over the eager step's (the
second call compiles the graphs for a state that needs gradients); inductor's on-disk cache makes it small in a
second process. ``--sections fast`` runs this part alone.

Part 1 (lengths): every model at copy lengths ``L`` in ``LENGTHS`` with ``N = SLOTS`` slots; median ms per
step, sequences per second (``B`` / median time), peak memory, and ratios to the LSTM. Part 2 (memory size):
the NTM and the DNC at ``L = SIZE_LENGTH`` against ``N`` in ``SIZES``, with growth exponents of time and memory
in ``N`` (least-squares slopes of log(value) on log(N), :func:`memlib.bench.attention.growth_exponent`). The
DNC's temporal link matrix is N x N (Graves et al. 2016, Methods, "Temporal memory linkage"), the NTM's
largest state N x W, so the DNC's memory should grow faster in N: the table reports whether it did.

Within each repeat the models run interleaved, in a rotating order, so they share the machine's noise; a
time ratio is the median of the per-repeat ratios. Peak memory is one more call of each, measured by
:mod:`memlib.profiling` (it says what it counts). A model is skipped at a setting (``--``, with the reason
in the JSON) where its previous setting's time or memory, scaled by the growth bound (linear in L,
quadratic in N), passes ``STEP_LIMIT_S`` or ``MEMORY_LIMIT_GIB``.

Shapes: ``B`` batch, ``L`` copy length, ``T = 2L + 2`` steps, ``K`` bits, ``N`` memory slots, ``W`` slot width,
``R`` read heads.
"""

from __future__ import annotations

import importlib.util
import statistics
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from memlib.bench import Report, torch_threads
from memlib.bench.attention import growth_exponent
from memlib.claims import noise_band, target_met, within_noise
from memlib.memory import DNC, NTM, fast
from memlib.profiling import peak_memory, time_call
from memlib.recurrent import LSTM
from memlib.tasks.sequences import CopyBatch, copy_batch
from memlib.train import device, seed_everything

B = 16  # batch: small, as in the NTM and DNC papers' copy training
BITS = 8  # K, bits per copy vector (Graves et al. 2014, section 4.1)
CONTROLLER = 100  # LSTM units of every controller and of the baseline (the NTM paper's copy controller)
NTM_SIZES = dict(memory_width=20, read_heads=1, shift_range=1)  # the paper's copy setting
DNC_SIZES = dict(memory_width=16, read_heads=2)  # the module's defaults
SLOTS = 128  # N in part 1: the NTM paper's copy memory
LENGTHS = (10, 20, 40)  # copy lengths L in part 1
SIZE_LENGTH = 20  # L in part 2
SIZES = (32, 128, 512)  # memory slots N in part 2
QUICK_LENGTHS, QUICK_SIZES = (10, 20), (32, 128)
FAST_BATCHES = (1, 16)  # part 0's batches: one sequence (the latency case) and the training batch
FAST_LENGTH = 10  # L in part 0 (T = 22 steps), N = SLOTS: the setting of issue 22's "52x an LSTM step"
PEER = "dnc"  # the PyPI package `dnc` (pytorch-dnc), timed where importable: pip install --no-deps dnc
SECTIONS = ("fast", "lengths", "sizes")
MODELS = ("ntm", "dnc", "lstm")
MEMORY_MODELS = ("ntm", "dnc")
REFERENCE = "lstm"  # part 1's ratios are to this model
# A step is ~1,000 small ops per time step (40k at L=20); on 2 shared CPU cores torch's intra-op threads spin against
# the other processes: an NTM step (L=10, N=128) took 31 s with 2 threads, 0.26 s with 1 (load average 9).
THREADS = 1
MEMORY_LIMIT_GIB = 6.0  # skip a cell whose extrapolated peak passes this (the CPU machine has 24 GiB, shared)
STEP_LIMIT_S = 60.0  # skip a cell whose extrapolated step passes this: the full suite must end in minutes
DEFAULT_REPEATS = 3  # the --quick run took 36 s at 1 thread on 2 cores shared at load average 9
WARMUP = 1


class LSTMReadout(nn.Module):
    """The baseline: :class:`~memlib.recurrent.LSTM` (batch first) and a linear readout,
    ``x`` (B, T, I) -> ((B, T, O), state)."""

    def __init__(self, input_size: int, output_size: int, hidden_size: int):
        super().__init__()
        self.lstm = LSTM(input_size, hidden_size, batch_first=True)
        self.output = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h, state = self.lstm(x)  # (B, T, H)
        return self.output(h), state  # (B, T, O)


def _models(names: Sequence[str], N: int, dev: torch.device) -> dict[str, nn.Module]:
    seed_everything(0)
    inputs, outputs = BITS + 2, BITS  # data bits and the two delimiters in; the bits out
    make = {
        "ntm": lambda: NTM(inputs, outputs, controller_size=CONTROLLER, memory_slots=N, **NTM_SIZES),
        "dnc": lambda: DNC(inputs, outputs, controller_size=CONTROLLER, memory_slots=N, **DNC_SIZES),
        "lstm": lambda: LSTMReadout(inputs, outputs, CONTROLLER),
    }
    return {name: make[name]().to(dev) for name in names}


def _training_step(model: nn.Module, batch: CopyBatch) -> Callable[[], None]:
    params = list(model.parameters())
    L = batch.targets.shape[1]

    def step() -> None:
        for p in params:
            p.grad = None  # each call allocates its gradients: a training step's real peak
        y, _ = model(batch.inputs)  # (B, 2L+2, K)
        F.binary_cross_entropy_with_logits(y[:, -L:], batch.targets).backward()  # scored on the last L steps

    return step


def _skip_reason(previous: dict | None, size: int, key: str, power: int) -> str | None:
    """Why not to run a model at ``size``, from its last measured cell scaled by (size / previous)^power."""
    if previous is None:
        return None
    growth = (size / previous[key]) ** power
    seconds, gib = previous["seconds"] * growth, previous["peak_mib"] * growth / 1024
    how = f"(from {key}={previous[key]}, x({key} ratio)^{power})"
    if gib > MEMORY_LIMIT_GIB:
        return f"estimated peak {gib:.1f} GiB > {MEMORY_LIMIT_GIB} GiB {how}"
    if seconds > STEP_LIMIT_S:
        return f"estimated step {seconds:.0f} s > {STEP_LIMIT_S:.0f} s {how}"
    return None


def _measure(
    models: dict[str, nn.Module], L: int, dev: torch.device, repeats: int, skipped: dict[str, str]
) -> dict:
    """Time the models not skipped, interleaved in a rotating order; then one call each for peak memory."""
    batch = copy_batch(B, L, BITS, seed=0, device=dev)
    names = [m for m in models if m not in skipped]
    steps = {m: _training_step(models[m], batch) for m in names}
    for _ in range(WARMUP):
        for m in names:
            steps[m]()
    seconds: dict[str, list[float]] = {m: [] for m in names}
    for i in range(repeats):
        shift = i % len(names) if names else 0
        for m in names[shift:] + names[:shift]:  # rotate which goes first
            seconds[m].append(time_call(steps[m], dev))
    peaks = {m: peak_memory(steps[m], dev) for m in names}
    median_s = {m: statistics.median(s) for m, s in seconds.items()}
    return dict(
        median_ms={m: t * 1e3 for m, t in median_s.items()},
        sequences_per_s={m: B / t for m, t in median_s.items()},
        peak_mib={m: peaks[m][0] / 2**20 for m in names},
        skipped=skipped,
        memory_method=next(iter(peaks.values()))[1] if peaks else None,
        seconds=seconds,
    )


def _length_row(L: int, dev: torch.device, repeats: int, last: dict[str, dict]) -> dict:
    models = _models(MODELS, SLOTS, dev)
    skipped = {m: r for m in models if (r := _skip_reason(last.get(m), L, "L", 1)) is not None}
    row = dict(L=L, T=2 * L + 2, N=SLOTS, **_measure(models, L, dev, repeats, skipped))
    seconds, peak = row["seconds"], row["peak_mib"]
    time_ratio, memory_ratio = {}, {}
    if REFERENCE in seconds:
        ref = seconds[REFERENCE]
        time_ratio = {m: statistics.median(s / r for s, r in zip(seconds[m], ref, strict=True)) for m in seconds}
        memory_ratio = {m: peak[m] / peak[REFERENCE] if peak[REFERENCE] > 0 else None for m in peak}
    for m in seconds:
        last[m] = dict(L=L, seconds=row["median_ms"][m] / 1e3, peak_mib=peak[m])
    return dict(row, time_ratio_to_lstm=time_ratio, memory_ratio_to_lstm=memory_ratio)


def _size_row(N: int, dev: torch.device, repeats: int, last: dict[str, dict]) -> dict:
    models = _models(MEMORY_MODELS, N, dev)
    skipped = {m: r for m in models if (r := _skip_reason(last.get(m), N, "N", 2)) is not None}
    row = dict(N=N, L=SIZE_LENGTH, **_measure(models, SIZE_LENGTH, dev, repeats, skipped))
    for m in row["seconds"]:
        last[m] = dict(N=N, seconds=row["median_ms"][m] / 1e3, peak_mib=row["peak_mib"][m])
    return row


def _exponents(rows: list[dict]) -> dict[str, dict]:
    fits = {}
    for m in MEMORY_MODELS:
        measured = [r for r in rows if m in r["median_ms"]]
        sizes = [r["N"] for r in measured]
        fits[m] = dict(
            time=growth_exponent(sizes, [r["median_ms"][m] for r in measured]),
            memory=growth_exponent(sizes, [r["peak_mib"][m] for r in measured]),
            sizes=sizes,
        )
    return fits


def _fmt(value: float | None, spec: str) -> str:
    return "--" if value is None else format(value, spec)


def _grid(title: str, rows: list[dict], key: str, fmt: str) -> list[str]:
    lines = [title, f"{'model':<8}" + "".join(f"{'N=' + str(r['N']):>10}" for r in rows)]
    for m in MEMORY_MODELS:
        lines.append(f"{m:<8}" + "".join(f"{_fmt(r[key].get(m), fmt):>10}" for r in rows))
    return lines


def _growth_check(fits: dict[str, dict]) -> tuple[bool | None, str]:
    """Whether the DNC's memory exponent in N exceeded the NTM's (None where either was not fitted)."""
    dnc, ntm = fits["dnc"]["memory"], fits["ntm"]["memory"]
    label = "expected (the DNC's link matrix is N x N): DNC memory exponent in N > NTM's"
    if dnc is None or ntm is None:
        return None, f"{label}: not measured (needs two sizes for each)"
    faster = dnc > ntm
    says = "the DNC's memory grew faster in N" if faster else "the DNC's memory did not grow faster in N"
    return faster, f"{label}: measured {dnc:.2f} vs {ntm:.2f}, {'met' if faster else 'MISSED'}: {says}"


def _peer_available() -> bool:
    return importlib.util.find_spec(PEER) is not None


def _peer_model(dev: torch.device) -> nn.Module:
    """The PyPI ``dnc`` package's DNC at the DNC's sizes: one LSTM layer of ``CONTROLLER`` units, N x W memory."""
    import dnc as pypi_dnc  # an optional benchmark extra: installed with --no-deps, imported only here

    seed_everything(0)
    inputs = BITS + 2
    return pypi_dnc.DNC(
        inputs, CONTROLLER, num_hidden_layers=1, nr_cells=SLOTS, cell_size=DNC_SIZES["memory_width"],
        read_heads=DNC_SIZES["read_heads"], batch_first=True, gpu_id=0 if dev.type == "cuda" else -1,
    ).to(dev)


def _peer_step(model: nn.Module, batch: CopyBatch) -> Callable[[], None]:
    params = list(model.parameters())
    L, K = batch.targets.shape[1], batch.targets.shape[2]

    def step() -> None:
        for p in params:
            p.grad = None
        y, _ = model(batch.inputs, (None, None, None), reset_experience=True)  # (B, 2L+2, K+2): its output is I wide
        F.binary_cross_entropy_with_logits(y[:, -L:, :K], batch.targets).backward()

    return step


def _fast(step: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with fast.fast_steps(True):
            step()

    return run


def _fast_row(batch_size: int, dev: torch.device, repeats: int) -> dict:
    """Part 0 at one batch: eager and fast NTM and DNC, the LSTM, the PyPI DNC, and an A/A pair, interleaved."""
    models = _models(MODELS, SLOTS, dev)
    batch = copy_batch(batch_size, FAST_LENGTH, BITS, seed=0, device=dev)
    steps = {
        "ntm eager": _training_step(models["ntm"], batch),
        "ntm eager A/A": _training_step(models["ntm"], batch),
        "ntm fast": _fast(_training_step(models["ntm"], batch)),
        "dnc eager": _training_step(models["dnc"], batch),
        "dnc fast": _fast(_training_step(models["dnc"], batch)),
        "lstm": _training_step(models["lstm"], batch),
    }
    if _peer_available():
        steps["dnc peer"] = _peer_step(_peer_model(dev), batch)
    # The first call of a fast step compiles it (once per shape; the second call compiles the graphs for a state
    # that needs gradients): what it costs over the eager step is the compile time.
    first: dict[str, float] = {}
    for name, step in steps.items():
        first[name] = time_call(step, dev) + time_call(step, dev)
    compiled = fast._probe()  # False: no working compiler, the "fast" steps ran eager
    compile_s = {m: first[f"{m} fast"] - first[f"{m} eager"] for m in MEMORY_MODELS}
    names = list(steps)
    seconds: dict[str, list[float]] = {m: [] for m in names}
    for i in range(repeats):
        shift = i % len(names)
        for m in names[shift:] + names[:shift]:
            seconds[m].append(time_call(steps[m], dev))

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(seconds[a], seconds[b], strict=True))

    band = noise_band(seconds["ntm eager"], seconds["ntm eager A/A"])
    ratios = {
        "ntm fast / ntm eager": ratio("ntm fast", "ntm eager"),
        "dnc fast / dnc eager": ratio("dnc fast", "dnc eager"),
        "ntm eager / lstm": ratio("ntm eager", "lstm"),
        "ntm fast / lstm": ratio("ntm fast", "lstm"),
        "dnc eager / lstm": ratio("dnc eager", "lstm"),
        "dnc fast / lstm": ratio("dnc fast", "lstm"),
        "ntm eager A/A": ratio("ntm eager A/A", "ntm eager"),
    }
    if "dnc peer" in steps:
        ratios["dnc eager / dnc peer"] = ratio("dnc eager", "dnc peer")
        ratios["dnc fast / dnc peer"] = ratio("dnc fast", "dnc peer")
    within = {k: within_noise(r, band) for k, r in ratios.items()}
    targets = {  # issue 22's targets: met, missed, or within noise (the A/A band reaches across the limit)
        "ntm fast at least 3x faster than eager": target_met(ratios["ntm fast / ntm eager"], band, 1 / 3),
        "dnc fast at least 3x faster than eager": target_met(ratios["dnc fast / dnc eager"], band, 1 / 3),
        "ntm fast at most 10x the lstm": target_met(ratios["ntm fast / lstm"], band, 10),
    }
    return dict(
        B=batch_size, L=FAST_LENGTH, T=2 * FAST_LENGTH + 2, N=SLOTS, compiled=compiled,
        median_ms={m: statistics.median(s) * 1e3 for m, s in seconds.items()},
        first_two_calls_s=first, compile_s=compile_s, ratios=ratios, aa_band=band, within_noise=within, targets=targets,
        seconds=seconds,
    )


def _fast_lines(rows: list[dict]) -> list[str]:
    lines = [
        f"eager and fast (memlib.memory.fast_steps: torch.compile of the step) side by side, L={FAST_LENGTH}, "
        f"T={2 * FAST_LENGTH + 2}, N={SLOTS}; 'dnc peer' is the PyPI dnc package at the DNC's sizes "
        f"({'timed' if rows and 'dnc peer' in rows[0]['median_ms'] else 'not installed: pip install --no-deps dnc'})",
    ]
    for r in rows:
        if not r["compiled"]:
            lines.append(f"B={r['B']}: no working compiler here: 'fast' ran eager")
        lines.append(f"B={r['B']}  " + "  ".join(f"{m} {ms:.1f} ms" for m, ms in r["median_ms"].items()))
        lines.append(
            f"B={r['B']}  compile (first two calls over eager's): "
            + ", ".join(f"{m} {s:.1f} s" for m, s in r["compile_s"].items())
        )
        for name, value in r["ratios"].items():
            verdict = "within noise" if r["within_noise"][name] else ""
            lines.append(f"B={r['B']}  {name:<22}{value:>8.2f}x  {verdict}")
        lines.append(f"B={r['B']}  A/A band (max |ratio| of ntm eager against itself, per repeat): "
                     f"{1 / r['aa_band']:.2f}..{r['aa_band']:.2f}")
        verdicts = ", ".join(f"{t} {v.upper() if v == 'missed' else v}" for t, v in r["targets"].items())
        lines.append(f"B={r['B']}  targets: {verdicts}")
    return lines


def run(repeats: int, quick: bool = False, sections: Sequence[str] = SECTIONS) -> Report:
    dev = device("auto")
    lengths, sizes = (QUICK_LENGTHS, QUICK_SIZES) if quick else (LENGTHS, SIZES)
    with torch_threads(THREADS):
        threads = torch.get_num_threads()
        fast_rows = [_fast_row(b, dev, repeats) for b in FAST_BATCHES] if "fast" in sections else []
        last: dict[str, dict] = {}  # model: its last measured cell, to decide what the next setting can afford
        length_rows = [_length_row(L, dev, repeats, last) for L in lengths] if "lengths" in sections else []
        last = {}
        size_rows = [_size_row(N, dev, repeats, last) for N in sizes] if "sizes" in sections else []
    fits = _exponents(size_rows)
    grows_faster, check_line = _growth_check(fits)
    params = {m: sum(p.numel() for p in module.parameters()) for m, module in _models(MODELS, SLOTS, dev).items()}
    memory_method = next((r["memory_method"] for r in length_rows + size_rows if r["memory_method"]), None)

    lines = [
        f"memory: one training step on copy (forward over B={B} sequences (part 0: B in {FAST_BATCHES}) of 2L+2 steps, "
        f"K={BITS} bits, "
        f"BCE-with-logits on the last L outputs, backward); {dev}, torch {torch.__version__}, {threads} thread(s), "
        f"{repeats} interleaved repeats (median ms; ratios: median of per-repeat ratios); peak memory by "
        f"{memory_method or 'nothing (part 0 times only)'}",
        f"ntm: LSTM controller {CONTROLLER}, W={NTM_SIZES['memory_width']}, R={NTM_SIZES['read_heads']}, "
        f"shifts +-{NTM_SIZES['shift_range']}; dnc: controller {CONTROLLER}, W={DNC_SIZES['memory_width']}, "
        f"R={DNC_SIZES['read_heads']}; lstm: memlib.LSTM {CONTROLLER} + linear readout (the controllers' width)",
        f"parameters at N={SLOTS}: " + ", ".join(f"{m} {n:,}" for m, n in params.items()),
        "",
        *(_fast_lines(fast_rows) + [""] if fast_rows else []),
    ]
    if length_rows:
        lines += [
            f"copy length L (N={SLOTS})",
            f"{'L':>4}{'T':>5}  {'model':<6}| {'ms':>9}{'seq/s':>9}{'MiB':>9} | {'t/lstm':>8}{'mem/lstm':>9}",
        ]
    for r in length_rows:
        for m in MODELS:
            lines.append(
                f"{r['L']:>4}{r['T']:>5}  {m:<6}| {_fmt(r['median_ms'].get(m), '.1f'):>9}"
                f"{_fmt(r['sequences_per_s'].get(m), '.1f'):>9}{_fmt(r['peak_mib'].get(m), '.1f'):>9} | "
                f"{_fmt(r['time_ratio_to_lstm'].get(m), '.2f'):>8}{_fmt(r['memory_ratio_to_lstm'].get(m), '.2f'):>9}"
            )
    if size_rows:
        lines += ["", f"memory size N (L={SIZE_LENGTH}, T={2 * SIZE_LENGTH + 2})"]
        lines += _grid("time (median ms)", size_rows, "median_ms", ".1f") + [""]
        lines += _grid("peak memory (MiB)", size_rows, "peak_mib", ".1f") + [""]
        lines += [
            "growth exponents: slope of log(value) on log(N), least squares over the sizes measured",
            f"{'model':<8}{'time':>8}{'memory':>8}  sizes",
        ]
        for m in MEMORY_MODELS:
            f = fits[m]
            span = f"{f['sizes'][0]}..{f['sizes'][-1]}" if f["sizes"] else "--"
            lines.append(f"{m:<8}{_fmt(f['time'], '.2f'):>8}{_fmt(f['memory'], '.2f'):>8}  {span}")
    skipped = [(f"L={r['L']}", m, why) for r in length_rows for m, why in r["skipped"].items()]
    skipped += [(f"N={r['N']}", m, why) for r in size_rows for m, why in r["skipped"].items()]
    if skipped:
        lines += ["", "skipped (--):"] + [f"  {m} at {at}: {why}" for at, m, why in skipped]
    if size_rows:
        lines += ["", check_line]

    settings = dict(
        batch=B, bits=BITS, controller_size=CONTROLLER, ntm=NTM_SIZES, dnc=DNC_SIZES, lstm=dict(hidden=CONTROLLER),
        slots=SLOTS, lengths=list(lengths), size_length=SIZE_LENGTH, sizes=list(sizes),
        memory_limit_gib=MEMORY_LIMIT_GIB, step_limit_s=STEP_LIMIT_S, repeats=repeats, warmup=WARMUP,
        threads=threads, quick=quick, sections=list(sections), fast_batches=list(FAST_BATCHES),
        fast_length=FAST_LENGTH, peer=PEER if _peer_available() else None,
    )
    data = dict(
        suite="memory", settings=settings, torch=torch.__version__, device=str(dev), models=list(MODELS),
        parameters=params, reference=REFERENCE, exponents=fits, checks=dict(dnc_memory_grows_faster=grows_faster),
        fast_rows=fast_rows, length_rows=length_rows, size_rows=size_rows,
    )
    return Report("\n".join(lines), data)
