"""Real time series that load offline, sliding windows and walk-forward splits.

Shapes: ``N`` points in a series, ``T`` window length, ``H`` horizon (steps ahead), ``K`` windows.

The data ship inside installed packages, so nothing is downloaded:

- :func:`sp500`: daily S&P 500 closes, 1999-2018 (5,031 trading days), bundled with ``arch``
  (``arch.data.sp500.load()``), and the daily returns in percent.
- :func:`waterflow`: hourly water flow through a pipeline branch, March to May 2022 (1,268 points),
  bundled with ``river`` (``river.datasets.WaterFlow()``, donated by Tecnojest s.r.l.). Flow below 90
  litres per second marks its three low-flow anomaly segments (water losses or maintenance, as river's
  description says).

:func:`windows` cuts a series into (input window, target) pairs; :func:`walk_forward` makes
train/test splits that only ever train on the past.
"""

from __future__ import annotations

import importlib
from datetime import UTC
from typing import NamedTuple

import numpy as np

from memlib.validate import check_int

WATERFLOW_LOW = 90.0  # litres per second: flow below this is one of the labelled low-flow segments


class SP500(NamedTuple):
    """What :func:`sp500` returns.

    >>> SP500._fields
    ('dates', 'close', 'returns')
    """
    dates: np.ndarray  # (N,) datetime64[D], trading days
    close: np.ndarray  # (N,) float64, closing level
    returns: np.ndarray  # (N - 1,) float64, 100 * log(close[t + 1] / close[t]): the return of dates[t + 1]


class WaterFlow(NamedTuple):
    """What :func:`waterflow` returns.

    >>> WaterFlow._fields
    ('timestamps', 'flow', 'anomaly', 'segments')
    """
    timestamps: np.ndarray  # (N,) datetime64[s], hourly, UTC
    flow: np.ndarray  # (N,) float64, litres per second
    anomaly: np.ndarray  # (N,) bool, flow < 90
    segments: list[tuple[int, int]]  # [start, stop) index ranges of the anomalous runs, in time order


class Windows(NamedTuple):
    """What :func:`windows` returns.

    >>> Windows._fields
    ('inputs', 'targets', 'target_index')
    """
    inputs: np.ndarray  # (K, T): series[k : k + T]
    targets: np.ndarray  # (K,): series[k + T + H - 1]
    target_index: np.ndarray  # (K,) int: the index of each target in the series


class Split(NamedTuple):
    """One split of :func:`walk_forward`: train and test indices.

    >>> walk_forward(6, train=3, test=2)[0]._fields
    ('train', 'test')
    """
    train: np.ndarray  # (train,) int indices, all before every test index
    test: np.ndarray  # (test,) int indices


def _require(module: str, package: str, caller: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"{caller}: expected the optional package {package!r}, which ships this data set "
            f"(no download needed): pip install {package}"
        ) from None


def sp500() -> SP500:
    """The S&P 500 daily closes bundled with ``arch`` and their log returns in percent."""
    data = _require("arch.data.sp500", "arch", "sp500").load()
    close = data["Adj Close"].to_numpy(dtype=np.float64)
    dates = data.index.to_numpy().astype("datetime64[D]")
    returns = 100.0 * np.diff(np.log(close))
    return SP500(dates, close, returns)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) ranges where ``mask`` is True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def waterflow() -> WaterFlow:
    """River's WaterFlow series with its low-flow anomaly labels (``flow < 90``) and their segments."""
    datasets = _require("river.datasets", "river", "waterflow")
    times, flow = [], []
    for x, y in datasets.WaterFlow():
        times.append(np.datetime64(x["Time"].astimezone(UTC).replace(tzinfo=None), "s"))
        flow.append(y)
    flow = np.asarray(flow, dtype=np.float64)
    anomaly = flow < WATERFLOW_LOW
    return WaterFlow(np.asarray(times), flow, anomaly, _runs(anomaly))


def windows(series, length: int, horizon: int = 1) -> Windows:
    """All windows of ``length`` consecutive values, each with the value ``horizon`` steps after its end.

    ``inputs[k] = series[k : k + length]`` and ``targets[k] = series[k + length + horizon - 1]``.

    >>> import numpy as np
    >>> w = windows(np.arange(10.0), length=3, horizon=1)
    >>> w.inputs.shape, w.targets.shape
    ((7, 3), (7,))
    """
    series = np.asarray(series)
    if series.ndim != 1:
        raise ValueError(f"windows: expected a 1-D series, got shape {series.shape}")
    for name, value in (("length", length), ("horizon", horizon)):
        check_int("windows", name, value, low=1, expected=f"{name} to be a positive int")
    K = len(series) - length - horizon + 1
    if K < 1:
        raise ValueError(
            f"windows: a window of {length} steps with horizon {horizon} needs a series of at least "
            f"{length + horizon} points, got {len(series)}"
        )
    inputs = np.lib.stride_tricks.sliding_window_view(series, length)[:K].copy()  # (K, T)
    target_index = np.arange(K) + length + horizon - 1
    return Windows(inputs, series[target_index], target_index)


def walk_forward(n: int, train: int, test: int, step: int | None = None, gap: int = 0) -> list[Split]:
    """Walk-forward splits of ``n`` ordered samples: train on ``train`` samples, test on the next ``test``.

    Fold ``f`` trains on ``[f * step, f * step + train)`` and tests on the ``test`` samples that start
    ``gap`` samples later (a gap keeps targets that reach ``gap`` steps ahead out of the test period),
    so every training index precedes every test index. ``step`` defaults to ``test``: test periods
    tile the data without overlap. Folds stop when a full test period no longer fits.

    >>> [(s.train.tolist(), s.test.tolist()) for s in walk_forward(10, train=4, test=3)]
    [([0, 1, 2, 3], [4, 5, 6]), ([3, 4, 5, 6], [7, 8, 9])]
    """
    step = test if step is None else step
    for name, value in (("n", n), ("train", train), ("test", test), ("step", step)):
        check_int("walk_forward", name, value, low=1, expected=f"{name} to be a positive int")
    check_int("walk_forward", "gap", gap, low=0, expected="gap to be an int >= 0")
    if train + gap + test > n:
        raise ValueError(
            f"walk_forward: train {train} + gap {gap} + test {test} = {train + gap + test} samples "
            f"exceed the {n} available"
        )
    splits = []
    start = 0
    while start + train + gap + test <= n:
        test_start = start + train + gap
        splits.append(Split(np.arange(start, start + train), np.arange(test_start, test_start + test)))
        start += step
    return splits
