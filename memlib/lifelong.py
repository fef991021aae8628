"""Continual (lifelong) learning: a bounded replay memory, elastic weight consolidation, and the accuracy matrix.

- :class:`ReplayBuffer`: an episodic memory of bounded size filled by reservoir sampling (Vitter 1985,
  "Algorithm R"): after ``n`` examples have streamed past, each one is held with probability
  ``capacity / n``, whatever its position in the stream. The stored examples live in a
  :class:`ReplayState` that is passed in and returned, never kept on the buffer.
- :class:`EWC`: elastic weight consolidation (Kirkpatrick et al. 2017, PNAS, eq. 3 and "Methods"): after
  each task ``k`` keep the weights ``theta*_k`` and the diagonal ``F_k`` of the Fisher information on that
  task's data; while later tasks are learned add ``sum_k lambda/2 sum_i F_k,i (theta_i - theta*_k,i)^2`` to
  the loss, one penalty per old task.
- :func:`train_sequentially`: learns tasks one after the other by plain fine-tuning, with replay, or with
  EWC, and returns the accuracy matrix ``R[i, j]``, the accuracy on task ``j`` after training task ``i``.
- :func:`average_accuracy` and :func:`backward_transfer` summarise ``R`` (Lopez-Paz and Ranzato 2017).
- :func:`split_digits`: sklearn's digits split into tasks of a few classes each.

Shapes: ``B`` batch, ``D`` input features, ``C`` classes, ``M`` examples held in the replay memory,
``T`` tasks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from memlib.train import fit
from memlib.validate import check_float, check_int

METHODS = ("finetune", "replay", "ewc")


def _check_count(where: str, name: str, value: object) -> int:
    check_int(where, name, value, low=0, expected=f"{name} to be an int >= 0")
    return value


# Replay memory ------------------------------------------------------------------------------------------


class ReplayState(NamedTuple):
    """The examples a :class:`ReplayBuffer` holds (``x``, ``y``) and how many it has seen.

    >>> ReplayBuffer(2).empty(torch.zeros(1, 3), torch.zeros(1)).x.shape
    torch.Size([0, 3])
    """
    x: torch.Tensor  # (M, *) stored inputs, M <= capacity
    y: torch.Tensor  # (M,) stored labels
    seen: int  # examples streamed past the memory so far (held or not)


class ReplayBuffer:
    """A replay memory of at most ``capacity`` examples, filled by reservoir sampling (Vitter 1985).

    The buffer holds only its capacity; the examples are in the :class:`ReplayState` that ``add``
    takes and returns. A memory that grows is a new ``ReplayBuffer`` with a larger capacity applied to
    the same state: the new slots fill first, then reservoir sampling resumes.

    >>> buffer = ReplayBuffer(capacity=3)
    >>> state = buffer.add(buffer.empty(torch.zeros(1, 2), torch.zeros(1)), torch.zeros(5, 2), torch.arange(5))
    >>> state.x.shape, int(state.seen)
    (torch.Size([3, 2]), 5)
    """

    def __init__(self, capacity: int):
        self.capacity = _check_count("ReplayBuffer", "capacity", capacity)

    def __repr__(self) -> str:
        return f"ReplayBuffer(capacity={self.capacity})"

    @staticmethod
    def empty(x: torch.Tensor, y: torch.Tensor) -> ReplayState:
        """An empty state whose tensors match the shape (after the batch axis), dtype and device of ``x``, ``y``."""
        return ReplayState(x.new_zeros((0, *x.shape[1:])), y.new_zeros((0, *y.shape[1:])), 0)

    def add(
        self, state: ReplayState, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> ReplayState:
        """Stream the examples ``x`` (B, *) with labels ``y`` (B,) past the memory; return the new state.

        Algorithm R: the example with stream index ``i`` (counting from 0 over all calls) takes a free slot
        while there is one; otherwise it replaces slot ``j``, drawn uniformly from ``0..i``, when ``j <
        capacity``, and is dropped when not. ``generator`` (a CPU generator) makes the draws repeatable.
        """
        if not isinstance(state, ReplayState):
            raise TypeError(f"ReplayBuffer.add: expected a ReplayState, got {type(state).__name__}")
        if x.shape[:1] != y.shape[:1]:
            raise ValueError(
                f"ReplayBuffer.add: x and y must hold as many examples, got x {tuple(x.shape)} and y {tuple(y.shape)}"
            )
        if state.x.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"ReplayBuffer.add: expected examples of shape {tuple(state.x.shape[1:])}, got {tuple(x.shape[1:])}"
            )
        held = state.x.shape[0]
        if held > self.capacity:
            raise ValueError(
                f"ReplayBuffer.add: the state holds {held} examples, more than capacity={self.capacity}; "
                "a memory may grow, not shrink"
            )
        B = x.shape[0]
        # slot -> ("old", index into state) or ("new", index into x)
        slots: list[tuple[bool, int]] = [(False, m) for m in range(held)]
        # one uniform draw per example, scaled to 0..i below: j = floor(u (i + 1))
        u = torch.rand(B, generator=generator, dtype=torch.float64).tolist()
        for k in range(B):
            i = state.seen + k
            if len(slots) < self.capacity:
                slots.append((True, k))
                continue
            j = min(int(u[k] * (i + 1)), i)
            if j < self.capacity:
                slots[j] = (True, k)
        new = torch.tensor([k for is_new, k in slots if is_new], dtype=torch.long, device=x.device)
        old = torch.tensor([m for is_new, m in slots if not is_new], dtype=torch.long, device=x.device)
        # keep the surviving old examples in place order, then the new ones: the order is not used
        xs = torch.cat([state.x[old], x.detach()[new]])  # (M, *)
        ys = torch.cat([state.y[old], y.detach()[new]])  # (M,)
        return ReplayState(xs, ys, state.seen + B)

    @staticmethod
    def sample(
        state: ReplayState, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to ``n`` stored examples drawn uniformly without replacement: ``(min(n, M), *)`` and ``(min(n, M),)``."""
        _check_count("ReplayBuffer.sample", "n", n)
        held = state.x.shape[0]
        pick = torch.randperm(held, generator=generator)[: min(n, held)].to(state.x.device)
        return state.x[pick], state.y[pick]


# Elastic weight consolidation ---------------------------------------------------------------------------


class EWCAnchor(NamedTuple):
    """What :meth:`EWC.anchor` returns: the parameters after a task and their Fisher diagonal.

    >>> EWCAnchor._fields
    ('params', 'fisher')
    """
    params: dict[str, torch.Tensor]  # theta*_k: the weights after task k
    fisher: dict[str, torch.Tensor]  # F_k: the diagonal of the Fisher information at theta*_k


def diagonal_fisher(model: nn.Module, x: torch.Tensor, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """The diagonal of the Fisher information of a classifier ``model`` (logits (B, C)) on the inputs ``x``.

    ``F_i = mean_x sum_c p(c|x) (d log p(c|x) / d theta_i)^2``: the expectation over the model's own
    predictive distribution is taken exactly over the ``C`` classes, not with the data's labels (that would
    be the "empirical" Fisher). Non-negative by construction. Computed per example with ``torch.func``.

    >>> fisher = diagonal_fisher(torch.nn.Linear(2, 3), torch.randn(8, 2))
    >>> sorted(fisher), fisher["weight"].shape
    (['bias', 'weight'], torch.Size([3, 2]))
    """
    if x.shape[0] == 0:
        raise ValueError("diagonal_fisher: expected at least one example, got x of shape (0, ...)")
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}

    def log_probs(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(torch.func.functional_call(model, p, (xi[None],)), dim=-1)[0]  # (C,)

    jac = torch.func.vmap(torch.func.jacrev(log_probs), in_dims=(None, 0))  # each value: (B, C, *param)
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            prob = F.softmax(model(xb), dim=-1)  # (B, C)
            grads = jac(params, xb)
            for name, g in grads.items():
                w = prob.reshape(*prob.shape, *([1] * (g.dim() - 2)))  # (B, C, 1, ...)
                fisher[name] += (w * g.pow(2)).sum(dim=(0, 1))
    model.train(was_training)
    return {name: f / x.shape[0] for name, f in fisher.items()}


class EWC:
    """Elastic weight consolidation (Kirkpatrick et al. 2017) with strength ``lam`` (the paper's lambda).

    :meth:`anchor` records ``theta*`` and the diagonal Fisher after a task; :meth:`penalty` is the quadratic
    pull back toward every anchor given, ``sum_k lam/2 sum_i F_k,i (theta_i - theta*_k,i)^2``.

    >>> model = torch.nn.Linear(2, 2)
    >>> ewc = EWC(lam=10.0)
    >>> anchor = ewc.anchor(model, torch.randn(8, 2))
    >>> float(ewc.penalty(model, [anchor]).detach())  # no change since the anchor: no penalty
    0.0
    """

    def __init__(self, lam: float):
        check_float("EWC", "lam", lam, low=0, finite=True, expected="lam to be a finite number >= 0")
        self.lam = float(lam)

    def __repr__(self) -> str:
        return f"EWC(lam={self.lam:g})"

    @staticmethod
    def anchor(model: nn.Module, x: torch.Tensor) -> EWCAnchor:
        """The anchor for the task whose inputs are ``x``: the current weights and their diagonal Fisher."""
        params = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        return EWCAnchor(params, diagonal_fisher(model, x))

    def penalty(self, model: nn.Module, anchors: Sequence[EWCAnchor]) -> torch.Tensor:
        """The EWC penalty of ``model``'s current weights (a scalar that carries gradients); 0 without anchors."""
        named = dict(model.named_parameters())
        total = next(iter(named.values())).new_zeros(())
        for k, a in enumerate(anchors):
            if set(a.params) - set(named):
                raise ValueError(
                    f"EWC.penalty: anchor {k} has parameters {sorted(set(a.params) - set(named))} the model lacks"
                )
            for name, theta_star in a.params.items():
                # Kirkpatrick et al. eq. 3: lambda/2 * F_i (theta_i - theta*_i)^2
                total = total + (a.fisher[name] * (named[name] - theta_star).pow(2)).sum()
        return 0.5 * self.lam * total


# Tasks and the sequential protocol ----------------------------------------------------------------------


class Task(NamedTuple):
    """One task of :func:`split_digits`: its train and test examples.

    >>> Task._fields
    ('x_train', 'y_train', 'x_test', 'y_test')
    """
    x_train: torch.Tensor  # (B_train, D)
    y_train: torch.Tensor  # (B_train,)
    x_test: torch.Tensor  # (B_test, D)
    y_test: torch.Tensor  # (B_test,)


def split_digits(
    n_tasks: int = 5, test_fraction: float = 0.25, seed: int = 0, device: torch.device | str = "cpu"
) -> list[Task]:
    """sklearn's digits (1,797 images of 8 x 8, pixels scaled to [0, 1]) split into ``n_tasks`` tasks.

    Task ``t`` holds the classes ``t * 10 // n_tasks`` up to ``(t + 1) * 10 // n_tasks`` (5 tasks: {0, 1},
    {2, 3}, ...). Each class is split into train and test at random with ``seed`` (stratified).
    """
    check_int("split_digits", "n_tasks", n_tasks, low=1, high=10, expected="n_tasks an int in 1..10")
    check_float("split_digits", "test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True,
                expected="0 < test_fraction < 1")
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(y), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(data.target == c)
        is_test[rng.choice(idx, size=round(test_fraction * len(idx)), replace=False)] = True
    test = torch.from_numpy(is_test)
    tasks = []
    for t in range(n_tasks):
        classes = torch.arange(t * 10 // n_tasks, (t + 1) * 10 // n_tasks)
        member = torch.isin(y, classes)
        tr, te = member & ~test, member & test
        tasks.append(Task(x[tr].to(device), y[tr].to(device), x[te].to(device), y[te].to(device)))
    return tasks


class SequentialResult(NamedTuple):
    """What :func:`train_sequentially` returns: the accuracy matrix, the memory held after each task, and the seconds
    spent.

    >>> SequentialResult._fields
    ('accuracy', 'memory_held', 'seconds')
    """
    accuracy: np.ndarray  # (T, T): R[i, j], accuracy on task j's test set after training task i
    memory_held: tuple[int, ...]  # (T,): replay examples held while training each task
    seconds: float  # wall time of the whole sequence


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` (B, D) that ``model`` labels ``y`` (B,), taking the argmax over all C classes.

    >>> model = torch.nn.Linear(2, 2)
    >>> 0.0 <= accuracy(model, torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)) <= 1.0
    True
    """
    model.eval()
    return float((model(x).argmax(dim=-1) == y).float().mean())


def train_sequentially(
    model_factory: Callable[[], nn.Module],
    tasks: Sequence[Task],
    method: str = "finetune",
    *,
    epochs: int = 5,
    batch_size: int = 32,
    lr: float = 1e-3,
    memory: int | Sequence[int] = 0,
    lam: float = 0.0,
    seed: int = 0,
) -> SequentialResult:
    """Train one model on ``tasks`` in order and return the accuracy matrix (class-incremental protocol).

    ``method``: ``"finetune"`` trains on each task's data alone; ``"replay"`` adds to every batch as many
    examples drawn from a :class:`ReplayBuffer`, into which each task's training examples are streamed once
    the task is learned (``memory``: its capacity, an int, or one capacity per task for a memory that
    grows); ``"ewc"`` adds the :class:`EWC` penalty of strength ``lam`` with one anchor per finished task.
    Each task gets a fresh Adam optimiser and ``epochs`` passes over its data, through :func:`~memlib.train.fit`.
    The model's output is scored by its argmax over all classes, so it must also tell tasks apart.
    """
    if method not in METHODS:
        raise ValueError(f"train_sequentially: unknown method {method!r}; expected one of {METHODS}")
    tasks = list(tasks)
    if not tasks:
        raise ValueError("train_sequentially: expected at least one task, got none")
    for t, task in enumerate(tasks):
        if not isinstance(task, Task):
            raise TypeError(f"train_sequentially: task {t} must be a Task, got {type(task).__name__}")
        if task.x_train.shape[0] == 0 or task.x_train.shape[0] != task.y_train.shape[0]:
            raise ValueError(
                f"train_sequentially: task {t} needs matching, non-empty x_train and y_train, got "
                f"{tuple(task.x_train.shape)} and {tuple(task.y_train.shape)}"
            )
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if _check_count("train_sequentially", name, value) == 0:
            raise ValueError(f"train_sequentially: expected {name} >= 1, got 0")
    capacities = [memory] * len(tasks) if isinstance(memory, int) else list(memory)
    if len(capacities) != len(tasks):
        raise ValueError(
            f"train_sequentially: expected one memory capacity per task ({len(tasks)}), got {len(capacities)}"
        )
    for c in capacities:
        _check_count("train_sequentially", "memory", c)
    if capacities != sorted(capacities):
        raise ValueError(f"train_sequentially: a memory may grow, not shrink; got capacities {capacities}")
    if method != "replay" and any(capacities):
        raise ValueError(f"train_sequentially: memory is used only by method='replay', got method={method!r}")
    if method != "ewc" and lam != 0:
        raise ValueError(f"train_sequentially: lam is used only by method='ewc', got method={method!r}")
    ewc = EWC(lam) if method == "ewc" else None

    torch.manual_seed(seed)
    model = model_factory()
    gen = torch.Generator().manual_seed(seed)
    state = ReplayBuffer.empty(tasks[0].x_train, tasks[0].y_train)
    anchors: list[EWCAnchor] = []
    T = len(tasks)
    R = np.zeros((T, T))
    held: list[int] = []
    start = time.perf_counter()
    for i, task in enumerate(tasks):
        n = task.x_train.shape[0]
        per_epoch = math.ceil(n / batch_size)
        order = torch.cat([torch.randperm(n, generator=gen) for _ in range(epochs)]).to(task.x_train.device)
        held.append(int(state.x.shape[0]))
        memory_now = state

        def batches(step: int, task: Task = task, order: torch.Tensor = order, n: int = n, per_epoch: int = per_epoch):
            # step -> (epoch, batch within it): the batch_size examples at that place in the epoch's order
            epoch, b = divmod(step, per_epoch)
            idx = order[epoch * n + b * batch_size : epoch * n + min((b + 1) * batch_size, n)]
            return task.x_train[idx], task.y_train[idx]

        def loss_fn(model: nn.Module, batch, memory_now: ReplayState = memory_now) -> torch.Tensor:
            xb, yb = batch
            if method == "replay" and memory_now.x.shape[0] > 0:
                xr, yr = ReplayBuffer.sample(memory_now, xb.shape[0], gen)
                xb, yb = torch.cat([xb, xr]), torch.cat([yb, yr])
            loss = F.cross_entropy(model(xb), yb)
            if ewc is not None and anchors:
                loss = loss + ewc.penalty(model, anchors)
            return loss

        fit(model, batches, loss_fn, steps=epochs * per_epoch, optimizer=torch.optim.Adam(model.parameters(), lr=lr))
        for j, other in enumerate(tasks):
            R[i, j] = accuracy(model, other.x_test, other.y_test)
        if method == "replay":
            state = ReplayBuffer(capacities[i]).add(state, task.x_train, task.y_train, gen)
        if ewc is not None:
            anchors.append(EWC.anchor(model, task.x_train))
    return SequentialResult(R, tuple(held), time.perf_counter() - start)


# Metrics (Lopez-Paz and Ranzato 2017) -------------------------------------------------------------------


def _check_matrix(where: str, R: np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"{where}: expected a square (T, T) accuracy matrix with T >= 1, got shape {R.shape}")
    if not np.isfinite(R).all():
        raise ValueError(f"{where}: the accuracy matrix holds non-finite values")
    return R


def average_accuracy(R: np.ndarray) -> float:
    """ACC = (1/T) sum_j R[T-1, j]: mean accuracy over all tasks after the last one is learned.

    >>> import numpy as np
    >>> average_accuracy(np.array([[0.9, 0.0], [0.7, 0.8]]))  # the last row: accuracy on each task at the end
    0.75
    """
    R = _check_matrix("average_accuracy", R)
    return float(R[-1].mean())


def backward_transfer(R: np.ndarray) -> float:
    """BWT = 1/(T-1) sum_{j<T-1} (R[T-1, j] - R[j, j]): how learning later tasks changed earlier ones.

    Negative values are forgetting. Needs at least two tasks.

    >>> import numpy as np
    >>> round(backward_transfer(np.array([[0.9, 0.0], [0.7, 0.8]])), 2)  # task 1 lost 0.2
    -0.2
    """
    R = _check_matrix("backward_transfer", R)
    if R.shape[0] < 2:
        raise ValueError(f"backward_transfer: needs at least 2 tasks, got an accuracy matrix of shape {R.shape}")
    return float((R[-1, :-1] - np.diag(R)[:-1]).mean())


# Slot reuse: the DNC's allocation against a ring buffer -------------------------------------------------


class SlotReuse(NamedTuple):
    """What :func:`slot_reuse` returns: the items kept, wanted and dropped.

    >>> SlotReuse._fields
    ('kept', 'wanted', 'dropped')
    """
    kept: torch.Tensor  # (B,) items marked keep that are still in memory at the end
    wanted: torch.Tensor  # (B,) items marked keep
    dropped: torch.Tensor  # (B,) writes that found no free slot (allocation only; a ring never drops)


def slot_reuse(keep: torch.Tensor, slots: int, policy: str) -> SlotReuse:
    """Stream items into ``slots`` memory slots and count how many of those marked ``keep`` survive.

    ``keep`` (B, L) bool: item ``t`` of each stream is written at step ``t``; an item not marked keep is read
    once at step ``t + 1`` and released. ``policy="allocation"`` writes where the DNC's allocation weighting
    points (Graves et al. 2016, Methods, "Dynamic memory allocation", with write and allocation gates at 1,
    and free gate 1 on the read of a released item), so released slots are reused and a full memory stops
    writing; ``policy="ring"`` writes slot ``t mod slots`` whatever it holds, a fixed, oblivious allocation.

    >>> slot_reuse(torch.tensor([[True, False, True, True]]), slots=2, policy="ring")._fields
    ('kept', 'wanted', 'dropped')
    """
    from memlib.memory.dnc import allocation_weighting, retention, update_usage

    if policy not in ("allocation", "ring"):
        raise ValueError(f"slot_reuse: unknown policy {policy!r}; expected 'allocation' or 'ring'")
    if keep.dim() != 2 or keep.dtype != torch.bool:
        raise ValueError(f"slot_reuse: expected keep (B, L) bool, got {tuple(keep.shape)} {keep.dtype}")
    if _check_count("slot_reuse", "slots", slots) == 0:
        raise ValueError("slot_reuse: expected slots >= 1, got 0")
    B, L = keep.shape
    owner = torch.full((B, slots), -1, dtype=torch.long)  # (B, N): which item each slot holds, -1 none
    usage = torch.zeros(B, slots)  # (B, N)
    write = torch.zeros(B, slots)  # (B, N): the previous step's write weighting
    read = torch.zeros(B, 1, slots)  # (B, R=1, N): the previous step's read weighting
    free = torch.zeros(B, 1)  # (B, R=1): free gate of that read
    dropped = torch.zeros(B, dtype=torch.long)
    rows = torch.arange(B)
    for t in range(L):
        if policy == "allocation":
            usage = update_usage(usage, write, retention(free, read))
            write = allocation_weighting(usage)  # one-hot on the first free slot, or all zero when full
        else:
            write = torch.zeros(B, slots)
            write[:, t % slots] = 1.0
        wrote = write.sum(dim=1) > 0.5
        slot = write.argmax(dim=1)  # (B,)
        owner[rows[wrote], slot[wrote]] = t
        dropped += (~wrote).long()
        # the next step reads the item just written and frees it unless it is to be kept
        read = write[:, None, :]
        free = (~keep[:, t]).float()[:, None]
    survivors = owner.clamp(min=0)
    held_keep = (owner >= 0) & keep.gather(1, survivors)
    # a released item's slot may still show its owner until reused: count only items marked keep
    return SlotReuse(held_keep.sum(dim=1), keep.sum(dim=1), dropped)
