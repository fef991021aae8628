"""Recording of model internals: ``with memlib.trace() as tr: ...``.

Modules call :func:`record` (or test :func:`tracing` first when the recorded value costs
something to compute). Outside a trace, :func:`record` is one context-variable lookup and
returns; nothing is stored on modules, so there is nothing to reset.

Names are documented by each module (``"hidden"``, ``"lstm.forget"``, ...). A name recorded
several times (once per step, once per call) keeps every value in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

_ACTIVE: ContextVar[Trace | None] = ContextVar("memlib_trace", default=None)


class Trace:
    """Named, detached tensors recorded while the trace was active.

    >>> import memlib
    >>> with memlib.trace() as tr:
    ...     _ = memlib.LSTM(4, 8)(torch.zeros(3, 2, 4))
    >>> tr.stack("lstm.forget_gate.l0").shape  # (T, B, H): one record per step
    torch.Size([3, 2, 8])
    """

    def __init__(self) -> None:
        self._records: dict[str, list[torch.Tensor]] = {}

    def add(self, name: str, value: torch.Tensor) -> None:
        # A copy: modules may change a tensor in place (a memory matrix) after recording it.
        self._records.setdefault(name, []).append(value.detach().clone())

    def names(self) -> list[str]:
        return list(self._records)

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, name: str) -> list[torch.Tensor]:
        """Every value recorded under ``name``, in recording order."""
        try:
            return self._records[name]
        except KeyError:
            raise KeyError(f"Nothing was recorded under {name!r}; recorded names: {self.names()}") from None

    def last(self, name: str) -> torch.Tensor:
        """The most recent value recorded under ``name``."""
        return self[name][-1]

    def stack(self, name: str, dim: int = 0) -> torch.Tensor:
        """All values under ``name`` stacked along a new dimension ``dim`` (e.g. one per time step)."""
        values = self[name]
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) != 1:
            raise ValueError(f"Cannot stack {name!r}: expected one shape, got {sorted(shapes)}")
        return torch.stack(values, dim=dim)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}: {len(v)}x{tuple(v[-1].shape)}" for k, v in self._records.items())
        return f"Trace({items})"


@contextmanager
def trace() -> Iterator[Trace]:
    """Record the internals of every memlib module run inside the ``with`` block.

    Traces nest: an inner trace records only what runs inside it.

    >>> with trace() as tr:
    ...     record("x", torch.ones(2))
    >>> tr.names(), tr.last("x")
    (['x'], tensor([1., 1.]))
    """
    tr = Trace()
    token = _ACTIVE.set(tr)
    try:
        yield tr
    finally:
        _ACTIVE.reset(token)


def tracing() -> bool:
    """True inside ``memlib.trace()``: modules use it to take their readable reference path.

    >>> tracing()
    False
    >>> with trace():
    ...     tracing()
    True
    """
    return _ACTIVE.get() is not None


def record(name: str, value: torch.Tensor) -> None:
    """Store a detached copy of ``value`` under ``name`` in the active trace, if any.

    >>> record("ignored", torch.zeros(1))  # outside a trace: nothing is kept, nothing is spent
    >>> with trace() as tr:
    ...     record("kept", torch.zeros(1))
    >>> "kept" in tr, "ignored" in tr
    (True, False)
    """
    if torch.compiler.is_compiling():
        return  # memlib.memory.fast compiles a step only outside a trace: there is nothing to record
    tr = _ACTIVE.get()
    if tr is not None:
        tr.add(name, value)


_REFERENCE: ContextVar[bool] = ContextVar("memlib_reference_path", default=False)


@contextmanager
def reference_path() -> Iterator[None]:
    """Run every memlib module inside the ``with`` block on its readable reference path, traced or not.

    Modules keep ``torch.nn``'s signatures, so the choice between a fused kernel and the explicit
    equations lives here (and in :func:`trace`, which implies it) rather than in an argument.

    >>> use_reference()
    False
    >>> with reference_path():
    ...     use_reference()
    True
    """
    token = _REFERENCE.set(True)
    try:
        yield
    finally:
        _REFERENCE.reset(token)


def use_reference() -> bool:
    """True inside :func:`trace` or :func:`reference_path`: modules then skip their fused kernels.

    >>> use_reference()
    False
    """
    return tracing() or _REFERENCE.get()
