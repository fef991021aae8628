"""MemoryExplorer and AddressingPipeline: what an NTM or a DNC does with its memory, step by step.

:class:`MemoryExplorer` shows one sequence run through a Neural Turing Machine (Graves, Wayne &
Danihelka 2014) or a Differentiable Neural Computer (Graves et al. 2016): the input, target and
output (steps x channels), the write and read weightings over time (slots x steps), and, at the
step a slider picks, the memory matrix ``M_t``, the weightings as bars, the NTM's erase and add
vectors, and the DNC's usage, allocation and temporal link matrix ``L_t``. Static (Bokeh + CustomJS,
no kernel): the slider. Live (ipywidgets): type a sequence; a ``compute(settings)`` the chapter
supplies runs the trained model on it and the same figures redraw.

:class:`AddressingPipeline` shows the NTM's four addressing stages (section 3.3, Figure 2) for a
small memory, a key and a previous weighting, with sliders for ``beta``, ``g``, the shift and
``gamma``. The page's JavaScript recomputes every stage (a port of ``memlib.memory.addressing``,
kept in ``widgets/js/addressing.js`` and tested against it), so it works in the static book.

Shapes: ``T`` steps, ``I`` input channels, ``O`` output channels, ``N`` memory slots, ``W`` slot width,
``R`` read heads. Steps are shown 1..T; slots and heads are 0-based.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from bokeh.layouts import column, row
from bokeh.models import ColorBar, Div, LinearColorMapper, Range1d, Slider, Span
from bokeh.palettes import Greys256, RdBu11, Viridis256, interp_palette
from bokeh.plotting import figure
from bokeh.transform import dodge

from memlib.memory import addressing
from memlib.validate import check_array, check_int, check_number
from widgets.base import Explorer, Prepared, Refused, check_text, custom_js, fixed, merge_settings

KINDS = ("ntm", "dnc")
MAX_STEPS = 80  # the slider stays usable and the page small
MAX_SLOTS = 64  # a 64 x 64 link matrix is still readable at the book's width
MAX_HEADS = 4  # one (slots x steps) map per read head
MAX_VALUES = 150_000  # T*N*W memory + T*N*N link values: 4 bytes each, base64 in the page: about 0.8 MB
WEIGHT_TOL = 1e-3  # float32 traces: softmax sums drift by ~1e-6; anything beyond 1e-3 is a wrong input
NTM_ONLY = ("erase", "add")
DNC_ONLY = ("usage", "allocation", "link", "read_modes", "free_gates", "write_gate", "allocation_gate")
DNC_REQUIRED = ("usage", "allocation", "link", "read_modes")
DNC_OPTIONAL = ("free_gates", "write_gate", "allocation_gate")  # shown in the caption when given
DEFAULT_SEQUENCE = "1011 0110 1110"
WIDTH = 660  # fits the book's output column (688 px in a 1280 px window)
MARGIN = 5  # Bokeh widgets (sliders, text) keep this margin on each side: their width is WIDTH - 2 * MARGIN
HEAD_COLORS = ("#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e")  # write, then read heads 1..4
DIVERGING = list(reversed(interp_palette(RdBu11, 256)))
INK = list(reversed(Greys256))  # 0 white, 1 black: bits read like ink on paper

def _check_shape(where: str, arr: np.ndarray, shape: tuple[int, ...], legend: str, hint: str = "") -> None:
    if arr.shape != shape:
        raise ValueError(f"{where}: expected shape {legend} = {shape}, got {arr.shape}{hint}")


def _check_range(where: str, arr: np.ndarray, low: float, high: float, what: str) -> None:
    if arr.size and (arr.min() < low - 1e-6 or arr.max() > high + WEIGHT_TOL):
        raise ValueError(f"{where}: expected {what} in [{low:g}, {high:g}], got values in [{arr.min():.3g}, "
                         f"{arr.max():.3g}]")


def _check_weighting(where: str, arr: np.ndarray, exact: bool, paper: str) -> None:
    """A weighting over the last axis: non-negative, summing to 1 (``exact``) or to at most 1."""
    if arr.min() < -1e-6:
        at = np.unravel_index(arr.argmin(), arr.shape)
        raise ValueError(f"{where}: expected non-negative weights, got {arr.min():.3g} at index {tuple(map(int, at))}")
    sums = arr.sum(axis=-1)
    bad = np.abs(sums - 1) > WEIGHT_TOL if exact else sums > 1 + WEIGHT_TOL
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        rule = "to sum to 1" if exact else "to sum to at most 1"
        raise ValueError(
            f"{where}: expected each weighting over the {arr.shape[-1]} slots {rule} ({paper}), got sums in "
            f"[{sums.min():.4g}, {sums.max():.4g}] (first bad at step/head index {at}: {sums[at]:.4g})"
        )


@dataclass(frozen=True)
class PageLimits:
    """What one MemoryExplorer page may hold: the page stays small and the slider usable.

    >>> PageLimits().max_slots
    64
    >>> PageLimits.checked("MemoryExplorer.prepare", max_steps=0)
    Traceback (most recent call last):
    ...
    ValueError: MemoryExplorer.prepare: expected max_steps a positive integer, got 0
    """

    max_steps: int = MAX_STEPS  # T: one slider position per step
    max_slots: int = MAX_SLOTS  # N: an N x N link matrix stays readable
    max_values: int = MAX_VALUES  # T*N*W (+ T*N*N for a DNC) float32 values, base64 in the page

    @classmethod
    def checked(cls, where: str, **limits: int) -> PageLimits:
        for label, value in limits.items():
            check_int(where, label, value, low=1, expected=f"{label} a positive integer")
        return cls(**limits)


def _check_kind(where: str, kind: str, given: Mapping[str, Any]) -> None:
    """``kind`` is an NTM or a DNC, and ``given`` (its optional arrays) holds its own arrays and none of the other's."""
    if kind not in KINDS:
        raise ValueError(f"{where}: expected kind 'ntm' or 'dnc', got {kind!r}")
    other = [name for name in (DNC_ONLY if kind == "ntm" else NTM_ONLY) if given[name] is not None]
    if other:
        raise ValueError(f"{where}: {other} belong to the other kind of memory: kind={kind!r} takes "
                         f"{list(NTM_ONLY) if kind == 'ntm' else list(DNC_ONLY)}")
    required = NTM_ONLY if kind == "ntm" else DNC_REQUIRED
    missing = [name for name in required if given[name] is None]
    if missing:
        raise ValueError(f"{where}: kind={kind!r} needs {list(required)}, missing {missing}")


def _prepare_inputs(where: str, inputs: Any, limits: PageLimits) -> np.ndarray:
    """The inputs as (T, I), with 0 < T <= max_steps."""
    nd = np.ndim(inputs.detach() if hasattr(inputs, "detach") else inputs)
    x = check_array(f"{where}: inputs", inputs, 1 if nd == 1 else 2, "(T, I): steps x input channels")
    x = x[:, None] if x.ndim == 1 else x  # (T, I)
    T, n_in = x.shape
    if T == 0 or n_in == 0:
        raise ValueError(f"{where}: inputs: expected shape (T>0, I>0), got {x.shape}")
    if T > limits.max_steps:
        raise ValueError(f"{where}: expected at most max_steps={limits.max_steps} steps (the page stays small and "
                         f"the slider usable), got T={T}: run a shorter sequence")
    return x


def _prepare_memory(where: str, memory: Any, kind: str, T: int, limits: PageLimits) -> np.ndarray:
    """The memory after each step's write as (T, N, W), within the page's slots and values."""
    m = check_array(f"{where}: memory", memory, 3, "(T, N, W): steps x slots x slot width")
    if m.shape[0] != T:
        raise ValueError(
            f"{where}: memory: expected T={T} steps like the inputs, got {m.shape[0]}"
            + (" (was the model run more than once inside the trace?)" if m.shape[0] > T else "")
        )
    _, N, W = m.shape
    if N == 0 or W == 0:
        raise ValueError(f"{where}: memory: expected shape (T, N>0, W>0), got {m.shape}")
    if N > limits.max_slots:
        raise ValueError(f"{where}: expected at most max_slots={limits.max_slots} memory slots (a readable link "
                         f"matrix, a small page), got N={N}: use a smaller memory")
    values = T * N * W + (T * N * N if kind == "dnc" else 0)
    max_values = limits.max_values
    if values > max_values:
        per_step = values // T
        raise ValueError(
            f"{where}: expected at most max_values={max_values} memory{' and link' if kind == 'dnc' else ''} "
            f"values (about {max_values * 16 / 3 / 1e6:.1f} MB of page as base64 float32), got {values} "
            f"(T={T}, N={N}, W={W}): "
            f"use at most {max(max_values // per_step, 1)} steps, or a smaller memory"
        )
    return m


def _prepare_weightings(where: str, kind: str, read_weights: Any, write_weights: Any, T: int,
                        N: int) -> tuple[np.ndarray, np.ndarray]:
    """The read (T, R, N) and write (T, N) weightings: summing to 1 (NTM) or to at most 1 (DNC)."""
    rw = check_array(f"{where}: read_weights", read_weights, 3, "(T, R, N): steps x read heads x slots")
    if rw.shape[0] != T or rw.shape[2] != N or not 1 <= rw.shape[1] <= MAX_HEADS:
        raise ValueError(f"{where}: read_weights: expected shape (T, R, N) = ({T}, R, {N}) with 1 <= R <= "
                         f"{MAX_HEADS}, got {rw.shape}")
    ww = check_array(f"{where}: write_weights", write_weights, 2, "(T, N): steps x slots")
    _check_shape(f"{where}: write_weights", ww, (T, N), "(T, N)")
    paper = "Graves et al. 2014, eq. 1" if kind == "ntm" else "Graves et al. 2016, Methods"
    _check_weighting(f"{where}: read_weights", rw, kind == "ntm", paper)
    _check_weighting(f"{where}: write_weights", ww, kind == "ntm", paper)
    return rw, ww


def _prepare_outputs(where: str, outputs: Any, targets: Any, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Outputs and targets as (T, O) each, sharing O channels; NaN marks "not given" (and, for targets, "nothing
    expected" before the last T' steps they cover)."""
    y = tg = None
    if outputs is not None:
        y = check_array(f"{where}: outputs", outputs, 2, "(T, O): steps x output channels")
        _check_shape(f"{where}: outputs", y, (T, y.shape[1]), "(T, O)", " (one row per input step)")
    if targets is not None:
        tg = check_array(f"{where}: targets", targets, 2, "(T', O): the last T' <= T steps x output channels")
        if not 1 <= tg.shape[0] <= T:
            raise ValueError(f"{where}: targets: expected shape (T', O) with 1 <= T' <= T={T} (aligned to the "
                             f"last T' steps), got {tg.shape}")
        if y is not None and tg.shape[1] != y.shape[1]:
            raise ValueError(f"{where}: targets: expected O={y.shape[1]} channels like the outputs, "
                             f"got {tg.shape[1]}")
    n_out = y.shape[1] if y is not None else (tg.shape[1] if tg is not None else 0)
    aligned = np.full((T, n_out), np.nan)
    if tg is not None:
        aligned[T - tg.shape[0]:] = tg
    return (y if y is not None else np.full((T, n_out), np.nan)), aligned


def _prepare_ntm(where: str, given: Mapping[str, Any], T: int, W: int) -> Prepared:
    """The NTM's erase and add vectors, (T, W) each; erase in [0, 1]."""
    out = {}
    for name in NTM_ONLY:
        arr = check_array(f"{where}: {name}", given[name], 2, "(T, W): steps x slot width")
        _check_shape(f"{where}: {name}", arr, (T, W), "(T, W)")
        out[name] = arr
    _check_range(f"{where}: erase", out["erase"], 0, 1, "erase values (a sigmoid's output)")
    return out


def _prepare_dnc(where: str, given: Mapping[str, Any], T: int, N: int, R: int) -> Prepared:
    """The DNC's usage and allocation (T, N), link (T, N, N), read modes (T, R, 3), and its gates (NaN when not
    given): free gates (T, R), write and allocation gates (T,)."""
    out = {}
    for name in ("usage", "allocation"):
        arr = check_array(f"{where}: {name}", given[name], 2, "(T, N): steps x slots")
        _check_shape(f"{where}: {name}", arr, (T, N), "(T, N)")
        out[name] = arr
    _check_range(f"{where}: usage", out["usage"], 0, 1, "usage")
    _check_weighting(f"{where}: allocation", out["allocation"], False, "Graves et al. 2016, Methods")
    lk = check_array(f"{where}: link", given["link"], 3, "(T, N, N): steps x slots x slots")
    _check_shape(f"{where}: link", lk, (T, N, N), "(T, N, N)")
    _check_range(f"{where}: link", lk, 0, 1, "link weights")
    out["link"] = lk
    modes = check_array(f"{where}: read_modes", given["read_modes"], 3, "(T, R, 3): backward, content, forward")
    _check_shape(f"{where}: read_modes", modes, (T, R, 3), "(T, R, 3)")
    _check_weighting(f"{where}: read_modes", modes, True, "a softmax over backward, content, forward")
    out["read_modes"] = modes
    if given["free_gates"] is None:
        out["free_gates"] = np.full((T, R), np.nan)
    else:
        out["free_gates"] = check_array(f"{where}: free_gates", given["free_gates"], 2, "(T, R): steps x read heads")
        _check_shape(f"{where}: free_gates", out["free_gates"], (T, R), "(T, R)")
        _check_range(f"{where}: free_gates", out["free_gates"], 0, 1, "free gates")
    for name in ("write_gate", "allocation_gate"):
        if given[name] is None:
            out[name] = np.full(T, np.nan)
        else:
            out[name] = check_array(f"{where}: {name}", given[name], 1, "(T,): one gate per step")
            _check_shape(f"{where}: {name}", out[name], (T,), "(T,)")
            _check_range(f"{where}: {name}", out[name], 0, 1, f"the {name.replace('_', ' ')}")
    return out


class MemoryExplorer(Explorer):
    """Explore one NTM or DNC run: memory, weightings, erase/add or usage/allocation/links, step by step.

    ``compute(settings)`` (live layer) takes the controls' values as a dict with keys ``"sequence"``
    (the text box, e.g. ``"1011 0110 1110"``: what it means is the compute's business, see
    :meth:`parse_bit_vectors`) and ``"example"`` (the chosen name of ``examples``, or None when no
    examples were given), and returns :meth:`prepare`'s output (e.g. through :meth:`from_trace`).
    ``examples`` maps names to sequence texts for a dropdown (the first one starts in the box);
    without examples, ``sequence`` is the box's starting text.

    >>> T, N, W = 3, 4, 2  # steps, slots, slot width
    >>> data = MemoryExplorer.prepare(
    ...     "ntm", np.zeros((T, 2)), np.zeros((T, N, W)), np.full((T, 1, N), 1 / N), np.full((T, N), 1 / N),
    ...     erase=np.zeros((T, W)), add=np.zeros((T, W)))
    >>> MemoryExplorer(data).data["memory"].shape  # (T, N, W)
    (3, 4, 2)
    """

    def __init__(
        self,
        data: Prepared,
        compute: Callable[[dict[str, Any]], Prepared] | None = None,
        *,
        sequence: str = DEFAULT_SEQUENCE,
        examples: Mapping[str, str] | None = None,
    ):
        self.examples = dict(examples) if examples else {}
        if self.examples:
            first = next(iter(self.examples))
            self.settings: dict[str, Any] = {"example": first, "sequence": self.examples[first]}
        else:
            self.settings = {"example": None, "sequence": str(sequence)}
        self._built = False
        super().__init__(data, compute)

    # Layer 1: prepare ------------------------------------------------------------------------

    @staticmethod
    def prepare(
        kind: str,
        inputs: Any,
        memory: Any,
        read_weights: Any,
        write_weights: Any,
        *,
        targets: Any = None,
        outputs: Any = None,
        erase: Any = None,
        add: Any = None,
        usage: Any = None,
        allocation: Any = None,
        link: Any = None,
        read_modes: Any = None,
        free_gates: Any = None,
        write_gate: Any = None,
        allocation_gate: Any = None,
        max_steps: int = MAX_STEPS,
        max_slots: int = MAX_SLOTS,
        max_values: int = MAX_VALUES,
    ) -> Prepared:
        """Validate one sequence's arrays over ``T`` steps and return them as float64 NumPy arrays.

        Every kind: ``inputs`` (T, I) (or (T,)), ``memory`` (T, N, W) after each step's write,
        ``read_weights`` (T, R, N), ``write_weights`` (T, N); optionally ``outputs`` (T, O) in the
        targets' units (e.g. the sigmoid of an NTM's scores) and ``targets`` (T', O) with T' <= T,
        aligned to the last T' steps as memlib's tasks define them (NaN before).
        NTM (``kind="ntm"``): ``erase`` and ``add`` (T, W); its weightings sum to 1 (eq. 1).
        DNC (``kind="dnc"``): ``usage``, ``allocation`` (T, N), ``link`` (T, N, N), ``read_modes``
        (T, R, 3) (backward, content, forward) and optionally ``free_gates`` (T, R), ``write_gate`` and
        ``allocation_gate`` (T,) for the caption; its weightings sum to at most 1.

        Limits keep the page small and the slider usable: ``T <= max_steps``, ``N <= max_slots``,
        ``R <= 4`` and ``T*N*W (+ T*N*N for a DNC) <= max_values``.

        Returns ``kind`` (a 0-d str array), the arrays above under the same names (``targets`` and
        ``outputs`` (T, O): NaN where not given, O = 0 when neither is; DNC options NaN when not given)
        and nothing of the other kind.
        """
        where = "MemoryExplorer.prepare"
        given = {"erase": erase, "add": add, "usage": usage, "allocation": allocation, "link": link,
                 "read_modes": read_modes, "free_gates": free_gates, "write_gate": write_gate,
                 "allocation_gate": allocation_gate}
        _check_kind(where, kind, given)
        limits = PageLimits.checked(where, max_steps=max_steps, max_slots=max_slots, max_values=max_values)
        x = _prepare_inputs(where, inputs, limits)
        T = x.shape[0]
        m = _prepare_memory(where, memory, kind, T, limits)
        rw, ww = _prepare_weightings(where, kind, read_weights, write_weights, T, m.shape[1])
        y, tg = _prepare_outputs(where, outputs, targets, T)
        out: Prepared = {"kind": np.array(kind), "inputs": x, "memory": m, "read_weights": rw, "write_weights": ww,
                         "outputs": y, "targets": tg}
        if kind == "ntm":
            return out | _prepare_ntm(where, given, T, m.shape[2])
        return out | _prepare_dnc(where, given, T, m.shape[1], rw.shape[1])

    @staticmethod
    def from_trace(
        trace: Any,
        kind: str,
        inputs: Any,
        sample: int = 0,
        targets: Any = None,
        outputs: Any = None,
        *,
        max_steps: int = MAX_STEPS,
        max_slots: int = MAX_SLOTS,
        max_values: int = MAX_VALUES,
    ) -> Prepared:
        """:meth:`prepare` on batch row ``sample`` of a ``memlib.trace()`` of a ``memlib.NTM`` or ``DNC`` run.

        Reads ``{kind}.memory``, ``{kind}.read_weights``, ``{kind}.write_weights`` and, for the NTM,
        ``ntm.erase``, ``ntm.add``; for the DNC ``dnc.usage``, ``dnc.allocation``, ``dnc.link``,
        ``dnc.read_modes``, ``dnc.free_gates``, ``dnc.write_gate``, ``dnc.allocation_gate``
        (``tr.stack(name)`` is (T, B, ...)). ``inputs`` (T, I), ``outputs`` (T, O) and ``targets``
        (T', O) are that sample's.
        """
        where = "MemoryExplorer.from_trace"
        if kind not in KINDS:
            raise ValueError(f"{where}: expected kind 'ntm' or 'dnc', got {kind!r}")
        names = ["memory", "read_weights", "write_weights",
                 *(NTM_ONLY if kind == "ntm" else (*DNC_REQUIRED, *DNC_OPTIONAL))]
        arrays: dict[str, Any] = {}
        for name in names:
            full = f"{kind}.{name}"
            if full not in trace:
                raise ValueError(
                    f"{where}: expected {full!r} in the trace (run a memlib.{kind.upper()} inside "
                    f"`with memlib.trace() as tr:`), got names {trace.names()}"
                )
            stacked = trace.stack(full)  # (T, B, ...)
            if not -stacked.shape[1] <= sample < stacked.shape[1]:
                raise ValueError(f"{where}: expected sample in [0, {stacked.shape[1]}) (the batch), got {sample}")
            arrays[name] = stacked[:, sample]
        core = [arrays.pop(name) for name in ("memory", "read_weights", "write_weights")]
        return MemoryExplorer.prepare(kind, inputs, *core, targets=targets, outputs=outputs, **arrays,
                                      max_steps=max_steps, max_slots=max_slots, max_values=max_values)

    @staticmethod
    def parse_bit_vectors(text: str, bits: int | None = None) -> np.ndarray:
        """``"1011 0110 1110"`` -> a (L, K) float array of 0/1, one group of ``K`` bits per step (for a compute).

        Groups are separated by spaces or commas and all have ``bits`` bits (or the first group's count).
        """
        if not isinstance(text, str):
            raise TypeError(f"expected a str like {DEFAULT_SEQUENCE!r}, got {type(text).__name__}")
        if bits is not None:
            check_int("", "bits", bits, low=1, expected="bits (per group) a positive integer")
        groups = [g for g in re.split(r"[\s,;]+", text.strip()) if g]
        if not groups:
            raise ValueError(f"expected groups of bits like {DEFAULT_SEQUENCE!r}, got nothing")
        for k, group in enumerate(groups):
            bad = sorted(set(group) - {"0", "1"})
            if bad:
                raise ValueError(f"expected only 0 and 1, got {''.join(bad)!r} in group {k + 1} ({group!r})")
        width = len(groups[0]) if bits is None else bits
        for k, group in enumerate(groups):
            if len(group) != width:
                raise ValueError(f"expected every group to have {width} bits, got {len(group)} in group {k + 1} "
                                 f"({group!r})")
        return np.array([[float(c) for c in g] for g in groups])

    # Layer 2: the static Bokeh layout --------------------------------------------------------

    @staticmethod
    def _sizes(data: Prepared) -> tuple[str, int, int, int, int, int, int]:
        """(kind, T, N, W, R, I, O)."""
        T, N, W = data["memory"].shape
        return (str(data["kind"]), T, N, W, data["read_weights"].shape[1], data["inputs"].shape[1],
                data["outputs"].shape[1])

    def _step(self, data: Prepared) -> int:
        """The 0-based step shown now: where the reader left the slider, clamped; the last step at first."""
        T = data["memory"].shape[0]
        if not self._built:
            return T - 1
        return min(max(self.slider.value, 1), T) - 1

    def source_data(self, data: Prepared) -> dict[str, dict[str, Any]]:
        kind, T, N, W, R, n_in, n_out = self._sizes(data)
        f32 = np.float32
        placeholder = np.zeros(1, f32)
        flat = {name: data[name].astype(f32).ravel() if name in data else placeholder
                for name in ("memory", "read_weights", "write_weights", "erase", "add", "usage", "allocation",
                             "link", "read_modes", "free_gates", "write_gate", "allocation_gate")}
        store = {"kind": [kind], "T": [T], "N": [N], "W": [W], "R": [R], **{k: [v] for k, v in flat.items()}}
        image = np.zeros((1, 1), f32)  # what a hidden map shows
        over_time: dict[str, Any] = {"T": [T], "N": [N], "I": [n_in], "O": [max(n_out, 1)]}
        over_time["inputs"] = [data["inputs"].T.astype(f32)]  # (I, T)
        over_time["targets"] = [data["targets"].T.astype(f32) if n_out else image]  # (O, T), NaN: blank
        over_time["outputs"] = [data["outputs"].T.astype(f32) if n_out else image]
        over_time["write"] = [data["write_weights"].T.astype(f32)]  # (N, T)
        for r in range(MAX_HEADS):
            over_time[f"read_{r}"] = [data["read_weights"][:, r].T.astype(f32) if r < R else image]
        for name in ("usage", "allocation"):
            over_time[name] = [data[name].T.astype(f32) if kind == "dnc" else image]
        return {"memory_trace": store, "memory_over_time": over_time, **self._at_step(data, self._step(data))}

    @classmethod
    def _at_step(cls, data: Prepared, t: int) -> dict[str, dict[str, Any]]:
        """The sources that show step ``t`` (0-based); the CustomJS computes the same from the store."""
        kind, T, N, W, R, _, _ = cls._sizes(data)
        f32 = np.float32
        slots = np.arange(N)
        K = R + 1  # bars per slot: the write head, then each read head
        offsets = (np.arange(K) - (K - 1) / 2) * (0.8 / K)
        out: dict[str, dict[str, Any]] = {
            "memory_at_step": {"slot": np.repeat(slots, W), "col": np.tile(np.arange(W), N),
                               "value": data["memory"][t].astype(f32).ravel()},
            "weights_at_step": {
                "slot": np.tile(slots, K), "y": (slots[None, :] + offsets[:, None]).ravel(),
                "head": np.repeat(["write"] + [f"read {r + 1}" for r in range(R)], N),
                "color": np.repeat(HEAD_COLORS[:K], N),
                "weight": np.concatenate([data["write_weights"][t], data["read_weights"][t].ravel()]).astype(f32),
            },
        }
        if kind == "ntm":
            out["erase_add_at_step"] = {"col": np.arange(W), "erase": data["erase"][t].astype(f32),
                                        "add": data["add"][t].astype(f32)}
            out["usage_at_step"] = {"slot": [], "usage": [], "allocation": []}
            out["link_at_step"] = {"i": [], "j": [], "value": []}
        else:
            out["erase_add_at_step"] = {"col": [], "erase": [], "add": []}
            out["usage_at_step"] = {"slot": slots, "usage": data["usage"][t].astype(f32),
                                    "allocation": data["allocation"][t].astype(f32)}
            out["link_at_step"] = {"i": np.repeat(slots, N), "j": np.tile(slots, N),
                                   "value": data["link"][t].astype(f32).ravel()}  # row-major L[i, j]
        return out

    @classmethod
    def caption(cls, data: Prepared, t: int) -> str:
        """What the CustomJS writes under the slider at step ``t`` (0-based), from the same float32 numbers."""
        kind, T, N, W, R, _, _ = cls._sizes(data)
        d = {k: v.astype(np.float32) for k, v in data.items() if k not in ("kind",)}
        write = d["write_weights"][t]
        i = int(write.argmax())
        text = f"<b>step {t + 1} of {T}</b>. Write head: slot {i} (weight {write[i]:.2f})"
        if kind == "ntm":
            text += f", erase mean {d['erase'][t].mean():.2f}, add mean {d['add'][t].mean():.2f}."
        else:
            for name in ("write_gate", "allocation_gate"):
                if not np.isnan(d[name][t]):
                    text += f", {name.replace('_', ' ')} {d[name][t]:.2f}"
            alloc = d["allocation"][t]
            text += (f". Allocation points at slot {int(alloc.argmax())} ({alloc.max():.2f}); "
                     f"{int((d['usage'][t] > 0.5).sum())} of {N} slots more than half used.")
        for r in range(R):
            w = d["read_weights"][t, r]
            text += f"<br>Read head {r + 1}: slot {int(w.argmax())} (weight {w.max():.2f})"
            if kind == "dnc":
                b, c, f = d["read_modes"][t, r]
                text += f", modes backward {b:.2f} / content {c:.2f} / forward {f:.2f}"
                if not np.isnan(d["free_gates"][t, r]):
                    text += f", free gate {d['free_gates'][t, r]:.2f}"
            text += "."
        return text

    @staticmethod
    def _plain(title: str, width: int, height: int, grid: bool = True, **ranges):
        """A figure without tools; ``grid=False`` for maps (grid lines would cross their cells)."""
        fig = figure(width=width, height=height, title=title, tools="", toolbar_location=None,
                     min_border_left=36, min_border_right=4, **ranges)
        fig.title.text_font_size = "9pt"
        fig.axis.minor_tick_line_color = None
        fig.grid.visible = grid
        return fig

    @staticmethod
    def _legend_outside(fig, side: str) -> None:
        """Move the legend out of the plot: "right" keeps the plot's height (rows stay beside the memory's rows),
        "above" keeps its width (columns stay under the memory's columns)."""
        fig.add_layout(fig.legend[0], side)
        fig.legend.update(orientation="horizontal" if side == "above" else "vertical", label_text_font_size="8pt",
                          padding=0, spacing=4, margin=0, glyph_width=10, glyph_height=10, label_standoff=2)

    def _over_time(self, title: str, column_name: str, mapper: LinearColorMapper, rows: str, width: int,
                   height: int, y_label: str, y_range: Range1d):
        """A (rows x steps) map of ``memory_over_time[column_name]`` with a cursor at the chosen step."""
        fig = self._plain(title, width, height, grid=False, x_range=self.x_range, y_range=y_range)
        fig.image(image=column_name, x=0.5, y=-0.5, dw="T", dh=rows, source=self.sources["memory_over_time"],
                  color_mapper=mapper)
        fig.add_layout(ColorBar(color_mapper=mapper, width=7, padding=2, major_label_text_font_size="8pt"), "right")
        fig.yaxis.axis_label = y_label
        fig.xaxis.ticker.min_interval = 1  # steps are whole numbers
        fig.yaxis.ticker.min_interval = 1
        fig.yaxis.ticker.desired_num_ticks = 4 if rows != "N" else 6  # a short panel: few channel labels
        span = Span(location=self._t + 1, dimension="height", line_color="#e41a1c", line_width=1.5)
        fig.add_layout(span)
        self.spans.append(span)
        return fig

    def build(self):
        data, s = self.data, self.sources
        kind, T, N, W, R, n_in, n_out = self._sizes(data)
        t = self._step(data)
        self._t = t
        self.spans: list[Span] = []
        self.x_range = Range1d(0.5, T + 0.5)
        self.slot_range = Range1d(-0.5, N - 0.5)
        self.col_range = Range1d(-0.5, W - 0.5)
        self.channel_ranges = {"I": Range1d(-0.5, n_in - 0.5), "O": Range1d(-0.5, max(n_out, 1) - 0.5)}

        self.slider = Slider(start=1, end=max(T, 2), value=t + 1, step=1, title="step t", width=WIDTH - 2 * MARGIN,
                             name="memory_time_slider")
        self.caption_div = Div(text=self.caption(data, t), width=WIDTH - 2 * MARGIN, name="memory_caption",
                               styles={"font-size": "90%"})
        self._maps_over_time()
        mem, bars = self._step_figures(R)
        self.ntm_block = self._ntm_block(kind, mem)
        self.usage_bars, self.dnc_block = self._dnc_blocks(kind, N)

        callback = custom_js(
            "memory_step", store=s["memory_trace"], slider=self.slider, memory_at_step=s["memory_at_step"],
            weights_at_step=s["weights_at_step"], erase_add_at_step=s["erase_add_at_step"],
            usage_at_step=s["usage_at_step"], link_at_step=s["link_at_step"], spans=self.spans,
            caption=self.caption_div,
        )
        self.slider.js_on_change("value", callback)
        self._built = True
        maps = [self.write_map, *self.read_maps, self.usage_map, self.alloc_map]
        self.map_rows = [row(*maps[k:k + 2]) for k in range(0, len(maps), 2)]
        self._apply(data)
        note = Div(text="Maps: rows are slots (or channels), columns are steps; the red line is the chosen step.",
                   width=WIDTH - 2 * MARGIN, styles={"font-size": "85%", "color": "#555"})
        return column(
            self.slider, self.caption_div, *self.io_figs.values(), note, *self.map_rows,
            row(mem, bars, self.usage_bars), self.ntm_block, self.dnc_block, name="memory_explorer",
        )

    def _maps_over_time(self) -> None:
        """Input, target and output (channels x steps); the write, read, usage and allocation maps (slots x steps)."""
        self.input_mapper = LinearColorMapper(palette=INK)
        self.output_mapper = LinearColorMapper(palette=INK, nan_color="#d9e4f2")  # pale blue: nothing expected
        self.io_figs = {}
        for name, title, mapper, rows in (("inputs", "input xₜ (rows: channels)", self.input_mapper, "I"),
                                          ("targets", "target (pale blue: nothing expected)", self.output_mapper, "O"),
                                          ("outputs", "model output", self.output_mapper, "O")):
            self.io_figs[name] = self._over_time(title, name, mapper, rows, WIDTH, 100, "channel",
                                                 self.channel_ranges[rows])

        self.weight_mapper = LinearColorMapper(palette=Viridis256, low=0, high=1)
        slot_map = {"rows": "N", "width": WIDTH // 2, "height": 170, "y_label": "slot", "y_range": self.slot_range}
        self.write_map = self._over_time("write weighting (slots × steps)", "write", self.weight_mapper,
                                         **slot_map)
        self.read_maps = [self._over_time(f"read weighting, head {r + 1}", f"read_{r}", self.weight_mapper,
                                          **slot_map) for r in range(MAX_HEADS)]
        self.usage_map = self._over_time("DNC usage uₜ", "usage", self.weight_mapper, **slot_map)
        self.alloc_map = self._over_time("DNC allocation aₜ", "allocation", self.weight_mapper, **slot_map)

    def _step_figures(self, R: int):
        """At the chosen step: the memory matrix, and the weightings as bars beside its rows."""
        s = self.sources
        self.memory_mapper = LinearColorMapper(palette=DIVERGING)
        mem = self._plain("memory Mₜ (slots × width)", 260, 300, grid=False, x_range=self.col_range,
                          y_range=self.slot_range)
        mem.rect(x="col", y="slot", width=1, height=1, source=s["memory_at_step"], line_color=None, dilate=True,
                 fill_color={"field": "value", "transform": self.memory_mapper})
        mem.add_layout(ColorBar(color_mapper=self.memory_mapper, width=7, padding=2,
                                major_label_text_font_size="8pt"), "right")
        mem.yaxis.axis_label = "slot"
        mem.xaxis.ticker.min_interval = mem.yaxis.ticker.min_interval = 1
        bars = self._plain("weightings at step t", 210, 300, y_range=self.slot_range, x_range=Range1d(0, 1.02))
        self.weight_bars = bars.hbar(y="y", right="weight", left=0, height=0.8 / (R + 1), color="color",
                                     legend_field="head", source=s["weights_at_step"])
        self._legend_outside(bars, "right")
        bars.yaxis.ticker.min_interval = 1
        return mem, bars

    def _ntm_block(self, kind: str, mem):
        """NTM: the erase and add vectors under the memory's (``mem``'s) columns, and the write equation."""
        s = self.sources
        erase_add = self._plain("erase eₜ and add aₜ (per column)", 260, 160, x_range=self.col_range,
                                y_range=Range1d(-1.05, 1.05))
        erase_add.vbar(x=dodge("col", -0.2), top="erase", width=0.38, color="#7f7f7f",
                       legend_label="erase", source=s["erase_add_at_step"])
        erase_add.vbar(x=dodge("col", 0.2), top="add", width=0.38, color="#2166ac",
                       legend_label="add", source=s["erase_add_at_step"])
        self._legend_outside(erase_add, "above")
        # the memory's axis label and colour bar take these borders: columns line up under the memory's columns
        mem.min_border_left = erase_add.min_border_left = 60
        erase_add.min_border_right = 36
        erase_add.add_layout(Span(location=0, dimension="width", line_color="#888888"))
        erase_add.xaxis.ticker.min_interval = 1
        ntm_note = Div(text="Write: Mₜ(i) = Mₜ₋₁(i) [1 − wₜ(i) eₜ] + wₜ(i) aₜ (Graves et al. 2014, eqs. 3-4).",
                       width=WIDTH - 260 - 2 * MARGIN, styles={"font-size": "85%", "color": "#555"})
        return row(erase_add, ntm_note, name="ntm_panels", visible=kind == "ntm")

    def _dnc_blocks(self, kind: str, N: int):
        """DNC: usage and allocation beside the memory's rows; the link matrix and what it does."""
        s = self.sources
        usage = self._plain("usage / allocation", 190, 300, y_range=self.slot_range, x_range=Range1d(0, 1.02))
        usage.hbar(y=dodge("slot", 0.2), right="usage", left=0, height=0.38,
                   color="#666666", legend_label="usage", source=s["usage_at_step"])
        usage.hbar(y=dodge("slot", -0.2), right="allocation", left=0, height=0.38,
                   color="#e7298a", legend_label="allocation", source=s["usage_at_step"])
        self._legend_outside(usage, "right")
        usage_bars = column(usage, visible=kind == "dnc", name="dnc_usage_panel")
        self.link_mapper = LinearColorMapper(palette=Viridis256, low=0, high=1)
        link = self._plain("link Lₜ[i, j]: slot i written right after slot j", 330, 320, grid=False,
                           x_range=Range1d(-0.5, N - 0.5), y_range=Range1d(-0.5, N - 0.5))
        link.rect(x="j", y="i", width=1, height=1, source=s["link_at_step"], line_color=None, dilate=True,
                  fill_color={"field": "value", "transform": self.link_mapper})
        link.add_layout(ColorBar(color_mapper=self.link_mapper, width=7, padding=2,
                                 major_label_text_font_size="8pt"), "right")
        link.xaxis.axis_label, link.yaxis.axis_label = "j (written before)", "i (written after)"
        link.xaxis.ticker.min_interval = link.yaxis.ticker.min_interval = 1
        self.link_fig = link
        dnc_note = Div(text="The link matrix lets a read head step forward (wᶠ = L wʳ) or backward "
                            "(wᵇ = Lᵀ wʳ) through the order of writing; usage frees slots that were "
                            "read with a free gate near 1, and allocation points at the least-used slot "
                            "(Graves et al. 2016, Methods).", width=WIDTH - 330 - 2 * MARGIN,
                       styles={"font-size": "85%", "color": "#555"})
        return usage_bars, row(link, dnc_note, name="dnc_panels", visible=kind == "dnc")

    def _apply(self, data: Prepared) -> None:
        """Visibility, colour scales and ranges that follow the data's kind and sizes."""
        kind, T, N, W, R, n_in, n_out = self._sizes(data)
        for name in ("targets", "outputs"):
            self.io_figs[name].visible = not np.isnan(data[name]).all()  # all NaN (or O = 0): not given
        for r, fig in enumerate(self.read_maps):
            fig.visible = r < R
        self.usage_map.visible = self.alloc_map.visible = kind == "dnc"
        # Put what shows first and hide rows with nothing left to show (a hidden child still takes no space).
        maps = [m for m in (self.write_map, *self.read_maps, self.usage_map, self.alloc_map) if m.visible]
        hidden = [m for m in (self.write_map, *self.read_maps, self.usage_map, self.alloc_map) if not m.visible]
        ordered = maps + hidden
        for k, map_row in enumerate(self.map_rows):
            map_row.children = ordered[2 * k:2 * k + 2]
            map_row.visible = any(m.visible for m in map_row.children)
        self.ntm_block.visible = kind == "ntm"
        self.dnc_block.visible = self.usage_bars.visible = kind == "dnc"
        x = data["inputs"]
        self.input_mapper.update(low=min(float(x.min()), 0.0), high=max(float(x.max()), 1.0))
        y = np.concatenate([data["outputs"].ravel(), data["targets"].ravel()])
        y = y[np.isfinite(y)]
        self.output_mapper.update(low=min(float(y.min()), 0.0) if y.size else 0.0,
                                  high=max(float(y.max()), 1.0) if y.size else 1.0)
        bound = max(float(np.abs(data["memory"]).max()), 1e-6)  # one scale for every step: steps compare
        self.memory_mapper.update(low=-bound, high=bound)
        if kind == "dnc":
            self.link_mapper.high = max(float(data["link"].max()), 1e-3)
            self.link_fig.x_range.update(start=-0.5, end=N - 0.5)
            self.link_fig.y_range.update(start=-0.5, end=N - 0.5)
        self.weight_bars.glyph.height = 0.8 / (R + 1)
        self.x_range.update(start=0.5, end=T + 0.5)
        self.slot_range.update(start=-0.5, end=N - 0.5)
        self.col_range.update(start=-0.5, end=W - 0.5)
        self.channel_ranges["I"].update(start=-0.5, end=n_in - 0.5)
        self.channel_ranges["O"].update(start=-0.5, end=max(n_out, 1) - 0.5)

    def on_update(self, data: Prepared) -> None:
        t = self._step(data)
        T = data["memory"].shape[0]
        self.slider.update(end=max(T, 2), value=t + 1)
        for span in self.spans:
            span.location = t + 1
        self.caption_div.text = self.caption(data, t)
        self._apply(data)

    # Layer 3: live controls ------------------------------------------------------------------

    max_groups: int = MAX_STEPS  # a sequence of more groups (vectors) is refused before the model runs

    def request(self, value: Any) -> dict[str, Any]:
        """The settings ``compute`` receives: ``settings`` with the changed ones in ``value`` (a dict). A new example
        brings back its latest text, unless ``value`` gives one."""
        s = merge_settings(self.settings, value, ("example", "sequence"))
        if self.examples:
            if s["example"] not in self.examples:
                raise ValueError(f"expected example one of {list(self.examples)}, got {s['example']!r}")
            if "example" in value and "sequence" not in value:
                s["sequence"] = self.examples[s["example"]]
        elif s["example"] is not None:
            raise ValueError(f"expected example None (no examples were given), got {s['example']!r}")
        groups = len([g for g in re.split(r"[\s,;]+", check_text("sequence", s["sequence"], self.max_text)) if g])
        if groups > self.max_groups:
            raise Refused(f"expected at most {self.max_groups} groups in sequence (each one a step or more, and the "
                          f"explorer draws at most {MAX_STEPS} steps: the model is not run), got {groups}")
        return s

    def accept(self, request: dict[str, Any], data: Prepared) -> None:
        super().accept(request, data)
        if request["example"] is not None:
            self.examples[request["example"]] = request["sequence"]  # the example's latest text comes back with it

    def controls(self) -> list:
        """A text box for the sequence (and a dropdown of examples, if given); each change reruns ``compute``."""
        import ipywidgets

        text = ipywidgets.Text(value=self.settings["sequence"], description="sequence", continuous_update=False,
                               layout=ipywidgets.Layout(width=f"{WIDTH}px"),
                               placeholder="e.g. 1011 0110 1110, then press Enter")
        self.bind("sequence", text)
        if not self.examples:
            return [text]
        # as wide as the text box: the default 300 px cuts labels such as "20 vectors (longer than any in training)"
        choose = ipywidgets.Dropdown(options=list(self.examples), value=self.settings["example"],
                                     description="example", layout=ipywidgets.Layout(width=f"{WIDTH}px"))
        return [self.bind("example", choose), text]


# ---------------------------------------------------------------------------------------------
# The addressing pipeline (Graves et al. 2014, section 3.3, Figure 2), in the page's JavaScript.
# ---------------------------------------------------------------------------------------------

PIPELINE_DEFAULTS = {"beta": 6.0, "g": 0.8, "shift": 0.8, "gamma": 2.5}  # content finds slot 5; the shift moves it
PIPELINE_RANGES = {"beta": (0.0, 20.0, 0.5), "g": (0.0, 1.0, 0.05), "shift": (-1.0, 1.0, 0.05),
                   "gamma": (1.0, 10.0, 0.1)}  # (start, end, step) of each slider
MAX_PIPELINE_SLOTS = 32


def _subscript(i: int) -> str:
    """``i`` in Unicode subscript digits (a table's M₁₂): <sub> would shrink them under 10 px."""
    return str(i).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


def shift_kernel(shift: float) -> np.ndarray:
    """The pipeline slider's shift in [-1, 1] -> a kernel over offsets -1, 0, +1 (widgets/js/addressing.js's twin).

    0 stays, +1 moves the focus one slot up, 0.5 splits the mass evenly between staying and moving up.

    >>> shift_kernel(1.0), shift_kernel(0.5)  # offsets -1, 0, +1
    (array([0., 0., 1.]), array([0. , 0.5, 0.5]))
    """
    return np.array([max(-shift, 0.0), 1.0 - abs(shift), max(shift, 0.0)])


def addressing_stages(memory: Any, key: Any, previous: Any, beta: float, g: float, shift: float,
                      gamma: float) -> dict[str, np.ndarray]:
    """The four stages (and the similarity) from ``memlib.memory.addressing`` in float64, each (N,).

    >>> memory, key, previous = example_memory()
    >>> stages = addressing_stages(memory, key, previous, beta=5.0, g=1.0, shift=0.0, gamma=1.0)
    >>> sorted(stages), int(stages["content"].argmax()), round(float(stages["sharpened"].sum()), 6)
    (['content', 'gated', 'sharpened', 'shifted', 'similarity'], 5, 1.0)
    """
    M = torch.as_tensor(np.asarray(memory, dtype=np.float64))[None]  # (1, N, W)
    k = torch.as_tensor(np.asarray(key, dtype=np.float64))[None, None]  # (1, 1, W)
    prev = torch.as_tensor(np.asarray(previous, dtype=np.float64))[None, None]  # (1, 1, N)
    s = torch.as_tensor(shift_kernel(shift))[None, None]  # (1, 1, 3)
    one = lambda v: torch.tensor([[float(v)]], dtype=torch.float64)  # noqa: E731 (B, H) = (1, 1)
    stages = addressing.address(M, prev, k, one(beta), one(g), s, one(gamma))
    out = {name: value[0, 0].numpy() for name, value in stages._asdict().items()}
    out["similarity"] = addressing.cosine_similarity(M, k)[0, 0].numpy()
    return out


def example_memory() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small (8 x 5) memory, a key near slot 5 (and partly like slot 1), a previous weighting on slot 2.

    >>> memory, key, previous = example_memory()
    >>> memory.shape, key.shape, int(previous.argmax())
    ((8, 5), (5,), 2)
    """
    rng = np.random.default_rng(7)
    memory = rng.uniform(-1, 1, (8, 5)).round(2)
    memory[1] = (0.6 * memory[5] + 0.4 * memory[1]).round(2)  # a decoy: similar to the key, less than slot 5
    key = (memory[5] + rng.normal(0, 0.15, 5)).round(2)
    previous = np.full(8, 0.2 / 7)
    previous[2] = 0.8
    return memory, key, previous


class AddressingPipeline(Explorer):
    """The NTM's four addressing stages with sliders for ``beta``, ``g``, the shift and ``gamma`` (static).

    Built from :meth:`prepare`'s output (default: :func:`example_memory` at :data:`PIPELINE_DEFAULTS`).
    It has no live layer: the page's JavaScript recomputes everything.

    >>> pipeline = AddressingPipeline(AddressingPipeline.prepare(*example_memory(), beta=5.0))
    >>> pipeline.data["settings"]  # beta, g, shift, gamma
    array([5. , 0.8, 0.8, 2.5])
    """

    def __init__(self, data: Prepared | None = None):
        super().__init__(self.prepare(*example_memory()) if data is None else data)

    @staticmethod
    def prepare(memory: Any, key: Any, previous: Any, beta: float = PIPELINE_DEFAULTS["beta"],
                g: float = PIPELINE_DEFAULTS["g"], shift: float = PIPELINE_DEFAULTS["shift"],
                gamma: float = PIPELINE_DEFAULTS["gamma"]) -> Prepared:
        """Validate a memory (N, W), a key (W,), a previous weighting (N,) and the sliders' starting values.

        Returns them with the four stages computed by ``memlib.memory.addressing`` (float64): ``content``,
        ``gated``, ``shifted``, ``sharpened`` and ``similarity`` (N,), ``kernel`` (3,), and ``settings``
        (beta, g, shift, gamma).
        """
        where = "AddressingPipeline.prepare"
        M = check_array(f"{where}: memory", memory, 2, "(N, W): slots x slot width")
        N, W = M.shape
        if not 2 <= N <= MAX_PIPELINE_SLOTS or W == 0:
            raise ValueError(f"{where}: memory: expected shape (N, W) with 2 <= N <= {MAX_PIPELINE_SLOTS} "
                             f"(bars stay readable) and W >= 1, got {M.shape}")
        k = check_array(f"{where}: key", key, 1, f"({W},): one number per memory column")
        _check_shape(f"{where}: key", k, (W,), "(W,)")
        prev = check_array(f"{where}: previous", previous, 1, f"({N},): a weighting over the slots")
        _check_shape(f"{where}: previous", prev, (N,), "(N,)")
        _check_weighting(f"{where}: previous", prev, True, "Graves et al. 2014, eq. 1")
        for name, value in (("beta", beta), ("g", g), ("shift", shift), ("gamma", gamma)):
            lo, hi, _ = PIPELINE_RANGES[name]
            check_number(where, name, value, lo, hi,
                         expected=f"{name} a number in [{lo:g}, {hi:g}] (the slider's range)")
        stages = addressing_stages(M, k, prev, beta, g, shift, gamma)
        return {"memory": M, "key": k, "previous": prev, "kernel": shift_kernel(shift),
                "settings": np.array([beta, g, shift, gamma], dtype=np.float64), **stages}

    def source_data(self, data: Prepared) -> dict[str, dict[str, Any]]:
        N, W = data["memory"].shape
        slots = np.arange(N)
        out: dict[str, dict[str, Any]] = {
            "pipeline_setup": {"N": [N], "W": [W], "memory": [data["memory"].ravel()], "key": [data["key"]],
                               "previous": [data["previous"]]},
            "pipeline_inputs": {"slot": slots, "similarity": data["similarity"], "previous": data["previous"]},
            "pipeline_kernel": {"offset": np.array([-1, 0, 1]), "s": data["kernel"]},
        }
        for stage in ("content", "gated", "shifted", "sharpened"):
            out[f"pipeline_{stage}"] = {"slot": slots, "weight": data[stage]}
        return out

    @staticmethod
    def caption(data: Prepared) -> str:
        def focus(w: np.ndarray) -> str:
            return f"slot {int(w.argmax())} ({fixed(w.max(), 2)})"  # toFixed, as the page writes it

        return (f"Focus after each stage: content {focus(data['content'])}, gated {focus(data['gated'])}, "
                f"shifted {focus(data['shifted'])}, sharpened {focus(data['sharpened'])}.")

    @staticmethod
    def memory_table(data: Prepared) -> str:
        """The memory and the key as a small HTML table: what the similarity compares."""
        cell = "padding:0 4px;text-align:right"
        head = "".join(f'<th style="{cell}">{c}</th>' for c in range(data["memory"].shape[1]))
        rows = "".join(
            f'<tr><th style="{cell}">M{_subscript(i)}</th>'
            + "".join(f'<td style="{cell}">{v:+.2f}</td>' for v in slot)
            + "</tr>" for i, slot in enumerate(data["memory"])
        )
        key = (f'<tr style="border-top:1px solid #888"><th style="{cell}">k</th>'
               + "".join(f'<td style="{cell}"><b>{v:+.2f}</b></td>' for v in data["key"]) + "</tr>")
        return (f'<table style="font-size:90%;border-collapse:collapse;font-family:monospace">'
                f'<tr><th></th>{head}</tr>{rows}{key}</table>')

    def build(self):
        s, data = self.sources, self.data
        N = data["memory"].shape[0]
        titles = {"beta": "key strength β", "g": "interpolation gate g",
                  "shift": "shift s: -1 (one slot down) .. +1 (one slot up)", "gamma": "sharpening γ"}
        sliders = {}
        for name, value in zip(PIPELINE_DEFAULTS, data["settings"], strict=True):
            start, end, step = PIPELINE_RANGES[name]
            sliders[name] = Slider(start=start, end=end, step=step, value=float(value), title=titles[name],
                                   width=WIDTH // 2 - 2 * MARGIN, name=f"pipeline_{name}")
        caption = Div(text=self.caption(data), width=WIDTH - 2 * MARGIN, name="pipeline_caption")
        slot_range = Range1d(-0.6, N - 0.4)

        def bars(title: str, source: str, color: str, width: int, field: str = "weight", y_range=(0, 1.02),
                 x: str = "slot", before: tuple[str, str, str] | None = None):
            """Bars of ``source[field]``; ``before`` = (source, field, label) adds the stage's input as outlines."""
            fig = figure(width=width, height=170, title=title, tools="", toolbar_location=None,
                         x_range=slot_range if x == "slot" else Range1d(-1.6, 1.6), y_range=Range1d(*y_range),
                         min_border_left=34, min_border_right=6)
            fig.title.text_font_size = "9pt"
            fig.vbar(x=x, top=field, width=0.8, color=color, source=s[source])
            if before is not None:
                fig.vbar(x=x, top=before[1], width=0.8, fill_alpha=0, line_color="#333333", line_dash="dashed",
                         source=s[before[0]], legend_label=before[2])
                fig.legend.update(location="top_left", label_text_font_size="8pt", padding=1, margin=2,
                                  background_fill_alpha=0.5, glyph_width=12)
            if x == "offset":
                fig.xaxis.ticker = [-1, 0, 1]
            elif N <= 16:
                fig.xaxis.ticker = list(range(N))  # every slot labelled
            fig.axis.minor_tick_line_color = None
            fig.xaxis.axis_label = "slot" if x == "slot" else "offset"
            return fig

        table = Div(text=self.memory_table(data), width=240 - 2 * MARGIN, name="pipeline_memory")
        similarity = bars("similarity K(k, Mᵢ) (eq. 6)", "pipeline_inputs", "#888888", 260, field="similarity",
                          y_range=(-1.05, 1.05))
        similarity.add_layout(Span(location=0, dimension="width", line_color="#444444"))
        kernel = bars("shift kernel s", "pipeline_kernel", "#7570b3", 160, field="s", x="offset")
        half = WIDTH // 2
        stages = [
            bars("1. content: wᶜ = softmax(β K) (eq. 5)", "pipeline_content", "#1b9e77", half),
            bars("2. gate: wᵍ = g wᶜ + (1 − g) wₜ₋₁ (eq. 7)", "pipeline_gated", "#d95f02", half,
                 before=("pipeline_inputs", "previous", "wₜ₋₁")),
            bars("3. shift: w\u0303 = wᵍ convolved with s (eq. 8)", "pipeline_shifted", "#7570b3", half,
                 before=("pipeline_gated", "weight", "wᵍ")),
            bars("4. sharpen: wᵢ ∝ w\u0303ᵢ to the power γ (eq. 9)", "pipeline_sharpened", "#e7298a", half,
                 before=("pipeline_shifted", "weight", "w\u0303")),
        ]
        callback = custom_js(
            "addressing", "addressing_pipeline", setup=s["pipeline_setup"], inputs=s["pipeline_inputs"],
            kernel=s["pipeline_kernel"], content=s["pipeline_content"], gated=s["pipeline_gated"],
            shifted=s["pipeline_shifted"], sharpened=s["pipeline_sharpened"], caption=caption, **sliders,
        )
        for slider in sliders.values():
            slider.js_on_change("value", callback)
        return column(
            row(sliders["beta"], sliders["g"]), row(sliders["shift"], sliders["gamma"]), caption,
            row(table, similarity, kernel), row(stages[0], stages[1]), row(stages[2], stages[3]),
            name="addressing_pipeline",
        )
