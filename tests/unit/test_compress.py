"""memlib.compress: checkpointed and plain training give the same gradients; quantized models stay close to
float; pruning reaches its sparsity and removal keeps outputs; low rank at full rank is exact; the distillation
loss by hand; sizes; clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import memlib
from memlib import compress as C
from memlib.hybrid import SequenceClassifier

# Touches precision or CPU kernels: `make test` runs these again under a restricted instruction set.
pytestmark = pytest.mark.kernels


def _grads(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    out = model(x)
    out = out[0] if isinstance(out, tuple) else out
    (out**2).sum().backward()
    return [p.grad.clone() for p in model.parameters()]


# ---------------------------------------------------------------------------------------------
# Checkpointing.
# ---------------------------------------------------------------------------------------------


def test_block_checkpointing_gives_the_same_gradients_and_keeps_names():
    layer = memlib.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
    model = memlib.TransformerEncoder(layer, 4).double()
    x = torch.randn(5, 3, 8, dtype=torch.float64)  # (T, B, D)
    plain = _grads(model, x)
    keys = list(model.state_dict())
    C.enable_checkpointing(model)
    assert all(type(b).__name__ == "CheckpointedTransformerEncoderLayer" for b in model.layers)
    assert isinstance(model.layers[0], memlib.TransformerEncoderLayer) and list(model.state_dict()) == keys
    for g, h in zip(_grads(model, x), plain, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # evaluation runs the plain forward
        model(x)
    C.disable_checkpointing(model)
    assert type(model.layers[0]) is memlib.TransformerEncoderLayer


def test_checkpointing_keeps_less_for_backward():
    blocks = nn.Sequential(*[nn.Sequential(nn.Linear(32, 128), nn.Tanh(), nn.Linear(128, 32)) for _ in range(6)])
    x = torch.randn(64, 32)

    def saved_bytes(model: nn.Module) -> int:
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
        return total

    plain = saved_bytes(blocks)
    C.enable_checkpointing(blocks)
    assert saved_bytes(blocks) < plain / 2


@pytest.mark.parametrize(("family", "batch_first"), [("lstm", True), ("gru", False)])
def test_time_chunk_checkpointing_gives_the_same_gradients(family, batch_first):
    cls = {"lstm": memlib.LSTM, "gru": memlib.GRU}[family]
    rnn = cls(3, 6, num_layers=2, batch_first=batch_first).double()
    x = torch.randn(2, 11, 3, dtype=torch.float64)
    x = x if batch_first else x.transpose(0, 1)
    plain = _grads(rnn, x)
    with torch.no_grad():
        out, state = rnn(x)
    C.enable_checkpointing(rnn, time_chunk=4)  # chunks of 4, 4 and 3 steps
    for g, h in zip(_grads(rnn, x), plain, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-12)
    with torch.enable_grad():
        out2, state2 = rnn(x)
    torch.testing.assert_close(out2, out)
    for s, t in zip(state2 if isinstance(state2, tuple) else (state2,), state if isinstance(state, tuple) else (state,),
                    strict=True):
        torch.testing.assert_close(s, t)


def test_time_chunks_inside_a_classifier():
    model = SequenceClassifier("lstm", 2, 5, 3).double()
    x = torch.randn(4, 9, 2, dtype=torch.float64)
    plain = _grads(model, x)
    C.enable_checkpointing(model, time_chunk=2)
    assert type(model.rnn).__name__ == "CheckpointedLSTM"
    for g, h in zip(_grads(model, x), plain, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Mixed precision.
# ---------------------------------------------------------------------------------------------


def test_amp_step_trains_in_bfloat16_on_the_cpu():
    assert C.autocast_dtype("cpu") is torch.bfloat16 and C.autocast_dtype("cuda") is torch.float16
    assert not C.grad_scaler("cpu").is_enabled()
    model = nn.Linear(4, 2)
    before = model.weight.detach().clone()
    seen = []

    def loss_fn(m, batch):
        out = m(batch)
        seen.append(out.dtype)
        return out.float().pow(2).mean()

    loss = C.amp_step(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn, torch.randn(8, 4))
    assert seen == [torch.bfloat16] and loss > 0 and not torch.equal(model.weight, before)
    assert model.weight.dtype is torch.float32  # the master weights stay float32


# ---------------------------------------------------------------------------------------------
# Pruning.
# ---------------------------------------------------------------------------------------------


def test_unstructured_pruning_reaches_the_sparsity_and_removal_keeps_outputs():
    model = C.QuantizableMLP([20, 40, 30, 5])
    x = torch.randn(7, 20)
    C.prune(model, 0.5)
    assert C.sparsity(model) == pytest.approx(0.5, abs=1e-3)
    for module, name in C.prunable_weights(model):  # each matrix pruned by half
        assert (getattr(module, name) == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert C.count_parameters(model) == 20 * 40 + 40 + 40 * 30 + 30 + 30 * 5 + 5
    assert C.count_parameters(model, nonzero=True) == C.count_parameters(model) - (20 * 40 + 40 * 30 + 30 * 5) // 2
    out = model(x)
    masked_size = C.size_on_disk(model)
    C.make_permanent(model)
    assert not any(k.endswith(("_orig", "_mask")) for k in model.state_dict())
    torch.testing.assert_close(model(x), out, rtol=0, atol=0)
    assert C.sparsity(model) == pytest.approx(0.5, abs=1e-3) and C.size_on_disk(model) < masked_size


def test_pruning_twice_prunes_the_remaining_weights():
    model = C.QuantizableMLP([20, 40, 30, 5])
    C.prune(C.prune(model, 0.5), 0.5)  # the second mask takes half of what the first one kept
    assert C.sparsity(model) == pytest.approx(0.75, abs=1e-3)


def test_global_and_structured_pruning():
    model = C.QuantizableMLP([20, 40, 30, 5])
    C.prune(model, 0.6, scope="global")
    assert C.sparsity(model) == pytest.approx(0.6, abs=1e-3)
    model = C.QuantizableMLP([20, 40, 40, 8])
    C.prune(model, 0.25, structured=True)
    for module, name in C.prunable_weights(model):
        w = getattr(module, name)
        rows = (w == 0).all(dim=1)
        assert int(rows.sum()) == round(0.25 * w.shape[0])  # whole rows


def test_pruning_an_lstm_and_fine_tuning_keep_the_zeros():
    model = SequenceClassifier("lstm", 3, 8, 2)
    C.prune(model, 0.5)
    assert C.sparsity(model) == pytest.approx(0.5, abs=0.01)
    x, y = torch.randn(4, 5, 3), torch.tensor([0, 1, 0, 1])
    zeros = [(getattr(m, n) == 0).clone() for m, n in C.prunable_weights(model)]
    C.fine_tune(model, lambda step: (x, y), lambda m, b: F.cross_entropy(m(b[0]), b[1]), steps=3, progress=False)
    for (m, n), z in zip(C.prunable_weights(model), zeros, strict=True):
        assert bool((getattr(m, n)[z] == 0).all())


# ---------------------------------------------------------------------------------------------
# Quantization.
# ---------------------------------------------------------------------------------------------

# Tolerance for int8 dynamic quantization of a small LSTM classifier: logits within 0.05 (absolute) of the
# float model's, for logits of order 0.3 (weights quantized to 1/127 of their range, activations to 1/255).
DYNAMIC_ATOL = 0.05


def test_dynamic_quantization_of_an_lstm_classifier_is_close_and_smaller():
    model = SequenceClassifier("lstm", 8, 64, 10)
    x = torch.randn(16, 8, 8)
    q = C.quantize_dynamic(model)
    dynamic = torch.ao.nn.quantized.dynamic
    assert isinstance(q.rnn, dynamic.LSTM) and isinstance(q.head, dynamic.Linear)
    assert type(model.rnn) is memlib.LSTM  # the original is untouched
    with torch.no_grad():
        diff = (q(x) - model(x)).abs().max().item()
    assert diff < DYNAMIC_ATOL
    assert C.count_parameters(q) == C.count_parameters(model)
    assert C.size_on_disk(q) < C.size_on_disk(model) / 3


def test_static_quantization_and_qat_of_an_mlp():
    model = C.QuantizableMLP([16, 128, 4]).eval()
    calibration = [torch.randn(32, 16) for _ in range(4)]
    q = C.quantize_static(model, calibration)
    x = torch.randn(8, 16)
    with torch.no_grad():
        ref = model(x)
        assert (q(x) - ref).abs().max().item() < 0.05 * ref.abs().max().item() + 0.02
    assert C.size_on_disk(q) < C.size_on_disk(model)
    assert C.count_parameters(q) == C.count_parameters(model)
    qat = C.prepare_qat(model)
    C.fine_tune(qat, lambda s: (x, torch.zeros(8, dtype=torch.long)), lambda m, b: F.cross_entropy(m(b[0]), b[1]),
                steps=2, progress=False)
    converted = C.convert_qat(qat)
    assert isinstance(converted.layers[0][0], torch.ao.nn.intrinsic.quantized.LinearReLU)
    assert converted(x).shape == (8, 4)


# ---------------------------------------------------------------------------------------------
# Distillation.
# ---------------------------------------------------------------------------------------------


def test_distillation_loss_by_hand():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    y = torch.tensor([0, 1])
    T, alpha = 2.0, 0.75
    import math

    def softmax(v):
        e = [math.exp(a / T) for a in v]
        return [a / sum(e) for a in e]

    kl = 0.0
    for sv, tv in zip(s.tolist(), t.tolist(), strict=True):
        p, q = softmax(tv), softmax(sv)
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    kl /= 2
    ce = (-math.log(math.exp(1) / (math.exp(1) + 1)) - math.log(math.exp(2) / (math.exp(2) + 1))) / 2
    expected = alpha * T * T * kl + (1 - alpha) * ce
    assert C.distillation_loss(s, t, y, T, alpha).item() == pytest.approx(expected, rel=1e-6)
    assert C.distillation_loss(s, s, y, T, 1.0).item() == pytest.approx(0.0, abs=1e-7)


def test_distill_moves_the_student_towards_the_teacher():
    teacher, student = nn.Linear(4, 3), nn.Linear(4, 3)
    x = torch.randn(32, 4)
    y = teacher(x).argmax(1).detach()

    def gap():
        with torch.no_grad():
            return F.kl_div(F.log_softmax(student(x), 1), F.log_softmax(teacher(x), 1), log_target=True,
                            reduction="batchmean").item()

    before = gap()
    C.distill(student, teacher, lambda step: (x, y), steps=60, lr=0.05, progress=False)
    assert gap() < before / 2


# ---------------------------------------------------------------------------------------------
# Low rank.
# ---------------------------------------------------------------------------------------------


def test_low_rank_at_full_rank_reproduces_the_layer_and_truncation_is_the_svd():
    linear = nn.Linear(12, 7).double()
    x = torch.randn(5, 12, dtype=torch.float64)
    full = C.low_rank_linear(linear, 7)
    torch.testing.assert_close(full(x), linear(x))
    r = 3
    approx = C.low_rank_linear(linear, r)
    product = approx[1].weight @ approx[0].weight
    s = torch.linalg.svdvals(linear.weight.detach())
    # Eckart-Young: the Frobenius error of the best rank-r matrix is the norm of the dropped singular values
    assert torch.linalg.matrix_norm(product - linear.weight).item() == pytest.approx(s[r:].norm().item(), rel=1e-9)
    assert C.count_parameters(approx) == r * (12 + 7) + 7


def test_low_rank_across_a_model_by_energy_and_rank():
    model = C.QuantizableMLP([32, 64, 10])
    w = model.layers[0][0].weight
    r = C.rank_for_energy(w, 0.9)
    s2 = torch.linalg.svdvals(w.detach()) ** 2
    assert s2[:r].sum() >= 0.9 * s2.sum() > s2[: r - 1].sum()
    assert C.rank_for_energy(w, 1.0) == 32
    small = C.low_rank(model, rank=4, layers=["layers.0.0"])
    assert C.count_parameters(small) == 4 * (32 + 64) + 64 + 64 * 10 + 10
    assert type(model.layers[0][0]) is nn.Linear  # a copy
    assert small(torch.randn(2, 32)).shape == (2, 10)


def test_low_rank_recurrent_stores_factors():
    square = memlib.LSTM(16, 16).double()
    x = torch.randn(4, 2, 16, dtype=torch.float64)
    full = C.low_rank_recurrent(square, rank=16)  # weight_ih and weight_hh (64, 16): full rank is exact
    torch.testing.assert_close(full(x)[0], square(x)[0])
    lstm = memlib.LSTM(16, 32).double()
    small = C.low_rank_recurrent(lstm, rank=4)
    assert any("original0" in k for k in small.state_dict())
    assert C.count_parameters(small) == 4 * (128 + 16) + 4 * (128 + 32) + 2 * 128
    assert small(x)[0].shape == (4, 2, 32)


# ---------------------------------------------------------------------------------------------
# Sizes and errors.
# ---------------------------------------------------------------------------------------------


def test_size_on_disk_follows_the_weights():
    small, big = nn.Linear(10, 10), nn.Linear(100, 100)
    assert C.size_on_disk(big) - C.size_on_disk(small) == pytest.approx((10100 - 110) * 4, rel=0.02)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: C.compress(nn.Linear(2, 2), "zip"), "unknown technique 'zip'"),
        (lambda: C.prune(nn.Linear(2, 2), 1.0), r"amount as a fraction in \[0, 1\)"),
        (lambda: C.prune(nn.Linear(2, 2), -0.1), r"amount as a fraction in \[0, 1\)"),
        (lambda: C.prune(nn.Linear(2, 2), 0.5, scope="net"), "scope 'layer' or 'global'"),
        (lambda: C.low_rank_linear(nn.Linear(5, 3), 4), r"rank 4 is above the layer's rank limit min\(3, 5\) = 3"),
        (lambda: C.low_rank_linear(nn.Linear(5, 3), 0), "rank as a positive int"),
        (lambda: C.low_rank(C.QuantizableMLP([8, 16, 4]), rank=5), "above layer 'layers.1'"),
        (lambda: C.low_rank(nn.Linear(5, 3), rank=2, energy=0.9), "exactly one of rank or energy"),
        (lambda: C.low_rank(nn.Linear(5, 3), rank=2, layers=["fc"]), "names of Linear layers"),
        (lambda: C.rank_for_energy(torch.eye(3), 1.5), r"energy in \(0, 1\]"),
        (lambda: C.enable_checkpointing(SequenceClassifier("gru", 1, 4, 2)), "time_chunk=... for a recurrent"),
        (lambda: C.enable_checkpointing(SequenceClassifier("gru", 1, 4, 2), time_chunk=0), "time_chunk as a positive"),
        (lambda: C.enable_checkpointing(nn.Linear(2, 2), time_chunk=2), "holds no RNN, LSTM or GRU"),
        (lambda: C.quantize_static(nn.Linear(2, 2), [torch.randn(1, 2)]), "has no QuantStub"),
        (lambda: C.quantize_static(C.QuantizableMLP([2, 2]), [torch.randn(1, 2)], backend="tpu"), "expected backend"),
        (lambda: C.quantize_static(C.QuantizableMLP([2, 2]), []), "at least one calibration batch"),
        (lambda: C.quantize_dynamic(nn.ReLU()), "no Linear, LSTM or GRU"),
        (lambda: C.convert_qat(C.QuantizableMLP([2, 2])), "from prepare_qat"),
        (lambda: C.distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2).long(), 0.0), "temperature"),
        (lambda: C.distillation_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2).long()), "one shape"),
        (lambda: C.autocast("meta"), "cpu or cuda"),
        (lambda: C.QuantizableMLP([4]), "two or more positive int sizes"),
    ],
)
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_wrong_types_get_a_clear_error():
    with pytest.raises(TypeError, match="expected an nn.Linear"):
        C.low_rank_linear(nn.Conv1d(2, 2, 1), 1)
    with pytest.raises(TypeError, match="expected a memlib RNN, LSTM or GRU"):
        C.low_rank_recurrent(nn.LSTM(2, 2), rank=1)
    with pytest.raises(TypeError, match="expected an nn.Module"):
        C.count_parameters("model")
