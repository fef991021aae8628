"""The ``attention`` suite: full, fused, sparse and low-rank attention, and an LSTM, against sequence length.

For every length ``n``, one training step (forward, ``sum`` of the output, backward; gradients reset to None
each call) of self-attention on (B, n, D) input with D = 64, 4 heads, batch first, by:

- ``materialised``: :class:`~memlib.attention.MultiHeadAttention` with ``need_weights=True`` (the reference path: the
  n x n weights are built, kept for backward and returned);
- ``nn_materialised``: ``torch.nn.MultiheadAttention`` with ``need_weights=True``, the same weights;
- ``fused``: :class:`~memlib.attention.MultiHeadAttention` with ``need_weights=False``
  (``F.scaled_dot_product_attention``);
- ``nn_fused``: ``torch.nn.MultiheadAttention`` with ``need_weights=False``;
- ``window``: :class:`~memlib.efficient.SlidingWindowAttention`, radius ``WINDOW`` (2 * 64 + 1 keys) and token 0 global;
- ``bigbird``: :class:`~memlib.efficient.BigBirdAttention`, blocks of ``BLOCK`` tokens, 3 window, 1 global,
  1 random block;
- ``linformer_k64`` ... : :class:`~memlib.efficient.LinformerAttention` with ``seq_len = n`` and k in ``KS``;
- ``lstm``: :class:`~memlib.recurrent.LSTM` of the same width (D -> D, one layer, torch's fused kernel).

The attention modules hold the same projections (one state dict). Within each repeat the methods run
interleaved, in a rotating order, so they share the machine's noise; a time ratio is the median of the
per-repeat ratios. Peak memory is one more call of each, measured by :mod:`memlib.profiling` (it says what it
counts). Growth exponents are least-squares slopes of log(value) against log(n) over the lengths measured.

A method is skipped at a length (shown as ``--``, with the reason in the JSON) where its previous length's
time or memory, scaled by (n / n_prev)^2, the steepest growth here, passes ``STEP_LIMIT_S`` or
``MEMORY_LIMIT_GIB``: ``n = 8192`` runs only where memory allows.

Targets (issue #4): Linformer with k=128 at n=4096 uses at least 8x less peak memory than materialised
attention (Wang et al. 2020, Table 3, report 14x); sliding-window memory grows with exponent at most 1.2;
memlib's MultiHeadAttention within 1.1x of torch.nn's time (median of the per-repeat ratios over every n).
A time target is judged against an A/A control, torch's fused step timed a second time in the same run: it is
met or missed only where the widest A/A band leaves no doubt, else "within noise" (``memlib.claims.target_met``).

:func:`sweep` measures any subset of the methods on any lengths (chapter 12 runs a smaller grid in the page) and
:func:`tables` formats its rows as the command prints them.

Shapes: ``B`` batch, ``n`` sequence length, ``D`` model width, ``H`` heads, ``k`` Linformer's projected length.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

import torch
from torch import nn

from memlib.attention import MultiHeadAttention
from memlib.bench import Report
from memlib.claims import noise_band, target_met
from memlib.efficient import BigBirdAttention, LinformerAttention, SlidingWindowAttention
from memlib.profiling import peak_memory, time_call
from memlib.recurrent import LSTM
from memlib.train import device, seed_everything

B, D, H = 1, 64, 4  # batch, model width, heads (head width 16): small, so n dominates
LENGTHS = (256, 512, 1024, 2048, 4096, 8192)  # 8192 only where memory allows (see MEMORY_LIMIT_GIB)
QUICK_LENGTHS = (256, 512, 1024)
KS = (64, 128, 256)  # Linformer's projected lengths
QUICK_KS = (128,)  # the target's k
WINDOW = 64  # sliding-window radius: 2 * 64 + 1 keys per query
GLOBAL_TOKENS = (0,)  # one global token, like a [CLS]
BLOCK = 64  # BigBird block size; every length is a multiple
BIGBIRD_BLOCKS = dict(num_window_blocks=3, num_global_blocks=1, num_random_blocks=1)  # BigBird-ITC's smallest
MEMORY_LIMIT_GIB = 6.0  # skip a cell whose extrapolated peak passes this (the CPU machine has 24 GiB, shared)
STEP_LIMIT_S = 30.0  # skip a cell whose extrapolated step passes this: the full suite must end in minutes
DEFAULT_REPEATS = 3  # the full suite took 5 min on 2 shared CPU cores; more repeats would pass 10
WARMUP = 1
TARGET = dict(linformer_n=4096, linformer_k=128, linformer_memory=8.0, window_exponent=1.2, torch_time=1.1)
REFERENCE = "materialised"  # ratios are to this method
AA = "nn_fused A/A"  # torch's fused step timed twice: the noise band of every time ratio
THEORY = {  # asymptotic (time, memory) exponents in n: Vaswani et al. 2017, Table 1, and each paper
    "materialised": (2, 2),
    "nn_materialised": (2, 2),
    "fused": (2, 1),
    "nn_fused": (2, 1),
    "window": (1, 1),
    "bigbird": (1, 1),
    "linformer": (1, 1),
    "lstm": (1, 1),
}


def growth_exponent(ns: Sequence[float], values: Sequence[float]) -> float | None:
    """b in log(value) = a + b log(n), by least squares; None with fewer than two points or a value <= 0."""
    if len(ns) != len(values):
        raise ValueError(f"growth_exponent: expected as many values as lengths, got {len(values)} and {len(ns)}")
    if len(ns) < 2 or len(set(ns)) < 2 or min(values) <= 0:
        return None
    return statistics.linear_regression([math.log(n) for n in ns], [math.log(v) for v in values]).slope


def method_names(ks: Sequence[int]) -> list[str]:
    """The methods measured, in the tables' order."""
    names = ["materialised", "nn_materialised", "fused", "nn_fused", "window", "bigbird"]
    return names + [f"linformer_k{k}" for k in ks] + ["lstm"]


def _training_step(module: nn.Module, call: Callable[[], torch.Tensor]) -> Callable[[], None]:
    params = list(module.parameters())

    def step() -> None:
        for p in params:
            p.grad = None  # each call allocates its gradients: a training step's real peak
        call().sum().backward()

    return step


def _methods(n: int, ks: Sequence[int], dev: torch.device) -> dict[str, Callable[[], None]]:
    seed_everything(0)
    x = torch.randn(B, n, D, device=dev)  # (B, n, D)
    mha = MultiHeadAttention(D, H, batch_first=True).to(dev)
    nn_mha = nn.MultiheadAttention(D, H, batch_first=True).to(dev)
    nn_mha.load_state_dict(mha.state_dict())
    window = SlidingWindowAttention(D, H, WINDOW, GLOBAL_TOKENS, batch_first=True).to(dev)
    window.load_state_dict(mha.state_dict())
    bigbird = BigBirdAttention(D, H, BLOCK, **BIGBIRD_BLOCKS, batch_first=True).to(dev)
    bigbird.load_state_dict(mha.state_dict())
    lstm = LSTM(D, D, batch_first=True).to(dev)

    def attend(module: nn.Module, need_weights: bool) -> Callable[[], None]:
        return _training_step(module, lambda: module(x, x, x, need_weights=need_weights)[0])  # (B, n, D)

    steps = {
        "materialised": attend(mha, True),
        "nn_materialised": attend(nn_mha, True),
        "fused": attend(mha, False),
        "nn_fused": attend(nn_mha, False),
        "window": attend(window, False),
        "bigbird": attend(bigbird, False),
    }
    for k in ks:
        linformer = LinformerAttention(D, H, seq_len=n, k=k, batch_first=True).to(dev)
        linformer.load_state_dict(mha.state_dict(), strict=False)  # its own E and F (k, n)
        steps[f"linformer_k{k}"] = attend(linformer, False)
    steps["lstm"] = _training_step(lstm, lambda: lstm(x)[0])  # (B, n, D)
    assert list(steps) == method_names(ks), f"expected methods {method_names(ks)}, got {list(steps)}"
    return steps


def _skip_reason(previous: dict | None, n: int) -> str | None:
    """Why not to run a method at n, from its last measured cell scaled by (n / n_prev)^2; None to run it."""
    if previous is None:
        return None
    growth = (n / previous["n"]) ** 2
    seconds, gib = previous["seconds"] * growth, previous["peak_mib"] * growth / 1024
    if gib > MEMORY_LIMIT_GIB:
        return f"estimated peak {gib:.1f} GiB > {MEMORY_LIMIT_GIB} GiB (from n={previous['n']}, x(n ratio)^2)"
    if seconds > STEP_LIMIT_S:
        return f"estimated step {seconds:.0f} s > {STEP_LIMIT_S:.0f} s (from n={previous['n']}, x(n ratio)^2)"
    return None


def _one_length(
    n: int, ks: Sequence[int], dev: torch.device, repeats: int, last: dict[str, dict], only: Sequence[str] | None
) -> dict:
    steps = _methods(n, ks, dev)
    skipped = {m: r for m in steps if (r := _skip_reason(last.get(m), n)) is not None}
    names = [m for m in steps if m not in skipped and (only is None or m in only)]
    # the A/A control: torch's fused step timed a second time in the same interleaved run
    timed = names + ([AA] if "nn_fused" in names else [])
    calls = {**steps, AA: steps["nn_fused"]}
    for _ in range(WARMUP):
        for m in timed:
            calls[m]()
    seconds: dict[str, list[float]] = {m: [] for m in timed}
    for i in range(repeats):
        shift = i % len(timed)
        for m in timed[shift:] + timed[:shift]:  # rotate which goes first
            seconds[m].append(time_call(calls[m], dev))
    aa_seconds = seconds.pop(AA, None)
    peaks = {m: peak_memory(steps[m], dev) for m in names}
    median_ms = {m: statistics.median(s) * 1e3 for m, s in seconds.items()}
    peak_mib = {m: peaks[m][0] / 2**20 for m in names}
    time_ratio, memory_ratio, vs_torch = {}, {}, {}
    if REFERENCE in names:
        ref = seconds[REFERENCE]
        time_ratio = {m: statistics.median(s / r for s, r in zip(seconds[m], ref, strict=True)) for m in names}
        memory_ratio = {m: peak_mib[m] / peak_mib[REFERENCE] for m in names}
    for ours, theirs in (("fused", "nn_fused"), ("materialised", "nn_materialised")):
        if ours in names and theirs in names:
            per_repeat = [a / b for a, b in zip(seconds[ours], seconds[theirs], strict=True)]
            vs_torch[f"{ours}/{theirs}"] = per_repeat
    for m in names:
        last[m] = dict(n=n, seconds=median_ms[m] / 1e3, peak_mib=peak_mib[m])
    return dict(
        n=n,
        median_ms=median_ms,
        peak_mib=peak_mib,
        time_ratio_to_materialised=time_ratio,
        memory_ratio_to_materialised=memory_ratio,
        ratio_to_torch={pair: statistics.median(r) for pair, r in vs_torch.items()},
        ratio_to_torch_per_repeat=vs_torch,
        aa_band=noise_band(aa_seconds, seconds["nn_fused"]) if aa_seconds else None,
        skipped=skipped,
        memory_method=next(iter(peaks.values()))[1] if peaks else None,
        seconds=seconds,
    )


def _theory(method: str) -> tuple[int, int]:
    return THEORY["linformer" if method.startswith("linformer") else method]


def _exponents(rows: list[dict], methods: list[str]) -> dict[str, dict]:
    fits = {}
    for m in methods:
        measured = [r for r in rows if m in r["median_ms"]]
        ns = [r["n"] for r in measured]
        fits[m] = dict(
            time=growth_exponent(ns, [r["median_ms"][m] for r in measured]),
            memory=growth_exponent(ns, [r["peak_mib"][m] for r in measured]),
            lengths=ns,
            theory=dict(zip(("time", "memory"), _theory(m), strict=True)),
        )
    return fits


def _grid(title: str, rows: list[dict], methods: list[str], key: str, fmt: str) -> list[str]:
    lines = [title, f"{'method':<16}" + "".join(f"{'n=' + str(r['n']):>10}" for r in rows)]
    for m in methods:
        cells = (format(r[key][m], fmt) if m in r[key] else "--" for r in rows)
        lines.append(f"{m:<16}" + "".join(f"{c:>10}" for c in cells))
    return lines


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "--" if value is None else format(value, spec)


def _targets(rows: list[dict], fits: dict[str, dict]) -> tuple[dict[str, bool | str | None], list[str]]:
    """Each target's verdict (None where its setting was not measured) and the lines that report it.

    Memory targets are True or False; time targets "met", "missed" or "within noise" (``claims.target_met``:
    a ratio whose A/A band reaches across the limit is neither met nor missed).
    """
    verdicts: dict[str, bool | str | None] = {}
    lines = []
    n, k = TARGET["linformer_n"], TARGET["linformer_k"]
    name = f"linformer_k{k}"
    row = next((r for r in rows if r["n"] == n), None)
    label = f"target Linformer k={k} at n={n}: materialised / Linformer peak >= {TARGET['linformer_memory']}x"
    if row is not None and name in row["peak_mib"] and REFERENCE in row["peak_mib"]:
        less = row["peak_mib"][REFERENCE] / row["peak_mib"][name]
        verdicts["linformer_memory"] = less >= TARGET["linformer_memory"]
        lines.append(f"{label} (paper: 14x): {less:.1f}x, {'met' if verdicts['linformer_memory'] else 'MISSED'}")
    else:
        verdicts["linformer_memory"] = None
        lines.append(f"{label}: not measured (needs n={n} and k={k}: run without --quick)")

    exponent = fits.get("window", {}).get("memory")
    label = f"target sliding-window memory exponent <= {TARGET['window_exponent']}"
    if exponent is None:
        verdicts["window_exponent"] = None
        lines.append(f"{label}: not measured (needs two lengths)")
    else:
        verdicts["window_exponent"] = exponent <= TARGET["window_exponent"]
        lengths = fits["window"]["lengths"]
        lines.append(
            f"{label} (n={lengths[0]}..{lengths[-1]}): {exponent:.2f}, "
            f"{'met' if verdicts['window_exponent'] else 'MISSED'}"
        )

    bands = [r["aa_band"] for r in rows if r.get("aa_band")]
    band = max(bands) if bands else None  # the widest A/A band of nn_fused against itself over every n
    for pair in ("fused/nn_fused", "materialised/nn_materialised"):
        pooled = [x for r in rows for x in r["ratio_to_torch_per_repeat"].get(pair, [])]
        key = "torch_time_" + pair.split("/")[0]
        label = f"target memlib {pair} time <= {TARGET['torch_time']}x (median of per-repeat ratios over every n)"
        if not pooled or band is None:
            verdicts[key] = None
            lines.append(f"{label}: not measured")
            continue
        ratio = statistics.median(pooled)
        verdicts[key] = target_met(ratio, band, TARGET["torch_time"])
        shown = verdicts[key].upper() if verdicts[key] == "missed" else verdicts[key]
        lines.append(f"{label}: {ratio:.2f}x, A/A band x{band:.2f} (nn_fused against itself): {shown}")
    return verdicts, lines


def sweep(
    lengths: Sequence[int],
    ks: Sequence[int],
    repeats: int,
    dev: torch.device | str = "auto",
    methods: Sequence[str] | None = None,
) -> tuple[list[dict], dict[str, dict]]:
    """Measure ``methods`` (default: all of :func:`method_names`) at each length: ``(rows, fits)``, one row per
    length (as in the JSON) and the fitted growth exponents per method. Ratios need ``"materialised"`` among them.
    """
    dev = device(dev) if isinstance(dev, str) else dev
    names = method_names(ks) if methods is None else list(methods)
    unknown = sorted(set(names) - set(method_names(ks)))
    if unknown:
        raise ValueError(f"sweep: expected methods among {method_names(ks)}, got {unknown}")
    last: dict[str, dict] = {}  # method: its last measured cell, to decide what the next length can afford
    rows = [_one_length(n, ks, dev, repeats, last, names) for n in lengths]
    return rows, _exponents(rows, names)


def tables(rows: list[dict], fits: dict[str, dict]) -> list[str]:
    """The printed grids (time, memory, their ratios to materialised attention) and the exponents."""
    methods = list(fits)
    lines = _grid("time (median ms)", rows, methods, "median_ms", ".1f") + [""]
    lines += _grid(
        "time / materialised (median of per-repeat ratios)", rows, methods, "time_ratio_to_materialised", ".3f"
    ) + [""]
    lines += _grid("peak memory (MiB)", rows, methods, "peak_mib", ".1f") + [""]
    lines += _grid("peak memory / materialised", rows, methods, "memory_ratio_to_materialised", ".3f") + [""]
    lines += [
        "growth exponents: slope of log(value) on log(n), least squares over the lengths measured",
        f"{'method':<16}{'time':>8}{'memory':>8}{'theory t/m':>12}  lengths",
    ]
    for m in methods:
        f = fits[m]
        theory = f"{f['theory']['time']}/{f['theory']['memory']}"
        span = f"{f['lengths'][0]}..{f['lengths'][-1]}" if f["lengths"] else "--"
        lines.append(f"{m:<16}{_fmt(f['time']):>8}{_fmt(f['memory']):>8}{theory:>12}  {span}")
    skipped = [(r["n"], m, reason) for r in rows for m, reason in r["skipped"].items() if m in methods]
    if skipped:
        lines += ["", "skipped (--):"] + [f"  {m} at n={n}: {reason}" for n, m, reason in skipped]
    return lines


def run(repeats: int, quick: bool = False) -> Report:
    dev = device("auto")
    lengths, ks = (QUICK_LENGTHS, QUICK_KS) if quick else (LENGTHS, KS)
    rows, fits = sweep(lengths, ks, repeats, dev)
    methods = method_names(ks)
    memory_method = next((r["memory_method"] for r in rows if r["memory_method"]), None)
    lines = [
        f"attention: forward+backward of one training step, self-attention B={B}, D={D}, H={H} heads, batch first; "
        f"{dev}, torch {torch.__version__}, {torch.get_num_threads()} threads, {repeats} interleaved repeats",
        f"window radius {WINDOW} + global tokens {list(GLOBAL_TOKENS)}; BigBird block {BLOCK}, {BIGBIRD_BLOCKS}; "
        f"Linformer seq_len=n, k in {list(ks)}; LSTM {D}->{D}; peak memory by {memory_method}",
        "",
    ]
    lines += tables(rows, fits)
    verdicts, target_lines = _targets(rows, fits)
    lines += [""] + target_lines

    settings = dict(
        batch=B,
        embed_dim=D,
        heads=H,
        lengths=list(lengths),
        ks=list(ks),
        window=WINDOW,
        global_tokens=list(GLOBAL_TOKENS),
        block_size=BLOCK,
        bigbird=BIGBIRD_BLOCKS,
        memory_limit_gib=MEMORY_LIMIT_GIB,
        step_limit_s=STEP_LIMIT_S,
        repeats=repeats,
        warmup=WARMUP,
        threads=torch.get_num_threads(),
        quick=quick,
    )
    data = dict(
        suite="attention",
        settings=settings,
        torch=torch.__version__,
        device=str(dev),
        methods=methods,
        reference=REFERENCE,
        target=TARGET,
        targets_met=verdicts,
        exponents=fits,
        rows=rows,
    )
    return Report("\n".join(lines), data)
