"""Hopfield networks: the classic binary network (Hopfield 1982) and the modern continuous one
(Ramsauer et al. 2020, "Hopfield Networks is All You Need").

Shapes: ``B`` batch, ``D`` pattern size (neurons), ``P`` stored patterns, ``S`` state (query) patterns
per batch element, ``I`` input features, ``K`` pattern (key) width of a :class:`HopfieldLayer`, ``O`` output
features.

Classic: states and patterns are +-1 vectors (Hopfield's ``V`` in {0, 1} as ``2V - 1``). Patterns are
stored by the Hebbian rule (:func:`hebbian_weights`, symmetric, zero diagonal); a unit turns to the sign
of its input field. Asynchronous updates (:func:`async_update`, one unit at a time) never raise the
energy (:func:`energy`), so they end in a fixed point; synchronous ones (:func:`sync_update`, all units
at once) can fall into a two-state cycle. :func:`recall` repeats sweeps until nothing changes.

Modern: continuous states, stored patterns as rows of ``X`` (P, D). One update (:func:`modern_update`)
is ``xi_new = X^T softmax(beta X xi)``, which is softmax attention with the state as the query and the
patterns as keys and values (scale ``beta``); with a large enough ``beta`` one update retrieves a stored
pattern (Ramsauer et al., section 2). :func:`modern_energy` is the paper's energy (its eq. 2), which the
update never raises. :class:`HopfieldLayer` learns its stored patterns (as key and value matrices),
as the paper's ``HopfieldLayer`` does (section 3).

Trace names (inside ``memlib.trace()``):

- :func:`recall`: ``hopfield.state`` (B, D) and ``hopfield.energy`` (B,), once for the initial state
  and once after each sweep;
- :func:`modern_retrieve`: ``hopfield.modern.attention`` (..., P) and ``hopfield.modern.state`` (..., D),
  once per update (``...`` the state's leading shape);
- :class:`HopfieldLayer`: ``hopfield.layer.attention`` (B, S, P), once per update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from memlib.tracing import record
from memlib.validate import check_float, check_shape, check_sizes

# ---------------------------------------------------------------------------------------------
# Classic binary Hopfield network (Hopfield 1982).
# ---------------------------------------------------------------------------------------------


def _expect_spins(fn: str, label: str, x: torch.Tensor) -> None:
    if not ((x == 1) | (x == -1)).all():
        raise ValueError(f"{fn}: expected {label} with entries +1 or -1, got values {sorted(x.unique().tolist())[:6]}")


def hebbian_weights(patterns: torch.Tensor) -> torch.Tensor:
    """Hebbian storage (Hopfield 1982, with states +-1), scaled by ``1 / D`` (which changes no update).

    ``patterns`` (P, D) or (B, P, D) of +-1 -> weights (D, D) or (B, D, D), symmetric, zero diagonal.

    >>> W = hebbian_weights(torch.tensor([[1.0, -1.0, 1.0, -1.0]]))
    >>> W.shape, bool((W.diagonal() == 0).all())
    (torch.Size([4, 4]), True)
    """
    if not isinstance(patterns, torch.Tensor) or patterns.dim() not in (2, 3):
        got = tuple(patterns.shape) if isinstance(patterns, torch.Tensor) else type(patterns).__name__
        raise ValueError(f"hebbian_weights: expected patterns of shape (P, D) or (B, P, D), got {got}")
    check_shape("hebbian_weights", "patterns", patterns, "(..., P, D)", tuple([None] * patterns.dim()))
    _expect_spins("hebbian_weights", "patterns", patterns)
    D = patterns.shape[-1]
    # T_ij = (1/D) sum_mu xi^mu_i xi^mu_j
    weights = patterns.mT @ patterns / D  # (..., D, D)
    # T_ii = 0: no unit drives itself
    return weights * (1 - torch.eye(D, device=patterns.device, dtype=patterns.dtype))


def _check_classic(fn: str, weights: torch.Tensor, state: torch.Tensor) -> None:
    check_shape(fn, "state", state, "(B, D)", (None, None))
    B, D = state.shape
    if isinstance(weights, torch.Tensor) and weights.dim() == 3:
        check_shape(fn, "weights", weights, "(B, D, D)", (B, D, D))
    else:
        check_shape(fn, "weights", weights, "(D, D)", (D, D))


def _field(weights: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """Input field of every unit: h_i = sum_j T_ij s_j. (D, D) or (B, D, D) with (B, D) -> (B, D)."""
    return (weights @ state[..., None])[..., 0]


def energy(weights: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """Energy (Hopfield 1982): ``weights`` (D, D) or (B, D, D), ``state`` (B, D) -> (B,).

    >>> W = hebbian_weights(torch.tensor([[1.0, -1.0, 1.0]]))
    >>> bool(energy(W, torch.tensor([[1.0, -1.0, 1.0]])) < energy(W, torch.tensor([[1.0, 1.0, 1.0]])))
    True
    """
    _check_classic("energy", weights, state)
    # E = -1/2 sum_i sum_j T_ij s_i s_j
    return -0.5 * (state * _field(weights, state)).sum(dim=-1)


def _sign_keeping_ties(field: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    # s_i -> +1 if h_i > 0, -1 if h_i < 0; a unit with h_i = 0 keeps its state (so the energy cannot rise)
    return torch.where(field > 0, 1.0, torch.where(field < 0, -1.0, state)).to(state.dtype)


def sync_update(weights: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """Every unit at once: ``s_i <- sign(sum_j T_ij s_j)``. (D, D) or (B, D, D) with (B, D) -> (B, D).

    Not Hopfield's dynamics (his units update at random times), and the energy can oscillate:
    the contrast is the point of offering it.

    >>> pattern = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    >>> torch.equal(sync_update(hebbian_weights(pattern), pattern), pattern)  # a stored pattern is a fixed point
    True
    """
    _check_classic("sync_update", weights, state)
    return _sign_keeping_ties(_field(weights, state), state)


def async_update(weights: torch.Tensor, state: torch.Tensor, order: Sequence[int] | None = None) -> torch.Tensor:
    """One asynchronous sweep (Hopfield 1982): units updated one at a time, each seeing the ones before.

    ``weights`` (D, D) or (B, D, D), ``state`` (B, D); ``order`` the units to visit (default ``0 .. D-1``;
    pass a permutation for Hopfield's random order) -> (B, D). Each single-unit update lowers the energy
    or leaves it unchanged.

    >>> pattern = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    >>> torch.equal(async_update(hebbian_weights(pattern), pattern), pattern)
    True
    """
    _check_classic("async_update", weights, state)
    D = state.shape[1]
    units = range(D) if order is None else [int(i) for i in order]
    if any(not 0 <= i < D for i in units):
        raise ValueError(f"async_update: expected unit indices in [0, D = {D}), got {list(units)}")
    state = state.clone()
    rows = weights[..., None, :, :] if weights.dim() == 2 else weights  # (1 or B, D, D)
    for i in units:
        # h_i = sum_j T_ij s_j
        field = (rows[..., i, :] * state).sum(dim=-1)  # (B,)
        state[:, i] = _sign_keeping_ties(field, state[:, i])
    return state


class Recall(NamedTuple):
    """What :func:`recall` returns: the final state, its energy, the sweeps run and whether it converged.

    >>> Recall._fields
    ('state', 'energy', 'sweeps', 'converged')
    """
    state: torch.Tensor  # (B, D): the state after the last sweep
    energy: torch.Tensor  # (B,)
    sweeps: int  # sweeps run, the last of which changed nothing when converged
    converged: bool  # True when a sweep changed no unit of any batch element


def recall(
    weights: torch.Tensor,
    state: torch.Tensor,
    *,
    asynchronous: bool = True,
    max_sweeps: int = 100,
    generator: torch.Generator | None = None,
) -> Recall:
    """Update until a fixed point (or ``max_sweeps``): asynchronous sweeps in a random order drawn from
    ``generator`` (in order ``0 .. D-1`` without one), or synchronous updates.

    Records ``hopfield.state`` and ``hopfield.energy`` for the initial state and after each sweep.

    >>> pattern = torch.tensor([[1.0, -1.0, 1.0, -1.0, 1.0, -1.0]])
    >>> noisy = pattern.clone()
    >>> noisy[0, 0] = -1.0  # one flipped unit
    >>> torch.equal(recall(hebbian_weights(pattern), noisy).state, pattern)
    True
    """
    _check_classic("recall", weights, state)
    check_sizes("recall", max_sweeps=max_sweeps)
    record("hopfield.state", state)
    record("hopfield.energy", energy(weights, state))
    D = state.shape[1]
    for sweep in range(1, max_sweeps + 1):
        if not asynchronous:
            new = sync_update(weights, state)
        else:
            order = None if generator is None else torch.randperm(D, generator=generator).tolist()
            new = async_update(weights, state, order)
        record("hopfield.state", new)
        record("hopfield.energy", energy(weights, new))
        unchanged = torch.equal(new, state)
        state = new
        if unchanged:
            return Recall(state, energy(weights, state), sweep, True)
    return Recall(state, energy(weights, state), max_sweeps, False)


# ---------------------------------------------------------------------------------------------
# Modern continuous Hopfield network (Ramsauer et al. 2020).
# ---------------------------------------------------------------------------------------------


def _check_modern(fn: str, patterns: object, state: object, beta: float) -> None:
    if not isinstance(patterns, torch.Tensor) or patterns.dim() not in (2, 3):
        got = tuple(patterns.shape) if isinstance(patterns, torch.Tensor) else type(patterns).__name__
        raise ValueError(f"{fn}: expected patterns of shape (P, D) or (B, P, D), got {got}")
    check_shape(fn, "patterns", patterns, "(..., P, D)", tuple([None] * patterns.dim()))
    D = patterns.shape[-1]
    if patterns.dim() == 3:
        check_shape(fn, "state", state, "(B, S, D)", (patterns.shape[0], None, D))
    else:
        if not isinstance(state, torch.Tensor) or state.dim() == 0:
            raise TypeError(f"{fn}: expected state as a tensor of shape (..., D), got {type(state).__name__}")
        check_shape(fn, "state", state, "(..., D)", (*state.shape[:-1], D))
    check_float(fn, "beta", beta, low=0, low_open=True, expected="beta (inverse temperature) as a positive number")


def modern_attention(patterns: torch.Tensor, state: torch.Tensor, beta: float) -> torch.Tensor:
    """How much each stored pattern gets: ``softmax(beta X xi)``. Shapes as :func:`modern_update`, -> (..., P).

    >>> p = modern_attention(torch.eye(3), torch.tensor([[1.0, 0.0, 0.0]]), beta=1.0)
    >>> p.shape, bool(torch.allclose(p.sum(-1), torch.ones(1)))
    (torch.Size([1, 3]), True)
    """
    _check_modern("modern_attention", patterns, state, beta)
    return torch.softmax(beta * state @ patterns.mT, dim=-1)


def modern_update(patterns: torch.Tensor, state: torch.Tensor, beta: float) -> torch.Tensor:
    """One update of the modern Hopfield network (Ramsauer et al. 2020, eq. 3).

    ``patterns`` X (P, D) shared by the batch with ``state`` (..., D), or (B, P, D) with ``state`` (B, S, D);
    ``beta`` > 0 the inverse temperature -> new state, same shape as ``state``. Equal to
    ``F.scaled_dot_product_attention(state, patterns, patterns, scale=beta)``.

    >>> modern_update(torch.eye(3), torch.tensor([[1.0, 0.0, 0.0]]), beta=20.0).round()
    tensor([[1., 0., 0.]])
    """
    _check_modern("modern_update", patterns, state, beta)
    # xi_new = X^T softmax(beta X xi)   (patterns as rows of X)
    return torch.softmax(beta * state @ patterns.mT, dim=-1) @ patterns


def modern_energy(patterns: torch.Tensor, state: torch.Tensor, beta: float) -> torch.Tensor:
    """The modern Hopfield energy (Ramsauer et al. 2020, eq. 2): shapes as :func:`modern_update` -> (...).

    ``E = -lse(beta, X xi) + xi^T xi / 2 + log(P) / beta + M^2 / 2`` with ``M`` the largest pattern norm
    and ``lse(beta, z) = log(sum_i exp(beta z_i)) / beta``; :func:`modern_update` never raises it.

    >>> patterns = torch.eye(3)
    >>> bool(modern_energy(patterns, patterns[:1], beta=4.0) < modern_energy(patterns, torch.zeros(1, 3), beta=4.0))
    True
    """
    _check_modern("modern_energy", patterns, state, beta)
    P = patterns.shape[-2]
    M = torch.linalg.vector_norm(patterns, dim=-1).amax(dim=-1)  # () or (B,)
    M = M if patterns.dim() == 2 else M[:, None]  # broadcast over S
    lse = torch.logsumexp(beta * state @ patterns.mT, dim=-1) / beta  # (...)
    # E = -lse(beta, X xi) + 1/2 xi^T xi + beta^-1 log P + 1/2 M^2
    return -lse + 0.5 * (state * state).sum(dim=-1) + math.log(P) / beta + 0.5 * M**2


def modern_retrieve(patterns: torch.Tensor, state: torch.Tensor, beta: float, steps: int = 1) -> torch.Tensor:
    """``steps`` updates of :func:`modern_update` (one usually suffices: Ramsauer et al., section 2).

    Records ``hopfield.modern.attention`` (..., P) and ``hopfield.modern.state`` (..., D) per update.

    >>> patterns = torch.eye(4)  # four stored patterns (P, D)
    >>> modern_retrieve(patterns, torch.tensor([[0.9, 0.1, 0.0, 0.0]]), beta=8.0).argmax(-1)
    tensor([0])
    """
    _check_modern("modern_retrieve", patterns, state, beta)
    check_sizes("modern_retrieve", steps=steps)
    for _ in range(steps):
        attention = torch.softmax(beta * state @ patterns.mT, dim=-1)  # (..., P)
        state = attention @ patterns  # (..., D)
        record("hopfield.modern.attention", attention)
        record("hopfield.modern.state", state)
    return state


class HopfieldLayer(nn.Module):
    """A layer whose stored patterns are learned (Ramsauer et al. 2020, section 3, "HopfieldLayer").

    The input ``x`` (B, S, I) gives the state patterns ``xi = x W_Q`` (B, S, K); the learned stored
    patterns are the keys ``Y_K`` (P, K) and values ``Y_V`` (P, O) (the paper's ``Y W_K`` and
    ``Y W_K W_V``, learned directly). After ``steps - 1`` updates ``xi <- softmax(beta xi Y_K^T) Y_K`` in
    key space, the output is ``softmax(beta xi Y_K^T) Y_V`` (B, S, O). ``beta`` defaults to ``1/sqrt(K)``,
    the Transformer's scale.

    >>> layer = HopfieldLayer(input_size=6, output_size=4, num_patterns=8, pattern_size=5)
    >>> layer(torch.zeros(2, 3, 6)).shape
    torch.Size([2, 3, 4])
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        num_patterns: int = 32,
        pattern_size: int = 16,
        beta: float | None = None,
        steps: int = 1,
        device=None,
        dtype=None,
    ):
        super().__init__()
        check_sizes(
            "HopfieldLayer",
            input_size=input_size,
            output_size=output_size,
            num_patterns=num_patterns,
            pattern_size=pattern_size,
            steps=steps,
        )
        if beta is None:
            beta = 1 / math.sqrt(pattern_size)
        check_float("HopfieldLayer", "beta", beta, low=0, low_open=True, expected="beta as a positive number")
        self.input_size, self.output_size = input_size, output_size
        self.num_patterns, self.pattern_size, self.beta, self.steps = num_patterns, pattern_size, float(beta), steps
        factory = {"device": device, "dtype": dtype}
        self.query = nn.Linear(input_size, pattern_size, bias=False, **factory)  # W_Q
        self.keys = nn.Parameter(torch.empty(num_patterns, pattern_size, **factory))  # Y_K (P, K)
        self.values = nn.Parameter(torch.empty(num_patterns, output_size, **factory))  # Y_V (P, O)
        nn.init.xavier_uniform_(self.keys)
        nn.init.xavier_uniform_(self.values)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.output_size}, num_patterns={self.num_patterns}, "
            f"pattern_size={self.pattern_size}, beta={self.beta:.4g}, steps={self.steps}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, S, I) -> (B, S, O)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"HopfieldLayer: expected input as a tensor (B, S, I), got {type(x).__name__}")
        if x.dtype != self.keys.dtype:
            raise TypeError(f"HopfieldLayer: expected input of dtype {self.keys.dtype} (the weights'), got {x.dtype}")
        if x.dim() != 3:
            raise ValueError(f"HopfieldLayer: expected input of shape (B, S, I), got {tuple(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"HopfieldLayer: expected input of size I = {self.input_size}, got {x.shape[-1]}")
        xi = self.query(x)  # (B, S, K)
        for _ in range(self.steps - 1):
            attention = torch.softmax(self.beta * xi @ self.keys.T, dim=-1)  # (B, S, P)
            record("hopfield.layer.attention", attention)
            # xi_new = Y_K^T softmax(beta Y_K xi)
            xi = attention @ self.keys  # (B, S, K)
        attention = torch.softmax(self.beta * xi @ self.keys.T, dim=-1)  # (B, S, P)
        record("hopfield.layer.attention", attention)
        # Z = softmax(beta xi Y_K^T) Y_V
        return attention @ self.values  # (B, S, O)
