"""Memory models from biology and psychology: Rosenblatt's perceptron and the multi-store model.

Shapes: ``B`` stimuli (or trials), ``S`` sensory units, ``A`` association units, ``R`` responses, ``F``
features seen by the perceptron rule, ``N`` trials, ``L`` list length, ``K`` short-term slots.

- :class:`Perceptron` (Rosenblatt 1958, "The Perceptron: a probabilistic model for information storage
  and organization in the brain"): sensory units (S) feed association units (A) through fixed random
  excitatory and inhibitory connections (:class:`AssociationUnits`); one response unit (R) sums the
  A-units with weights that the perceptron rule (:func:`perceptron_rule`) trains. What the machine
  remembers is those weights. :func:`mistake_bound` computes the convergence theorem's bound (Novikoff
  1962) for a separating direction.
- :class:`SourceSetPerceptron` (Rosenblatt 1958, pp. 389-392): the same A-units feeding several
  mutually exclusive responses, each through its own source-set, with the R-to-A feedback of the
  paper's rule (b) and its alpha-system of value gains (the 1958 learning rule, before error correction).
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
import torch.nn.functional as F
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


class AssociationUnits(nn.Module):
    """Rosenblatt's S-points and A-units (Rosenblatt 1958, p. 389): the fixed random layer every perceptron
    here shares.

    Each of the ``association_size`` A-units is wired to ``fan_in`` S-units chosen at random, each
    connection excitatory (+1) or inhibitory (-1) at random, and fires when its summed input exceeds its
    threshold, drawn uniformly from ``thresholds``:

        a_j = 1 if sum_i c_ji s_i > theta_j else 0        (c_ji in {-1, 0, +1}, fixed)

    Nothing here learns: ``wiring`` (A, S) and ``theta`` (A,) are buffers. The subclasses add the
    response units and what they learn.

    >>> units = AssociationUnits(sensory_size=4, association_size=6, generator=torch.Generator().manual_seed(0))
    >>> units.associate(torch.ones(2, 4, dtype=torch.float64)).shape  # (B, A) association-unit outputs
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
        name = type(self).__name__
        check_sizes(name, sensory_size=sensory_size, association_size=association_size, fan_in=fan_in)
        if fan_in > sensory_size:
            raise ValueError(f"{name}: expected fan_in <= sensory_size = {sensory_size}, got {fan_in}")
        low, high = thresholds
        if not low <= high:
            raise ValueError(f"{name}: expected thresholds (low, high) with low <= high, got {thresholds}")
        self.sensory_size, self.association_size, self.fan_in = sensory_size, association_size, fan_in
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        # c_ji: each A-unit picks fan_in distinct S-units, each with a random sign
        picks = torch.rand(association_size, sensory_size, generator=g).argsort(1)[:, :fan_in]  # (A, fan_in)
        signs = torch.randint(0, 2, (association_size, fan_in), generator=g) * 2 - 1
        wiring = torch.zeros(association_size, sensory_size).scatter(1, picks, signs.float())  # (A, S)
        theta = low + (high - low) * torch.rand(association_size, generator=g)  # (A,)
        self.register_buffer("wiring", wiring.to(dtype))  # (A, S), fixed
        self.register_buffer("theta", theta.to(dtype))  # (A,), fixed

    def extra_repr(self) -> str:
        return f"S={self.sensory_size}, A={self.association_size}, fan_in={self.fan_in}"

    def associate(self, s: torch.Tensor) -> torch.Tensor:
        """A-unit activity: ``s`` (B, S) -> (B, A) of 0 and 1."""
        name = type(self).__name__
        s = _check_features(name, "stimulus", s, self.sensory_size)
        if s.dtype != self.wiring.dtype:
            raise TypeError(f"{name}: expected stimulus of dtype {self.wiring.dtype}, got {s.dtype}")
        # a_j = [sum_i c_ji s_i > theta_j]
        return (s @ self.wiring.T > self.theta).to(s.dtype)


class Perceptron(AssociationUnits):
    """Rosenblatt's perceptron (Rosenblatt 1958): S-units -> fixed random A-units -> a trained R-unit.

    The A-units are :class:`AssociationUnits`. The R-unit answers ``+1`` if ``w . a + b > 0`` and ``-1``
    otherwise. Only ``w`` and ``b`` learn (:meth:`fit`, the perceptron rule); the A-units are the fixed
    random "projection area" of the paper. The memory of the machine is ``w`` and ``b``: ``A + 1``
    numbers whatever the number of examples, not the examples themselves. With ``fan_in =
    sensory_size`` and no thresholds it reduces to a linear threshold unit on random projections.

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
        super().__init__(sensory_size, association_size, fan_in=fan_in, thresholds=thresholds,
                         generator=generator, dtype=dtype)
        self.register_buffer("weight", torch.zeros(association_size, dtype=dtype))  # (A,), the R-unit's memory
        self.register_buffer("bias", torch.zeros((), dtype=dtype))

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


class Postdominant(NamedTuple):
    """What :meth:`SourceSetPerceptron.postdominant` returns: the response that became dominant for each
    stimulus, and the A-unit activity left once it did.

    >>> Postdominant._fields
    ('response', 'activity')
    """
    response: torch.Tensor  # (B,) long: the dominant response
    activity: torch.Tensor  # (B, A): the A-units still active in the postdominant phase


class SourceSetPerceptron(AssociationUnits):
    """Rosenblatt's perceptron with several mutually exclusive responses (Rosenblatt 1958, pp. 389-392, Figs. 2, 3).

    The S-points and A-units are :class:`AssociationUnits`. Each of the ``num_responses`` R-units has a
    *source-set*, the A-units that transmit to it; here the source-sets are disjoint, each A-unit assigned
    to one response at random (``source`` (A,), the paper's omega = 1 / N_R). Each A-unit carries a *value*
    V (``value`` (A,)): how potent its impulses are. A stimulus runs in two phases (p. 392):

    - predominant: some A-units respond (:meth:`AssociationUnits.associate`); the R-units are still silent;
    - postdominant: the response whose active inputs have the greatest mean value becomes dominant (the
      paper's mean-discriminating mu-system; ties, as before any learning, are broken at random), and, with
      ``feedback``, it inhibits the complement of its own source-set (the paper's rule (b), p. 390): only
      its own source-set stays active, and no other response can occur.

    Learning is the paper's alpha-system (Table 1): each A-unit active in the postdominant phase of a
    reinforced stimulus gains one unit of value, and keeps it. In a learning series the experimenter
    forces the desired response (:meth:`fit`), so with the feedback only the forced response's source-set
    gains. Without ``feedback`` (no R-to-A connections) nothing silences the other source-sets, and every
    active A-unit gains value whatever the response.

    >>> p = SourceSetPerceptron(4, 6, num_responses=2, generator=torch.Generator().manual_seed(0))
    >>> s = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    >>> post = p.postdominant(s, forced=torch.tensor([1]))
    >>> bool(((post.activity > 0) <= (p.source == 1)).all())  # only the dominant source-set stays active
    True
    """

    def __init__(
        self,
        sensory_size: int,
        association_size: int,
        num_responses: int = 2,
        *,
        feedback: bool = True,
        fan_in: int = 2,
        thresholds: tuple[float, float] = (-1.0, 1.0),
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ):
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        super().__init__(sensory_size, association_size, fan_in=fan_in, thresholds=thresholds, generator=g,
                         dtype=dtype)
        name = type(self).__name__
        check_int(name, "num_responses", num_responses, low=2)
        if num_responses > association_size:
            raise ValueError(f"{name}: expected num_responses <= association_size = {association_size} (a "
                             f"source-set of at least one A-unit each), got {num_responses}")
        if not isinstance(feedback, bool):
            raise TypeError(f"{name}: expected feedback as a bool, got {type(feedback).__name__}")
        self.num_responses, self.feedback = num_responses, feedback
        # disjoint source-sets of (nearly) equal size, A-units dealt to the responses in a random order
        source = torch.randperm(association_size, generator=g) % num_responses  # (A,)
        self.register_buffer("source", source)  # (A,) long, fixed
        self.register_buffer("value", torch.zeros(association_size, dtype=dtype))  # (A,) V, what learns

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, R={self.num_responses}, feedback={self.feedback}"

    def _check_responses(self, responses: object, n: int) -> torch.Tensor:
        name = type(self).__name__
        if (not isinstance(responses, torch.Tensor) or responses.dtype != torch.long
                or responses.shape != (n,)):
            got = (f"{responses.dtype} of shape {tuple(responses.shape)}" if isinstance(responses, torch.Tensor)
                   else type(responses).__name__)
            raise ValueError(f"{name}: expected responses as a long tensor of shape ({n},), got {got}")
        if ((responses < 0) | (responses >= self.num_responses)).any():
            raise ValueError(f"{name}: expected responses in 0..{self.num_responses - 1}, got values "
                             f"{sorted(responses.unique().tolist())[:6]}")
        return responses

    def postdominant(
        self,
        s: torch.Tensor,
        forced: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Postdominant:
        """Both phases for stimuli ``s`` (B, S): the dominant response (B,) and the activity left (B, A).

        ``forced`` (B,) long makes those responses dominant (the experimenter's forcing in a learning
        series); otherwise the mu-system decides, ties broken at random from ``generator``.
        """
        a = self.associate(s)  # (B, A): the predominant phase
        members = F.one_hot(self.source, self.num_responses).to(a.dtype)  # (A, R)
        if forced is not None:
            response = self._check_responses(forced, a.shape[0])
        else:
            active = a @ members  # (B, R): active units in each source-set
            # mu-system: the mean value of the active units of each source-set; a response none of whose
            # units is active receives no impulse and cannot become dominant
            mean = torch.where(active > 0, (a * self.value) @ members / active.clamp(min=1), -math.inf)
            ties = mean == mean.max(1, keepdim=True).values  # (B, R)
            draw = torch.rand(ties.shape, generator=generator, dtype=a.dtype).to(a.device)
            response = (draw * ties).argmax(1)  # (B,)
        if self.feedback:
            # rule (b): the dominant response inhibits every A-unit outside its source-set
            a = a * (self.source == response[:, None])  # (B, A)
        return Postdominant(response, a)

    def forward(self, s: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The dominant response for each stimulus: ``s`` (B, S) -> (B,) long in 0..R-1."""
        return self.postdominant(s, generator=generator).response

    def fit(self, s: torch.Tensor, responses: torch.Tensor) -> Postdominant:
        """A learning series: each stimulus of ``s`` (B, S) shown with its ``responses`` (B,) forced, then
        reinforced (alpha-system: V_j <- V_j + 1 for each A-unit j active in the postdominant phase).

        The values only grow and the order of the stimuli does not matter. Returns the series' phases.
        """
        post = self.postdominant(s, forced=responses)
        # alpha-system: dV = +1 for every unit active for one unit of time, 0 for the others
        self.value.add_(post.activity.sum(0))
        return post


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
