"""memlib.hardware: exact counts for weights, gradients and optimizer state; the estimate against a measured
step; what fits on which GPU; the RAM rule; clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import memlib
from memlib.hardware import (
    GPUS,
    MemoryEstimate,
    estimate_training_memory,
    fits,
    gpu,
    largest_batch,
    recommended_ram,
    validate,
)

# Touches precision or CPU kernels: `make test` runs these again under a restricted instruction set.
pytestmark = pytest.mark.kernels

GiB = 2**30


def _mlp() -> nn.Sequential:
    # 10*20 + 20 + 20*5 + 5 = 325 weights, in 4 tensors
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))


@pytest.mark.parametrize(
    ("optimizer", "precision", "bytes_per", "states"),
    [
        ("sgd", "fp32", 4, 0),
        ("sgd_momentum", "fp32", 4, 1),
        ("adam", "fp32", 4, 2),
        ("adamw", "bf16", 2, 2),
        ("adam", "amp", 4, 2),
        ("adam", "fp16", 2, 2),
    ],
)
def test_weights_gradients_and_optimizer_state_are_counted_exactly(optimizer, precision, bytes_per, states):
    e = estimate_training_memory(_mlp(), torch.randn(8, 10), optimizer, precision)
    assert e.parameters == 325 * bytes_per
    assert e.gradients == 325 * bytes_per
    # Adam and AdamW add a float32 step counter per weight tensor (4 tensors), on the CPU
    counters = 4 * 4 if optimizer in ("adam", "adamw") else 0
    assert e.optimizer_state == states * 325 * bytes_per + counters
    assert e.batch_size == 8
    assert e.total == sum(e.parts.values())


def test_optimizer_state_matches_what_torch_allocates():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 10)).sum().backward()
    opt.step()
    allocated = sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values())
    assert estimate_training_memory(model, (4, 10), "adam").optimizer_state == allocated


def test_frozen_weights_have_no_gradient_or_state():
    model = _mlp()
    model[0].requires_grad_(False)  # 220 weights frozen, 105 trainable in 2 tensors
    e = estimate_training_memory(model, (4, 10), "adam")
    assert (e.parameters, e.gradients, e.optimizer_state) == (325 * 4, 105 * 4, 2 * 105 * 4 + 2 * 4)


def test_activations_count_saved_tensors_once():
    # y = tanh(x W^T): linear saves x (16, 10) (the input, counted once), tanh saves y (16, 20) and the
    # loss's pow saves y again (the same storage: counted once); loss and its output are 4-byte scalars
    model = nn.Sequential(nn.Linear(10, 20, bias=False), nn.Tanh())
    e = estimate_training_memory(model, torch.randn(16, 10), "sgd")
    assert e.activations == 16 * 10 * 4 + 16 * 20 * 4 + 4
    assert e.at_batch(32).activations == 2 * (16 * 10 * 4 + 16 * 20 * 4) + 4


def test_estimate_leaves_the_model_and_random_state_alone():
    model = _mlp().eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    estimate_training_memory(model, (4, 10))
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())


# Small versions of the book's models; each estimate is made at a quarter of the measured batch.
MODELS = {
    "lstm": (lambda: memlib.LSTM(16, 32, num_layers=2), (20, 16, 16)),
    "transformer": (
        lambda: memlib.TransformerEncoder(memlib.TransformerEncoderLayer(32, 4, 64, dropout=0.1), 2),
        (16, 16, 32),
    ),
    "mlp": (lambda: nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 10)), (128, 32)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_estimate_is_within_a_quarter_of_the_measured_step(name, optimizer):
    make, shape = MODELS[name]
    v = validate(make(), torch.randn(shape), optimizer)
    assert v.estimate.batch_size == 16 if name != "mlp" else 128
    assert abs(v.relative_error) < 0.25, (name, optimizer, v.estimate.total, v.measured)
    assert abs(v.step_error) < 0.25, (name, optimizer, v.step_peak)


def test_mixed_precision_estimate_is_within_a_quarter():
    make, shape = MODELS["transformer"]
    v = validate(make(), torch.randn(shape), "adam", "amp")
    assert abs(v.relative_error) < 0.25, (v.estimate.total, v.measured)


def test_checkpointing_keeps_block_inputs_and_one_block():
    # per block: the input (B, 32) and, inside, tanh's output (B, 128) and the last linear's input (the same)
    blocks = nn.Sequential(*(nn.Sequential(nn.Linear(32, 128), nn.Tanh(), nn.Linear(128, 32)) for _ in range(6)))
    x = torch.randn(64, 32)
    plain = estimate_training_memory(blocks, x, "sgd")
    checkpointed = estimate_training_memory(blocks, x, "sgd", checkpointing=True)
    B, loss = 64, 4
    assert plain.activations == 7 * B * 32 * 4 + 6 * B * 128 * 4 + loss  # 6 block inputs and the output
    assert checkpointed.activations == 7 * B * 32 * 4 + 1 * B * 128 * 4 + loss
    assert checkpointed.parameters == plain.parameters


def test_fits_and_largest_batch_agree():
    e = estimate_training_memory(_mlp(), torch.randn(8, 10), "adam")
    for name in GPUS:
        b = largest_batch(e, device=name)
        assert fits(e.at_batch(b), name) and not fits(e.at_batch(b + 1), name)
    b = largest_batch(_mlp(), torch.randn(8, 10), "GTX 960", reserve=0.5, optimizer="sgd")
    assert fits(estimate_training_memory(_mlp(), torch.randn(8, 10), "sgd", batch_size=b), "GTX 960", 0.5)


def test_catalogue_holds_the_articles_gpus():
    assert gpu("gtx960").memory == 4 * GiB and gpu("Tesla M40").memory == 24 * GiB
    assert gpu("H200").memory == 141 * GiB
    assert [g.memory // GiB for g in GPUS.values()] == [4, 12, 12, 24, 24, 24, 40, 80, 80, 141]


def test_ram_rule():
    r = recommended_ram("RTX 3090")
    assert (r.minimum, r.recommended) == (24 * GiB, 30 * GiB)
    assert recommended_ram(8 * GiB, gpus=2).recommended == 20 * GiB


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: estimate_training_memory(_mlp(), (4, 10), optimizer="lbfgs"),
            "expected optimizer one of 'sgd', 'sgd_momentum', 'adam', 'adamw', got 'lbfgs'",
        ),
        (
            lambda: estimate_training_memory(_mlp(), (4, 10), precision="int8"),
            "expected precision one of 'fp32', 'bf16', 'fp16', 'amp', got 'int8'",
        ),
        (lambda: estimate_training_memory(_mlp(), (4, 10), batch_size=0), "expected batch_size as a positive integer"),
        (lambda: estimate_training_memory(_mlp(), "x"), "expected example_input as a tensor"),
        (lambda: estimate_training_memory(memlib.LSTM(4, 8), (5, 2, 4), checkpointing=True), "LSTM has none"),
        (lambda: estimate_training_memory(_mlp().double(), (4, 10)), "expected a float32 model"),
        (lambda: gpu("RTX 4090"), "expected one of 'GTX 960', .*'H200' .*got 'RTX 4090'"),
        (lambda: recommended_ram(-1), "expected GPU memory as a positive number of bytes, got -1"),
        (lambda: validate(_mlp(), (4, 10), estimate_batch=8), "expected estimate_batch <= the example's batch 4"),
    ],
)
def test_bad_input_gets_a_clear_error(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_fits_refuses_a_bad_reserve():
    e = MemoryEstimate(1, 1, 1, 1, 0, 0, 1, "sgd", "fp32", False)
    with pytest.raises(ValueError, match=r"expected reserve as a fraction in \[0, 1\), got 1.5"):
        fits(e, "H200", reserve=1.5)
    assert fits(e, "H200")


def test_estimate_leaves_no_forward_pass_alive():
    import gc
    import weakref

    model = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 4))
    x = torch.randn(8, 16)
    seen: list[weakref.ref] = []
    hook = model[1].register_forward_hook(lambda m, a, out: seen.append(weakref.ref(out)))
    estimate_training_memory(model, x, optimizer="sgd")
    hook.remove()
    gc.collect()
    assert seen, "the forward hook never ran"
    alive = [r for r in seen if r() is not None]
    assert not alive, f"expected the estimate's forward activations to be freed, got {len(alive)} still alive"
