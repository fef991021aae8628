"""The ``trace`` suite: what recording costs.

A GRUCell step loop runs (a) with no ``record`` call, (b) calling ``memlib.record("h", h)`` every
step outside any trace, and (c) the same inside ``memlib.trace()``. The variants are interleaved
within each repeat, in a rotating order, so they share the machine's noise; ratios are medians of
the per-repeat ratios. DESIGN.md says that outside a trace recording costs nothing: (b)/(a)
should be 1 within noise.

Shapes: ``T`` steps, ``B`` batch, ``D`` hidden width.
"""

from __future__ import annotations

import statistics
import time
import timeit
from collections.abc import Callable
from typing import Any

import torch

from memlib.bench import Report
from memlib.profiling import synchronize
from memlib.tracing import record, trace
from memlib.train import device, seed_everything

# trace suite ----------------------------------------------------------------------------------

T, B, D = 100, 32, 64  # steps, batch, hidden width
INPUT_SIZE = 1  # one value per step, like the counting task: little compute, so overhead shows
WARMUP = 5  # untimed runs of each variant: allocator and dispatcher caches settle
RECORD_CALLS = 100_000  # per timeit sample of one record() call


def _loop(cell: torch.nn.GRUCell, xs: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    for x in xs:  # xs: (T, B, 1)
        h = cell(x, h)  # (B, D)
    return h


def _loop_recorded(cell: torch.nn.GRUCell, xs: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    for x in xs:
        h = cell(x, h)
        record("h", h)
    return h


def _loop_traced(cell: torch.nn.GRUCell, xs: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    with trace():
        return _loop_recorded(cell, xs, h)


TRACE_VARIANTS = {
    "a": ("no record call", _loop),
    "b": ("record(), no trace", _loop_recorded),
    "c": ("record() inside trace()", _loop_traced),
}


def _ns_per_call(fn: Callable[[], Any], repeats: int) -> float:
    """Median nanoseconds of one call of ``fn`` (timeit's loop overhead included)."""
    samples = timeit.repeat(fn, number=RECORD_CALLS, repeat=repeats)
    return statistics.median(samples) / RECORD_CALLS * 1e9


DEFAULT_REPEATS = 21


def run(repeats: int, quick: bool = False) -> Report:
    """``quick`` changes nothing: the suite takes seconds."""
    dev = device("auto")
    seed_everything(0)
    cell = torch.nn.GRUCell(INPUT_SIZE, D).to(dev)
    xs = torch.randn(T, B, INPUT_SIZE, device=dev)  # (T, B, 1)
    h0 = torch.zeros(B, D, device=dev)  # (B, D)
    keys = list(TRACE_VARIANTS)
    times_ms: dict[str, list[float]] = {k: [] for k in keys}
    with torch.no_grad():
        for _ in range(WARMUP):
            for _, loop in TRACE_VARIANTS.values():
                loop(cell, xs, h0)
        synchronize(dev)
        for i in range(repeats):
            for k in keys[i % 3 :] + keys[: i % 3]:  # rotate which variant goes first
                loop = TRACE_VARIANTS[k][1]
                start = time.perf_counter()
                loop(cell, xs, h0)
                synchronize(dev)
                times_ms[k].append((time.perf_counter() - start) * 1e3)

    h = torch.zeros(B, D, device=dev)
    record_ns = _ns_per_call(lambda: record("h", h), repeats)
    empty_call_ns = _ns_per_call(lambda: None, repeats)  # the floor: calling a lambda that does nothing

    median_ms = {k: statistics.median(v) for k, v in times_ms.items()}
    ratios = {
        f"{k}/a": statistics.median(t / a for t, a in zip(times_ms[k], times_ms["a"], strict=True)) for k in ("b", "c")
    }
    settings = dict(steps=T, batch=B, hidden=D, input_size=INPUT_SIZE, repeats=repeats, warmup=WARMUP,
                    record_calls_per_sample=RECORD_CALLS, threads=torch.get_num_threads())
    data = dict(suite="trace", settings=settings, torch=torch.__version__, device=str(dev),
                variants={k: name for k, (name, _) in TRACE_VARIANTS.items()}, median_ms=median_ms,
                ratios=ratios, record_ns_outside_trace=record_ns, empty_call_ns=empty_call_ns, times_ms=times_ms)

    lines = [
        f"trace: GRUCell loop, T={T} B={B} D={D}, no_grad, {dev}, torch {torch.__version__}, "
        f"{repeats} repeats (median)",
        f"{'variant':<30}{'ms':>10}{'ratio to (a)':>15}",
    ]
    for k, (name, _) in TRACE_VARIANTS.items():
        ratio = 1.0 if k == "a" else ratios[f"{k}/a"]
        lines.append(f"{f'({k}) {name}':<30}{median_ms[k]:>10.3f}{ratio:>15.3f}")
    lines.append(f"{'one record() outside a trace':<30}{record_ns:>10.1f} ns (an empty call: {empty_call_ns:.1f} ns)")
    return Report("\n".join(lines), data)
