"""memlib.neuromorphic: the simulated memristor crossbar and the energy estimate.

Shapes: ``B`` batch, ``I`` input features (crossbar rows), ``O`` output features (crossbar columns).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from memlib.neuromorphic import (
    ANALOG_PJ_PER_MAC,
    DIGITAL_PJ,
    CrossbarLinear,
    at_time,
    count_macs,
    energy_estimate,
    quantize_adc,
    quantize_conductance,
    to_crossbar,
)

F64 = torch.float64


def linear(i: int = 12, o: int = 7, bias: bool = True, dev: torch.device | str = "cpu") -> nn.Linear:
    return nn.Linear(i, o, bias=bias, dtype=F64, device=dev)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("bias", [True, False])
def test_exact_at_zero_noise_full_precision(dev, bias):
    layer = linear(bias=bias, dev=dev)
    x = torch.randn(5, 12, dtype=F64, device=dev)
    xbar = CrossbarLinear(layer)
    torch.testing.assert_close(xbar(x), layer(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xbar.effective_weight(), layer.weight.detach(), rtol=1e-12, atol=1e-12)
    # drift of zero and a late read time change nothing
    torch.testing.assert_close(xbar.at_time(1e6)(x), layer(x), rtol=1e-12, atol=1e-12)


def test_exact_for_a_whole_model_and_any_leading_shape():
    model = nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 3)).double()
    x = torch.randn(2, 4, 6, dtype=F64)
    xbar = to_crossbar(model)
    assert sum(isinstance(m, CrossbarLinear) for m in xbar.modules()) == 2
    assert not any(isinstance(m, CrossbarLinear) for m in model.modules())  # the original is untouched
    torch.testing.assert_close(xbar(x), model(x), rtol=1e-12, atol=1e-12)


def test_conductances_stay_in_range_as_differential_pairs():
    layer = linear()
    xbar = CrossbarLinear(layer, g_min=0.2, g_max=2.0)
    g = xbar.target
    assert g.min() >= 0.2 - 1e-12 and g.max() <= 2.0 + 1e-12
    assert ((g[0] - 0.2).abs() < 1e-12).logical_or((g[1] - 0.2).abs() < 1e-12).all()  # one device of a pair at g_min
    assert math.isclose(g.max().item(), 2.0)  # the largest |w| uses the whole range


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
def test_quantisation_gives_at_most_2_to_the_b_levels_per_device(bits):
    layer = linear(64, 32)
    xbar = CrossbarLinear(layer, bits=bits)
    for g in xbar.target:
        assert g.unique().numel() <= 2**bits
    # and the levels are the evenly spaced grid over [g_min, g_max]
    grid = torch.linspace(xbar.g_min, xbar.g_max, 2**bits, dtype=F64)
    assert (xbar.target.unsqueeze(-1) - grid).abs().min(-1).values.max() < 1e-9
    # the weight error is at most half a level
    step = (xbar.g_max - xbar.g_min) / (2**bits - 1) / xbar.scale
    assert (xbar.effective_weight() - layer.weight).abs().max() <= step / 2 + 1e-12


def test_quantize_helpers():
    g = torch.linspace(0.1, 1.0, 101, dtype=F64)
    assert quantize_conductance(g, 0.1, 1.0, None) is g
    assert quantize_conductance(g, 0.1, 1.0, 1).unique().tolist() == [0.1, 1.0]
    y = torch.linspace(-3, 3, 1001, dtype=F64)
    q = quantize_adc(y, 2.0, 3)
    assert q.unique().numel() == 8 and q.min() == -2.0 and q.max() == 2.0


def test_programming_noise_statistics():
    layer = linear(200, 100)
    sigma = 0.03
    xbar = CrossbarLinear(layer, program_noise=sigma, generator=gen(1))
    error = xbar.programmed - xbar.target  # no clamp is active: every target is >= g_min = 0.1 >> 3 sigma
    assert abs(error.mean().item()) < 4 * sigma * xbar.g_max / math.sqrt(error.numel())
    assert error.std().item() == pytest.approx(sigma * xbar.g_max, rel=0.03)
    # the same generator seed programs the same devices
    again = CrossbarLinear(layer, program_noise=sigma, generator=gen(1))
    torch.testing.assert_close(again.programmed, xbar.programmed)


def test_read_noise_statistics_and_freshness():
    layer = linear(50, 4, bias=False)
    sigma = 0.02
    xbar = CrossbarLinear(layer, read_noise=sigma, generator=gen(2))
    x = torch.randn(1, 50, dtype=F64).expand(20000, 50)
    noise = xbar(x) - layer(x)  # (B, O)
    expected = sigma * xbar.g_max * math.sqrt(2) * x[0].norm().item() / xbar.scale
    assert noise.std().item() == pytest.approx(expected, rel=0.03)
    assert abs(noise.mean().item()) < 5 * expected / math.sqrt(noise.numel())
    assert not torch.equal(noise[0], noise[1])  # drawn again at every operation


def test_read_noise_matches_a_per_device_simulation():
    layer = linear(30, 3, bias=False)
    sigma = 0.05
    xbar = CrossbarLinear(layer, read_noise=sigma, generator=gen(3))
    x = torch.randn(30, dtype=F64)
    n = 20000
    g = xbar.target
    eps = sigma * xbar.g_max * torch.randn(n, 2, 3, 30, generator=gen(4), dtype=F64)
    direct = (((g + eps)[:, 0] - (g + eps)[:, 1]) / xbar.scale) @ x  # (n, O) device by device
    ours = xbar(x.expand(n, 30))
    assert ours.std(0).div(direct.std(0)).sub(1).abs().max() < 0.04


def test_drift_is_monotone_and_follows_the_power_law():
    layer = linear()
    xbar = CrossbarLinear(layer, drift_nu=0.05, generator=gen(5), drift_nu_std=0.02)
    times = [1.0, 10.0, 1e2, 1e4, 1e7]
    g = [xbar.at_time(t).conductances() for t in times]
    for early, late in zip(g, g[1:], strict=False):
        assert (late <= early).all()
    assert (g[-1] < g[0]).any()
    torch.testing.assert_close(g[2], xbar.programmed * 100.0 ** (-xbar.nu))
    assert (xbar.nu >= 0).all() and xbar.nu.std() > 0  # one exponent per device, clipped at 0
    torch.testing.assert_close(xbar.at_time(0.5).conductances(), xbar.programmed)  # before t0: no drift
    assert xbar.t == 1.0  # at_time leaves the original alone


def test_global_drift_compensation_undoes_uniform_drift():
    layer = linear()
    x = torch.randn(4, 12, dtype=F64)
    drifted = CrossbarLinear(layer, drift_nu=0.1, t=1e4)
    compensated = CrossbarLinear(layer, drift_nu=0.1, t=1e4, compensate_drift=True)
    assert (drifted(x) - layer(x)).abs().max() > 0.1
    torch.testing.assert_close(compensated(x), layer(x), rtol=1e-10, atol=1e-10)


def test_model_at_time():
    model = nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 3)).double()
    xbar = to_crossbar(model, drift_nu=0.1)
    late = at_time(xbar, 1e5)
    assert all(m.t == 1e5 for m in late.modules() if isinstance(m, CrossbarLinear))
    assert all(m.t == 1.0 for m in xbar.modules() if isinstance(m, CrossbarLinear))


def test_adc_levels():
    layer = linear(12, 40, bias=False)
    x = torch.randn(16, 12, dtype=F64)
    y = CrossbarLinear(layer, adc_bits=2)(x)
    assert y.unique().numel() <= 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 0}, "bits as an integer >= 1"),
        ({"bits": 2.5}, "bits as an integer >= 1"),
        ({"adc_bits": -1}, "adc_bits as an integer >= 1"),
        ({"program_noise": -0.1}, "program_noise as a finite number >= 0"),
        ({"read_noise": -1e-3}, "read_noise as a finite number >= 0"),
        ({"drift_nu": -0.05}, "drift_nu as a finite number >= 0"),
        ({"read_noise": float("nan")}, "read_noise as a finite number >= 0"),
        ({"t": 0.0}, "t as a finite time > 0"),
        ({"g_min": 1.0, "g_max": 0.5}, "g_max > g_min"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CrossbarLinear(linear(), **kwargs)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(TypeError, match="expected an nn.Linear, got Conv1d"):
        CrossbarLinear(nn.Conv1d(2, 2, 1))
    xbar = CrossbarLinear(linear())
    with pytest.raises(ValueError, match=r"expected input \(\.\.\., 12\), got \(3, 5\)"):
        xbar(torch.randn(3, 5, dtype=F64))
    with pytest.raises(TypeError, match="floating-point"):
        xbar(torch.ones(3, 12, dtype=torch.long))
    with pytest.raises(ValueError, match="t as a finite time"):
        xbar.at_time(-1.0)
    with pytest.raises(TypeError, match="nn.Module"):
        to_crossbar("model")


def test_count_macs_and_energy():
    model = nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 3))
    macs = count_macs(model, torch.randn(5, 6))
    assert macs == {"0": 5 * 6 * 9, "2": 5 * 9 * 3}
    assert count_macs(to_crossbar(model), torch.randn(5, 6)) == macs
    rows = {e.scenario: e.picojoules for e in energy_estimate(81, 81)}
    assert rows["digital fp32, arithmetic only"] == pytest.approx(
        81 * (DIGITAL_PJ["fp32_mult"] + DIGITAL_PJ["fp32_add"])
    )
    assert rows["digital fp32, weights from DRAM"] == pytest.approx(81 * (4.6 + 640))
    assert len(rows) == 3 + len(ANALOG_PJ_PER_MAC)
    with pytest.raises(ValueError, match="macs as a positive integer"):
        energy_estimate(0, 10)
