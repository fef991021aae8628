"""In-memory computing on a simulated memristor crossbar, and an energy estimate from published figures.

Shapes: ``B`` batch, ``I`` input features (crossbar rows), ``O`` output features (crossbar columns).

A crossbar stores a weight matrix as device conductances and computes a matrix-vector product in
place: input voltages drive the rows, each device passes a current ``G * V`` (Ohm's law), and the
currents add up along each column (Kirchhoff's current law). Conductances are positive, so a signed
weight uses a *differential pair*, ``w = (G+ - G-) / scale`` (Ielmini and Wong 2018; Sebastian et al.
2020). :class:`CrossbarLinear` simulates that for an ``nn.Linear``, with the non-idealities that limit
it:

- conductances confined to ``[g_min, g_max]``;
- programming to ``2**bits`` evenly spaced levels (``bits=None``: any value);
- programming noise: once per device, Gaussian with standard deviation ``program_noise * g_max``;
- read noise: fresh at every operation, Gaussian with standard deviation ``read_noise * g_max`` per
  device;
- drift of each device's conductance after programming, ``G(t) = G(t0) (t / t0) ** -nu``, the power law
  of phase-change memory (Joshi et al. 2020), with ``nu`` drawn per device around ``drift_nu``;
- an optional ADC that reads each column's current with ``adc_bits`` bits.

With ``bits=None``, no noise and no drift the crossbar computes the exact product (the tests check it).
Inputs are applied exactly (no DAC quantisation) and the bias is added digitally.

:func:`energy_estimate` prices a model's multiply-accumulates (MACs) with published per-operation
figures, :data:`DIGITAL_PJ` (45 nm, Horowitz 2014, as tabulated by Han et al. 2015, Table 1) and
:data:`ANALOG_PJ_PER_MAC` (measured chips, Le Gallo et al. 2023; Ambrogio et al. 2023).
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
from torch import nn

from memlib.validate import check_float, check_int

#: Energy per operation in picojoules, 45 nm CMOS (Horowitz, ISSCC 2014; Han et al. 2015, Table 1).
DIGITAL_PJ = {
    "fp32_add": 0.9,
    "fp32_mult": 3.7,
    "sram_read_32bit": 5.0,  # a 32-bit read from an on-chip SRAM cache
    "dram_read_32bit": 640.0,  # a 32-bit read from off-chip DRAM
}

#: Energy per MAC in picojoules of measured analog in-memory chips, from their reported TOPS/W,
#: counting one MAC as two operations (a multiply and an add).
ANALOG_PJ_PER_MAC = {
    # Le Gallo et al. 2023 (14 nm, phase-change memory, 64 cores), 8-bit inputs and outputs
    "PCM chip, one-phase read (Le Gallo 2023)": 2 / 9.76,  # 9.76 TOPS/W
    "PCM chip, four-phase read (Le Gallo 2023)": 2 / 2.48,  # 2.48 TOPS/W (higher precision)
    # Ambrogio et al. 2023 (phase-change memory, 34 tiles), chip-sustained
    "PCM chip, sustained (Ambrogio 2023)": 2 / 12.4,  # 12.4 TOPS/W
}


def _check_bits(fn: str, label: str, bits: object) -> None:
    if bits is None:
        return
    check_int(fn, "bits", bits, low=1, expected=f"{label} as an integer >= 1 or None (full precision)")


def _check_nonnegative(fn: str, **values: object) -> None:
    for label, value in values.items():
        check_float(fn, label, value, low=0, finite=True, expected=f"{label} as a finite number >= 0")


def quantize_conductance(g: torch.Tensor, g_min: float, g_max: float, bits: int | None) -> torch.Tensor:
    """Round conductances in ``[g_min, g_max]`` to the nearest of ``2**bits`` evenly spaced levels.

    ``bits=None`` returns ``g`` unchanged (an ideal analog device).

    >>> quantize_conductance(torch.tensor([0.1, 0.42, 1.0]), g_min=0.1, g_max=1.0, bits=2)  # 4 levels
    tensor([0.1000, 0.4000, 1.0000])
    """
    _check_bits("quantize_conductance", "bits", bits)
    if bits is None:
        return g
    steps = 2**bits - 1  # 2**bits levels, g_min and g_max included
    return g_min + torch.round((g - g_min) / (g_max - g_min) * steps) * ((g_max - g_min) / steps)


def quantize_adc(y: torch.Tensor, full_scale: torch.Tensor | float, bits: int) -> torch.Tensor:
    """A ``bits``-bit ADC with ``2**bits`` evenly spaced levels over ``[-full_scale, full_scale]``.

    Values outside the range saturate at its ends.

    >>> quantize_adc(torch.tensor([0.26, -0.9]), full_scale=1.0, bits=2)
    tensor([ 0.3333, -1.0000])
    """
    _check_bits("quantize_adc", "bits", bits)
    step = 2 * full_scale / (2**bits - 1)
    code = torch.round((y.clamp(-full_scale, full_scale) + full_scale) / step)
    return code * step - full_scale


class CrossbarLinear(nn.Module):
    """An ``nn.Linear`` whose weight lives on a simulated memristor crossbar (differential pairs).

    The weight ``W`` (O, I) maps to conductances with one scale per layer,
    ``scale = (g_max - g_min) / max|W|``:
    ``G+ = g_min + scale * max(W, 0)``, ``G- = g_min + scale * max(-W, 0)``, so ``W = (G+ - G-) / scale``.
    The devices are programmed once, at construction, with ``generator`` drawing the programming noise
    and the drift exponents; read noise is drawn at every forward call (from ``generator`` too).

    Args:

    - ``linear``: the trained layer; its weight and bias are copied, not shared.
    - ``bits``: conductance levels per device, ``2**bits``; ``None`` for full precision.
    - ``program_noise``: standard deviation of the programming error, as a fraction of ``g_max``.
    - ``read_noise``: standard deviation of each device's read error per operation, as a fraction of ``g_max``.
    - ``drift_nu``: mean drift exponent ``nu``; ``drift_nu_std`` its spread across devices (clipped at 0).
    - ``t``: seconds since programming at which the crossbar is read; ``t0`` the time at which the programmed
      conductance is defined (drift acts only for ``t > t0``).
    - ``adc_bits``: bits of the column ADC, ``None`` for an ideal read-out. Its full scale is the largest
      ``|y|`` of the batch in each layer (an auto-ranging ADC: an optimistic assumption).
    - ``compensate_drift``: rescale the output by the ratio of the array's total conductance at ``t0`` to that
      at ``t`` (a global drift compensation, as Joshi et al. 2020 calibrate it); it undoes the mean
      drift, not its spread across devices.
    - ``g_min``, ``g_max``: the devices' conductance range (any unit; only the ratio matters here).

    >>> layer = torch.nn.Linear(4, 3)
    >>> crossbar = CrossbarLinear(layer)  # ideal devices: no noise, full precision
    >>> x = torch.randn(2, 4)
    >>> torch.allclose(crossbar(x), layer(x), atol=1e-5)
    True
    """

    def __init__(
        self,
        linear: nn.Linear,
        bits: int | None = None,
        program_noise: float = 0.0,
        read_noise: float = 0.0,
        drift_nu: float = 0.0,
        t: float = 1.0,
        adc_bits: int | None = None,
        generator: torch.Generator | None = None,
        *,
        drift_nu_std: float = 0.0,
        t0: float = 1.0,
        compensate_drift: bool = False,
        g_min: float = 0.1,
        g_max: float = 1.0,
    ):
        super().__init__()
        fn = "CrossbarLinear"
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"{fn}: expected an nn.Linear, got {type(linear).__name__}")
        _check_bits(fn, "bits", bits)
        _check_bits(fn, "adc_bits", adc_bits)
        _check_nonnegative(
            fn, program_noise=program_noise, read_noise=read_noise, drift_nu=drift_nu, drift_nu_std=drift_nu_std
        )
        _check_nonnegative(fn, g_min=g_min)
        check_float(fn, "g_max", g_max, low=g_min, low_open=True, expected=f"g_max > g_min = {g_min}")
        check_float(fn, "t0", t0, low=0, low_open=True, expected="t0 > 0")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bits, self.adc_bits = bits, adc_bits
        self.program_noise, self.read_noise = float(program_noise), float(read_noise)
        self.drift_nu, self.drift_nu_std = float(drift_nu), float(drift_nu_std)
        self.t0, self.compensate_drift = float(t0), compensate_drift
        self.g_min, self.g_max = float(g_min), float(g_max)
        self.generator = generator
        self.t = self._check_time(t)

        w = linear.weight.detach().clone()  # (O, I)
        w_max = w.abs().max()
        # an all-zero weight maps to g_min everywhere; any positive scale represents it
        self.scale = float((g_max - g_min) / w_max) if w_max > 0 else 1.0
        g_pos = quantize_conductance(g_min + self.scale * w.clamp(min=0), g_min, g_max, bits)
        g_neg = quantize_conductance(g_min + self.scale * (-w).clamp(min=0), g_min, g_max, bits)
        self.register_buffer("target", torch.stack([g_pos, g_neg]))  # (2, O, I) before programming noise
        programmed = self.target.clone()
        if program_noise > 0:
            programmed += program_noise * g_max * self._randn(programmed.shape, programmed)
        self.register_buffer("programmed", programmed.clamp(min=0))  # (2, O, I) conductance at t0
        nu = torch.full_like(programmed, drift_nu)
        if drift_nu_std > 0:
            nu += drift_nu_std * self._randn(nu.shape, nu)
        self.register_buffer("nu", nu.clamp(min=0))  # (2, O, I) one exponent per device
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def _check_time(self, t: object) -> float:
        return check_float(
            "CrossbarLinear", "t", t, low=0, low_open=True, finite=True, expected="t as a finite time > 0 (seconds)"
        )

    def _randn(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        # the generator lives on the CPU (torch.Generator's default); draw there, then move
        return torch.randn(shape, generator=self.generator, dtype=like.dtype).to(like.device)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
            f"program_noise={self.program_noise}, read_noise={self.read_noise}, drift_nu={self.drift_nu}, "
            f"t={self.t}, adc_bits={self.adc_bits}"
        )

    def at_time(self, t: float) -> CrossbarLinear:
        """The same programmed devices read ``t`` seconds after programming (a shallow copy)."""
        other = copy.copy(self)
        other.t = self._check_time(t)
        return other

    def conductances(self) -> torch.Tensor:
        """(2, O, I): ``G+`` and ``G-`` at time ``t``: ``G(t) = G(t0) (t / t0) ** -nu`` for ``t > t0``."""
        ratio = max(self.t / self.t0, 1.0)
        return self.programmed * ratio ** (-self.nu)

    def effective_weight(self) -> torch.Tensor:
        """(O, I): the weight the crossbar computes with at time ``t``, read noise aside."""
        g = self.conductances()
        w = (g[0] - g[1]) / self.scale
        if self.compensate_drift:
            w = w * (self.programmed.sum() / g.sum())
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"CrossbarLinear: expected a floating-point tensor (..., {self.in_features}), got {got}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"CrossbarLinear: expected input (..., {self.in_features}), got {tuple(x.shape)}")
        w = self.effective_weight().to(x.dtype)
        y = x @ w.T  # (..., O) the column currents, in weight units
        if self.read_noise > 0:
            # Independent noise on both devices of every pair, fresh per operation: the column sum
            # sum_i x_i (e+ - e-) / scale is Gaussian with std read_noise * g_max * sqrt(2) * ||x|| / scale,
            # so it is drawn per output directly, with the same distribution and without (B, O, I) draws.
            sigma = self.read_noise * self.g_max * math.sqrt(2) / self.scale
            y = y + sigma * x.norm(dim=-1, keepdim=True) * self._randn(y.shape, y)
        if self.adc_bits is not None:
            full_scale = y.detach().abs().max().clamp(min=torch.finfo(y.dtype).tiny)
            y = quantize_adc(y, full_scale, self.adc_bits)
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y


def to_crossbar(model: nn.Module, generator: torch.Generator | None = None, **options) -> nn.Module:
    """A deep copy of ``model`` with every ``nn.Linear`` replaced by a :class:`CrossbarLinear`.

    ``options`` are :class:`CrossbarLinear`'s (``bits``, ``program_noise``, ...); the layers draw their
    devices from ``generator`` in the order ``model.named_modules()`` lists them.

    >>> model = to_crossbar(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)))
    >>> [type(m).__name__ for m in model]
    ['CrossbarLinear', 'ReLU', 'CrossbarLinear']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"to_crossbar: expected an nn.Module, got {type(model).__name__}")
    out = copy.deepcopy(model)
    if isinstance(out, nn.Linear):
        return CrossbarLinear(out, generator=generator, **options)
    for module in list(out.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, CrossbarLinear(child, generator=generator, **options))
    return out


def at_time(model: nn.Module, t: float) -> nn.Module:
    """A shallow copy of ``model`` whose :class:`CrossbarLinear` layers are read at time ``t``.

    >>> model = at_time(to_crossbar(torch.nn.Sequential(torch.nn.Linear(4, 2))), t=3600.0)  # read an hour later
    >>> model[0].t
    3600.0
    """
    out = copy.copy(model)
    out._modules = {
        k: (m.at_time(t) if isinstance(m, CrossbarLinear) else at_time(m, t)) for k, m in model._modules.items()
    }
    return out


def count_macs(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Multiply-accumulates of each ``nn.Linear`` (or :class:`CrossbarLinear`) in one forward pass on ``x``.

    >>> count_macs(torch.nn.Sequential(torch.nn.Linear(4, 3)), torch.zeros(1, 4))
    {'0': 12}
    """
    macs: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, CrossbarLinear)):

            def hook(mod, inputs, output, name=name):
                rows = inputs[0].numel() // mod.in_features
                macs[name] = macs.get(name, 0) + rows * mod.in_features * mod.out_features

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return macs


class Energy(NamedTuple):
    """One row of :func:`energy_estimate`: a scenario, its energy in picojoules, and the assumption behind it.

    >>> energy_estimate(macs=10, weights=10)[0]._fields
    ('scenario', 'picojoules', 'assumption')
    """
    scenario: str
    picojoules: float  # per inference
    assumption: str


def energy_estimate(macs: int, weights: int, inferences: int = 1) -> list[Energy]:
    """Energy per inference of ``macs`` MACs over ``weights`` stored weights, digital against analog.

    Digital: each MAC costs a 32-bit float multiply and add, and each weight is read once per batch of
    ``inferences`` (weights reused across the batch), from DRAM or from on-chip SRAM; activations'
    traffic, control and leakage are left out, so the digital figures are lower bounds. Analog: the
    measured chips' energy per MAC, which includes their converters and peripheral circuits; the weights
    do not move. The figures come from different process nodes (45 nm against 14 nm): read them as
    orders of magnitude.

    >>> rows = energy_estimate(macs=1000, weights=1000)
    >>> all(row.picojoules > 0 for row in rows)
    True
    """
    for label, value in (("macs", macs), ("weights", weights), ("inferences", inferences)):
        check_int("energy_estimate", label, value, low=1)
    arithmetic = macs * (DIGITAL_PJ["fp32_mult"] + DIGITAL_PJ["fp32_add"])
    rows = [
        Energy(
            "digital fp32, weights from DRAM",
            arithmetic + weights * DIGITAL_PJ["dram_read_32bit"] / inferences,
            "45 nm: MACs + one 32-bit DRAM read per weight",
        ),
        Energy(
            "digital fp32, weights in SRAM",
            arithmetic + weights * DIGITAL_PJ["sram_read_32bit"] / inferences,
            "45 nm: MACs + one 32-bit SRAM read per weight",
        ),
        Energy("digital fp32, arithmetic only", arithmetic, "45 nm: MACs, no memory access"),
    ]
    rows += [Energy(f"analog {name}", macs * pj, "measured chip, per MAC") for name, pj in ANALOG_PJ_PER_MAC.items()]
    return rows
