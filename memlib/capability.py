"""Which half-precision kernels this machine runs, found out once per process by trying them.

torch's CPU kernels differ by CPU. Under ``torch.autocast("cpu")`` the fused LSTM goes to oneDNN, which needs
native bfloat16 instructions (AVX512-BF16 or AMX): on an AVX2 CPU, or with ``ONEDNN_MAX_CPU_ISA=AVX2``, it raises
"could not create a primitive descriptor for the LSTM forward propagation primitive", while the fused GRU, the
plain RNN and matrix products fall back to slower code that works. CPU flags do not say what oneDNN will accept
(an environment variable can hold it back), so each kernel is *probed*: run forward and backward on a tiny input,
once, and the answer cached.

Kernels (:data:`KERNELS`): ``"lstm"``, ``"gru"``, ``"rnn"`` (torch's fused recurrent kernels, as memlib's
stacks call them) and ``"attention"`` (``torch.nn.functional.scaled_dot_product_attention``). Modes: ``"autocast"``
(float32 weights and input under ``torch.autocast`` to the half dtype) and ``"weights"`` (weights and input in the
half dtype). memlib's modules ask :func:`fused_ok` before they call a fused kernel and take their reference path
(the same equations, step by step) where it says no, and :func:`note_fallback` says so to whoever listens
(:func:`fallbacks`): the memory estimator, the budget explorer and the compress suite print it beside their
numbers, so a bfloat16 figure measured on the reference path is never passed off as the fused kernel's.

The environment variable ``MEMLIB_HALF_PRECISION`` forces the answers instead of probing (for tests, and to check
that a wrong answer is caught): ``"all"`` (every kernel supported), ``"none"`` (none), or a comma list such as
``"lstm=0,gru=1"`` (kernels not named are probed). Forcing ``all`` on a CPU without bfloat16 LSTM makes the first
LSTM under autocast raise, as torch does.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache

import torch
from torch import nn

#: The fused kernels whose support is probed.
KERNELS = ("lstm", "gru", "rnn", "attention")
MODES = ("autocast", "weights")
HALF_DTYPES = (torch.bfloat16, torch.float16)
FORCE_VARIABLE = "MEMLIB_HALF_PRECISION"

_NOTES: ContextVar[list[str] | None] = ContextVar("memlib_fallbacks", default=None)


def _check(where: str, kernel: str, mode: str, dtype: torch.dtype) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"{where}: expected kernel one of {', '.join(map(repr, KERNELS))}, got {kernel!r}")
    if mode not in MODES:
        raise ValueError(f"{where}: expected mode one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if dtype not in HALF_DTYPES:
        raise ValueError(f"{where}: expected dtype torch.bfloat16 or torch.float16, got {dtype}")


def forced() -> dict[str, bool]:
    """The answers forced by ``MEMLIB_HALF_PRECISION`` (kernel -> supported); empty when it is unset.

    >>> all(kernel in KERNELS for kernel in forced())
    True
    """
    value = os.environ.get(FORCE_VARIABLE, "").strip().lower()
    if value in ("", "probe"):
        return {}
    if value in ("all", "none"):
        return dict.fromkeys(KERNELS, value == "all")
    out = {}
    for item in value.split(","):
        kernel, sep, answer = item.strip().partition("=")
        if kernel not in KERNELS or not sep or answer not in ("0", "1"):
            raise ValueError(
                f"{FORCE_VARIABLE}: expected 'all', 'none', 'probe' or a comma list of kernel=0|1 with kernels from "
                f"{', '.join(KERNELS)}, got {value!r}"
            )
        out[kernel] = answer == "1"
    return out


def _probe_module(kernel: str) -> tuple[nn.Module, torch.Tensor]:
    """A tiny torch.nn module that runs ``kernel``, and an input for it (float32, on the CPU)."""
    if kernel == "attention":
        return nn.MultiheadAttention(8, 2, batch_first=True), torch.randn(2, 5, 8)
    family = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kernel]
    return family(8, 8, batch_first=True), torch.randn(2, 5, 8)


@cache
def probe(kernel: str, device_type: str = "cpu", dtype: torch.dtype = torch.bfloat16, mode: str = "autocast") -> bool:
    """Whether torch's fused ``kernel`` runs forward and backward in ``dtype`` on ``device_type`` (cached).

    Runs torch.nn's own module (not memlib's, which asks this function) on a 2 x 5 x 8 input; any error from
    the kernel means no. ``MEMLIB_HALF_PRECISION`` is not read here: see :func:`supported`.
    """
    _check("probe", kernel, mode, dtype)
    if device_type == "cuda" and not torch.cuda.is_available():
        return False
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a kernel may warn about its own fallback; only failure matters here
        torch.manual_seed(0)
        module, x = _probe_module(kernel)
        module, x = module.to(device_type), x.to(device_type)
        if mode == "weights":
            module, x = module.to(dtype), x.to(dtype)
        try:
            with torch.autocast(device_type, dtype=dtype, enabled=mode == "autocast"):
                out = module(x, x, x, need_weights=False)[0] if kernel == "attention" else module(x)[0]
            out.float().sum().backward()
        except RuntimeError:
            return False
    return True


def supported(
    kernel: str, device_type: str = "cpu", dtype: torch.dtype = torch.bfloat16, mode: str = "autocast"
) -> bool:
    """:func:`probe`'s answer, unless ``MEMLIB_HALF_PRECISION`` forces one for ``kernel``.

    >>> supported("lstm", "cpu", torch.bfloat16) in (True, False)
    True
    """
    _check("supported", kernel, mode, dtype)
    answer = forced().get(kernel)
    return probe(kernel, device_type, dtype, mode) if answer is None else answer


def half_mode(x: torch.Tensor) -> tuple[torch.dtype, str] | None:
    """(dtype, mode) of the half precision a fused kernel would run ``x`` in, or None for full precision.

    ``"weights"`` when ``x`` itself is half precision, ``"autocast"`` when autocast to a half dtype is on for
    ``x``'s device.

    >>> half_mode(torch.zeros(2)) is None  # outside autocast, float32 input: no half precision
    True
    """
    if x.dtype in HALF_DTYPES:
        return x.dtype, "weights"
    kind = x.device.type
    if kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind):
        dtype = torch.get_autocast_dtype(kind)
        if dtype in HALF_DTYPES:
            return dtype, "autocast"
    return None


def fused_ok(kernel: str, x: torch.Tensor) -> bool:
    """Whether torch's fused ``kernel`` can run on ``x`` here (always in full precision; probed in half).

    >>> fused_ok("lstm", torch.zeros(2))  # float32: torch's fused kernels always run
    True
    """
    half = half_mode(x)
    return half is None or supported(kernel, x.device.type, *half)


def use_fused(kernel: str, x: torch.Tensor, module: str, reference: bool = False) -> bool:
    """A module's choice of path: its fused ``kernel`` unless ``reference`` is asked for (a trace, attention
    weights) or :func:`fused_ok` says no; then the fallback is noted (:func:`note_fallback`) in ``module``'s name.

    >>> use_fused("lstm", torch.zeros(2), "LSTM")  # float32, no reference path asked for
    True
    >>> use_fused("lstm", torch.zeros(2), "LSTM", reference=True)
    False
    """
    if reference:
        return False
    if fused_ok(kernel, x):
        return True
    note_fallback(fallback_message(f"{module} ({kernel})", x))
    return False


def note_fallback(message: str) -> None:
    """Tell every :func:`fallbacks` block around this call that a module left its fused kernel (once per text).

    >>> with fallbacks() as notes:
    ...     note_fallback("lstm: reference path")
    >>> notes
    ['lstm: reference path']
    """
    notes = _NOTES.get()
    if notes is not None and message not in notes:
        notes.append(message)


@contextmanager
def fallbacks() -> Iterator[list[str]]:
    """Collect, in a list, what :func:`note_fallback` says inside the block (nested blocks each see it all).

    >>> with fallbacks() as notes:
    ...     note_fallback("a kernel was replaced")
    >>> notes
    ['a kernel was replaced']
    """
    outer = _NOTES.get()
    notes: list[str] = []
    token = _NOTES.set(notes)
    try:
        yield notes
    finally:
        _NOTES.reset(token)
        if outer is not None:
            outer.extend(n for n in notes if n not in outer)


def fallback_message(kernel: str, x: torch.Tensor) -> str:
    """The line a module reports when it runs its reference path instead of ``kernel`` on ``x``.

    >>> fallback_message("sdpa", torch.zeros(2, dtype=torch.float16)).startswith("sdpa: torch's fused kernel")
    True
    """
    dtype, mode = half_mode(x) or (x.dtype, "weights")
    name = str(dtype).replace("torch.", "")
    if mode == "autocast":
        how, ran = f"under autocast to {name}", f"under the same autocast (matrix products in {name})"
    else:
        how, ran = f"in {name}", f"in {name}"
    return (
        f"{kernel}: torch's fused kernel does not run {how} on this {x.device.type.upper()} (probed), so memlib "
        f"ran its reference path (the same equations, step by step) {ran}"
    )


def describe(device_type: str = "cpu") -> str:
    """One line per kernel and half dtype: what runs here, probed or forced.

    >>> isinstance(describe("cpu"), str)
    True
    """
    force = forced()
    lines = []
    for dtype in HALF_DTYPES:
        for kernel in KERNELS:
            modes = [m for m in MODES if supported(kernel, device_type, dtype, m)]
            how = "forced" if kernel in force else "probed"
            lines.append(f"{kernel:<9} {str(dtype).replace('torch.', ''):<8} fused in: "
                         f"{', '.join(modes) if modes else 'neither mode (reference path)'} ({how})")
    return "\n".join(lines)
