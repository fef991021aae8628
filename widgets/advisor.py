"""AdvisorExplorer: which memory option fits a sequence length, a dependency range, a memory budget and a latency?

The reader picks a sequence length ``T``, the longest dependency the output needs, a memory budget for one training
step and a latency limit for one sequence; the explorer shows :func:`memlib.advise.advise`'s answer from the measured
benchmark table (``python -m memlib.bench compare --json PATH``):

- the recommendation (the fastest to train of the models that meet every constraint, or none), with the question;
- a table of every model, the feasible first in ranking order: feasible or not, its predicted peak memory, latency
  and training step time at ``T`` (measured, interpolated or extrapolated) and the reasons, with their numbers;
- a bar per model of its predicted peak training memory at ``T`` (green: feasible, dark green: the choice, red:
  rejected; hatched: extrapolated), with the memory budget as a dashed line.

Static (Bokeh + CustomJS, no kernel): :meth:`AdvisorExplorer.prepare` runs ``advise`` for every combination of the
four grids and keeps its verdicts as plain arrays (the reasons as indices into a list of distinct strings); the
page's JavaScript only looks them up (:func:`view` is the same lookup in Python). Live (ipywidgets): any value typed
in goes to ``advise`` directly and the same figures redraw.

Shapes: ``S`` sequence lengths, ``D`` dependency ranges, ``B`` memory budgets, ``L`` latency limits, ``M`` models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import CustomJS, Div, FactorRange, LabelSet, Range1d, Select, Span, Title
from bokeh.plotting import figure

from memlib.advise import METRICS, Advice, Table, advise, check_question, fmt, load_table, predict
from widgets.base import Explorer, Prepared, check_text, custom_js, merge_settings

WIDTH = 660  # fits the book's output column (688 px in a 1280 px window)
MAX_GRID = 6  # default grid values per control: 6**4 cells x M models stay small in the page
SETTING_KEYS = ("seq_len", "dependency_range", "memory_budget", "latency")
GRIDS = ("seq_lens", "dependency_ranges", "memory_budgets", "latencies")
NO_LIMIT = "no limit"
UNBOUNDED = 2**62  # a length that checks a dependency range on its own (each length is checked against it later)
CHOSEN, FEASIBLE, REJECTED = "#1b7837", "#7fbf7b", "#d6604d"
TABLE_HEAD = ('<table style="border-collapse:collapse;font-size:85%;text-align:left;vertical-align:top" '
              'cellpadding="3">'
              "<tr><th>model</th><th>feasible</th><th>peak memory</th><th>latency</th><th>training step</th>"
              "<th>why</th></tr>")


# ---------------------------------------------------------------------------------------------------------------
# Default grids, from the table's measured ranges.
# ---------------------------------------------------------------------------------------------------------------


def thin(values: Sequence[Any], n: int) -> list[Any]:
    """At most ``n`` of ``values``, evenly spread, the first and last kept."""
    values = list(values)
    if len(values) <= n:
        return values
    return [values[i] for i in sorted({round(k * (len(values) - 1) / (n - 1)) for k in range(n)})]


def round_values(lo: float, hi: float, n: int) -> list[float]:
    """Up to ``n`` round numbers (1, 2, 5 times a power of ten) from about ``lo`` to about ``hi``."""
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    steps = [float(f"{m}e{k}") for k in range(k0, k1 + 1) for m in (1, 2, 5)]
    inside = [v for v in steps if lo <= v <= hi]
    below = [v for v in steps if v < lo][-1:]  # one below the smallest: nothing fits
    above = [v for v in steps if v > hi][:1]  # one above the largest: everything fits
    return thin(below + inside + above, n)


def default_grids(table: Table) -> dict[str, list]:
    """A handful of values per control from the table: the measured lengths, 0 and each model's largest solved
    lag, and round budgets spanning the predicted peak memory and latency (plus no limit).

    >>> def row(label, lag, step_ms):  # a made-up measurement table, as in memlib.advise.advise's example
    ...     points = [[50, step_ms * 50], [1000, step_ms * 1000]]
    ...     return {"label": label, "params": 1000, "largest_lag": {"adding": lag}, "step_ms": points,
    ...             "peak_mib": points, "latency_ms": points, "interpretability": None}
    >>> table = {"summary": {"batch": 32, "models": {"rnn": row("RNN", 10, 0.01), "lstm": row("LSTM", 100, 0.04)}}}
    >>> from memlib.advise import load_table
    >>> default_grids(load_table(table))["dependency_ranges"]  # 0 and each model's largest solved lag
    [0, 10, 100]
    """
    lengths = sorted({t for row in table.models.values() for m in METRICS for t in row.series[m].lengths})
    if not lengths:
        raise ValueError("AdvisorExplorer.prepare: expected at least one measured length in the table, got none; "
                         "pass seq_lens")
    seq_lens = thin(lengths, MAX_GRID)
    lags = sorted({0} | {max(row.largest_lag.values()) for row in table.models.values() if row.largest_lag})
    out: dict[str, list] = {"seq_lens": seq_lens, "dependency_ranges": thin(lags, MAX_GRID)}
    for grid, metric in (("memory_budgets", "peak_mib"), ("latencies", "latency_ms")):
        values = [p.value for row in table.models.values() for t in seq_lens
                  if (p := predict(row.series[metric], t)).value is not None]
        out[grid] = (round_values(min(values), max(values), MAX_GRID - 1) if values else []) + [math.inf]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Layer 1: every grid cell's advice as plain arrays.
# ---------------------------------------------------------------------------------------------------------------


def _grid(name: str, values: Any, check: Callable[[Any], Any]) -> list:
    where = "AdvisorExplorer.prepare"
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{where}: expected {name} as a non-empty list, got {values!r:.80}")
    checked = []
    for i, v in enumerate(values):
        try:
            checked.append(check(v))
        except (TypeError, ValueError) as err:
            raise type(err)(f"{where}: {name}[{i}]: {err}") from None
    if len(set(checked)) != len(checked):
        raise ValueError(f"{where}: expected distinct {name}, got {list(values)!r}")
    return sorted(checked)


def factors(keys: Sequence[str], labels: Sequence[str]) -> list[str]:
    """The bar chart's categories: the labels, with the key added to a label two models share."""
    return [lab if labels.count(lab) == 1 else f"{lab} ({key})" for key, lab in zip(keys, labels, strict=True)]


def label(grid: str, value: float) -> str:
    """How a grid value reads in a Select and in the caption."""
    if grid == "seq_lens":
        return f"T = {int(value)}"
    if grid == "dependency_ranges":
        return f"{int(value)} steps"
    if math.isinf(value):
        return NO_LIMIT
    return f"{fmt(value)} {'MiB' if grid == 'memory_budgets' else 'ms'}"


def _predicted_text(value: float | None, unit: str, how: str) -> str:
    return "not measured" if value is None else f"{fmt(value)} {unit} ({how})"


CHECKS = ("dependency", *METRICS)  # a Candidate's checks, in order


def prepare(
    table: Any,
    *,
    seq_lens: Sequence[int] | None = None,
    dependency_ranges: Sequence[int] | None = None,
    memory_budgets: Sequence[float] | None = None,
    latencies: Sequence[float] | None = None,
) -> Prepared:
    """``advise`` at every combination of the four grids (default: :func:`default_grids`), as arrays.

    Each of a candidate's checks depends on part of the question only: the dependency check on the dependency
    range, the training time on the length, the memory check on the length and the budget, the latency check on the
    length and the limit. So the verdicts are kept per check, which keeps the page small; :func:`cell_advice` (and
    the page's JavaScript) puts a cell's advice back together from them exactly as ``advise`` does.

    Returns ``keys``, ``labels`` (M,); ``batch`` (1,); the grids ``seq_lens`` (S,), ``dependency_ranges`` (D,),
    ``memory_budgets`` (B,), ``latencies`` (L,) (sorted; ``inf``: no limit) and their ``*_labels``; per length and
    model the predictions ``step_ms``, ``peak_mib``, ``latency_ms`` (S, M) (-1: unknown), ``extrapolated``
    (S, M, 3), their texts ``*_text`` (S, M) and ``rank`` (S, M) (the order of the fastest to train, ties to the
    lower memory); the checks ``dependency_ok`` / ``dependency_check`` (D, M), ``step_ms_*`` (S, M),
    ``peak_mib_*`` (S, B, M), ``latency_ms_*`` (S, L, M) (whether it holds; its words as an index into
    ``strings``, -1 where no question asks it); ``invalid`` (S, D): index into ``strings`` of why ``advise``
    refuses a dependency range longer than the sequence, -1 where the question is valid.

    >>> def row(label, lag, step_ms):  # a made-up measurement table, as in memlib.advise.advise's example
    ...     points = [[50, step_ms * 50], [1000, step_ms * 1000]]
    ...     return {"label": label, "params": 1000, "largest_lag": {"adding": lag}, "step_ms": points,
    ...             "peak_mib": points, "latency_ms": points, "interpretability": None}
    >>> table = {"summary": {"batch": 32, "models": {"rnn": row("RNN", 10, 0.01), "lstm": row("LSTM", 100, 0.04)}}}
    >>> data = prepare(table)
    >>> [v.item() for v in data["seq_lens"]], data["keys"].tolist()
    ([50, 1000], ['rnn', 'lstm'])
    """
    t = load_table(table)
    defaults = default_grids(t) if None in (seq_lens, dependency_ranges, memory_budgets, latencies) else {}
    grids = {
        "seq_lens": _grid("seq_lens", defaults["seq_lens"] if seq_lens is None else seq_lens,
                          lambda v: check_question(v, 0, 1.0, 1.0)[0]),
        "dependency_ranges": _grid("dependency_ranges",
                                   defaults["dependency_ranges"] if dependency_ranges is None else dependency_ranges,
                                   lambda v: check_question(UNBOUNDED, v, 1.0, 1.0)[1]),
        "memory_budgets": _grid("memory_budgets", defaults["memory_budgets"] if memory_budgets is None
                                else memory_budgets, lambda v: check_question(1, 0, v, 1.0)[2]),
        "latencies": _grid("latencies", defaults["latencies"] if latencies is None else latencies,
                           lambda v: check_question(1, 0, 1.0, v)[3]),
    }
    S, D, B, L = (len(grids[g]) for g in GRIDS)
    keys = list(t.models)
    M = len(keys)
    strings: dict[str, int] = {}
    shapes = {"dependency": (D, M), "step_ms": (S, M), "peak_mib": (S, B, M), "latency_ms": (S, L, M)}
    out: Prepared = {
        "keys": np.array(keys), "labels": np.array([r.label for r in t.models.values()]),
        "factors": np.array(factors(keys, [r.label for r in t.models.values()])),
        "batch": np.array([t.batch], dtype=np.int64),
        "invalid": np.full((S, D), -1, dtype=np.int64),
        "extrapolated": np.zeros((S, M, len(METRICS)), dtype=bool),
        "rank": np.zeros((S, M), dtype=np.int64),
    }
    for check, shape in shapes.items():
        out[f"{check}_ok"] = np.zeros(shape, dtype=bool)
        out[f"{check}_check"] = np.full(shape, -1, dtype=np.int64)
    for g in GRIDS:
        out[g] = np.array(grids[g], dtype=np.int64 if g in ("seq_lens", "dependency_ranges") else np.float64)
        out[f"{g}_labels"] = np.array([label(g, v) for v in grids[g]])
    texts = {metric: np.empty((S, M), dtype=object) for metric in METRICS}
    for metric in METRICS:
        out[metric] = np.full((S, M), -1.0)
    for s, seq_len in enumerate(grids["seq_lens"]):
        for m, r in enumerate(t.models.values()):
            for k, metric in enumerate(METRICS):
                p = predict(r.series[metric], seq_len)
                out[metric][s, m] = -1.0 if p.value is None else p.value
                out["extrapolated"][s, m, k] = p.extrapolated
                texts[metric][s, m] = _predicted_text(p.value, "MiB" if metric == "peak_mib" else "ms", p.how)
        # advise's ranking: training time, then peak memory, then the table's order (unknowns last)
        known = [m for m in range(M) if out["step_ms"][s, m] > 0 and out["peak_mib"][s, m] > 0]
        ranked = sorted(known, key=lambda m: (out["step_ms"][s, m], out["peak_mib"][s, m], m))
        ranked += [m for m in range(M) if m not in known]
        out["rank"][s, ranked] = np.arange(M)
        for d, dependency_range in enumerate(grids["dependency_ranges"]):
            if dependency_range > seq_len:
                try:
                    advise(seq_len, dependency_range, math.inf, math.inf, table=t)
                except ValueError as err:
                    out["invalid"][s, d] = strings.setdefault(str(err), len(strings))
                continue
            for b, budget in enumerate(grids["memory_budgets"]):
                for l, limit in enumerate(grids["latencies"]):  # noqa: E741 (L latency limits)
                    for c in advise(seq_len, dependency_range, budget, limit, table=t).candidates:
                        m = keys.index(c.key)
                        at = {"dependency": (d, m), "step_ms": (s, m), "peak_mib": (s, b, m), "latency_ms": (s, l, m)}
                        for check in c.checks:
                            out[f"{check.constraint}_ok"][at[check.constraint]] = check.ok
                            out[f"{check.constraint}_check"][at[check.constraint]] = strings.setdefault(
                                check.text, len(strings))
    for metric in METRICS:
        out[f"{metric}_text"] = texts[metric].astype(str)
    out["peak_mib_label"] = np.array([[f"{fmt(v)} MiB" if v > 0 else "" for v in vs] for vs in out["peak_mib"]])
    out["strings"] = np.array(list(strings), dtype=str) if strings else np.array([], dtype=str)
    return out


def _check_prepared(where: str, data: Any) -> None:
    needed = ("keys", "labels", "factors", "batch", *GRIDS, *(f"{g}_labels" for g in GRIDS), *METRICS,
              *(f"{m}_text" for m in METRICS), "peak_mib_label", "extrapolated", "rank", "invalid", "strings",
              *(f"{c}_{x}" for c in CHECKS for x in ("ok", "check")))
    if not isinstance(data, Mapping) or any(k not in data for k in needed):
        got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(f"{where}: expected data from AdvisorExplorer.prepare (keys {list(needed)}), got {got}")


# ---------------------------------------------------------------------------------------------------------------
# The lookup, in Python. The page's JavaScript (below) does the same, in the same order.
# ---------------------------------------------------------------------------------------------------------------


def esc(s: str) -> str:
    """HTML escaping as the page's JavaScript writes it."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def cell_advice(data: Prepared, s: int, d: int, b: int, l: int) -> dict[str, Any]:  # noqa: E741
    """One grid cell's advice put back together from the prepared checks, as ``advise`` puts it: ``valid``,
    ``choice`` (key or None), ``candidates`` (key, feasible, reasons) in ranking order, ``error`` (why the question
    is refused, else "").

    >>> def row(label, lag, step_ms):  # a made-up measurement table, as in memlib.advise.advise's example
    ...     points = [[50, step_ms * 50], [1000, step_ms * 1000]]
    ...     return {"label": label, "params": 1000, "largest_lag": {"adding": lag}, "step_ms": points,
    ...             "peak_mib": points, "latency_ms": points, "interpretability": None}
    >>> table = {"summary": {"batch": 32, "models": {"rnn": row("RNN", 10, 0.01), "lstm": row("LSTM", 100, 0.04)}}}
    >>> data = prepare(table)  # grids: lengths [50, 1000], lags [0, 10, 100], budgets and limits end in inf
    >>> cell_advice(data, 0, 1, 5, 5)["choice"]  # T=50, a lag of 10, no limits: the faster model solves it
    'rnn'
    """
    keys, strings = [str(k) for k in data["keys"]], [str(x) for x in data["strings"]]
    bad = int(data["invalid"][s, d])
    if bad >= 0:
        return {"valid": False, "choice": None, "candidates": [], "error": strings[bad]}
    verdicts = []
    for m in range(len(keys)):
        at = {"dependency": (d, m), "step_ms": (s, m), "peak_mib": (s, b, m), "latency_ms": (s, l, m)}
        checks = [(bool(data[f"{c}_ok"][at[c]]), strings[int(data[f"{c}_check"][at[c]])]) for c in CHECKS]
        failed = tuple(text for ok, text in checks if not ok)
        verdicts.append((keys[m], not failed, failed or tuple(text for _, text in checks)))
    feasible = sorted((m for m in range(len(keys)) if verdicts[m][1]), key=lambda m: int(data["rank"][s, m]))
    order = feasible + [m for m in range(len(keys)) if not verdicts[m][1]]
    return {"valid": True, "choice": keys[feasible[0]] if feasible else None, "error": "",
            "candidates": [verdicts[m] for m in order]}


def y_range(data: Prepared, log: bool) -> tuple[float, float]:
    """The memory axis: every known prediction over the length grid and every finite budget."""
    values = [float(v) for v in np.ravel(data["peak_mib"]) if v > 0]
    values += [float(v) for v in data["memory_budgets"] if math.isfinite(v)]
    if not values:
        return (0.5, 2.0) if log else (0.0, 1.0)
    lo, hi = min(values), max(values)
    return (lo / 2, hi * 2) if log else (0.0, hi * 1.15)


def wants_log(data: Prepared) -> bool:
    lo, hi = y_range(data, log=True)
    return hi / lo > 4 * 10  # the values span more than a decade (the range pads each end by 2)


def view(data: Prepared, s: int, d: int, b: int, l: int, bottom: float) -> dict[str, Any]:  # noqa: E741
    """What the figures show for grid indices ``(s, d, b, l)``: ``caption`` and ``table`` (HTML), ``bars`` (the
    bar chart's columns; ``bottom``: where bars start, the axis' lower end) and ``budget_line`` (MiB, None: no
    limit).

    >>> def row(label, lag, step_ms):  # a made-up measurement table, as in memlib.advise.advise's example
    ...     points = [[50, step_ms * 50], [1000, step_ms * 1000]]
    ...     return {"label": label, "params": 1000, "largest_lag": {"adding": lag}, "step_ms": points,
    ...             "peak_mib": points, "latency_ms": points, "interpretability": None}
    >>> table = {"summary": {"batch": 32, "models": {"rnn": row("RNN", 10, 0.01), "lstm": row("LSTM", 100, 0.04)}}}
    >>> sorted(view(prepare(table), 0, 1, 5, 5, bottom=0.0))
    ['bars', 'budget_line', 'caption', 'table']
    """
    labels = [str(x) for x in data["labels"]]
    batch = int(data["batch"][0])
    T = int(data["seq_lens"][s])
    mem_label, lat_label = str(data["memory_budgets_labels"][b]), str(data["latencies_labels"][l])
    question = (f"Dependencies up to {int(data['dependency_ranges'][d])} steps; memory budget: {esc(mem_label)} "
                f"(one training step of {batch} sequences); latency limit: {esc(lat_label)} (one sequence).")
    a = cell_advice(data, s, d, b, l)
    keys = [str(k) for k in data["keys"]]
    feasible = {keys.index(key): ok for key, ok, _ in a["candidates"]}
    c = -1 if a["choice"] is None else keys.index(a["choice"])
    if not a["valid"]:
        caption = f"<b>No advice</b>: {esc(a['error'])}"
    elif c >= 0:
        caption = (f"<b>Choose {esc(labels[c])}</b> at T={T}: the fastest to train of {sum(feasible.values())} "
                   f"feasible; a training step takes {esc(str(data['step_ms_text'][s, c]))}.")
    else:
        caption = f"<b>No model meets every constraint</b> at T={T}: each one's reasons are below."
    caption += f'<br><span style="color:#555">{question}</span>'
    rows = []
    for key, ok, reasons in a["candidates"]:
        m = keys.index(key)
        name = f"<b>{esc(labels[m])}</b>" if m == c else esc(labels[m])
        mark = f'<span style="color:{CHOSEN}">yes</span>' if ok else f'<span style="color:{REJECTED}">no</span>'
        rows.append(f"<tr><td>{name}</td><td>{mark}</td><td>{esc(str(data['peak_mib_text'][s, m]))}</td>"
                    f"<td>{esc(str(data['latency_ms_text'][s, m]))}</td>"
                    f"<td>{esc(str(data['step_ms_text'][s, m]))}</td><td>{esc('; '.join(reasons))}</td></tr>")
    table = TABLE_HEAD + "".join(rows) + "</table>"
    M = len(labels)
    peaks = [float(v) for v in data["peak_mib"][s]]
    bars = {
        "x": [str(x) for x in data["factors"]],
        "top": [v if v > 0 else bottom for v in peaks],
        "color": [CHOSEN if m == c else FEASIBLE if feasible.get(m) else REJECTED for m in range(M)],
        "hatch": ["/" if data["extrapolated"][s, m, 1] else " " for m in range(M)],
        "text": [str(data["peak_mib_label"][s, m]) if peaks[m] > 0 else "not measured" for m in range(M)],
    }
    budget = float(data["memory_budgets"][b])
    return {"caption": caption, "table": table, "bars": bars,
            "budget_line": budget if math.isfinite(budget) else None}




# ---------------------------------------------------------------------------------------------------------------
# The explorer.
# ---------------------------------------------------------------------------------------------------------------


def _parse_limit(name: str, value: Any, unit: str) -> float:
    """A limit typed in a text box: a number, or "inf" / "no limit" / nothing for no limit."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "inf", "none", NO_LIMIT):
            return math.inf
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected {name} as a number of {unit} or 'inf' (no limit), got {value!r}") from None
    return value


class AdvisorExplorer(Explorer):
    """The advisor's answer for a sequence length, dependency range, memory budget and latency limit.

    ``data`` comes from :meth:`prepare`. ``seq_len``, ``dependency_range``, ``memory_budget``, ``latency``: the
    starting question, each a value of its grid (defaults: the middle length, the longest dependency range it
    allows, the middle budget, the last latency limit: "no limit" in the default grid). Give ``table`` (the
    benchmark's data or a path) to go live: the ipywidgets controls then send any value typed in to
    :func:`memlib.advise.advise`.

    >>> def row(label, lag, step_ms):  # a made-up measurement table, as in memlib.advise.advise's example
    ...     points = [[50, step_ms * 50], [1000, step_ms * 1000]]
    ...     return {"label": label, "params": 1000, "largest_lag": {"adding": lag}, "step_ms": points,
    ...             "peak_mib": points, "latency_ms": points, "interpretability": None}
    >>> table = {"summary": {"batch": 32, "models": {"rnn": row("RNN", 10, 0.01), "lstm": row("LSTM", 100, 0.04)}}}
    >>> explorer = AdvisorExplorer.for_table(table)
    >>> explorer.settings["seq_len"], explorer.settings["dependency_range"]
    (1000, 100)
    """

    def __init__(
        self,
        data: Prepared,
        compute: Callable[[dict[str, Any]], Prepared] | None = None,
        *,
        table: Any = None,
        seq_len: int | None = None,
        dependency_range: int | None = None,
        memory_budget: float | None = None,
        latency: float | None = None,
    ):
        where = "AdvisorExplorer"
        _check_prepared(where, data)
        self.table = None if table is None else load_table(table)
        if compute is None and self.table is not None:
            compute = self._advise_live
        grids = {g: [v.item() for v in data[g]] for g in GRIDS}
        s = grids["seq_lens"][len(grids["seq_lens"]) // 2] if seq_len is None else seq_len
        allowed = [v for v in grids["dependency_ranges"] if v <= s] or grids["dependency_ranges"]
        start = {
            "seq_len": s,
            "dependency_range": allowed[-1] if dependency_range is None else dependency_range,
            "memory_budget": grids["memory_budgets"][len(grids["memory_budgets"]) // 2] if memory_budget is None
            else memory_budget,
            "latency": grids["latencies"][-1] if latency is None else latency,
        }
        self._indices(where, data, start)  # each value is one of its grid's
        self.settings: dict[str, Any] = start
        self._log = wants_log(data)  # fixed once built: Bokeh cannot switch an axis between linear and log
        self.callback: CustomJS | None = None
        super().__init__(data, compute)

    prepare = staticmethod(prepare)
    live_needs = "table or compute function"

    @classmethod
    def for_table(cls, table: Any, *, seq_lens: Sequence[int] | None = None,
                  dependency_ranges: Sequence[int] | None = None, memory_budgets: Sequence[float] | None = None,
                  latencies: Sequence[float] | None = None, **start: Any) -> AdvisorExplorer:
        """Prepare the grids from ``table`` and build a live-capable explorer (``start``: the starting question)."""
        t = load_table(table)
        data = prepare(t, seq_lens=seq_lens, dependency_ranges=dependency_ranges, memory_budgets=memory_budgets,
                       latencies=latencies)
        return cls(data, table=t, **start)

    @staticmethod
    def _indices(where: str, data: Prepared, settings: Mapping[str, Any]) -> tuple[int, int, int, int]:
        out = []
        for key, g in zip(SETTING_KEYS, GRIDS, strict=True):
            values = [v.item() for v in data[g]]
            if settings[key] not in values:
                raise ValueError(f"{where}: expected {key} one of {values} (the prepared grid), got "
                                 f"{settings[key]!r}")
            out.append(values.index(settings[key]))
        return tuple(out)

    def _advise_live(self, settings: Mapping[str, Any]) -> Prepared:
        """``advise`` at exactly these values (it refuses bad ones), as a one-cell grid."""
        q = (settings["seq_len"], settings["dependency_range"], _parse_limit("memory_budget",
             settings["memory_budget"], "MiB"), _parse_limit("latency", settings["latency"], "ms"))
        advise(*q, table=self.table)
        return prepare(self.table, seq_lens=[q[0]], dependency_ranges=[q[1]], memory_budgets=[q[2]],
                       latencies=[q[3]])

    # Layer 2: the static Bokeh layout ---------------------------------------------------------------------------

    def _view(self, data: Prepared) -> dict[str, Any]:
        idx = self._indices("AdvisorExplorer", data, self.settings)
        return view(data, *idx, bottom=y_range(data, self._log)[0])

    def source_data(self, data: Prepared) -> Mapping[str, dict[str, Any]]:
        store = {name: [np.ravel(value).tolist()] for name, value in data.items()}
        for g in ("memory_budgets", "latencies"):  # no limit as -1: JSON has no infinity
            store[g] = [[-1.0 if math.isinf(x) else x for x in store[g][0]]]
        return {"advisor_store": store, "advisor_bars": self._view(data)["bars"]}

    def build(self):
        d = self.data
        idx = self._indices("AdvisorExplorer", d, self.settings)
        lo, hi = y_range(d, self._log)
        v = view(d, *idx, bottom=lo)
        self.selects = [
            Select(title=title, options=[(str(i), str(x)) for i, x in enumerate(d[f"{g}_labels"])],
                   value=str(i), width=150, name=f"advisor_{key}")
            for key, g, title, i in zip(SETTING_KEYS, GRIDS, ("sequence length", "dependency range",
                                                              "memory budget", "latency limit"), idx, strict=True)
        ]
        self.caption = Div(text=v["caption"], width=WIDTH, name="advisor_caption")
        self.table_div = Div(text=v["table"], width=WIDTH, name="advisor_table")
        self.fig = figure(width=WIDTH, height=260, x_range=FactorRange(factors=[str(x) for x in d["factors"]]),
                          y_axis_type="log" if self._log else "linear", y_range=Range1d(lo, hi),
                          y_axis_label=f"MiB (training step, batch {int(d['batch'][0])})",
                          title="predicted peak training memory at the chosen length", tools="",
                          toolbar_location=None, name="advisor_figure")
        self.fig.add_layout(Title(text="dark green: the choice, light green: feasible, red: rejected; hatched: "
                                       "extrapolated; dashed: the budget", text_font_size="8pt",
                                  text_font_style="normal", text_color="#555555"), "above")
        bars = self.sources["advisor_bars"]
        self.fig.vbar(x="x", top="top", bottom=lo, width=0.7, color="color", hatch_pattern="hatch",
                      hatch_color="#ffffff", hatch_alpha=0.6, source=bars)
        self.fig.add_layout(LabelSet(x="x", y="top", text="text", source=bars, y_offset=2, text_align="center",
                                     text_font_size="8pt", background_fill_color="white",
                                     background_fill_alpha=0.8))
        self.fig.xgrid.visible = False
        self.budget_line = Span(location=v["budget_line"], dimension="width", line_color="#333333",
                                line_dash="dashed", line_width=2)
        self.fig.add_layout(self.budget_line)
        seq, dep, mem, lat = self.selects
        self.callback = custom_js(
            "advisor", store=self.sources["advisor_store"], bars=bars, seq=seq, dep=dep, mem=mem, lat=lat,
            caption=self.caption, table=self.table_div, y=self.fig.y_range, budget_line=self.budget_line,
            CHOSEN=CHOSEN, FEASIBLE=FEASIBLE, REJECTED=REJECTED, TABLE_HEAD=TABLE_HEAD,
        )
        for select in self.selects:
            select.js_on_change("value", self.callback)
        self.controls_box = row(*self.selects, name="advisor_controls")
        return column(self.controls_box, self.caption, self.fig, self.table_div, width=WIDTH,
                      name="advisor_explorer")

    def on_update(self, data: Prepared) -> None:
        idx = self._indices("AdvisorExplorer", data, self.settings)
        lo, hi = y_range(data, self._log)
        self.fig.y_range.update(start=lo, end=hi)
        self.fig.renderers[0].glyph.bottom = lo
        v = view(data, *idx, bottom=lo)
        for select, g, i in zip(self.selects, GRIDS, idx, strict=True):
            select.update(options=[(str(k), str(x)) for k, x in enumerate(data[f"{g}_labels"])], value=str(i))
        self.caption.text = v["caption"]
        self.table_div.text = v["table"]
        self.budget_line.location = v["budget_line"]

    def advice(self) -> Advice | None:
        """``advise`` for the current question (None without a table)."""
        if self.table is None:
            return None
        s = self.settings
        return advise(s["seq_len"], s["dependency_range"], s["memory_budget"], s["latency"], table=self.table)

    # Layer 3: live, any value --------------------------------------------------------------------------------

    def request(self, value: Any) -> dict[str, Any]:
        """``settings`` with the changed ones in ``value`` (a dict); ``advise`` checks each value."""
        s = merge_settings(self.settings, value, SETTING_KEYS)
        for key in ("memory_budget", "latency"):
            if isinstance(value.get(key), str):
                check_text(key, value[key], self.max_text)
        return s

    def accept(self, request: dict[str, Any], data: Prepared) -> None:
        _check_prepared("compute", data)
        # the values advise took ("inf" typed: no limit), as the one-cell grid holds them
        self.settings = {key: data[g][0].item() for key, g in zip(SETTING_KEYS, GRIDS, strict=True)}
        Explorer.update(self, data)

    def controls(self) -> list:
        """Four boxes: any length and dependency range, and any budget and latency ("inf": no limit); each change
        asks ``advise``. The static Select controls are hidden (the ipywidgets drive the figures)."""
        import ipywidgets

        _ = self.layout
        self.controls_box.visible = False
        s = self.settings

        def limit_text(v: float) -> str:
            return "inf" if math.isinf(v) else repr(float(v))

        self.live_controls = {
            "seq_len": ipywidgets.IntText(value=s["seq_len"], description="length T"),
            "dependency_range": ipywidgets.IntText(value=s["dependency_range"], description="dependency"),
            "memory_budget": ipywidgets.Text(value=limit_text(s["memory_budget"]), description="MiB",
                                             continuous_update=False),
            "latency": ipywidgets.Text(value=limit_text(s["latency"]), description="ms", continuous_update=False),
        }
        for key, widget in self.live_controls.items():
            self.bind(key, widget, limit_text if key in ("memory_budget", "latency") else int)
        w = self.live_controls
        return [ipywidgets.HBox([w["seq_len"], w["dependency_range"]]),
                ipywidgets.HBox([w["memory_budget"], w["latency"]])]


__all__ = ["AdvisorExplorer", "cell_advice", "default_grids", "prepare", "view"]
