"""memlib.tracing: what is recorded, where it goes, and how a trace reads back."""

from __future__ import annotations

import weakref

import pytest
import torch

import memlib


def test_records_outside_a_trace_are_dropped():
    memlib.record("x", torch.zeros(1))
    with memlib.trace() as tr:
        memlib.record("x", torch.ones(1))
    memlib.record("x", torch.full((1,), 2.0))
    memlib.record("after", torch.ones(1))

    assert tr.names() == ["x"]
    assert len(tr["x"]) == 1
    assert tr["x"][0].item() == 1.0


def test_a_fresh_trace_starts_empty_after_records_outside():
    memlib.record("x", torch.zeros(1))
    with memlib.trace() as tr:
        pass
    assert len(tr) == 0
    assert "x" not in tr
    assert tr.names() == []


def test_record_outside_a_trace_keeps_no_reference():
    value = torch.zeros(3)
    ref = weakref.ref(value)
    memlib.record("x", value)
    del value
    assert ref() is None


def test_tracing_is_true_only_inside_the_block():
    assert memlib.tracing() is False
    with memlib.trace():
        assert memlib.tracing() is True
    assert memlib.tracing() is False


def test_names_keep_first_recording_order_and_values_keep_call_order():
    with memlib.trace() as tr:
        for t in range(3):
            memlib.record("b", torch.tensor([float(t)]))
            memlib.record("a", torch.tensor([10.0 + t]))
    assert tr.names() == ["b", "a"]
    assert len(tr) == 2
    assert "a" in tr and "c" not in tr
    assert [v.item() for v in tr["b"]] == [0.0, 1.0, 2.0]
    assert [v.item() for v in tr["a"]] == [10.0, 11.0, 12.0]
    assert tr.last("a").item() == 12.0


def test_stack_adds_a_dimension_in_recording_order():
    with memlib.trace() as tr:
        for t in range(4):
            memlib.record("h", torch.full((2, 3), float(t)))  # (B, D)
    stacked = tr.stack("h")  # (T, B, D)
    assert stacked.shape == (4, 2, 3)
    assert stacked[:, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    by_batch = tr.stack("h", dim=1)  # (B, T, D)
    assert by_batch.shape == (2, 4, 3)
    torch.testing.assert_close(by_batch, stacked.transpose(0, 1))


def test_stack_of_mixed_shapes_names_the_shapes():
    with memlib.trace() as tr:
        memlib.record("h", torch.zeros(2, 3))
        memlib.record("h", torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"'h'.*\(2, 3\).*\(2, 5\)"):
        tr.stack("h")


def test_missing_name_lists_recorded_names():
    with memlib.trace() as tr:
        memlib.record("gates", torch.zeros(1))
        memlib.record("cell", torch.zeros(1))
    for read in (tr.__getitem__, tr.last, tr.stack):
        with pytest.raises(KeyError, match=r"'hidden'.*\['gates', 'cell'\]"):
            read("hidden")


def test_recorded_tensors_are_detached():
    w = torch.ones(3, requires_grad=True)
    y = w * 2
    with memlib.trace() as tr:
        memlib.record("y", y)
    assert y.requires_grad  # the caller's tensor is untouched
    assert tr.last("y").requires_grad is False
    assert tr.last("y").grad_fn is None
    torch.testing.assert_close(tr.last("y"), torch.full((3,), 2.0))


def test_recorded_value_is_a_snapshot():
    h = torch.zeros(2)
    with memlib.trace() as tr:
        memlib.record("h", h)
        h.add_(1.0)
    assert tr.last("h").tolist() == [0.0, 0.0]


def test_nested_traces_are_separate():
    with memlib.trace() as outer:
        memlib.record("x", torch.tensor([1.0]))
        with memlib.trace() as inner:
            memlib.record("x", torch.tensor([2.0]))
            memlib.record("only_inner", torch.tensor([3.0]))
        assert memlib.tracing()
        memlib.record("x", torch.tensor([4.0]))

    assert [v.item() for v in inner["x"]] == [2.0]
    assert inner.names() == ["x", "only_inner"]
    # The outer trace sees what ran before and after the inner one, not what the inner one took.
    assert [v.item() for v in outer["x"]] == [1.0, 4.0]
    assert "only_inner" not in outer


def test_trace_is_closed_after_an_exception():
    with pytest.raises(RuntimeError, match="boom"):
        with memlib.trace() as tr:
            memlib.record("x", torch.zeros(1))
            raise RuntimeError("boom")
    assert not memlib.tracing()
    memlib.record("x", torch.ones(1))
    assert len(tr["x"]) == 1  # kept what was recorded before the error, nothing after


def test_outer_trace_is_restored_after_an_exception_in_the_inner():
    with memlib.trace() as outer:
        with pytest.raises(RuntimeError):
            with memlib.trace():
                raise RuntimeError("inner failed")
        assert memlib.tracing()
        memlib.record("x", torch.ones(1))
    assert outer.names() == ["x"]
    assert not memlib.tracing()


def test_repr_shows_names_counts_and_shapes():
    with memlib.trace() as tr:
        memlib.record("h", torch.zeros(2, 3))
        memlib.record("h", torch.zeros(2, 3))
    assert repr(tr) == "Trace(h: 2x(2, 3))"


def test_reference_path_reaches_attention(monkeypatch):
    """memlib.reference_path() makes attention skip its fused kernel too, with the same result."""
    import memlib.attention

    mha = memlib.MultiHeadAttention(8, 2, batch_first=True).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    expected, _ = mha(x, x, x, need_weights=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the fused kernel ran inside reference_path()")

    monkeypatch.setattr(memlib.attention.F, "scaled_dot_product_attention", refuse)
    with memlib.reference_path():
        actual, weights = mha(x, x, x, need_weights=False)
    torch.testing.assert_close(actual, expected)
    assert weights is None
    assert not memlib.tracing()  # nothing was traced: reference_path alone chose the path
