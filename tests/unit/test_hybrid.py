"""memlib.hybrid: the static WindowCNN and the recurrent SequenceRegressor.

Shapes: ``B`` batch, ``T`` time, ``D`` hidden width.
"""

from __future__ import annotations

import pytest
import torch

import memlib
import memlib.hybrid
from memlib.hybrid import SequenceClassifier, SequenceRegressor, WindowCNN

CELLS = ["rnn", "gru", "lstm"]


def padded_batch(lengths: list[int], device: torch.device, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, lengths): random values everywhere, the padding included, so padding leaks would show."""
    x = torch.randn(len(lengths), max(lengths), dtype=dtype, device=device)  # (B, T)
    return x, torch.tensor(lengths, device=device)


@pytest.mark.parametrize("T", [5, 20, 31])
def test_window_cnn_output_shape(dev, T):
    model = WindowCNN(window=20).to(dev)
    out = model(torch.rand(4, T, device=dev))
    assert out.shape == (4,)
    assert out.device.type == dev.type


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_sequence_regressor_output_shape(dev, cell, num_layers):
    model = SequenceRegressor(cell, hidden_size=6, num_layers=num_layers).to(dev)
    x, lengths = padded_batch([3, 7, 1], dev)
    assert model(x).shape == (3,)
    out = model(x, lengths)
    assert out.shape == (3,)
    assert out.device.type == dev.type


@pytest.mark.parametrize("cell", CELLS)
def test_padding_does_not_change_any_output(dev, cell):
    model = SequenceRegressor(cell, hidden_size=5).to(dev).double()
    x, lengths = padded_batch([4, 9, 1, 6], dev, dtype=torch.float64)
    out = model(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = model(x[b : b + 1, :n])  # (1, n): no padding at all
        torch.testing.assert_close(out[b : b + 1], alone, rtol=0, atol=1e-12)


def test_lengths_may_live_on_the_cpu(dev):
    model = SequenceRegressor("gru", hidden_size=4).to(dev)
    x, lengths = padded_batch([2, 5], dev)
    torch.testing.assert_close(model(x, lengths), model(x, lengths.cpu()))


@pytest.mark.parametrize("cell", CELLS)
def test_trace_records_hidden_and_readout(dev, cell):
    model = SequenceRegressor(cell, hidden_size=6).to(dev)
    x, lengths = padded_batch([4, 7, 2], dev)
    with memlib.trace() as tr:
        out = model(x, lengths)
    # The model's own names, plus the recurrent layer's per-step records (memlib.recurrent).
    assert tr.names()[-2:] == ["hidden", "readout"]
    assert len(tr[f"{cell}.hidden.l0"]) == x.shape[1]
    hidden, readout = tr.last("hidden"), tr.last("readout")
    assert hidden.shape == (3, 7, 6)  # (B, T, D)
    assert readout.shape == (3, 7)  # (B, T)
    assert not hidden.requires_grad and not readout.requires_grad
    ends = readout[torch.arange(3, device=dev), lengths - 1]  # (B,)
    torch.testing.assert_close(ends, out.detach())
    for b, n in enumerate(lengths.tolist()):
        assert (hidden[b, n:] == 0).all()  # nothing past a sequence's end


def test_traced_and_untraced_outputs_agree():
    model = SequenceRegressor("lstm", hidden_size=6)
    x, lengths = padded_batch([4, 7, 2], torch.device("cpu"))
    with memlib.trace():
        traced = model(x, lengths)
    torch.testing.assert_close(traced, model(x, lengths))


def test_nothing_is_recorded_outside_a_trace(monkeypatch):
    calls = []
    monkeypatch.setattr(memlib.hybrid, "record", lambda name, value: calls.append(name))
    model = SequenceRegressor("gru", hidden_size=4)
    x = torch.rand(2, 5)
    model(x)
    assert calls == []  # not even computed: the readout of every step costs a matmul
    with memlib.trace():
        model(x)
    assert calls == ["hidden", "readout"]


def test_window_cnn_ignores_steps_past_its_window(dev):
    model = WindowCNN(window=10).to(dev)
    x = torch.randint(0, 2, (5, 25), device=dev).float()
    changed = x.clone()
    changed[:, 10:] = 1 - changed[:, 10:]
    torch.testing.assert_close(model(changed), model(x), rtol=0, atol=0)
    inside = x.clone()
    inside[:, :10] = 1 - inside[:, :10]
    assert not torch.allclose(model(inside), model(x))


def test_window_cnn_pads_short_inputs_with_zeros(dev):
    model = WindowCNN(window=10).to(dev)
    x = torch.rand(3, 4, device=dev)
    padded = torch.nn.functional.pad(x, (0, 6))  # (B, W)
    torch.testing.assert_close(model(x), model(padded))


MODELS = [pytest.param(lambda: WindowCNN(window=8), id="cnn"), pytest.param(SequenceRegressor, id="rnn")]


@pytest.mark.parametrize("make", MODELS)
@pytest.mark.parametrize(
    "x,lengths,error,expected",
    [
        (torch.ones(2, 5, dtype=torch.long), None, TypeError, r"floating-point.*\(B, T\).*torch.int64"),
        ([[0.0, 1.0]], None, TypeError, r"floating-point.*list"),
        (torch.ones(2, 5, 3), None, ValueError, r"\(B, T\), got \(2, 5, 3\)"),
        (torch.ones(5), None, ValueError, r"\(B, T\), got \(5,\)"),
        (torch.ones(2, 0), None, ValueError, r"at least one time step, got shape \(2, 0\)"),
        (torch.ones(2, 5), torch.tensor([5, 5, 5]), ValueError, r"lengths of shape \(2,\), got \(3,\)"),
        (torch.ones(2, 5), torch.tensor([[5, 5]]), ValueError, r"lengths of shape \(2,\), got \(1, 2\)"),
        (torch.ones(2, 5), torch.tensor([0, 5]), ValueError, r"lengths in \[1, 5\], got min 0, max 5"),
        (torch.ones(2, 5), torch.tensor([3, 6]), ValueError, r"lengths in \[1, 5\], got min 3, max 6"),
    ],
)
def test_bad_inputs_say_what_was_expected(make, x, lengths, error, expected):
    model = make()
    with pytest.raises(error, match=expected) as err:
        model(x, lengths)
    assert type(model).__name__ in str(err.value)


def test_unknown_cell_is_named():
    with pytest.raises(ValueError, match=r"\['gru', 'lstm', 'rnn'\], got 'transformer'"):
        SequenceRegressor("transformer")


def test_window_cnn_rejects_an_even_kernel():
    with pytest.raises(ValueError, match="odd kernel_size.*got 4"):
        WindowCNN(kernel_size=4)


def test_lengths_must_be_an_integer_tensor():
    with pytest.raises(TypeError, match="integer tensor of shape \\(B,\\), got list"):
        SequenceRegressor("gru")(torch.zeros(2, 5), [5, 5])


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_several_features_per_step(cell, dev):
    regressor = SequenceRegressor(cell, hidden_size=6, input_size=2).to(dev)
    classifier = SequenceClassifier(cell, input_size=8, hidden_size=6, num_classes=4).to(dev)
    assert regressor(torch.rand(3, 7, 2, device=dev)).shape == (3,)
    with memlib.trace() as tr:
        logits = classifier(torch.rand(3, 7, 8, device=dev), torch.tensor([7, 4, 1]))
    assert logits.shape == (3, 4)
    assert tr.last("hidden").shape == (3, 7, 6) and tr.last("logits").shape == (3, 7, 4)
    # the answer is read after each sequence's own last step
    torch.testing.assert_close(logits[1], tr.last("logits")[1, 3])


def test_one_feature_may_come_with_or_without_its_axis():
    model = SequenceRegressor("gru", hidden_size=5)
    x = torch.rand(2, 6)
    torch.testing.assert_close(model(x), model(x[..., None]))


@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda: SequenceRegressor("gru", input_size=2)(torch.rand(2, 5)), r"\(B, T, 2\), got \(2, 5\)"),
        (lambda: SequenceClassifier("gru", 8, 4, num_classes=1), r"num_classes to be an int >= 2, got 1"),
        (lambda: SequenceClassifier("gru", 0, 4, num_classes=3), r"input_size to be a positive int, got 0"),
    ],
)
def test_classifier_and_feature_errors(make, expected):
    with pytest.raises(ValueError, match=expected):
        make()
