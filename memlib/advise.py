"""Which memory option? An advisor that answers from the measured benchmark table, not from opinions.

:func:`advise` reads the ``"summary"`` part of the JSON that ``python -m memlib.bench compare --json PATH`` writes:
per model, the largest dependency (in steps) it solved on each task, and three measured curves against the sequence
length ``T``: ``step_ms`` (one training step of ``batch`` sequences), ``peak_mib`` (the peak memory of that step) and
``latency_ms`` (one forward pass of one sequence, no gradients). For the reader's question (a sequence length, the
longest dependency to learn, a memory budget and a latency limit) it predicts each curve at that length, keeps the
models that meet every constraint and recommends the fastest to train among them, with the numbers behind the
verdict on every model.

Prediction at a length ``T`` (:func:`predict`): the measured value at a measured ``T``; between two measured
lengths, the power law through the two neighbours (straight line in log-log); outside the measured range, a power
law from the nearest end point with the least-squares exponent of all the points (slope of ``log value`` on
``log T``). One measured point gives no exponent: the value elsewhere is unknown. Unknown numbers make a model
infeasible ("not measured"); extrapolated ones are flagged in the explanation with their exponent.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from memlib.validate import check_float, check_int, is_number

#: The measured costs the advisor reads from its table.
METRICS = ("step_ms", "peak_mib", "latency_ms")
METRIC_NAME = {"step_ms": "training step time", "peak_mib": "peak memory", "latency_ms": "latency"}
UNIT = {"step_ms": "ms", "peak_mib": "MiB", "latency_ms": "ms"}
_AMOUNT = {"step_ms": "a training step takes {value} ms", "peak_mib": "needs {value} MiB",
           "latency_ms": "takes {value} ms per sequence"}
MAKE_TABLE = "python -m memlib.bench compare --quick --json PATH"


class TableNotFoundError(FileNotFoundError, ValueError):
    """The table's JSON file does not exist (a FileNotFoundError, and a ValueError like every other bad input).

    >>> try:
    ...     load_table("/no/such/table.json")
    ... except ValueError as err:  # caught as a bad input, like every other
    ...     print(type(err).__name__, isinstance(err, FileNotFoundError))
    TableNotFoundError True
    """


class Series(NamedTuple):
    """One measured curve: increasing lengths and their positive values.

    >>> Series((100, 200), (1.0, 4.0)).lengths
    (100, 200)
    """

    lengths: tuple[int, ...]
    values: tuple[float, ...]


class ModelRow(NamedTuple):
    """One model of the table, checked.

    >>> ModelRow._fields
    ('key', 'label', 'largest_lag', 'series', 'interpretability')
    """

    key: str
    label: str
    largest_lag: dict[str, int]  # task -> largest dependency solved (0 if none)
    series: dict[str, Series]  # metric -> measured curve (possibly empty)
    interpretability: float | None


class Table(NamedTuple):
    """The checked ``summary`` of a benchmark run (what :func:`load_table` returns; :func:`advise` takes it too).

    >>> Table._fields
    ('batch', 'models')
    """

    batch: int  # sequences per training step in step_ms and peak_mib
    models: dict[str, ModelRow]


class Prediction(NamedTuple):
    """A curve's value at one length. ``how``: "measured", "interpolated", "extrapolated" or "not measured";
    ``exponent``: the least-squares exponent used to extrapolate (else None); ``note``: why it is unknown.

    >>> predict([[100, 1.0], [200, 4.0]], 400)._fields[:2]
    ('value', 'how')
    """

    value: float | None
    how: str
    exponent: float | None = None
    note: str = ""

    @property
    def extrapolated(self) -> bool:
        return self.how == "extrapolated"


class Check(NamedTuple):
    """One constraint on one model: ``constraint`` ("dependency", or a metric of ``METRICS``), whether it
    holds, and the numbers in words.

    >>> Check._fields
    ('constraint', 'ok', 'text')
    """

    constraint: str
    ok: bool
    text: str


class Candidate(NamedTuple):
    """The verdict on one model. ``reasons``: the failed constraints with their numbers when infeasible, else the
    evidence that each holds (``checks``: every constraint, held or not, in the order dependency, step_ms,
    peak_mib, latency_ms). ``predicted``: metric -> value at the asked length (None: unknown).

    >>> Candidate._fields[:4]
    ('key', 'label', 'feasible', 'reasons')
    """

    key: str
    label: str
    feasible: bool
    reasons: tuple[str, ...]
    predicted: dict[str, float | None]
    extrapolated: dict[str, bool]
    largest_lag: dict[str, int]
    interpretability: float | None
    checks: tuple[Check, ...] = ()


class Advice(NamedTuple):
    """What :func:`advise` recommends: ``choice`` (a model key, None when nothing is feasible) and ``candidates``
    (the feasible in ranking order, then the infeasible in the table's order), with the question asked.
    ``str(advice)`` (or :meth:`explain`) gives the evidence.

    >>> Advice._fields[:2]
    ('choice', 'candidates')
    """

    choice: str | None
    candidates: tuple[Candidate, ...]
    seq_len: int
    dependency_range: int
    memory_budget: float
    latency: float
    batch: int

    def candidate(self, key: str) -> Candidate:
        for c in self.candidates:
            if c.key == key:
                return c
        raise KeyError(f"expected a model key among {[c.key for c in self.candidates]}, got {key!r}")

    def explain(self) -> str:
        """The recommendation, then each feasible model's evidence and each rejected model's failed constraints."""
        feasible = [c for c in self.candidates if c.feasible]
        rejected = [c for c in self.candidates if not c.feasible]
        lines = [f"Question: T={self.seq_len}, dependencies up to {self.dependency_range} steps, "
                 f"{question_text(self.memory_budget, self.latency, self.batch)}."]
        if self.choice is None:
            lines.append(f"No model meets every constraint ({len(rejected)} rejected).")
        else:
            best = feasible[0]
            lines.append(f"Choice: {best.label} ({best.key}), the fastest to train of {len(feasible)} feasible: "
                         f"{fmt(best.predicted['step_ms'])} ms per training step"
                         f"{' (extrapolated)' if best.extrapolated['step_ms'] else ''}.")
        if feasible:
            lines.append("Feasible, fastest to train first:")
            for rank, c in enumerate(feasible, start=1):
                lines.append(f"  {rank}. {c.label}: " + "; ".join(c.reasons)
                             + f"; {interpretability_text(c.interpretability)}")
        if rejected:
            lines.append("Rejected:")
            for c in rejected:
                lines.append(f"  - {c.label}: " + "; ".join(c.reasons))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.explain()


# ---------------------------------------------------------------------------------------------------------------
# Numbers as text (the explorer shows the same strings).
# ---------------------------------------------------------------------------------------------------------------


def fmt(x: float | None) -> str:
    """A measured or predicted number, to three significant digits (no exponent below 1000).

    >>> fmt(1234.5), fmt(0.5), fmt(None)
    ('1234', '0.5', '?')
    """
    if x is None:
        return "?"
    if math.isinf(x):
        return "inf"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


def question_text(memory_budget: float, latency: float, batch: int) -> str:
    """The two limits of a question, in words.

    >>> question_text(1024, float("inf"), 32)
    'a memory budget of 1024 MiB per training step of 32 sequences, no latency limit'
    """
    memory = ("no memory budget" if math.isinf(memory_budget)
              else f"a memory budget of {fmt(memory_budget)} MiB per training step of {batch} sequences")
    return memory + (", no latency limit" if math.isinf(latency)
                     else f", a latency limit of {fmt(latency)} ms per sequence")


def interpretability_text(score: float | None) -> str:
    """The interpretability score in words (``None``: not measured yet).

    >>> interpretability_text(0.8), interpretability_text(None)
    ('interpretability 0.80', 'interpretability pending')
    """
    return "interpretability pending" if score is None else f"interpretability {score:.2f}"


def _how_text(seq_len: int, p: Prediction) -> str:
    if p.how == "extrapolated":
        return f"at T={seq_len} (extrapolated, exponent {p.exponent:.2f})"
    return f"at T={seq_len} ({p.how})"


def _lags_text(lags: Mapping[str, int]) -> str:
    return ", ".join(f"{lag} ({task})" for task, lag in lags.items())


# ---------------------------------------------------------------------------------------------------------------
# Checking input.
# ---------------------------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, low: int) -> int:
    """Not an int: TypeError; an int below ``low``: ValueError (one wording)."""
    expected, kind = f"{name} as an int >= {low}", f"{value!r} ({type(value).__name__})"
    check_int("advise", name, value, expected=expected, got=kind, error=TypeError)
    return check_int("advise", name, value, low=low, expected=expected, got=str(value))


def _check_limit(name: str, value: Any, unit: str) -> float:
    """Not a number: TypeError; NaN or not above 0: ValueError (``math.inf`` is no limit)."""
    expected, kind = f"{name} as a number of {unit} > 0 (math.inf: no limit)", f"{value!r} ({type(value).__name__})"
    value = check_float("advise", name, value, expected=expected, got=kind, error=TypeError)
    return check_float("advise", name, value, low=0, low_open=True, expected=expected, got=str(value))


def check_question(seq_len: Any, dependency_range: Any, memory_budget: Any, latency: Any) -> tuple[int, int, float,
                                                                                                    float]:
    """The four inputs of :func:`advise`, checked (the explorer checks its grids with it).

    >>> check_question(512, 100, 1024, float("inf"))
    (512, 100, 1024.0, inf)
    """
    seq_len = _check_int("seq_len", seq_len, 1)
    dependency_range = _check_int("dependency_range", dependency_range, 0)
    if dependency_range > seq_len:
        raise ValueError(f"advise: expected dependency_range <= seq_len ({seq_len}): a dependency cannot span more "
                         f"steps than the sequence has, got {dependency_range}")
    return (seq_len, dependency_range, _check_limit("memory_budget", memory_budget, "MiB"),
            _check_limit("latency", latency, "ms"))


def _key(mapping: Any, path: str, key: str) -> Any:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"table: expected {path or 'the table'} as an object (dict), got {type(mapping).__name__}")
    if key not in mapping:
        where = f"{path}.{key}" if path else key
        raise ValueError(f"table: expected key {where}, missing (keys there: {sorted(map(str, mapping))})")
    return mapping[key]


def _series(points: Any, path: str) -> Series:
    if not isinstance(points, Sequence) or isinstance(points, str):
        raise ValueError(f"table: expected {path} as a list of [T, value] pairs, got {type(points).__name__}")
    lengths: list[int] = []
    values: list[float] = []
    for i, point in enumerate(points):
        if not isinstance(point, Sequence) or isinstance(point, str) or len(point) != 2:
            raise ValueError(f"table: expected {path}[{i}] as a [T, value] pair, got {point!r}")
        t, v = point
        check_int("table", "T", t, low=1, expected=f"{path}[{i}] to start with a length T as an int >= 1")
        if not is_number(v) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"table: expected {path}[{i}] to hold a measured value > 0 and finite, got {v!r}")
        if lengths and t <= lengths[-1]:
            what = "duplicate" if t == lengths[-1] else "unsorted"
            raise ValueError(f"table: expected {path} sorted by increasing T without repeats, got {what} T={t} "
                             f"after T={lengths[-1]} at index {i}")
        lengths.append(int(t))
        values.append(float(v))
    return Series(tuple(lengths), tuple(values))


def _model(key: str, row: Any, path: str) -> ModelRow:
    label = _key(row, path, "label")
    if not isinstance(label, str) or not label:
        raise ValueError(f"table: expected {path}.label as a non-empty string, got {label!r}")
    lags = _key(row, path, "largest_lag")
    if not isinstance(lags, Mapping):
        raise ValueError(f"table: expected {path}.largest_lag as an object task -> lag, got {type(lags).__name__}")
    for task, lag in lags.items():
        check_int("table", "lag", lag, low=0, expected=f"{path}.largest_lag.{task} as an int >= 0")
    series = {m: _series(_key(row, path, m), f"{path}.{m}") for m in METRICS}
    score = row.get("interpretability")  # absent or null: the interpretability measurement is pending
    if score is not None and (not is_number(score)
                              or not 0 <= score <= 1):
        raise ValueError(f"table: expected {path}.interpretability as a number in [0, 1] or null, got {score!r}")
    return ModelRow(key, label, {str(t): int(v) for t, v in lags.items()}, series,
                    None if score is None else float(score))


def load_table(table: Any) -> Table:
    """The checked summary of a benchmark run: from the JSON's data (a dict with ``"summary"``), from a path to
    the JSON file, or an already checked :class:`Table` (returned as it is).

    >>> def row(label, lag, step_ms):  # a made-up measurement table: each metric as [T, value] points
    ...     points = [[50, step_ms * 50], [1000, step_ms * 1000]]
    ...     return {"label": label, "params": 1000, "largest_lag": {"adding": lag}, "step_ms": points,
    ...             "peak_mib": points, "latency_ms": points, "interpretability": None}
    >>> table = {"summary": {"batch": 32, "models": {"rnn": row("RNN", 10, 0.01), "lstm": row("LSTM", 100, 0.04)}}}
    >>> sorted(load_table(table).models)
    ['lstm', 'rnn']
    """
    if isinstance(table, Table):
        return table
    if isinstance(table, (str, os.PathLike)):
        path = os.fspath(table)
        if not os.path.isfile(path):
            raise TableNotFoundError(f"advise: expected the benchmark's JSON at {path!r}, no such file; make it with "
                                     f"`{MAKE_TABLE.replace('PATH', path)}`")
        try:
            with open(path, encoding="utf-8") as f:
                table = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"advise: expected JSON in {path!r} (written by `{MAKE_TABLE}`), got a parse error: "
                             f"{err}") from None
    elif not isinstance(table, Mapping):
        raise TypeError(f"advise: expected table as the benchmark's data (a dict with 'summary') or a path to its "
                        f"JSON, got {type(table).__name__}")
    summary = _key(table, "", "summary")
    batch = _key(summary, "summary", "batch")
    check_int("table", "batch", batch, low=1, expected="summary.batch as an int >= 1")
    models = _key(summary, "summary", "models")
    if not isinstance(models, Mapping) or not models:
        raise ValueError(f"table: expected summary.models as a non-empty object key -> model, got {models!r:.80}")
    return Table(int(batch), {str(k): _model(str(k), row, f"summary.models.{k}") for k, row in models.items()})


# ---------------------------------------------------------------------------------------------------------------
# Prediction.
# ---------------------------------------------------------------------------------------------------------------


def fitted_exponent(points: Series) -> float | None:
    """The least-squares slope of ``log value`` on ``log T`` (None with fewer than two points).

    >>> round(fitted_exponent(Series((100, 200), (1.0, 4.0))), 2)  # value ~ T^2
    2.0
    """
    if len(points.lengths) < 2:
        return None
    xs = [math.log(t) for t in points.lengths]
    ys = [math.log(v) for v in points.values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def predict(points: Series | Sequence[Sequence[float]], seq_len: int) -> Prediction:
    """A measured curve's value at ``seq_len`` (see the module docstring for the rule).

    >>> p = predict([[100, 1.0], [200, 4.0]], 400)  # time ~ T^2
    >>> round(p.value, 1)
    16.0
    """
    if not isinstance(points, Series):
        points = _series(points, "points")
    seq_len = _check_int("seq_len", seq_len, 1)
    ts, vs = points.lengths, points.values
    if not ts:
        return Prediction(None, "not measured", note="not measured")
    if seq_len in ts:
        return Prediction(vs[ts.index(seq_len)], "measured")
    if ts[0] < seq_len < ts[-1]:
        i = next(k for k in range(len(ts)) if ts[k + 1] > seq_len)
        # log v = log v_i + (log v_{i+1} - log v_i) * (log T - log T_i) / (log T_{i+1} - log T_i)
        w = math.log(seq_len / ts[i]) / math.log(ts[i + 1] / ts[i])
        return Prediction(math.exp(math.log(vs[i]) + w * (math.log(vs[i + 1]) - math.log(vs[i]))), "interpolated")
    b = fitted_exponent(points)
    if b is None:
        return Prediction(None, "not measured", note=f"not measured at T={seq_len} (one point, T={ts[0]}: "
                                                     f"cannot extrapolate)")
    end = 0 if seq_len < ts[0] else -1
    # v(T) = v_end * (T / T_end) ** b
    return Prediction(vs[end] * (seq_len / ts[end]) ** b, "extrapolated", b)


# ---------------------------------------------------------------------------------------------------------------
# The advisor.
# ---------------------------------------------------------------------------------------------------------------


def _judge(row: ModelRow, seq_len: int, dependency_range: int, memory_budget: float, latency: float) -> Candidate:
    pred = {m: predict(row.series[m], seq_len) for m in METRICS}
    checks: list[Check] = []
    if not row.largest_lag:
        checks.append(Check("dependency", False, "largest lag not measured"))
    else:
        ok = max(row.largest_lag.values()) >= dependency_range
        checks.append(Check("dependency", ok, f"solved lags up to {_lags_text(row.largest_lag)} "
                                              f"{'>=' if ok else '<'} {dependency_range}"))
    for m, limit, what in (("step_ms", math.inf, ""), ("peak_mib", memory_budget, "budget"),
                           ("latency_ms", latency, "limit")):
        p = pred[m]
        if p.value is None:
            checks.append(Check(m, False, f"{METRIC_NAME[m]} {p.note}"))
            continue
        amount = _AMOUNT[m].format(value=fmt(p.value)) + f" {_how_text(seq_len, p)}"
        if m == "step_ms":  # no limit on training time: it ranks the feasible
            checks.append(Check(m, True, amount))
        elif math.isinf(limit):
            checks.append(Check(m, True, f"{amount}, no {what}"))
        else:
            ok = p.value <= limit
            checks.append(Check(m, ok, f"{amount} {'<=' if ok else '>'} {what} {fmt(limit)} {UNIT[m]}"))
    failed = tuple(c.text for c in checks if not c.ok)
    return Candidate(
        key=row.key, label=row.label, feasible=not failed, reasons=failed or tuple(c.text for c in checks),
        predicted={m: pred[m].value for m in METRICS}, extrapolated={m: pred[m].extrapolated for m in METRICS},
        largest_lag=dict(row.largest_lag), interpretability=row.interpretability, checks=tuple(checks),
    )


def advise(seq_len: int, dependency_range: int, memory_budget: float, latency: float, *, table: Any) -> Advice:
    """Recommend a model for sequences of ``seq_len`` steps whose output needs an input ``dependency_range`` steps
    back, within ``memory_budget`` MiB for one training step of the table's batch and ``latency`` ms for one forward
    pass of one sequence (``math.inf``: no limit), from the measured ``table`` (the benchmark's data, a path to its
    JSON, or a :class:`Table`).

    Feasible: a largest solved lag >= ``dependency_range`` on some task, predicted peak memory <= the budget and
    predicted latency <= the limit, every number known. The choice is the feasible model with the lowest predicted
    training step time (ties: lower peak memory, then the table's order); None when nothing is feasible.

    >>> def row(label, lag, step_ms):  # a made-up measurement table: each metric as [T, value] points
    ...     points = [[50, step_ms * 50], [1000, step_ms * 1000]]
    ...     return {"label": label, "params": 1000, "largest_lag": {"adding": lag}, "step_ms": points,
    ...             "peak_mib": points, "latency_ms": points, "interpretability": None}
    >>> table = {"summary": {"batch": 32, "models": {"rnn": row("RNN", 10, 0.01), "lstm": row("LSTM", 100, 0.04)}}}
    >>> advise(200, 50, math.inf, math.inf, table=table).choice  # the RNN is faster but solved lags up to 10
    'lstm'
    """
    seq_len, dependency_range, memory_budget, latency = check_question(seq_len, dependency_range, memory_budget,
                                                                       latency)
    t = load_table(table)
    judged = [_judge(row, seq_len, dependency_range, memory_budget, latency) for row in t.models.values()]
    feasible = sorted((c for c in judged if c.feasible),
                      key=lambda c: (c.predicted["step_ms"], c.predicted["peak_mib"]))  # stable: then table order
    rejected = [c for c in judged if not c.feasible]
    return Advice(feasible[0].key if feasible else None, tuple(feasible + rejected), seq_len, dependency_range,
                  memory_budget, latency, t.batch)


__all__ = ["METRICS", "Advice", "Candidate", "Check", "ModelRow", "Prediction", "Series", "Table", "TableNotFoundError",
           "advise", "check_question", "fitted_exponent", "fmt", "interpretability_text", "load_table", "predict",
           "question_text"]
