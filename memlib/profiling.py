"""Peak memory and time of a callable (a training step, a forward pass), measured honestly.

Time and memory are measured in separate runs, because recording allocations slows a run:

- **time**: wall-clock seconds of each call after warm-up calls, waiting for queued GPU work
  before the clock stops; quote the median.
- **peak memory**, one extra call:

  - on CUDA, from the caching allocator: ``max_memory_allocated`` after ``reset_peak_memory_stats``,
    minus what was allocated before the call (``method="cuda-allocator"``);
  - on the CPU, from torch's profiler with ``profile_memory=True``: every allocation and free of
    tensor memory during the call, in time order; the peak of their running sum is the most
    tensor memory the call held at once beyond what was alive before it (``method="cpu-profiler"``).
    It counts tensors made through torch's CPU allocator (activations, saved tensors, gradients,
    workspaces); it does not count Python objects or memory a library allocates on its own.

Both measures count only what the call adds: parameters and inputs that exist before it are left out.
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch

from memlib.validate import check_int

CUDA_METHOD = "cuda-allocator"
CPU_METHOD = "cpu-profiler"


class Measurement(NamedTuple):
    """What :func:`measure` returns: the seconds of each timed call, the peak bytes of one call, and how it was
    measured.

    >>> Measurement._fields
    ('seconds', 'peak_bytes', 'method')
    """
    seconds: list[float]  # one per timed call
    peak_bytes: int  # most memory held at once during one call, beyond what was alive before
    method: str  # CUDA_METHOD or CPU_METHOD: what peak_bytes counts

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20


def synchronize(dev: torch.device) -> None:
    """Wait for queued GPU work, so a timer stops when the work is done (nothing to wait for on the CPU).

    >>> synchronize(torch.device("cpu"))  # nothing queued on the CPU: returns at once
    """
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_call(fn: Callable[[], Any], device: torch.device | str = "cpu") -> float:
    """Seconds of one call of ``fn``, including the GPU work it queued.

    >>> seconds = time_call(lambda: torch.ones(100).sum())
    >>> seconds >= 0
    True
    """
    dev = torch.device(device)
    synchronize(dev)
    start = time.perf_counter()
    fn()
    synchronize(dev)
    return time.perf_counter() - start


def peak_memory(fn: Callable[[], Any], device: torch.device | str = "cpu") -> tuple[int, str]:
    """``(peak_bytes, method)`` of one call of ``fn``: the most memory it held at once beyond what was alive before.

    >>> peak, method = peak_memory(lambda: torch.ones(1000, dtype=torch.float64).sum())
    >>> peak >= 8000, method
    (True, 'cpu-profiler')
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        synchronize(dev)
        before = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        fn()
        synchronize(dev)
        return torch.cuda.max_memory_allocated(dev) - before, CUDA_METHOD
    if dev.type != "cpu":
        raise ValueError(f"peak_memory: expected a cpu or cuda device, got {dev}")
    from torch.profiler import ProfilerActivity, profile

    with native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [
        e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type().name == "CPU"
    ]
    events.sort(key=lambda e: e.start_ns())
    # nbytes is positive for an allocation and negative for a free; frees of tensors made before
    # the call make the running sum dip below zero, which is why the peak starts from 0.
    running = itertools.accumulate(e.nbytes() for e in events)
    return max(0, max(running, default=0)), CPU_METHOD


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Hide what the profiler's C++ side prints on file descriptor 2 (start/stop lines, allocator notes).

    Python exceptions still propagate; only native writes to the descriptor are dropped for the call.

    >>> with native_stderr_silenced():
    ...     x = torch.ones(2).sum()
    >>> float(x)
    2.0
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def measure(
    fn: Callable[[], Any], device: torch.device | str = "cpu", *, repeats: int = 5, warmup: int = 1
) -> Measurement:
    """Time ``repeats`` calls of ``fn`` (after ``warmup`` untimed ones), then measure one call's peak memory.

    >>> m = measure(lambda: torch.ones(1000).sum(), repeats=2)
    >>> len(m.seconds), m.method  # one time per call
    (2, 'cpu-profiler')
    """
    both = {"expected": "repeats >= 1 and warmup >= 0", "got": f"repeats={repeats}, warmup={warmup}"}
    check_int("measure", "repeats", repeats, low=1, **both)
    check_int("measure", "warmup", warmup, low=0, **both)
    for _ in range(warmup):
        fn()
    seconds = [time_call(fn, device) for _ in range(repeats)]
    peak, method = peak_memory(fn, device)
    return Measurement(seconds, peak, method)
