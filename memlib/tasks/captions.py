"""Captioned scenes of handwritten digits: a small, offline image-captioning task.

A scene is a ``GRID x GRID`` board of 8 x 8 cells (24 x 24 pixels at ``GRID = 3``); one to ``MAX_DIGITS``
cells hold a handwritten digit from ``sklearn.datasets.load_digits()`` (1,797 images shipped inside
scikit-learn: no download), the others are blank. The caption names the digits in reading order (left to
right, top to bottom), then ``<end>``: the scene with a 7 top right and a 2 bottom left reads ``"7 2 <end>"``.
To name the k-th digit a captioner has to find where the k-th occupied cell is and read what is drawn there,
which is what an attention over image regions is for (Xu et al. 2015, "Show, Attend and Tell").

The images are split before any scene is built: training scenes use the first ``TRAIN_IMAGES`` digits of a
fixed permutation, test scenes the rest, so a test caption is always about handwriting never seen in training.
Each batch is a function of ``(seed, step)``, as every task in ``memlib.tasks``.

Shape legend: ``B`` batch, ``L`` caption length with ``<end>`` (``MAX_DIGITS + 1``), ``G`` cells (``GRID**2``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import torch

from memlib.tasks.episodes import handwritten_digits
from memlib.tasks.seeding import batch_generator
from memlib.validate import check_choice, check_int

__all__ = ["END", "GRID", "MAX_DIGITS", "VOCAB", "CaptionBatch", "caption_batch", "caption_text", "digit_images"]

GRID = 3  # 3 x 3 cells: nine places a digit can be, so that a caption's order is not fixed by its length
MAX_DIGITS = 3  # one to three digits per scene
CELL = 8  # load_digits' images are 8 x 8
END = 10  # token ids: 0-9 the digits, 10 <end>
VOCAB = 11
TRAIN_IMAGES = 1200  # of 1,797; the other 597 are test handwriting


class CaptionBatch(NamedTuple):
    """What :func:`caption_batch` returns.

    ``images`` (B, 1, 24, 24) in [0, 1]; ``captions`` (B, L) token ids, each caption ended by ``END`` and padded
    with ``END``; ``lengths`` (B,) tokens up to and including the first ``END``; ``cells`` (B, L) the cell
    (0 .. G-1, row-major) each digit token was drawn in, -1 for ``END`` and padding.
    """

    images: torch.Tensor
    captions: torch.Tensor
    lengths: torch.Tensor
    cells: torch.Tensor


@lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = handwritten_digits()  # (1797, 8, 8), (1797,)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))  # fixed: the split never moves
    return images[order], labels[order]


def digit_images(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The handwritten digits of one split: ``(images (n, 8, 8) in [0, 1], labels (n,))``.

    >>> images, labels = digit_images("test")
    >>> images.shape, int(labels.max())
    (torch.Size([597, 8, 8]), 9)
    """
    check_choice("digit_images", "split", split, ("train", "test"))
    images, labels = _digits()
    part = slice(0, TRAIN_IMAGES) if split == "train" else slice(TRAIN_IMAGES, None)
    return images[part], labels[part]


def caption_batch(
    batch_size: int, *, seed: int = 0, step: int = 0, split: str = "train", device: torch.device | str = "cpu"
) -> CaptionBatch:
    """A batch of captioned scenes, the same for the same ``(seed, step, split)``.

    >>> batch = caption_batch(4, seed=0, step=0)
    >>> batch.images.shape, batch.captions.shape
    (torch.Size([4, 1, 24, 24]), torch.Size([4, 4]))
    >>> caption_text(batch.captions[0]) == " ".join(str(int(t)) for t in batch.captions[0][: batch.lengths[0] - 1])
    True
    """
    batch_size = check_int("caption_batch", "batch_size", batch_size, low=1)
    images, labels = digit_images(split)
    # test batches count their steps down from -1, so that no test scene repeats a training layout
    gen = batch_generator(seed, step if split == "train" else -1 - step)
    G, L = GRID * GRID, MAX_DIGITS + 1
    count = torch.randint(1, MAX_DIGITS + 1, (batch_size,), generator=gen)  # (B,) digits per scene
    # which cells: the first `count` of a random order of the G cells, then sorted into reading order
    order = torch.rand(batch_size, G, generator=gen).argsort(dim=1)  # (B, G)
    picks = torch.randint(0, len(labels), (batch_size, MAX_DIGITS), generator=gen)  # (B, MAX_DIGITS) image ids
    k = torch.arange(MAX_DIGITS)[None]  # (1, MAX_DIGITS)
    present = k < count[:, None]  # (B, MAX_DIGITS): the k-th digit is drawn
    # reading order: sort the chosen cells, with absent digits (cell G) sorted last
    chosen = torch.where(present, order[:, :MAX_DIGITS], G).sort(dim=1).values  # (B, MAX_DIGITS)
    grid = torch.zeros(batch_size, G + 1, CELL, CELL)  # (B, G + 1, 8, 8); slot G takes what is not drawn
    grid[torch.arange(batch_size)[:, None], chosen] = images[picks]
    scenes = grid[:, :G].view(batch_size, GRID, GRID, CELL, CELL).permute(0, 1, 3, 2, 4)  # (B, row, y, col, x)
    scenes = scenes.reshape(batch_size, 1, GRID * CELL, GRID * CELL)  # (B, 1, 24, 24)
    captions = torch.full((batch_size, L), END, dtype=torch.int64)
    cells = torch.full((batch_size, L), -1, dtype=torch.int64)
    captions[:, :MAX_DIGITS] = torch.where(present, labels[picks], END)
    cells[:, :MAX_DIGITS] = torch.where(present, chosen, -1)
    return CaptionBatch(scenes.to(device), captions.to(device), (count + 1).to(device), cells.to(device))


def caption_text(tokens: torch.Tensor) -> str:
    """A caption's words up to its first ``END``: ``"7 2"``.

    >>> caption_text(torch.tensor([7, 2, END, END]))
    '7 2'
    """
    words = []
    for t in tokens.tolist():
        if t == END:
            break
        words.append(str(t))
    return " ".join(words)
