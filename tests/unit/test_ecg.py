"""memlib.tasks.ecg: simulated ECG windows (shapes, classes, seeding, the rhythm of each class, bad input)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from memlib.tasks import ecg
from memlib.tasks.ecg import ECG_CLASSES, MORPHOLOGIES, beat_library, ecg_dataset

pytest.importorskip("neurokit2")


def test_shapes_classes_and_labels():
    data = ecg_dataset(3, seconds=4.0, sampling_rate=100, seed=0)
    K = len(ECG_CLASSES)
    assert data.signals.shape == (3 * K, 400) and data.signals.dtype == torch.float32
    assert data.labels.shape == (3 * K,) and data.labels.dtype == torch.int64
    assert data.classes == ECG_CLASSES and data.sampling_rate == 100
    assert torch.equal(data.labels.bincount(minlength=K), torch.full((K,), 3))
    assert torch.isfinite(data.signals).all()
    assert data.bpm.shape == (3 * K,)


def test_seeded_and_reproducible():
    a = ecg_dataset(2, seconds=4.0, seed=5)
    b = ecg_dataset(2, seconds=4.0, seed=5)
    c = ecg_dataset(2, seconds=4.0, seed=6)
    assert torch.equal(a.signals, b.signals) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.signals, c.signals)


def test_class_subset_and_rates():
    data = ecg_dataset(20, seconds=6.0, classes=("bradycardia", "tachycardia"), seed=1)
    assert data.classes == ("bradycardia", "tachycardia")
    brady, tachy = data.bpm[data.labels == 0], data.bpm[data.labels == 1]
    assert brady.min() >= 40 and brady.max() <= 55
    assert tachy.min() >= 110 and tachy.max() <= 150


@pytest.mark.parametrize("rate", [100, 250])
def test_beat_libraries(rate):
    for morphology in MORPHOLOGIES:
        beats = beat_library(morphology, rate)
        assert beats.shape[1] == round(ecg.BEFORE_R * rate) + round(ecg.AFTER_R * rate) + 1
        assert beats.shape[0] >= 5
        np.testing.assert_allclose(beats[:, [0, -1]], 0.0, atol=1e-9)  # tapered to zero at both ends
        r = round(ecg.BEFORE_R * rate)
        assert (np.abs(beats[:, r - 2 : r + 3]).max(1) > 0.5).all()  # the R peak sits where it should


def test_p_wave_removed_for_no_p():
    rate = 100
    r = round(ecg.BEFORE_R * rate)
    p_zone = slice(r - round(0.25 * rate), r - round(0.1 * rate))  # before the QRS, where P lies
    sinus = np.abs(beat_library("sinus", rate)[:, p_zone]).max(1).mean()
    no_p = np.abs(beat_library("no_p", rate)[:, p_zone]).max(1).mean()
    assert no_p < 0.5 * sinus, (no_p, sinus)


def _intervals(rhythm: str, seed: int) -> np.ndarray:
    times, _, _ = ecg._r_peaks(ecg._RHYTHMS[rhythm], 30.0, np.random.default_rng(seed))
    return np.diff(times)


def test_irregular_rhythms_are_irregular():
    cv = {
        name: np.mean([np.std(_intervals(name, s)) / np.mean(_intervals(name, s)) for s in range(10)])
        for name in ("normal", "irregular_rr", "af_like")
    }
    assert cv["normal"] < 0.06 and cv["irregular_rr"] > 0.15 and cv["af_like"] > 0.15, cv


def test_ectopic_beats_are_premature_with_a_pause():
    for s in range(10):
        times, ventricular, bpm = ecg._r_peaks(ecg._RHYTHMS["ectopic"], 8.0, np.random.default_rng(s))
        k = np.flatnonzero(ventricular)
        assert 1 <= len(k) <= 2
        rr = 60 / bpm
        for i in k:
            np.testing.assert_allclose(times[i] - times[i - 1], 0.6 * rr)
            np.testing.assert_allclose(times[i + 1] - times[i], 1.4 * rr)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"classes": ("normal", "flutter")}, "unknown class"),
        ({"classes": ("normal", "normal")}, "distinct"),
        ({"classes": ()}, "distinct"),
        ({"seconds": 2.0}, r"seconds >= 3"),
        ({"sampling_rate": 20}, "sampling_rate"),
        ({"noise": -0.1}, "noise"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ecg_dataset(2, **kwargs)


def test_bad_counts_and_class_string():
    with pytest.raises(ValueError, match="n_per_class"):
        ecg_dataset(0)
    with pytest.raises(TypeError, match="sequence of names"):
        ecg_dataset(2, classes="normal")


def test_missing_neurokit2_says_what_to_install(monkeypatch):
    beat_library.cache_clear()
    monkeypatch.setitem(sys.modules, "neurokit2", None)  # import neurokit2 now raises ImportError
    try:
        with pytest.raises(ImportError, match="pip install neurokit2"):
            ecg_dataset(1, sampling_rate=123)
    finally:
        beat_library.cache_clear()
