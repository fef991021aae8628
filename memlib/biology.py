"""Memory models from biology and psychology: Rosenblatt's perceptron and the multi-store model.

Shapes: ``B`` stimuli (or trials), ``S`` sensory units, ``A`` association units, ``F`` features seen by
the perceptron rule, ``N`` trials, ``L`` list length, ``K`` short-term slots.

- :class:`Perceptron` (Rosenblatt 1958, "The Perceptron: a probabilistic model for information storage
  and organization in the brain"): sensory units (S) feed association units (A) through fixed random
  excitatory and inhibitory connections; one response unit (R) sums the A-units with weights that the
  perceptron rule (:func:`perceptron_rule`) trains. What the machine remembers is those weights.
  :func:`mistake_bound` computes the convergence theorem's bound (Novikoff 1962) for a separating
  direction.
- :class:`SensoryRegister` and :class:`MultiStoreModel` (Atkinson and Shiffrin 1968, "Human memory: a
  proposed system and its control processes"): a sensory register whose traces decay within a fraction
  of a second; a short-term store that is a rehearsal buffer of ``K`` slots, where a new item displaces
  a random occupant once the buffer is full (Atkinson and Shiffrin's section on the rehearsal buffer);
  a long-term store whose strength for an item grows with each step the item spends in the buffer.
  :meth:`MultiStoreModel.free_recall` simulates free recall of lists and gives serial-position curves.

Trace names (inside ``memlib.trace()``): :meth:`MultiStoreModel.free_recall` records
``multistore.buffer`` (N, K), the item in each slot (-1 empty, -2 a distractor), once per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from memlib.tracing import record
from memlib.validate import check_float, check_int, check_sizes


def _nonnegative_int(fn: str, **sizes: object) -> None:
    for label, size in sizes.items():
        check_int(fn, label, size, low=0)


def _check_labels(fn: str, labels: object, n: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != n:
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{fn}: expected labels of shape ({n},), got {got}")
    if not ((labels == 1) | (labels == -1)).all():
        raise ValueError(f"{fn}: expected labels +1 or -1, got values {sorted(labels.unique().tolist())[:6]}")
    return labels


def _check_features(fn: str, label: str, x: object, size: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: expected {label} as a tensor (B, F), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{fn}: expected floating-point {label}, got {x.dtype}")
    if x.dim() != 2 or x.shape[0] == 0 or (size is not None and x.shape[1] != size):
        want = f"(B, {size})" if size is not None else "(B, F) with B > 0"
        raise ValueError(f"{fn}: expected {label} of shape {want}, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{fn}: expected finite {label}, got NaN or inf")
    return x


# ---------------------------------------------------------------------------------------------
# Rosenblatt's perceptron (1958).
# ---------------------------------------------------------------------------------------------


class PerceptronFit(NamedTuple):
    """What :func:`perceptron_rule` returns: the learned weight and bias, the errors per epoch, the mistakes made, and
    whether it converged.

    >>> PerceptronFit._fields
    ('weight', 'bias', 'errors', 'mistakes', 'converged')
    """
    weight: torch.Tensor  # (F,) the R-unit's weights
    bias: torch.Tensor  # () the R-unit's bias (minus its threshold)
    errors: list[int]  # misclassified examples at the start of each epoch, then after the last
    mistakes: int  # updates made (each one a mistake on the example shown)
    converged: bool  # True when an epoch made no mistake


def perceptron_rule(
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    max_epochs: int = 100,
    lr: float = 1.0,
    generator: torch.Generator | None = None,
) -> PerceptronFit:
    """Train one threshold unit with the perceptron rule, from zero weights.

    ``features`` (B, F) float, ``labels`` (B,) of +-1. Each epoch shows the examples once (in order, or
    in a random order drawn from ``generator``); on a mistake, ``y (w . x + b) <= 0``, the rule moves
    the weights toward the example: ``w <- w + lr y x``, ``b <- b + lr y``. Stops after an epoch with
    no mistake (``converged``) or after ``max_epochs``. From zero weights ``lr`` only scales ``w`` and
    ``b``: the mistakes are the same for any ``lr > 0``.
    """
    fn = "perceptron_rule"
    x = _check_features(fn, "features", features)
    y = _check_labels(fn, labels, x.shape[0]).to(x.dtype)
    check_sizes(fn, max_epochs=max_epochs)
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
        raise ValueError(f"{fn}: expected lr as a positive number, got {lr!r}")
    # the bias as a weight on a constant input: x~ = [x, 1], w~ = [w, b]
    xb = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)], 1)  # (B, F + 1)
    w = torch.zeros(xb.shape[1], dtype=x.dtype, device=x.device)
    errors, mistakes, converged = [], 0, False
    for _ in range(max_epochs):
        errors.append(int(((xb @ w) * y <= 0).sum()))
        order = range(len(y)) if generator is None else torch.randperm(len(y), generator=generator).tolist()
        made = 0
        for i in order:
            if y[i] * torch.dot(w, xb[i]) <= 0:
                # w~ <- w~ + lr y x~
                w = w + lr * y[i] * xb[i]
                made += 1
        mistakes += made
        if made == 0:
            converged = True
            break
    errors.append(int(((xb @ w) * y <= 0).sum()))
    return PerceptronFit(w[:-1], w[-1], errors, mistakes, converged)


class MistakeBound(NamedTuple):
    """What :func:`mistake_bound` returns: the data's radius, its margin along a direction, and Novikoff's bound (radius
    / margin)^2.

    >>> MistakeBound._fields
    ('radius', 'margin', 'bound')
    """
    radius: float  # R = max ||x~||, with x~ = [x, 1]
    margin: float  # gamma = min y u . x~, for the unit vector u along ``direction``
    bound: float  # (R / gamma)^2: no more mistakes than this, in any order, for any number of epochs


def mistake_bound(features: torch.Tensor, labels: torch.Tensor, direction: torch.Tensor) -> MistakeBound:
    """The perceptron convergence theorem's bound (Novikoff 1962) for :func:`perceptron_rule`.

    ``direction`` (F + 1,) is a separating ``[w, b]``; if ``y [w, b] . [x, 1] > 0`` for every example,
    the rule makes at most ``(R / gamma)^2`` mistakes, with ``R`` the largest norm of ``[x, 1]`` and
    ``gamma`` the smallest margin ``y u . [x, 1]`` for ``u = direction / ||direction||``. Any separating
    direction gives a valid bound; the maximum-margin one gives the smallest.

    >>> x, y = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1.0, -1.0])
    >>> round(mistake_bound(x, y, torch.tensor([1.0, -1.0, 0.0])).bound, 3)  # (radius / margin)^2
    4.0
    """
    fn = "mistake_bound"
    x = _check_features(fn, "features", features)
    y = _check_labels(fn, labels, x.shape[0]).to(x.dtype)
    F = x.shape[1]
    if not isinstance(direction, torch.Tensor) or direction.shape != (F + 1,):
        got = tuple(direction.shape) if isinstance(direction, torch.Tensor) else type(direction).__name__
        raise ValueError(f"{fn}: expected direction [w, b] of shape ({F + 1},), got {got}")
    xb = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)], 1)
    u = direction.to(x.dtype) / torch.linalg.vector_norm(direction.to(x.dtype))
    margin = float((y * (xb @ u)).min())
    if not margin > 0:
        raise ValueError(f"{fn}: direction does not separate the data (smallest margin {margin:.4g} <= 0)")
    radius = float(torch.linalg.vector_norm(xb, dim=1).max())
    return MistakeBound(radius, margin, (radius / margin) ** 2)


class Perceptron(nn.Module):
    """Rosenblatt's perceptron (Rosenblatt 1958): S-units -> fixed random A-units -> a trained R-unit.

    Each of the ``association_size`` A-units is wired to ``fan_in`` S-units chosen at random, each
    connection excitatory (+1) or inhibitory (-1) at random, and fires when its summed input exceeds its
    threshold, drawn uniformly from ``thresholds``:

        a_j = 1 if sum_i c_ji s_i > theta_j else 0        (c_ji in {-1, 0, +1}, fixed)

    The R-unit answers ``+1`` if ``w . a + b > 0`` and ``-1`` otherwise. Only ``w`` and ``b`` learn
    (:meth:`fit`, the perceptron rule); the A-units are the fixed random "projection area" of the
    paper. The memory of the machine is ``w`` and ``b``: ``A + 1`` numbers whatever the number of
    examples, not the examples themselves. ``association_size`` A-units with ``fan_in`` S-units each;
    with ``fan_in = sensory_size`` and no thresholds it reduces to a linear threshold unit on random
    projections.

    >>> p = Perceptron(sensory_size=4, association_size=6, generator=torch.Generator().manual_seed(0))
    >>> p.associate(torch.ones(2, 4, dtype=torch.float64)).shape  # (B, A) association-unit outputs
    torch.Size([2, 6])
    """

    def __init__(
        self,
        sensory_size: int,
        association_size: int,
        *,
        fan_in: int = 2,
        thresholds: tuple[float, float] = (-1.0, 1.0),
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        check_sizes("Perceptron", sensory_size=sensory_size, association_size=association_size, fan_in=fan_in)
        if fan_in > sensory_size:
            raise ValueError(f"Perceptron: expected fan_in <= sensory_size = {sensory_size}, got {fan_in}")
        low, high = thresholds
        if not low <= high:
            raise ValueError(f"Perceptron: expected thresholds (low, high) with low <= high, got {thresholds}")
        self.sensory_size, self.association_size, self.fan_in = sensory_size, association_size, fan_in
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        # c_ji: each A-unit picks fan_in distinct S-units, each with a random sign
        picks = torch.rand(association_size, sensory_size, generator=g).argsort(1)[:, :fan_in]  # (A, fan_in)
        signs = torch.randint(0, 2, (association_size, fan_in), generator=g) * 2 - 1
        wiring = torch.zeros(association_size, sensory_size).scatter(1, picks, signs.float())  # (A, S)
        theta = low + (high - low) * torch.rand(association_size, generator=g)  # (A,)
        self.register_buffer("wiring", wiring.to(dtype))  # (A, S), fixed
        self.register_buffer("theta", theta.to(dtype))  # (A,), fixed
        self.register_buffer("weight", torch.zeros(association_size, dtype=dtype))  # (A,), the R-unit's memory
        self.register_buffer("bias", torch.zeros((), dtype=dtype))

    def extra_repr(self) -> str:
        return f"S={self.sensory_size}, A={self.association_size}, fan_in={self.fan_in}"

    def associate(self, s: torch.Tensor) -> torch.Tensor:
        """A-unit activity: ``s`` (B, S) -> (B, A) of 0 and 1."""
        s = _check_features("Perceptron", "stimulus", s, self.sensory_size)
        if s.dtype != self.wiring.dtype:
            raise TypeError(f"Perceptron: expected stimulus of dtype {self.wiring.dtype}, got {s.dtype}")
        # a_j = [sum_i c_ji s_i > theta_j]
        return (s @ self.wiring.T > self.theta).to(s.dtype)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """R-unit response: ``s`` (B, S) -> (B,) of +1 and -1."""
        a = self.associate(s)  # (B, A)
        # r = +1 if w . a + b > 0 else -1
        return torch.where(a @ self.weight + self.bias > 0, 1.0, -1.0).to(s.dtype)

    def fit(
        self,
        s: torch.Tensor,
        labels: torch.Tensor,
        *,
        max_epochs: int = 100,
        generator: torch.Generator | None = None,
    ) -> PerceptronFit:
        """Train the R-unit with :func:`perceptron_rule` on the A-unit activity; store and return the fit."""
        result = perceptron_rule(self.associate(s), labels, max_epochs=max_epochs, generator=generator)
        self.weight.copy_(result.weight)
        self.bias.copy_(result.bias)
        return result


# ---------------------------------------------------------------------------------------------
# The multi-store model (Atkinson and Shiffrin 1968).
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MultiStoreConfig:
    """Parameters of :class:`MultiStoreModel`; time is counted in presentation steps (one item each).

    >>> MultiStoreConfig().buffer_slots  # Atkinson and Shiffrin's small rehearsal buffer
    4
    """

    sensory_decay: float = 0.25  # time constant of a sensory trace, in steps: iconic traces last well under a second
    buffer_slots: int = 4  # K: the short-term store holds a few items (Miller 1956; Cowan 2001)
    transfer_rate: float = 0.15  # long-term strength gained per step in the buffer (our choice: recall mid-range)
    rehearse_during_delay: bool = False  # a distractor task during the delay blocks rehearsal (Glanzer and Cunitz 1966)

    def __post_init__(self):
        check_float("MultiStoreConfig", "sensory_decay", self.sensory_decay, low=0, low_open=True,
                    expected="sensory_decay > 0")
        check_sizes("MultiStoreConfig", buffer_slots=self.buffer_slots)
        check_float("MultiStoreConfig", "transfer_rate", self.transfer_rate, low=0, expected="transfer_rate >= 0")


class SensoryRegister:
    """A sensory register (Atkinson and Shiffrin 1968): a brief, large-capacity trace of every stimulus.

    Each item's trace is lost at a random time, exponentially distributed with mean ``decay`` steps, so
    the chance that it is still there after ``t`` steps is ``exp(-t / decay)``.

    >>> register = SensoryRegister(decay=2.0)
    >>> register.retention(0.0), round(register.retention(2.0), 3)
    (1.0, 0.368)
    """

    def __init__(self, decay: float):
        check_float("SensoryRegister", "decay", decay, low=0, low_open=True, expected="decay > 0 (steps)")
        self.decay = float(decay)

    def retention(self, elapsed: float) -> float:
        """The chance that a trace survives ``elapsed`` >= 0 steps: ``exp(-elapsed / decay)``."""
        check_float("SensoryRegister", "elapsed", elapsed, low=0, expected="elapsed time >= 0")
        return math.exp(-elapsed / self.decay)

    def sample(self, shape: tuple[int, ...], elapsed: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Which traces survive ``elapsed`` steps: a boolean tensor of ``shape``."""
        return torch.rand(shape, generator=generator) < self.retention(elapsed)


class FreeRecall(NamedTuple):
    """What :meth:`MultiStoreModel.free_recall` returns: the items recalled, those still in the short-term store, and
    each item's long-term strength.

    >>> FreeRecall._fields
    ('recalled', 'in_short_term', 'strength')
    """
    recalled: torch.Tensor  # (N, L) bool: item at serial position j recalled in trial n
    in_short_term: torch.Tensor  # (N, L) bool: in the buffer when recall began
    strength: torch.Tensor  # (N, L) long-term strength; recall from it with probability 1 - exp(-strength)


class MultiStoreModel:
    """The multi-store model of Atkinson and Shiffrin (1968), as a rehearsal-buffer simulation.

    Per step one list item arrives through the sensory register and is attended at once, so it
    enters the short-term store: a buffer of ``K`` slots; once the buffer is full the newcomer displaces
    a random occupant. Every step an item spends in the buffer adds ``transfer_rate`` to its long-term
    strength ``s`` (rehearsal copies it into the long-term store); the chance to retrieve it from there
    is ``1 - exp(-s)``, so it grows with time spent in the buffer. During a delay, a distractor item
    enters the buffer each step (and list items are not rehearsed, unless ``rehearse_during_delay``).
    Free recall reports every list item still in the buffer, then each other item with its
    long-term retrieval probability.

    >>> model = MultiStoreModel(MultiStoreConfig(buffer_slots=4))
    >>> model.config.buffer_slots
    4
    """

    def __init__(self, config: MultiStoreConfig | None = None):
        self.config = config if config is not None else MultiStoreConfig()
        self.sensory = SensoryRegister(self.config.sensory_decay)

    def free_recall(
        self,
        list_length: int,
        trials: int,
        *,
        delay: int = 0,
        generator: torch.Generator | None = None,
    ) -> FreeRecall:
        """Simulate ``trials`` lists of ``list_length`` items, recalled after ``delay`` distractor steps."""
        fn = "MultiStoreModel.free_recall"
        check_sizes(fn, list_length=list_length, trials=trials)
        _nonnegative_int(fn, delay=delay)
        K, rate = self.config.buffer_slots, self.config.transfer_rate
        N, L = trials, list_length
        buffer = torch.full((N, K), -1, dtype=torch.long)  # (N, K): item id, -1 empty, -2 distractor
        strength = torch.zeros(N, L + 1)  # column L collects the distractors' and empty slots' strength
        rows = torch.arange(N)
        for t in range(L + delay):
            item = t if t < L else -2
            empty = buffer == -1  # (N, K)
            # the first empty slot if any, otherwise a random occupant is displaced
            random_slot = torch.randint(0, K, (N,), generator=generator)
            slot = torch.where(empty.any(1), empty.float().argmax(1), random_slot)  # (N,)
            buffer[rows, slot] = item
            record("multistore.buffer", buffer)
            if t < L or self.config.rehearse_during_delay:
                # s_i <- s_i + rate for every list item i in the buffer (rehearsal)
                held = torch.where(buffer >= 0, buffer, L)  # (N, K)
                strength.scatter_add_(1, held, torch.full((N, K), float(rate)))
        strength = strength[:, :L]
        in_short_term = torch.zeros(N, L + 1, dtype=torch.bool)
        in_short_term.scatter_(1, torch.where(buffer >= 0, buffer, L), True)
        in_short_term = in_short_term[:, :L]
        # P(retrieve from the long-term store) = 1 - exp(-s)
        from_long_term = torch.rand(N, L, generator=generator) < 1 - torch.exp(-strength)
        return FreeRecall(in_short_term | from_long_term, in_short_term, strength)
