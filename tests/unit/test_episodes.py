"""memlib.tasks.episodes: rotated classes, few-shot episodes in Santoro et al.'s format, accuracy by instance.

Most tests use a small synthetic data set whose pixels name their class and image, so that every
property of an episode can be read back; one test loads the real digits when scikit-learn is installed.
"""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import torch

from memlib.tasks import episodes
from memlib.tasks.episodes import (
    ImageClasses,
    accuracy_by_instance,
    digit_class_split,
    episode_batch,
    rotate_classes,
    rotated_digits,
)

CLASSES, PER_CLASS, P = 9, 12, 3


def synthetic() -> ImageClasses:
    """Pixel 0 is the class, pixel 1 a unique image id, pixel 2 noise."""
    classes = torch.arange(CLASSES).repeat_interleave(PER_CLASS)  # (S,)
    ids = torch.arange(CLASSES * PER_CLASS).float()
    images = torch.stack([classes.float(), ids, torch.rand(len(ids))], dim=1)  # (S, 3)
    return ImageClasses(images, classes)


def test_rotate_classes():
    images = torch.arange(2 * 9, dtype=torch.float32).view(2, 3, 3)
    data = rotate_classes(images, torch.tensor([1, 0]), num_labels=2)
    assert data.images.shape == (8, 9)
    assert data.classes.tolist() == [1, 0, 3, 2, 5, 4, 7, 6]  # label + 2 * quarter turns
    for k in range(4):
        assert torch.equal(data.images[2 * k : 2 * k + 2], torch.rot90(images, k, dims=(1, 2)).flatten(1))
    assert torch.equal(torch.rot90(data.images[2].view(3, 3), 3), images[0])  # a turn and three more: back


def test_episode_format():
    n_way, shots = 4, 5
    batch = episode_batch(synthetic(), range(CLASSES), 6, n_way=n_way, shots=shots, seed=1)
    T = n_way * shots
    assert batch.inputs.shape == (6, T, P + n_way) and batch.inputs.dtype == torch.float32
    assert batch.labels.shape == batch.instance.shape == (6, T) and batch.classes.shape == (6, n_way)
    image, previous = batch.inputs[..., :P], batch.inputs[..., P:]
    # the previous step's label, as a one-hot, zeros at the first step
    assert (previous[:, 0] == 0).all()
    assert torch.equal(previous[:, 1:].argmax(-1), batch.labels[:, :-1])
    assert (previous[:, 1:].sum(-1) == 1).all()
    for b in range(6):
        assert torch.bincount(batch.labels[b], minlength=n_way).tolist() == [shots] * n_way
        # each step shows an image of the class behind its label, and no image twice
        assert torch.equal(image[b, :, 0].long(), batch.classes[b][batch.labels[b]])
        assert len(image[b, :, 1].unique()) == T
        assert len(batch.classes[b].unique()) == n_way
        # instance k: the k-th time this label appears in the episode
        seen = [0] * n_way
        for t in range(T):
            seen[batch.labels[b, t]] += 1
            assert batch.instance[b, t] == seen[batch.labels[b, t]]


def test_labels_are_shuffled_per_episode_and_classes_come_from_the_pool():
    pool = [0, 2, 3, 5, 6, 8]
    batch = episode_batch(synthetic(), torch.tensor(pool), 40, n_way=3, shots=2, seed=0)
    assert set(batch.classes.flatten().tolist()) <= set(pool)
    assert len(batch.classes[:, 0].unique()) > 3  # label 0 means different classes in different episodes
    orders = {tuple(c) for c in batch.classes.tolist()}
    assert len(orders) > 20


def test_same_seed_and_step_same_batch_and_device(dev):
    data = synthetic()
    a = episode_batch(data, range(CLASSES), 3, seed=2, step=7)
    b = episode_batch(data, range(CLASSES), 3, seed=2, step=7, device=dev)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y.cpu())
        assert y.device.type == dev.type
    assert not torch.equal(a.labels, episode_batch(data, range(CLASSES), 3, seed=2, step=8).labels)


def test_digit_class_split():
    split = digit_class_split()
    assert len(split.train) == 32 and len(split.test) == 8
    assert sorted(torch.cat([split.train, split.test]).tolist()) == list(range(40))
    assert sorted((split.test % 10).unique().tolist()) == [3, 7]  # every rotation of the test digits
    assert sorted(digit_class_split([0]).test.tolist()) == [0, 10, 20, 30]


def test_accuracy_by_instance():
    correct = torch.tensor([[True, False, True, True], [False, True, True, False]])
    instance = torch.tensor([[1, 1, 2, 3], [1, 2, 1, 2]])
    accuracy = accuracy_by_instance(correct, instance, max_instance=4)
    assert accuracy[:3].tolist() == pytest.approx([2 / 4, 2 / 3, 1.0])
    assert math.isnan(accuracy[3])


def test_rotated_digits_from_scikit_learn():
    pytest.importorskip("sklearn")
    data = rotated_digits()
    assert data.images.shape == (7188, 64) and data.classes.shape == (7188,)
    assert data.images.min() >= 0 and data.images.max() <= 1
    assert torch.bincount(data.classes).shape == (40,)
    assert torch.bincount(data.classes).min() >= 170  # each digit has 174-183 images
    batch = episode_batch(data, digit_class_split().test, 2)
    assert batch.inputs.shape == (2, 50, 64 + 5)


@pytest.fixture
def fresh_loader():
    """Forget the loaded digits before and after the test (the loader caches them per process)."""
    for loader in (episodes.handwritten_digits, episodes._load_rotated_digits):
        loader.cache_clear()
    yield
    for loader in (episodes.handwritten_digits, episodes._load_rotated_digits):
        loader.cache_clear()


def test_rotated_digits_loader_with_a_stand_in_for_scikit_learn(monkeypatch, fresh_loader):
    images = np.arange(3 * 64, dtype=np.float64).reshape(3, 8, 8) % 17  # pixel values 0..16, as load_digits
    stand_in = types.ModuleType("sklearn.datasets")
    stand_in.load_digits = lambda: types.SimpleNamespace(images=images, target=np.array([0, 5, 9]))
    monkeypatch.setitem(sys.modules, "sklearn", types.ModuleType("sklearn"))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", stand_in)
    data = rotated_digits()
    assert data.images.shape == (12, 64) and data.images.dtype == torch.float32
    assert data.classes.tolist() == [0, 5, 9, 10, 15, 19, 20, 25, 29, 30, 35, 39]
    assert torch.equal(data.images[:3], torch.as_tensor(images, dtype=torch.float32).flatten(1) / 16)
    assert rotated_digits() is data  # loaded once


def test_rotated_digits_without_scikit_learn_says_what_to_install(monkeypatch, fresh_loader):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes "import sklearn..." fail
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="expected scikit-learn to be installed .*pip install scikit-learn"):
        rotated_digits()


BAD_INPUTS = [
    (lambda: episode_batch(synthetic(), [0, 1, 2], 2, n_way=5), ValueError, r"n_way = 5 distinct classes, got 3"),
    (lambda: episode_batch(synthetic(), range(9), 2, shots=13), ValueError, r"shots = 13 images per class, got 12"),
    (lambda: episode_batch(synthetic(), range(9), 0), ValueError, r"batch_size >= 1, got batch_size=0"),
    (lambda: episode_batch((1, 2), range(9), 2), TypeError, r"data as an ImageClasses, got tuple"),
    (lambda: rotate_classes(torch.zeros(2, 3, 4), torch.zeros(2), 1), ValueError, r"\(S, H, H\), got \(2, 3, 4\)"),
    (lambda: rotate_classes(torch.zeros(2, 3, 3), torch.zeros(3), 1), ValueError, r"\(S,\) = \(2,\), got \(3,\)"),
    (lambda: digit_class_split([10]), ValueError, r"digits in 0..9, got \[10\]"),
    (lambda: accuracy_by_instance(torch.ones(2, 3), torch.ones(2, 4), 3), ValueError, r"\(2, 4\), got \(2, 3\)"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_INPUTS)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()
