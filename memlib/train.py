"""Devices, seeds and a small training loop shared by every chapter; the text-classifier recipe of chapter 4.

``fit`` stops before the optimiser step when the loss turns non-finite (so the weights it
leaves are the last finite ones), writes checkpoints atomically and resumes from them.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from memlib.hybrid import RecurrentTextClassifier, TransformerTextClassifier
from memlib.tasks.text import TextSplit, Vocabulary, batches, pad_batch, rotten_tomatoes, tokenize_text
from memlib.validate import check_int

_DEVICE_TYPES = ("cpu", "cuda")


def device(spec: str | torch.device = "auto") -> torch.device:
    """The device to run on: ``"auto"`` picks CUDA when present, else the CPU.

    ``spec`` may also be ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.

    >>> device("cpu")
    device(type='cpu')
    >>> device("auto").type in ("cpu", "cuda")
    True
    """
    if isinstance(spec, torch.device):
        return device(str(spec))
    if not isinstance(spec, str):
        raise TypeError(f"device: expected a str or torch.device, got {spec!r} ({type(spec).__name__})")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ValueError(
            f"device: unknown device {spec!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if dev.type not in _DEVICE_TYPES:
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {spec!r} requested but CUDA is not available here; use 'auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device: {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU generator seeded the same way.

    >>> _ = seed_everything(0); a = torch.rand(2)
    >>> _ = seed_everything(0); torch.equal(a, torch.rand(2))
    True
    """
    check_int("seed_everything", "seed", seed, expected="an int seed", got=type(seed).__name__, error=TypeError)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class FitResult:
    """What :func:`fit` returns: every step's loss and the seconds spent training.

    >>> FitResult().losses
    []
    """
    losses: list[float] = field(default_factory=list)  # one per step, from step 0
    seconds: float = 0.0  # wall time of this call (not of earlier, resumed runs)
    resumed_from: int = 0  # step the run resumed at (0: fresh start)

    @property
    def steps(self) -> int:
        return len(self.losses)

    def final_loss(self, window: int = 50) -> float:
        """Mean of the last ``window`` losses: a steadier summary than the last value."""
        tail = self.losses[-window:]
        return float(sum(tail) / len(tail))


def _show_progress() -> bool:
    return sys.stderr.isatty()


def fit(
    model: torch.nn.Module,
    batches: Callable[[int], Any],
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    *,
    steps: int,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    clip: float | None = 1.0,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    progress: bool | None = None,
) -> FitResult:
    """Train ``model`` for ``steps`` steps and return the loss of every step.

    ``batches(step)`` returns the batch for a step (tasks are seeded by step, so a resumed run
    sees the same data); ``loss_fn(model, batch)`` returns a scalar loss. ``progress=None``
    shows a tqdm bar only on a terminal, so notebooks run by papermill stay quiet.

    >>> model = torch.nn.Linear(1, 1)
    >>> x = torch.linspace(-1, 1, 16)[:, None]
    >>> result = fit(model, lambda step: (x, 2 * x), lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(),
    ...              steps=200, lr=0.1, progress=False)
    >>> len(result.losses), result.losses[-1] < result.losses[0]
    (200, True)
    """
    check_int("fit", "steps", steps, low=1, expected="steps to be a positive int")
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    result = FitResult()
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        state = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        result.losses = list(state["losses"])
        result.resumed_from = len(result.losses)
        if result.resumed_from > steps:
            raise ValueError(
                f"fit: the checkpoint {path} already holds {result.resumed_from} steps, more than steps={steps}"
            )
        torch.set_rng_state(state["rng"])

    from tqdm import tqdm

    bar = tqdm(
        total=steps, initial=result.resumed_from, disable=not (_show_progress() if progress is None else progress)
    )
    model.train()
    start = time.perf_counter()
    try:
        for step in range(result.resumed_from, steps):
            loss = loss_fn(model, batches(step))
            value = loss.item()
            if not math.isfinite(value):
                kept = f"the weights after step {step - 1}" if step else "its initial weights"
                last = f"{result.losses[-1]:.4g}" if result.losses else "none"
                raise FloatingPointError(
                    f"fit: loss became {value} at step {step} (last finite loss: {last}); the model keeps "
                    f"{kept}. Lower the learning rate or clip gradients."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            result.losses.append(value)
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{value:.4f}")
            if path is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
                save_checkpoint(
                    path, model=model.state_dict(), optimizer=optimizer.state_dict(), losses=result.losses,
                    rng=torch.get_rng_state(),
                )
    finally:
        bar.close()
        model.eval()
    result.seconds = time.perf_counter() - start
    return result


def save_checkpoint(path: str | os.PathLike, **state: Any) -> None:
    """Write ``state`` with torch.save through a temporary file, so a crash never leaves half a file.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "run.pt")
    >>> save_checkpoint(path, step=3, model=torch.nn.Linear(1, 1).state_dict())
    >>> torch.load(path)["step"]
    3
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Text classification (chapter 4): batches of token ids from memlib.tasks.text, a classifier from memlib.hybrid.
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def predict_proba(
    model: nn.Module, encoded: Sequence[Sequence[int]], batch_size: int = 256, device: torch.device | str | None = None
) -> torch.Tensor:
    """P(fresh) for each snippet (N,), in eval mode (the model's train/eval state is restored).

    >>> from memlib.hybrid import RecurrentTextClassifier
    >>> model = RecurrentTextClassifier(vocab_size=10, embed_dim=4, hidden_size=4)
    >>> p = predict_proba(model, [[1, 2, 3], [4, 5]])
    >>> p.shape, bool(((p >= 0) & (p <= 1)).all())
    (torch.Size([2]), True)
    """
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(encoded), batch_size):
        tokens, lengths = pad_batch(encoded[start : start + batch_size])
        out.append(model(tokens.to(device), lengths.to(device)).softmax(-1)[:, 1].cpu())
    model.train(was_training)
    return torch.cat(out)


def train_classifier(
    model: nn.Module,
    encoded: Sequence[Sequence[int]],
    labels: Sequence[int] | np.ndarray,
    *,
    epochs: int,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    device: torch.device | str | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> FitResult:
    """Train with cross-entropy and one Adam optimiser for ``epochs`` passes of
    :func:`memlib.tasks.text.batches`, through :func:`~memlib.train.fit`. ``on_epoch(epoch)`` runs after each epoch (an
    evaluation), outside the timed training.
    Returns every step's loss and the seconds spent training.

    >>> from memlib.hybrid import RecurrentTextClassifier
    >>> model = RecurrentTextClassifier(vocab_size=10, embed_dim=4, hidden_size=4)
    >>> result = train_classifier(model, [[1, 2], [3, 4, 5], [6]], [0, 1, 0], epochs=2, batch_size=2)
    >>> len(result.losses)  # two batches per epoch
    4
    """
    check_int("train_classifier", "epochs", epochs, low=1, expected="a positive int epochs")
    batch = batches(encoded, labels, batch_size, seed=seed, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    result = FitResult()
    for epoch in range(epochs):
        offset = epoch * batch.per_epoch
        run = fit(
            model,
            lambda step, offset=offset: batch(offset + step),
            lambda m, b: nn.functional.cross_entropy(m(b.tokens, b.lengths), b.labels),
            steps=batch.per_epoch,
            optimizer=optimizer,
        )
        result.losses += run.losses
        result.seconds += run.seconds
        if on_epoch is not None:
            on_epoch(epoch)
    return result


class SentimentRun(NamedTuple):
    """What :func:`train_sentiment` returns.

    >>> SentimentRun._fields
    ('model', 'vocab', 'train', 'test', 'fit')
    """
    model: nn.Module
    vocab: Vocabulary
    train: TextSplit
    test: TextSplit
    fit: FitResult


def train_sentiment(
    kind: str = "lstm", epochs: int = 8, seed: int = 0, device: torch.device | str | None = None
) -> SentimentRun:
    """The chapter 4 sentiment model, trained from scratch: split ``seed``, vocabulary (min count 2) on the
    training side, ``kind`` in {"lstm", "gru", "transformer"} with the page's sizes, ``epochs`` of batch 32."""
    if kind not in ("lstm", "gru", "transformer"):
        raise ValueError(f"train_sentiment: expected kind in ('lstm', 'gru', 'transformer'), got {kind!r}")
    train, test = rotten_tomatoes(split_seed=seed)
    tokens = [tokenize_text(t) for t in train.texts]
    vocab = Vocabulary(tokens, min_count=2)
    seed_everything(seed)
    if kind == "transformer":
        model = TransformerTextClassifier(len(vocab))
    else:
        model = RecurrentTextClassifier(len(vocab), kind)
    model = model.to(device)
    run = train_classifier(
        model, [vocab.encode(t) for t in tokens], train.labels, epochs=epochs, seed=seed, device=device
    )
    return SentimentRun(model, vocab, train, test, run)
