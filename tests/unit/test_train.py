"""memlib.train: device choice, seeding, and fit (learning, non-finite stop, atomic checkpoints, resume)."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from torch import nn

import memlib
from memlib.hybrid import SequenceRegressor
from memlib.tasks import counting_batch

# device -------------------------------------------------------------------------------------


def test_auto_device_is_cuda_when_present_else_cpu():
    expected = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert memlib.device("auto") == expected
    assert memlib.device() == expected


def test_cpu_device_and_torch_device_pass():
    assert memlib.device("cpu") == torch.device("cpu")
    assert memlib.device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("spec", ["tpu", "gpu:0", "meta", "cuda:x"])
def test_unknown_device_names_value_and_choices(spec):
    with pytest.raises(ValueError) as err:
        memlib.device(spec)
    message = str(err.value)
    assert repr(spec) in message
    assert "'auto', 'cpu', 'cuda'" in message


@pytest.mark.parametrize("spec", [3, None, 1.5])
def test_non_string_device_is_a_type_error(spec):
    with pytest.raises(TypeError) as err:
        memlib.device(spec)
    message = str(err.value)
    assert "str or torch.device" in message
    assert type(spec).__name__ in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_cuda_says_so(spec):
    with pytest.raises(ValueError, match="CUDA is not available"):
        memlib.device(spec)


# seed_everything ----------------------------------------------------------------------------


def test_seed_everything_repeats_every_generator():
    def draw(gen):
        return torch.rand(4), torch.rand(4, generator=gen), np.random.rand(3), random.random()

    first = draw(memlib.seed_everything(123))
    second = draw(memlib.seed_everything(123))
    other = draw(memlib.seed_everything(124))
    torch.testing.assert_close(first[0], second[0])
    torch.testing.assert_close(first[1], second[1])
    np.testing.assert_array_equal(first[2], second[2])
    assert first[3] == second[3]
    assert not torch.equal(first[0], other[0])


@pytest.mark.parametrize("seed", [1.0, "1", True])
def test_seed_everything_rejects_non_int(seed):
    with pytest.raises(TypeError, match=type(seed).__name__):
        memlib.seed_everything(seed)


# fit ------------------------------------------------------------------------------------------

W_TRUE = torch.tensor([[2.0], [-1.0], [0.5]])


def regression_batch(step: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(x, y, step): y = x @ W_TRUE + 1, the same for the same step."""
    gen = torch.Generator().manual_seed(step)
    x = torch.randn(16, 3, generator=gen)
    return x, x @ W_TRUE + 1.0, step


def mse(model: nn.Module, batch) -> torch.Tensor:
    x, y, _ = batch
    return nn.functional.mse_loss(model(x), y)


def nan_at(bad_step: int):
    """A loss function that turns NaN at ``bad_step``."""

    def loss_fn(model, batch):
        loss = mse(model, batch)
        return loss * float("nan") if batch[2] == bad_step else loss

    return loss_fn


def test_fit_learns_a_linear_map():
    model = nn.Linear(3, 1)
    result = memlib.fit(model, regression_batch, mse, steps=300, lr=0.05, progress=False)
    assert result.steps == 300
    assert result.resumed_from == 0
    assert result.seconds > 0
    assert result.final_loss(window=20) < 1e-3 * result.losses[0]
    torch.testing.assert_close(model.weight.detach(), W_TRUE.T, atol=0.02, rtol=0)


@pytest.mark.parametrize("bad_step", [0, 5])
def test_fit_stops_before_a_non_finite_step(bad_step):
    model = nn.Linear(3, 1)
    reference = copy.deepcopy(model)
    if bad_step > 0:  # the weights fit should leave: those after step bad_step - 1
        memlib.fit(reference, regression_batch, mse, steps=bad_step,
                   optimizer=torch.optim.SGD(reference.parameters(), lr=0.05), progress=False)

    with pytest.raises(FloatingPointError, match=rf"at step {bad_step}\b") as err:
        memlib.fit(model, regression_batch, nan_at(bad_step), steps=20,
                   optimizer=torch.optim.SGD(model.parameters(), lr=0.05), progress=False)
    assert "nan" in str(err.value)
    if bad_step == 0:
        assert "last finite loss: none" in str(err.value)
        assert "initial weights" in str(err.value)
    assert model.training is False  # fit leaves the model in eval mode even when it stops
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p, q, rtol=0, atol=0)


MAX_LEN = 12


def counting_loss(model: nn.Module, batch) -> torch.Tensor:
    return nn.functional.mse_loss(model(batch.bits, batch.lengths), batch.counts)


def counting_batches(step: int):
    return counting_batch(8, 2, MAX_LEN, seed=3, step=step)


def fit_counting(model: nn.Module, steps: int, checkpoint=None) -> memlib.FitResult:
    # SGD with momentum: deterministic on the CPU, and its state must survive the checkpoint.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return memlib.fit(model, counting_batches, counting_loss, steps=steps, optimizer=optimizer,
                      checkpoint=checkpoint, checkpoint_every=4, progress=False)


def fresh_counter() -> nn.Module:
    torch.manual_seed(7)
    return SequenceRegressor("gru", hidden_size=8)


def test_fit_resumes_from_a_checkpoint_as_if_never_stopped(tmp_path):
    path = tmp_path / "ckpt" / "counting.pt"
    first = fit_counting(fresh_counter(), steps=6, checkpoint=path)
    assert path.exists()
    assert first.resumed_from == 0 and first.steps == 6

    resumed_model = fresh_counter()
    resumed = fit_counting(resumed_model, steps=15, checkpoint=path)
    uninterrupted_model = fresh_counter()
    uninterrupted = fit_counting(uninterrupted_model, steps=15)

    assert resumed.resumed_from == 6
    assert resumed.steps == 15
    assert resumed.losses[:6] == first.losses
    assert resumed.losses == uninterrupted.losses
    for (name, p), q in zip(resumed_model.named_parameters(), uninterrupted_model.parameters(), strict=True):
        assert torch.equal(p, q), name
    saved = torch.load(path, weights_only=False)
    assert saved["losses"] == resumed.losses
    assert list(tmp_path.rglob("*.tmp")) == []


def test_fit_with_a_finished_checkpoint_trains_no_more(tmp_path):
    path = tmp_path / "done.pt"
    first = fit_counting(fresh_counter(), steps=5, checkpoint=path)
    model = fresh_counter()
    again = fit_counting(model, steps=5, checkpoint=path)
    assert again.resumed_from == 5
    assert again.losses == first.losses
    saved = torch.load(path, weights_only=False)["model"]
    for name, p in model.state_dict().items():
        assert torch.equal(p, saved[name]), name


def test_fit_refuses_a_checkpoint_longer_than_asked(tmp_path):
    path = tmp_path / "long.pt"
    fit_counting(fresh_counter(), steps=8, checkpoint=path)
    with pytest.raises(ValueError, match="already holds 8 steps, more than steps=5"):
        fit_counting(fresh_counter(), steps=5, checkpoint=path)


@pytest.mark.parametrize("steps", [0, -3, 2.5, "10", None, True])
def test_fit_rejects_bad_steps(steps):
    with pytest.raises(ValueError, match="positive int") as err:
        memlib.fit(nn.Linear(3, 1), regression_batch, mse, steps=steps, progress=False)
    assert repr(steps) in str(err.value)


def test_save_checkpoint_replaces_atomically(tmp_path):
    path = tmp_path / "state.pt"
    memlib.save_checkpoint(path, value=1)
    memlib.save_checkpoint(path, value=2)
    assert torch.load(path, weights_only=False) == {"value": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]
