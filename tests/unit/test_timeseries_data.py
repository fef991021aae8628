"""Time-series loaders (offline), windows and walk-forward splits."""

import builtins

import numpy as np
import pytest

from memlib.tasks import timeseries as ts


def test_sp500_shapes_and_returns():
    data = ts.sp500()
    assert data.close.shape == (5031,)
    assert data.dates.shape == (5031,) and data.dates.dtype == np.dtype("datetime64[D]")
    assert str(data.dates[0]) == "1999-01-04"
    assert np.all(np.diff(data.dates) > np.timedelta64(0, "D"))
    assert data.returns.shape == (5030,)
    np.testing.assert_allclose(data.returns, 100 * np.log(data.close[1:] / data.close[:-1]))
    assert np.isfinite(data.returns).all()


def test_waterflow_labels_three_segments():
    data = ts.waterflow()
    assert data.flow.shape == data.timestamps.shape == data.anomaly.shape == (1268,)
    assert data.anomaly.dtype == bool
    np.testing.assert_array_equal(data.anomaly, data.flow < 90)
    assert len(data.segments) == 3
    for start, stop in data.segments:
        assert data.anomaly[start:stop].all()
        assert not data.anomaly[start - 1] and not data.anomaly[stop]
    assert sum(stop - start for start, stop in data.segments) == int(data.anomaly.sum())
    hours = np.diff(data.timestamps).astype("timedelta64[h]").astype(int)
    assert np.median(hours) == 1


def test_windows_values_and_targets():
    series = np.arange(10.0)
    w = ts.windows(series, length=3, horizon=2)
    assert w.inputs.shape == (6, 3) and w.targets.shape == (6,)
    np.testing.assert_array_equal(w.inputs[0], [0, 1, 2])
    assert w.targets[0] == 4  # two steps after the window's last value, 2
    np.testing.assert_array_equal(series[w.target_index], w.targets)
    assert (w.target_index > w.inputs.max(1)).all()  # no target inside its window


def test_windows_longer_than_series_is_a_clear_error():
    with pytest.raises(ValueError, match="needs a series of at least 11 points, got 10"):
        ts.windows(np.arange(10.0), length=10, horizon=1)
    with pytest.raises(ValueError, match="horizon"):
        ts.windows(np.arange(10.0), length=3, horizon=0)


@pytest.mark.parametrize(("n", "train", "test", "step", "gap"), [(100, 30, 10, 10, 0), (57, 20, 7, 5, 3)])
def test_walk_forward_never_looks_ahead(n, train, test, step, gap):
    splits = ts.walk_forward(n, train, test, step, gap=gap)
    assert len(splits) == (n - train - gap - test) // step + 1
    for split in splits:
        assert len(split.train) == train and len(split.test) == test
        assert split.train.max() < split.test.min()  # every training index precedes every test index
        assert split.test.min() - split.train.max() == gap + 1
        assert split.test.max() < n
    starts = [s.test[0] for s in splits]
    assert np.all(np.diff(starts) == step)


def test_walk_forward_rejects_too_little_data():
    with pytest.raises(ValueError, match="exceed the 50 available"):
        ts.walk_forward(50, 40, 20)


@pytest.mark.parametrize(("loader", "package"), [(ts.sp500, "arch"), (ts.waterflow, "river")])
def test_missing_package_names_what_to_install(monkeypatch, loader, package):
    real_import = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name == package or name.startswith(package + "."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)
    monkeypatch.setattr(ts.importlib, "import_module", lambda name: blocked(name))
    with pytest.raises(ImportError, match=f"pip install {package}"):
        loader()
