"""memlib.capability: the probe tells the truth about this machine, and both of its answers lead somewhere that works.

Both branches are covered on any CPU by forcing the probe (``MEMLIB_HALF_PRECISION``): "not supported" must take the
reference path and say so; "supported" must call torch's fused kernel (a spy stands in for it, so the test passes on
a CPU whose fused kernel would raise).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import memlib
from memlib import capability
from memlib.hardware import estimate_training_memory
from memlib.recurrent import LSTM

pytestmark = pytest.mark.kernels


class _FusedCalled(Exception):
    pass


def _spy(*args):
    raise _FusedCalled


def _autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.mark.parametrize("kernel", capability.KERNELS)
@pytest.mark.parametrize("mode", capability.MODES)
def test_the_probe_agrees_with_torch_here(kernel, mode):
    """What the probe says about each kernel is what torch.nn does with it on this machine, either way."""
    module, x = capability._probe_module(kernel)
    if mode == "weights":
        module, x = module.to(torch.bfloat16), x.to(torch.bfloat16)

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
            out = module(x, x, x, need_weights=False)[0] if kernel == "attention" else module(x)[0]
        out.float().sum().backward()

    if capability.probe(kernel, "cpu", torch.bfloat16, mode):
        run()
    else:
        with pytest.raises(RuntimeError):
            run()


def test_the_probe_is_cached():
    capability.probe("lstm")
    before = capability.probe.cache_info().hits
    capability.probe("lstm")
    assert capability.probe.cache_info().hits == before + 1


def test_full_precision_never_asks_the_probe(monkeypatch):
    monkeypatch.setenv(capability.FORCE_VARIABLE, "none")
    assert capability.fused_ok("lstm", torch.randn(2, 3, 4))
    assert capability.half_mode(torch.randn(2)) is None
    with _autocast():
        assert capability.half_mode(torch.randn(2)) == (torch.bfloat16, "autocast")
    assert capability.half_mode(torch.randn(2).bfloat16()) == (torch.bfloat16, "weights")


@pytest.mark.parametrize("value, expected", [
    ("all", dict.fromkeys(capability.KERNELS, True)),
    ("none", dict.fromkeys(capability.KERNELS, False)),
    ("lstm=0, gru=1", {"lstm": False, "gru": True}),
    ("", {}),
    ("probe", {}),
])
def test_forcing(monkeypatch, value, expected):
    monkeypatch.setenv(capability.FORCE_VARIABLE, value)
    assert capability.forced() == expected


@pytest.mark.parametrize("value", ["yes", "lstm=2", "conv=1", "lstm"])
def test_a_bad_forcing_says_what_it_expected(monkeypatch, value):
    monkeypatch.setenv(capability.FORCE_VARIABLE, value)
    with pytest.raises(ValueError, match=r"MEMLIB_HALF_PRECISION: expected 'all', 'none', 'probe' or a comma list"):
        capability.forced()


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match=r"probe: expected kernel one of .*got 'conv'"):
        capability.probe("conv")
    with pytest.raises(ValueError, match=r"expected dtype torch.bfloat16 or torch.float16, got torch.float32"):
        capability.supported("lstm", dtype=torch.float32)


# Branch 1: not supported -> the reference path, said aloud ------------------------------------------------------


@pytest.mark.parametrize("family", ["LSTM", "GRU", "RNN"])
def test_unsupported_kernel_runs_the_reference_path_under_autocast(monkeypatch, family):
    monkeypatch.setenv(capability.FORCE_VARIABLE, "none")
    model = getattr(memlib, family)(8, 16, num_layers=2, batch_first=True)
    monkeypatch.setattr(type(model), "_fused", _spy)  # the fused kernel must not be called
    x = torch.randn(3, 5, 8)
    with capability.fallbacks() as notes, _autocast():
        out, _ = model(x)
    out.float().sum().backward()  # and it trains
    with memlib.reference_path(), _autocast():
        expected, _ = model(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)  # the reference path itself, under the same autocast
    assert len(notes) == 1 and notes[0].startswith(f"{family} ({family.lower()}): torch's fused kernel does not run "
                                                   "under autocast to bfloat16")
    assert "reference path" in notes[0]
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_unsupported_attention_runs_the_materialised_path(monkeypatch):
    monkeypatch.setenv(capability.FORCE_VARIABLE, "attention=0")
    mha = memlib.MultiHeadAttention(8, 2, batch_first=True)
    x = torch.randn(2, 5, 8)

    def no_sdpa(*args, **kwargs):
        raise _FusedCalled

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", no_sdpa)
    with capability.fallbacks() as notes, _autocast():
        out, _ = mha(x, x, x, need_weights=False)
    assert out.shape == (2, 5, 8)
    assert notes and notes[0].startswith("MultiHeadAttention (attention):")


def test_supported_full_precision_leaves_no_note(monkeypatch):
    monkeypatch.setenv(capability.FORCE_VARIABLE, "none")
    with capability.fallbacks() as notes:
        LSTM(4, 4)(torch.randn(3, 2, 4))
    assert notes == []


def test_nested_fallbacks_reach_the_outer_block(monkeypatch):
    monkeypatch.setenv(capability.FORCE_VARIABLE, "none")
    with capability.fallbacks() as outer:
        with capability.fallbacks() as inner, _autocast():
            LSTM(4, 4)(torch.randn(3, 2, 4))
    assert inner == outer and len(outer) == 1


# Branch 2: supported -> torch's fused kernel ----------------------------------------------------------------------


@pytest.mark.parametrize("family", ["LSTM", "GRU", "RNN"])
def test_supported_kernel_is_called_under_autocast(monkeypatch, family):
    monkeypatch.setenv(capability.FORCE_VARIABLE, "all")
    model = getattr(memlib, family)(8, 16, batch_first=True)
    monkeypatch.setattr(type(model), "_fused", _spy)
    with capability.fallbacks() as notes, _autocast(), pytest.raises(_FusedCalled):
        model(torch.randn(3, 5, 8))
    assert notes == []


# The estimator says which path it counted ---------------------------------------------------------------------


def test_estimator_names_the_reference_path_where_it_took_it(monkeypatch):
    monkeypatch.setenv(capability.FORCE_VARIABLE, "lstm=0")
    model = LSTM(8, 32, batch_first=True)
    amp = estimate_training_memory(model, (4, 6, 8), "adam", "amp")
    fp32 = estimate_training_memory(model, (4, 6, 8), "adam", "fp32")
    assert fp32.notes == () and "note:" not in str(fp32)
    assert len(amp.notes) == 1 and "LSTM (lstm)" in amp.notes[0]
    assert f"note: {amp.notes[0]}" in str(amp)
    # bf16 autocast on the reference path keeps half-precision activations: not the float32 count relabelled
    assert amp.activations != fp32.activations


def test_estimator_makes_no_note_for_a_model_without_fused_kernels(monkeypatch):
    monkeypatch.setenv(capability.FORCE_VARIABLE, "none")
    model = nn.Sequential(nn.Linear(8, 8))
    e = estimate_training_memory(model, (4, 8), "adam", "amp")
    assert e.notes == ()
