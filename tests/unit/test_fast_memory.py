"""memlib.memory.fast: the compiled step equals the eager one (outputs and gradients, float32, 1e-6); the switch
falls back to eager, with one line, where no compiler works; traces and the reference path stay eager.

Compiling is slow (tens of seconds per model on a loaded 2-core machine, less from inductor's on-disk cache),
so `make test` checks the NTM's (one compile, about a minute cold) and the DNC's, MANN's and NSM's are marked
``slow``: `make test-slow` runs them.
"""

from __future__ import annotations

import pytest
import torch

import memlib
from memlib.memory import DNC, MANN, NSM, NTM, NSMConfig, dnc, dnc_cpu, fast
from memlib.memory.fast import fast_steps

B, T, IN, OUT = 2, 5, 5, 3  # batch, steps (two compiled calls of two steps, then one single step), input, output
TOL = dict(atol=1e-6, rtol=1e-6)  # the bound for float32


def _make(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    sizes = dict(controller_size=8, memory_slots=6, memory_width=4, read_heads=2)
    return {
        "ntm": lambda: NTM(IN, OUT, **sizes),
        "dnc": lambda: DNC(IN, OUT, **sizes),
        "mann": lambda: MANN(IN, OUT, **sizes),
        "nsm": lambda: NSM(NSMConfig(IN, OUT, hidden_size=8, memory_slots=6, slot_size=4, programs=3)),
    }[name]()


def _run(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Outputs, final state tensors and parameter gradients of one forward and backward pass."""
    model.zero_grad(set_to_none=True)
    y, state = model(x)
    # a loss that reaches every output and the final memory, so every parameter gets a gradient
    (y.square().sum() + state.memory.sum()).backward()
    flat = [t.detach() for t in torch.utils._pytree.tree_leaves(tuple(state))]
    return y.detach(), flat, [p.grad.clone() for p in model.parameters()]


@pytest.fixture(autouse=True)
def eager_after():
    with fast_steps(False):
        yield


@pytest.mark.parametrize("name", ["ntm", *(pytest.param(n, marks=pytest.mark.slow) for n in ("dnc", "mann", "nsm"))])
def test_fast_step_equals_eager_in_outputs_state_and_gradients(name):
    _check_fast_equals_eager(name)


@pytest.mark.slow
@pytest.mark.parametrize("loops", [True, False], ids=["cpu loops", "tensor code"])
def test_a_large_link_runs_as_one_custom_operator_with_the_same_result(monkeypatch, loops):
    # Above dnc.OPAQUE_LINK_ELEMENTS the compiled DNC step calls the link update and the directional weightings as one
    # custom operator with a hand-written backward pass, which runs memlib.memory.dnc_cpu's loops on the CPU (float32,
    # float64) and the tensor code elsewhere; this model's link is small, so lower the limit.
    monkeypatch.setattr(dnc, "OPAQUE_LINK_ELEMENTS", 0)
    calls = []

    def counted(name):
        original = getattr(dnc_cpu, name)

        def call(*args):
            calls.append(name)
            return original(*args)

        return call

    if loops:
        for name in ("linkage", "linkage_backward"):
            monkeypatch.setattr(dnc_cpu, name, counted(name))
    else:
        monkeypatch.setattr(dnc_cpu, "supports", lambda link: False)
    with torch.profiler.profile() as profile:
        _check_fast_equals_eager("dnc")
    called = {event.key for event in profile.key_averages()}
    operators = {"memlib::linkage", "memlib::linkage_backward"}
    assert operators <= called, f"expected {sorted(operators)} among the calls, missing {sorted(operators - called)}"
    if loops:  # one call each way per step
        assert sorted(set(calls)) == ["linkage", "linkage_backward"] and len(calls) == 2 * T, calls


def _check_fast_equals_eager(name: str) -> None:
    model, x = _make(name), torch.randn(B, T, IN, generator=torch.Generator().manual_seed(1))
    y_eager, state_eager, grads_eager = _run(model, x)
    with fast_steps(True):
        if not fast._probe():
            pytest.skip("torch.compile does not work on this machine")
        y_fast, state_fast, grads_fast = _run(model, x)
    torch.testing.assert_close(y_fast, y_eager, **TOL)
    for fast_value, eager_value in zip(state_fast, state_eager, strict=True):
        torch.testing.assert_close(fast_value, eager_value, **TOL)
    assert all(g.abs().sum() > 0 for g in grads_eager)  # the loss reaches every parameter
    for (pname, _), g_fast, g_eager in zip(model.named_parameters(), grads_fast, grads_eager, strict=True):
        torch.testing.assert_close(g_fast, g_eager, **TOL, msg=lambda m, p=pname: f"{name}.{p}: {m}")


@pytest.mark.parametrize("name", ["ntm", pytest.param("nsm", marks=pytest.mark.slow)])
def test_a_sequence_compiles_two_graphs_whatever_its_length(name):
    # Two steps per call and a single step for an odd length (NTM and NSM alike, both through fast.run), the first
    # call's state made to need gradients like every later one's (without that, one more graph: the first call's).
    # Dynamo guards on the step input's strides; slicing (B, T, I) along T gave each T its own strides,
    # so every new sequence length compiled the step again (2 more graphs here; minutes on a task).
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # compile this model's graphs here (most of them from inductor's cache on disk) and count
    model = _make(name)
    with fast_steps(True):
        if not fast._probe():
            pytest.skip("torch.compile does not work on this machine")
        graphs = counters["stats"]["unique_graphs"]
        _run(model, torch.randn(B, T, IN))
        assert counters["stats"]["unique_graphs"] - graphs == 2
        _run(model, torch.randn(B, T + 3, IN))
        _run(model, torch.randn(B, 1, IN))
    assert counters["stats"]["unique_graphs"] - graphs == 2


def test_the_state_is_made_to_need_gradients_only_where_autograd_records():
    model, state = _make("ntm"), _make("ntm").initial_state(B)
    made = fast._needing_grad(model._step, state)
    assert all(t.requires_grad for t in torch.utils._pytree.tree_leaves(tuple(made)))
    assert not any(t.requires_grad for t in torch.utils._pytree.tree_leaves(tuple(state)))  # the caller's, untouched
    with torch.no_grad():
        assert fast._needing_grad(model._step, state) is state
    model.requires_grad_(False)
    assert fast._needing_grad(model._step, state) is state


def test_without_a_compiler_the_switch_prints_one_line_and_runs_eager(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nsecond line of the toolchain's error")

    monkeypatch.setattr(fast, "_compiler_ok", None)
    monkeypatch.setattr(fast, "_compiled_calls", {})
    monkeypatch.setattr(torch, "compile", broken)
    model = _make("ntm")
    with fast_steps(True):
        assert fast.step_function(model._step) == model._step
        y, _ = model(torch.zeros(B, T, IN))
        assert fast.step_function(model._step) == model._step  # probed once, not again
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["memlib: fast memory steps are off: torch.compile does not work here "
                     "(no C++ compiler found); running eager"]
    assert y.shape == (B, T, OUT)


def test_the_switch_is_off_inside_a_trace_and_the_reference_path(monkeypatch):
    monkeypatch.setattr(fast, "_compiler_ok", True)  # as if the probe had passed: no compile in this test
    model = _make("dnc")
    with fast_steps(True):
        assert fast.step_function(model._step) != model._step
        with memlib.trace():
            assert fast.step_function(model._step) == model._step
        with memlib.reference_path():
            assert fast.step_function(model._step) == model._step
    assert fast.step_function(model._step) == model._step  # the autouse fixture keeps it off outside


def test_fast_steps_is_a_switch_and_a_block():
    fast_steps(True)
    assert fast.enabled()
    with fast_steps(False):
        assert not fast.enabled()
    assert fast.enabled()
    fast_steps(False)
    assert not fast.enabled()
    with pytest.raises(TypeError, match="expected enabled as a bool, got int"):
        fast_steps(1)


@pytest.mark.parametrize(
    "value, on", [("1", True), ("true", True), (" ON ", True), ("0", False), ("", False), (None, False)]
)
def test_the_environment_variable_turns_the_switch_on(value, on):
    assert fast._switched_on(value) is on
