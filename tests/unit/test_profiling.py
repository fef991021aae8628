"""memlib.profiling: the peak-memory measure counts what a call holds at once, and says how it counted."""

from __future__ import annotations

import pytest
import torch

from memlib.profiling import CPU_METHOD, CUDA_METHOD, measure, peak_memory

MIB = 2**20


def _hold_two(dev: torch.device):
    def fn():
        a = torch.ones(MIB // 4, device=dev)  # 1 MiB of float32
        b = torch.ones(2 * MIB // 4, device=dev)  # 2 MiB, while a is alive: 3 MiB at once
        del a, b
        c = torch.ones(MIB // 4, device=dev)  # 1 MiB after both were freed: not a new peak
        return c.sum()

    return fn


def test_peak_counts_what_is_alive_at_once(dev):
    peak, method = peak_memory(_hold_two(dev), dev)
    assert method == (CUDA_METHOD if dev.type == "cuda" else CPU_METHOD)
    # 3 MiB of tensors, plus the small scalar sum and allocator rounding
    assert 3 * MIB <= peak < 3 * MIB + 64 * 1024, peak


def test_tensors_alive_before_the_call_are_not_counted(dev):
    big = torch.ones(8 * MIB // 4, device=dev)  # 8 MiB that exists before the call

    def fn():
        return (big[:10] * 2).sum()

    peak, _ = peak_memory(fn, dev)
    assert peak < MIB, peak


def test_a_training_step_holds_its_saved_activations(dev):
    # y = tanh(x W) saves its output for backward: (1024, 1024) float32 = 4 MiB held until backward
    x = torch.randn(1024, 256, device=dev)
    w = torch.randn(256, 1024, device=dev, requires_grad=True)

    def step():
        w.grad = None
        torch.tanh(x @ w).sum().backward()

    peak, _ = peak_memory(step, dev)
    assert peak >= 4 * MIB, peak


def test_measure_times_every_repeat(dev):
    m = measure(_hold_two(dev), dev, repeats=3, warmup=1)
    assert len(m.seconds) == 3 and all(s > 0 for s in m.seconds)
    assert m.median_seconds > 0 and m.peak_mib >= 3


@pytest.mark.parametrize("kwargs", [dict(repeats=0), dict(warmup=-1)])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError, match="expected repeats >= 1 and warmup >= 0"):
        measure(lambda: None, "cpu", **kwargs)


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="expected a cpu or cuda device, got meta"):
        peak_memory(lambda: None, "meta")
