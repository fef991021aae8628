"""Few-shot classification episodes in the format of Santoro et al. 2016 ("Meta-learning with
memory-augmented neural networks", section 2), built from scikit-learn's handwritten digits.

Shapes: ``B`` batch (episodes), ``T`` steps per episode (``n_way * shots``), ``P`` pixels per image
(64 for the 8 x 8 digits), ``n_way`` classes per episode, ``S`` images in a data set.

The data: ``sklearn.datasets.load_digits()`` (1,797 images of 8 x 8 pixels, 10 digits, shipped inside
scikit-learn: no download), each image also rotated by 90, 180 and 270 degrees, and each rotation made a
class of its own, as Santoro et al. did with Omniglot: 40 classes, 7,188 images (:func:`rotated_digits`).
Classes are split into training and test classes by digit (:func:`digit_class_split`), so that no test
digit is seen during training in any rotation (as Santoro et al. split characters before rotating).
Beware that some classes look alike (a 6 turned by 180 degrees is a 9; 0, 1 and 8 barely change when
turned by 180 degrees), which caps the accuracy any model can reach.

An episode (:func:`episode_batch`): ``n_way`` classes drawn from a class set, given the labels
``0 .. n_way-1`` in a random order (new for every episode, so that labels carry no meaning across
episodes), ``shots`` distinct images of each, presented in a random order. At step ``t`` the input is the
image together with the *previous* step's label as a one-hot vector (zeros at ``t = 0``): the model
learns the label of an image one step after it guesses it. ``instance[b, t] = k`` says that the step
shows its class for the k-th time in the episode (1 for the first), so that accuracy can be reported by
presentation, as in Santoro et al.'s Table 1 (:func:`accuracy_by_instance`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import NamedTuple

import torch
import torch.nn.functional as F

from memlib.tasks.seeding import batch_generator
from memlib.validate import check_int

ROTATIONS = 4  # quarter turns 0, 90, 180, 270 degrees
DIGITS = 10


class ImageClasses(NamedTuple):
    """Flattened images and their classes, as :func:`rotate_classes` and :func:`rotated_digits` return them.

    >>> rotate_classes(torch.zeros(2, 3, 3), torch.tensor([0, 1]), 2).images.shape
    torch.Size([8, 9])
    """
    images: torch.Tensor  # (S, P) float in [0, 1], flattened row by row
    classes: torch.Tensor  # (S,) int64


def rotate_classes(images: torch.Tensor, labels: torch.Tensor, num_labels: int) -> ImageClasses:
    """Every image turned by 0, 90, 180 and 270 degrees (counter-clockwise, ``torch.rot90``), each turn a class.

    ``images`` (S, H, W) square, ``labels`` (S,) in ``[0, num_labels)`` -> :class:`ImageClasses` with
    4 S flattened images; the class of label ``c`` turned ``k`` quarter turns is ``c + num_labels * k``.

    >>> data = rotate_classes(torch.rand(8, 4, 4), torch.arange(8) % 2, num_labels=2)
    >>> data.images.shape, data.classes.unique().tolist()  # 4 turns x 2 labels = 8 classes
    (torch.Size([32, 16]), [0, 1, 2, 3, 4, 5, 6, 7])
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 3 or images.shape[1] != images.shape[2]:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"rotate_classes: expected square images of shape (S, H, H), got {got}")
    if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != images.shape[:1]:
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"rotate_classes: expected labels of shape (S,) = ({images.shape[0]},), got {got}")
    if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < num_labels):
        raise ValueError(f"rotate_classes: expected labels in [0, {num_labels}), got [{labels.min()}, {labels.max()}]")
    turned = [torch.rot90(images, k, dims=(1, 2)).flatten(1) for k in range(ROTATIONS)]  # 4 x (S, H*W)
    classes = [labels.long() + num_labels * k for k in range(ROTATIONS)]
    return ImageClasses(torch.cat(turned), torch.cat(classes))


@cache
def handwritten_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's handwritten digits: ``(images (1797, 8, 8) in [0, 1], labels (1797,))``, no download.

    ``load_digits()`` ships the 1,797 images inside scikit-learn. Loaded once per process; the tensors are
    shared, so do not modify them. The few-shot episodes (here) and the captioned scenes
    (:mod:`memlib.tasks.captions`) both draw on it.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            "handwritten_digits: expected scikit-learn to be installed (its load_digits() ships the images, "
            "no download needed): pip install scikit-learn"
        ) from error
    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32) / 16.0  # (1797, 8, 8), pixel values 0..16
    labels = torch.as_tensor(digits.target, dtype=torch.int64)  # (1797,)
    return images, labels


@cache
def _load_rotated_digits() -> ImageClasses:
    return rotate_classes(*handwritten_digits(), DIGITS)


def rotated_digits() -> ImageClasses:
    """The 40 classes of rotated digits: images (7188, 64) in [0, 1], classes (7188,) = digit + 10 * quarter turns.

    Loaded once per process (scikit-learn reads its bundled file); the tensors are shared, so do not modify them.
    """
    return _load_rotated_digits()


class ClassSplit(NamedTuple):
    """What :func:`digit_class_split` returns: the training classes and the held-out ones.

    >>> ClassSplit._fields
    ('train', 'test')
    """
    train: torch.Tensor  # (C_train,) int64 class ids
    test: torch.Tensor  # (C_test,) int64 class ids


def digit_class_split(test_digits: Sequence[int] = (3, 7)) -> ClassSplit:
    """Training and test classes of :func:`rotated_digits`: every rotation of ``test_digits`` is a test class.

    The default keeps 8 test classes (3 and 7 in four rotations; neither is another digit turned, as 6 and 9 are)
    and 32 training classes.

    >>> split = digit_class_split()
    >>> len(split.train), len(split.test)  # 40 classes (10 digits x 4 turns): 32 to train on, 8 held out
    (32, 8)
    """
    test_digits = sorted(set(test_digits))
    if not test_digits or any(not isinstance(d, int) or not 0 <= d < DIGITS for d in test_digits):
        raise ValueError(f"digit_class_split: expected test_digits as digits in 0..9, got {test_digits}")
    if len(test_digits) == DIGITS:
        raise ValueError("digit_class_split: expected at least one training digit, got all ten as test digits")
    is_test = torch.zeros(DIGITS * ROTATIONS, dtype=torch.bool)
    for d in test_digits:
        is_test[d::DIGITS] = True  # classes d, d + 10, d + 20, d + 30
    classes = torch.arange(DIGITS * ROTATIONS)
    return ClassSplit(classes[~is_test], classes[is_test])


class EpisodeBatch(NamedTuple):
    """What :func:`episode_batch` returns.

    >>> EpisodeBatch._fields
    ('inputs', 'labels', 'instance', 'classes')
    """
    inputs: torch.Tensor  # (B, T, P + n_way) float: the image, then the previous step's one-hot label
    labels: torch.Tensor  # (B, T) int64 in [0, n_way): the label to predict at each step
    instance: torch.Tensor  # (B, T) int64 >= 1: which presentation of its class the step is
    classes: torch.Tensor  # (B, n_way) int64: the data set class behind label j in each episode


def episode_batch(
    data: ImageClasses,
    classes: torch.Tensor | Sequence[int],
    batch_size: int,
    *,
    n_way: int = 5,
    shots: int = 10,
    seed: int = 0,
    step: int = 0,
    device: torch.device | str = "cpu",
) -> EpisodeBatch:
    """A batch of few-shot episodes from ``data``, drawing only from ``classes`` (e.g. ``digit_class_split().train``).

    Santoro et al. used 5 classes and episodes of 50 steps (about 10 presentations per class): here each class
    comes exactly ``shots`` times, so ``T = n_way * shots``. The batch depends only on ``(seed, step)``.

    >>> data = rotate_classes(torch.rand(8, 4, 4), torch.arange(8) % 2, num_labels=2)
    >>> b = episode_batch(data, range(8), batch_size=2, n_way=2, shots=1)
    >>> b.inputs.shape, b.labels.shape  # (B, n_way * shots, image + one-hot previous label)
    (torch.Size([2, 2, 18]), torch.Size([2, 2]))
    """
    if not isinstance(data, ImageClasses):
        raise TypeError(f"episode_batch: expected data as an ImageClasses, got {type(data).__name__}")
    for label, value in (("batch_size", batch_size), ("n_way", n_way), ("shots", shots)):
        check_int("episode_batch", label, value, low=1, expected=f"{label} >= 1", got=f"{label}={value!r}")
    pool = torch.as_tensor(classes, dtype=torch.int64).flatten().unique()
    if len(pool) < n_way:
        raise ValueError(f"episode_batch: expected at least n_way = {n_way} distinct classes, got {len(pool)}")
    members = {int(c): torch.nonzero(data.classes == c).flatten() for c in pool}  # class -> image indices
    smallest = min(members, key=lambda c: len(members[c]))
    if len(members[smallest]) < shots:
        raise ValueError(
            f"episode_batch: expected at least shots = {shots} images per class, "
            f"got {len(members[smallest])} for class {smallest}"
        )

    gen = batch_generator(seed, step)
    T = n_way * shots
    chosen = torch.empty(batch_size, n_way, dtype=torch.int64)
    picks = torch.empty(batch_size, T, dtype=torch.int64)  # image index per step
    labels = torch.empty(batch_size, T, dtype=torch.int64)
    for b in range(batch_size):
        # A random subset in a random order: label j means class chosen[b, j] in this episode only.
        chosen[b] = pool[torch.randperm(len(pool), generator=gen)[:n_way]]
        images = torch.stack(
            [members[int(c)][torch.randperm(len(members[int(c)]), generator=gen)[:shots]] for c in chosen[b]]
        )  # (n_way, shots) distinct images of each class
        order = torch.randperm(T, generator=gen)  # a position in the flattened (label, shot) grid per step
        picks[b] = images.flatten()[order]
        labels[b] = order // shots

    one_hot = F.one_hot(labels, n_way).float()  # (B, T, n_way)
    previous = torch.cat([torch.zeros_like(one_hot[:, :1]), one_hot[:, :-1]], dim=1)  # y_{t-1}, zeros at t = 0
    instance = one_hot.cumsum(dim=1).gather(2, labels[..., None])[..., 0].long()  # (B, T): count so far, this one
    inputs = torch.cat([data.images[picks].float(), previous], dim=-1)  # (B, T, P + n_way)
    return EpisodeBatch(inputs.to(device), labels.to(device), instance.to(device), chosen.to(device))


def accuracy_by_instance(correct: torch.Tensor, instance: torch.Tensor, max_instance: int) -> torch.Tensor:
    """Accuracy at the 1st, 2nd, ... ``max_instance``-th presentation of a class (Santoro et al., Table 1).

    ``correct`` (B, T) bool (or 0/1), ``instance`` (B, T) from :class:`EpisodeBatch` -> (max_instance,) float,
    entry ``k - 1`` the accuracy over steps showing their class for the k-th time (NaN where there are none).

    >>> accuracy_by_instance(torch.tensor([[1.0, 0.0, 1.0]]), torch.tensor([[1, 1, 2]]), max_instance=2)
    tensor([0.5000, 1.0000])
    """
    if not isinstance(correct, torch.Tensor) or not isinstance(instance, torch.Tensor):
        raise TypeError("accuracy_by_instance: expected correct and instance as tensors")
    if correct.shape != instance.shape:
        raise ValueError(
            f"accuracy_by_instance: expected correct of the shape of instance {tuple(instance.shape)}, "
            f"got {tuple(correct.shape)}"
        )
    check_int("accuracy_by_instance", "max_instance", max_instance, low=1, expected="max_instance >= 1")
    ks = torch.arange(1, max_instance + 1, device=instance.device)  # (K,)
    at = instance.flatten()[None, :] == ks[:, None]  # (K, B*T)
    hits = (at & correct.flatten().bool()[None, :]).sum(dim=1).double()
    counts = at.sum(dim=1).double()
    return (hits / counts).float()  # 0 / 0 -> NaN where a presentation never occurs
