"""Image captioning with and without visual attention (Xu et al. 2015, "Show, Attend and Tell").

Both captioners share one encoder and one decoder; they differ only in what the decoder sees of the image at
each word (section 3.1.2 of the paper):

- :class:`ShowAttendTell`: a soft attention over the encoder's ``G`` region vectors ``a_i`` (additive, as in
  the paper's f_att): ``e_ti = f_att(a_i, h_{t-1})``, ``alpha_t = softmax(e_t)``, ``z_t = sum_i alpha_ti a_i``.
  A new glimpse for every word.
- :class:`ShowAndTell`: one global vector ``z = W_g [a_1; ...; a_G]``, the same for every word (Vinyals et al.
  2015 feed one image vector; ours keeps where each region is, by projecting the concatenated regions rather
  than their average, so that the baseline can know where a digit is without attention).

The decoder is an LSTM: ``h_t = LSTM([E y_{t-1}; z_t], h_{t-1})``, and the word is predicted from
``[h_t; z_t]`` (the paper's deep output, without its extra layer). ``h_0`` and ``c_0`` come from the average
region vector through a linear map each, as in the paper. The paper's doubly stochastic regulariser is left out:
the captions here name one region per word.

Shape legend: ``B`` batch, ``L`` caption length, ``G`` regions, ``C`` region width, ``H`` LSTM width,
``V`` vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from memlib.attention import AdditiveAttention
from memlib.tasks.captions import CELL, GRID, MAX_DIGITS, VOCAB, CaptionBatch
from memlib.validate import check_shape, check_tokens

__all__ = [
    "CaptionScores",
    "CaptionerConfig",
    "DigitEncoder",
    "ShowAndTell",
    "ShowAttendTell",
    "caption_loss",
    "caption_scores",
]


@dataclass(frozen=True)
class CaptionerConfig:
    """Sizes of a captioner; the defaults train in about a minute on two CPU cores."""

    channels: int = 32  # C: width of each region vector (one region per 8 x 8 cell)
    hidden: int = 64  # H: the LSTM's width
    embed: int = 16  # width of a word embedding: eleven words need little
    attention: int = 32  # A: width of the additive attention's hidden layer


class DigitEncoder(nn.Module):
    """Three 3 x 3 convolutions, each followed by a 2 x 2 max-pool: 24 x 24 pixels become 3 x 3 regions, one
    ``C``-wide vector for each 8 x 8 cell.

    ``forward(images (B, 1, 24, 24)) -> regions (B, G, C)``.

    >>> DigitEncoder(32)(torch.zeros(2, 1, 24, 24)).shape
    torch.Size([2, 9, 32])
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 12, 12)
            nn.Conv2d(16, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, C, 6, 6)
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, C, 3, 3)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = GRID * CELL
        images = check_shape(type(self).__name__, "images", images, "B, 1, 24, 24", (None, 1, size, size))
        return self.conv(images).flatten(2).transpose(1, 2)  # (B, G, C), regions in reading order


class _Captioner(nn.Module):
    """The shared encoder and decoder; subclasses say what the decoder sees of the image (``_glimpse``)."""

    START = VOCAB  # the embedding of "no previous word", used at t = 0

    def __init__(self, config: CaptionerConfig):
        super().__init__()
        c = config
        self.config = config
        self.encoder = DigitEncoder(c.channels)
        self.embed = nn.Embedding(VOCAB + 1, c.embed)
        self.init_h, self.init_c = nn.Linear(c.channels, c.hidden), nn.Linear(c.channels, c.hidden)
        self.cell = nn.LSTMCell(c.embed + c.channels, c.hidden)
        self.out = nn.Linear(c.hidden + c.channels, VOCAB)

    def _glimpse(self, h: torch.Tensor, regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def _decode(
        self, images: torch.Tensor, captions: torch.Tensor | None, length: int
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Teacher-forced on ``captions`` where given, else greedy: ``(logits (B, L, V), tokens (B, L), weights)``."""
        size = GRID * CELL
        images = check_shape(type(self).__name__, "images", images, "B, 1, 24, 24", (None, 1, size, size))
        regions = self.encoder(images)  # (B, G, C)
        mean = regions.mean(1)  # (B, C)
        h, c = torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))  # (B, H) each
        previous = torch.full((len(images),), self.START, dtype=torch.int64, device=images.device)  # (B,)
        logits, tokens, weights = [], [], []
        for t in range(length):
            z, alpha = self._glimpse(h, regions)  # (B, C), (B, G) or None
            # h_t = LSTM([E y_{t-1}; z_t], h_{t-1})
            h, c = self.cell(torch.cat([self.embed(previous), z], -1), (h, c))
            # p(y_t) = softmax(W_o [h_t; z_t])
            logit = self.out(torch.cat([h, z], -1))  # (B, V)
            token = logit.argmax(-1)  # (B,)
            logits.append(logit)
            tokens.append(token)
            if alpha is not None:
                weights.append(alpha)
            previous = captions[:, t] if captions is not None else token
        return torch.stack(logits, 1), torch.stack(tokens, 1), weights

    def _check_captions(self, captions: torch.Tensor) -> torch.Tensor:
        return check_tokens(type(self).__name__, captions, VOCAB)  # (B, L)


class ShowAttendTell(_Captioner):
    """Captioner with soft visual attention (Xu et al. 2015, section 3.1.2, "soft" attention).

    ``forward(images (B, 1, 24, 24), captions (B, L)) -> (logits (B, L, V), weights (B, L, G))``, teacher-forced;
    ``generate(images, length) -> (tokens (B, L), weights (B, L, G))``, greedy. ``weights[b, t]`` is where the
    decoder looked for word ``t``.

    >>> model = ShowAttendTell()
    >>> tokens, weights = model.generate(torch.zeros(2, 1, 24, 24))
    >>> tokens.shape, weights.shape, bool(torch.allclose(weights.sum(-1), torch.ones(2, 4)))
    (torch.Size([2, 4]), torch.Size([2, 4, 9]), True)
    """

    def __init__(self, config: CaptionerConfig = CaptionerConfig()):
        super().__init__(config)
        self.attend = AdditiveAttention(config.hidden, config.channels, config.attention)

    def _glimpse(self, h: torch.Tensor, regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # e_ti = f_att(a_i, h_{t-1}); alpha_t = softmax(e_t); z_t = sum_i alpha_ti a_i
        return self.attend(h, regions)  # (B, C), (B, G)

    def forward(self, images: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        captions = self._check_captions(captions)
        logits, _, weights = self._decode(images, captions, captions.shape[1])
        return logits, torch.stack(weights, 1)  # (B, L, V), (B, L, G)

    @torch.no_grad()
    def generate(self, images: torch.Tensor, length: int = MAX_DIGITS + 1) -> tuple[torch.Tensor, torch.Tensor]:
        _, tokens, weights = self._decode(images, None, length)
        return tokens, torch.stack(weights, 1)  # (B, L), (B, L, G)


class ShowAndTell(_Captioner):
    """Captioner without attention: one global image vector ``z = W_g [a_1; ...; a_G]`` for every word.

    ``forward(images (B, 1, 24, 24), captions (B, L)) -> logits (B, L, V)``, teacher-forced;
    ``generate(images, length) -> tokens (B, L)``, greedy.

    >>> ShowAndTell().generate(torch.zeros(2, 1, 24, 24)).shape
    torch.Size([2, 4])
    """

    def __init__(self, config: CaptionerConfig = CaptionerConfig()):
        super().__init__(config)
        self.w_g = nn.Linear(GRID * GRID * config.channels, config.channels)

    def _glimpse(self, h: torch.Tensor, regions: torch.Tensor) -> tuple[torch.Tensor, None]:
        # z = W_g [a_1; ...; a_G]: where each region is stays in the vector; the same z at every word
        return self.w_g(regions.flatten(1)), None  # (B, C)

    def forward(self, images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        captions = self._check_captions(captions)
        return self._decode(images, captions, captions.shape[1])[0]  # (B, L, V)

    @torch.no_grad()
    def generate(self, images: torch.Tensor, length: int = MAX_DIGITS + 1) -> torch.Tensor:
        return self._decode(images, None, length)[1]  # (B, L)


def caption_loss(model: ShowAttendTell | ShowAndTell, batch: CaptionBatch) -> torch.Tensor:
    """Cross-entropy of every word of the teacher-forced captions (``<end>`` included).

    >>> from memlib.tasks.captions import caption_batch
    >>> float(caption_loss(ShowAndTell(), caption_batch(4))) > 0
    True
    """
    out = model(batch.images, batch.captions)
    logits = out[0] if isinstance(out, tuple) else out  # (B, L, V)
    return F.cross_entropy(logits.flatten(0, 1), batch.captions.flatten())


class CaptionScores(NamedTuple):
    """What :func:`caption_scores` returns: the share of captions right word for word, of words right (up to
    and including ``<end>``), and, for an attentive captioner, of digit words whose strongest attention weight
    lies on the cell the digit was drawn in (``None`` without attention)."""

    exact: float
    words: float
    looks_at_digit: float | None


def caption_scores(model: ShowAttendTell | ShowAndTell, batch: CaptionBatch) -> CaptionScores:
    """Greedy captions of ``batch`` scored against its captions.

    >>> from memlib.tasks.captions import caption_batch
    >>> scores = caption_scores(ShowAttendTell(), caption_batch(8, split="test"))
    >>> 0 <= scores.exact <= 1, 0 <= scores.words <= 1, 0 <= scores.looks_at_digit <= 1
    (True, True, True)
    """
    was_training = model.training
    model.eval()
    try:
        out = model.generate(batch.images, batch.captions.shape[1])
    finally:
        model.train(was_training)
    tokens, weights = out if isinstance(out, tuple) else (out, None)
    L = batch.captions.shape[1]
    counted = torch.arange(L, device=tokens.device)[None] < batch.lengths[:, None]  # (B, L): words up to <end>
    right = (tokens == batch.captions) & counted  # (B, L)
    exact = (right.sum(1) == batch.lengths).float().mean().item()
    words = (right.sum() / counted.sum()).item()
    looks = None
    if weights is not None:
        digit = batch.cells >= 0  # (B, L)
        looks = ((weights.argmax(-1) == batch.cells) & digit).sum().item() / max(int(digit.sum()), 1)
    return CaptionScores(exact, words, looks)

