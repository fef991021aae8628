"""Simulated single-lead ECG windows of several rhythm classes: beat shapes from ECGSYN, rhythms from our code.

No real ECG data set loads offline (ECG5000, MIT-BIH and ``scipy.datasets`` all download), so this module
*simulates* one. Everything here is simulated and none of it is clinical data: the classes are caricatures
of real rhythms, made to test what a model can read from shape within a beat and from rhythm across beats.

How a window is made (:func:`ecg_dataset`):

1. **Beat shapes.** For each morphology below, neurokit2's ``ecg_simulate(method="ecgsyn")`` (Makowski et
   al. 2021) runs ECGSYN (McSharry et al. 2003) for 24 s at 60 bpm, noise-free, with a fixed random state.
   ECGSYN moves a point around a limit cycle and adds one Gaussian bump per wave: P, Q, R, S, T at angles
   ``ti`` (degrees), with heights ``ai`` and widths ``bi`` (radians). We find the R peaks
   (``neurokit2.ecg_peaks``, refined to the local maximum), cut every beat from 0.3 s before its R peak to
   0.6 s after, remove the straight line through its two ends and taper both ends (40 ms), so every beat
   starts and ends at zero. Each morphology gives a library of about 20 slightly different beats.
2. **Rhythm.** A class draws a sequence of R-peak times (RR intervals below) and adds one beat from the
   library, picked at random, at each R peak; beats that overlap (at high rates the T wave meets the next P
   wave) add up.
3. **Recording.** The window is scaled by a gain drawn from [0.8, 1.2], gets a baseline wander (a sine of
   0.15 to 0.4 Hz, amplitude up to 0.1) and Gaussian noise of standard deviation ``noise``.

Morphologies (ECGSYN's default ``ti = (-70, -15, 0, 15, 100)``, ``ai = (1.2, -5, 30, -7.5, 0.75)``,
``bi = (0.25, 0.1, 0.1, 0.1, 0.4)`` unless stated; neurokit2 scales each record to [-0.4, 1.2]):

- ``sinus``: the defaults.
- ``no_p``: P height ``ai[0] = 0``: no organised atrial activity (as in atrial fibrillation).
- ``wide``: Q, R, S widths ``bi[1:4]`` times 2.5 (0.25 rad): a wide QRS, as in a bundle branch block.
- ``ventricular``: no P wave, Q, R, S widths times 3, T height ``ai[4] = -0.75`` (inverted): a premature
  ventricular beat's wide complex with a discordant T wave.

Classes (:data:`ECG_CLASSES`), with heart rates drawn uniformly per window:

- ``normal``: ``sinus`` beats, 60 to 95 bpm, RR intervals jittered by 3 % (normal sinus rhythm).
- ``tachycardia``: as ``normal`` at 110 to 150 bpm.
- ``bradycardia``: as ``normal`` at 40 to 55 bpm.
- ``af_like``: ``no_p`` beats, mean 70 to 110 bpm, each RR interval drawn independently from
  [0.6, 1.4] times the mean: irregularly irregular, like atrial fibrillation (no fibrillatory waves).
- ``irregular_rr``: ``sinus`` beats (P waves present) at ``af_like``'s RR intervals. A control, not a clinical
  rhythm: its beats are those of ``normal``, only their timing differs.
- ``wide_qrs``: ``wide`` beats, regular, 60 to 95 bpm: every beat is wide, the rhythm is normal.
- ``ectopic``: ``normal`` rhythm in which one or two beats are ``ventricular`` and premature (0.6 RR after
  the previous beat), each followed by a compensatory pause (1.4 RR): shape *and* timing change.

Rate classes (tachycardia, bradycardia) and ``irregular_rr`` are defined across beats only; ``af_like``
across beats and by a missing P wave; ``wide_qrs`` within one
beat; ``ectopic`` needs both. Shapes: ``N`` windows, ``T = round(seconds * sampling_rate)`` samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import numpy as np
import torch

from memlib.validate import check_float, check_int

#: The simulated rhythm classes, in label order.
ECG_CLASSES = ("normal", "tachycardia", "bradycardia", "af_like", "irregular_rr", "wide_qrs", "ectopic")

_TI = (-70.0, -15.0, 0.0, 15.0, 100.0)  # P, Q, R, S, T angles (degrees), ECGSYN's defaults
_AI = (1.2, -5.0, 30.0, -7.5, 0.75)  # heights
_BI = (0.25, 0.1, 0.1, 0.1, 0.4)  # widths (radians)
MORPHOLOGIES = {
    "sinus": (_TI, _AI, _BI),
    "no_p": (_TI, (0.0, *_AI[1:]), _BI),
    "wide": (_TI, _AI, (_BI[0], 0.25, 0.25, 0.25, _BI[4])),
    "ventricular": (_TI, (0.0, *_AI[1:4], -0.75), (_BI[0], 0.3, 0.3, 0.3, _BI[4])),
}

BEFORE_R, AFTER_R = 0.3, 0.6  # seconds of each cut beat before and after its R peak
SLOWEST_BPM = 40  # bradycardia's lower bound
MIN_SECONDS = 2 * 60 / SLOWEST_BPM  # two beats at the slowest rate: 3 s
MIN_RATE, MAX_RATE = 50, 1000  # Hz: below 50 the QRS (about 0.1 s) is a few samples


@dataclass(frozen=True)
class _Rhythm:
    morphology: str
    bpm: tuple[float, float]  # (low, high) mean heart rate, drawn uniformly per window
    jitter: float = 0.03  # RR standard deviation as a fraction of the mean (regular rhythms)
    irregular: bool = False  # RR drawn independently from [0.6, 1.4] x mean
    ectopic: bool = False  # one or two premature ventricular beats with compensatory pauses


_RHYTHMS = {
    "normal": _Rhythm("sinus", (60, 95)),
    "tachycardia": _Rhythm("sinus", (110, 150)),
    "bradycardia": _Rhythm("sinus", (40, 55)),
    "af_like": _Rhythm("no_p", (70, 110), irregular=True),
    "irregular_rr": _Rhythm("sinus", (70, 110), irregular=True),
    "wide_qrs": _Rhythm("wide", (60, 95)),
    "ectopic": _Rhythm("sinus", (60, 95), ectopic=True),
}


class EcgData(NamedTuple):
    """What :func:`ecg_dataset` returns.

    >>> EcgData._fields
    ('signals', 'labels', 'classes', 'sampling_rate', 'bpm')
    """
    signals: torch.Tensor  # (N, T) float32, simulated single-lead ECG (arbitrary units, R peak near 1)
    labels: torch.Tensor  # (N,) int64 index into classes
    classes: tuple[str, ...]  # class names, in label order
    sampling_rate: int  # samples per second
    bpm: torch.Tensor  # (N,) float32 mean heart rate drawn for each window


def _neurokit():
    try:
        import neurokit2
    except ImportError as error:
        raise ImportError(
            "ecg_dataset: expected neurokit2 to be installed (its ECGSYN simulator makes the beat shapes, "
            "offline): pip install neurokit2"
        ) from error
    return neurokit2


@cache
def beat_library(morphology: str, sampling_rate: int) -> np.ndarray:
    """Beats (K, L) of one morphology cut from a 24 s noise-free ECGSYN record at 60 bpm.

    Each row runs from ``BEFORE_R`` s before an R peak (at index ``round(BEFORE_R * sampling_rate)``) to
    ``AFTER_R`` s after it, detrended and tapered to zero at both ends. Cached per process: do not modify.
    """
    if morphology not in MORPHOLOGIES:
        raise ValueError(f"beat_library: expected morphology in {sorted(MORPHOLOGIES)}, got {morphology!r}")
    nk = _neurokit()
    ti, ai, bi = MORPHOLOGIES[morphology]
    record = nk.ecg_simulate(
        duration=24,
        sampling_rate=sampling_rate,
        noise=0,
        heart_rate=60,
        heart_rate_std=1,
        method="ecgsyn",
        random_state=sorted(MORPHOLOGIES).index(morphology),
        ti=ti,
        ai=ai,
        bi=bi,
    )
    _, info = nk.ecg_peaks(record, sampling_rate=sampling_rate)
    before, after = round(BEFORE_R * sampling_rate), round(AFTER_R * sampling_rate)
    near = round(0.05 * sampling_rate)  # refine each detected peak to the maximum within 50 ms
    ramp = np.sin(np.linspace(0, np.pi / 2, round(0.04 * sampling_rate))) ** 2  # 40 ms taper
    beats = []
    for peak in info["ECG_R_Peaks"]:
        lo, hi = max(peak - near, 0), min(peak + near + 1, len(record))
        r = lo + int(np.argmax(record[lo:hi]))
        if r - before < 0 or r + after >= len(record):
            continue
        beat = record[r - before : r + after + 1].astype(np.float64)  # (L,)
        beat = beat - np.linspace(beat[0], beat[-1], len(beat))  # zero at both ends
        beat[: len(ramp)] *= ramp
        beat[len(beat) - len(ramp) :] *= ramp[::-1]
        beats.append(beat)
    if len(beats) < 5:
        raise RuntimeError(f"beat_library: found only {len(beats)} beats in the {morphology!r} ECGSYN record")
    return np.stack(beats)  # (K, L)


def _r_peaks(rhythm: _Rhythm, seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """R-peak times (s) covering the window, whether each beat is ventricular, and the mean rate (bpm)."""
    bpm = rng.uniform(*rhythm.bpm)
    rr = 60.0 / bpm
    start = -rng.uniform(0, rr)  # the first beat falls before the window: the phase is random
    n = int(np.ceil((seconds + AFTER_R - start) / (0.6 * rr))) + 2  # enough beats at the shortest RR
    if rhythm.irregular:
        intervals = rr * rng.uniform(0.6, 1.4, n)
    else:
        intervals = rr * (1 + rhythm.jitter * rng.standard_normal(n))
    ventricular = np.zeros(n, dtype=bool)
    if rhythm.ectopic:
        times = start + np.concatenate([[0.0], np.cumsum(intervals[:-1])])
        inside = np.flatnonzero((times > 0.5) & (times < seconds - 0.5))[1:]  # beats whose pause fits too
        chosen = rng.choice(inside, size=min(len(inside), rng.integers(1, 3)), replace=False)
        for k in np.sort(chosen):
            if ventricular[k - 1]:
                continue  # two premature beats in a row would be a run, another rhythm
            ventricular[k] = True
            intervals[k - 1] = 0.6 * rr  # premature: early after the previous beat
            intervals[k] = 1.4 * rr  # compensatory pause: the sinus rhythm resumes on time
    times = start + np.concatenate([[0.0], np.cumsum(intervals[:-1])])
    keep = (times > -AFTER_R) & (times < seconds + BEFORE_R)  # beats that reach into the window
    return times[keep], ventricular[keep], bpm


def _window(name: str, seconds: float, sampling_rate: int, noise: float, rng: np.random.Generator) -> tuple:
    rhythm = _RHYTHMS[name]
    T = round(seconds * sampling_rate)
    before = round(BEFORE_R * sampling_rate)
    normal_beats = beat_library(rhythm.morphology, sampling_rate)  # (K, L)
    ectopic_beats = beat_library("ventricular", sampling_rate)
    L = normal_beats.shape[1]
    times, ventricular, bpm = _r_peaks(rhythm, seconds, rng)
    x = np.zeros(T + 2 * L)  # room for beats that start before the window or end after it
    for t, v in zip(times, ventricular, strict=True):
        library = ectopic_beats if v else normal_beats
        at = L + round(t * sampling_rate) - before  # index of the beat's first sample in x
        x[at : at + L] += library[rng.integers(len(library))]
    x = x[L : L + T]  # (T,)
    t = np.arange(T) / sampling_rate
    wander = rng.uniform(0, 0.1) * np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * t + rng.uniform(0, 2 * np.pi))
    x = rng.uniform(0.8, 1.2) * x + wander + noise * rng.standard_normal(T)
    return x, bpm


def ecg_dataset(
    n_per_class: int,
    seconds: float = 8.0,
    sampling_rate: int = 100,
    classes: Sequence[str] = ECG_CLASSES,
    seed: int = 0,
    noise: float = 0.05,
) -> EcgData:
    """``n_per_class`` simulated ECG windows of ``seconds`` for each of ``classes``, in a seeded random order.

    The same arguments give the same windows (the beat libraries use fixed random states; the rhythms, gains,
    wander and noise come from a NumPy generator seeded by ``seed``). See the module docstring for how each
    class is made; the data are simulated, not clinical.
    """
    check_int("ecg_dataset", "n_per_class", n_per_class, low=1, expected="n_per_class to be a positive int")
    if isinstance(classes, str):
        raise TypeError(f"ecg_dataset: expected classes as a sequence of names, got the string {classes!r}")
    classes = tuple(classes)
    unknown = [c for c in classes if c not in _RHYTHMS]
    if unknown:
        raise ValueError(f"ecg_dataset: unknown class(es) {unknown}; expected names from {ECG_CLASSES}")
    if len(classes) < 1 or len(set(classes)) != len(classes):
        raise ValueError(f"ecg_dataset: expected one or more distinct class names, got {classes}")
    check_int("ecg_dataset", "sampling_rate", sampling_rate, low=MIN_RATE, high=MAX_RATE,
              expected=f"sampling_rate as an int in [{MIN_RATE}, {MAX_RATE}] Hz")
    check_float("ecg_dataset", "seconds", seconds, low=MIN_SECONDS,
                expected=f"seconds >= {MIN_SECONDS:g} (two beats at the slowest rate, {SLOWEST_BPM} bpm)")
    check_int("ecg_dataset", "seed", seed, low=0, expected="seed to be a non-negative int")
    check_float("ecg_dataset", "noise", noise, low=0, expected="noise >= 0")
    rng = np.random.default_rng([seed, 2003])  # 2003: ECGSYN's year, to keep this stream apart from others
    signals, labels, bpms = [], [], []
    for label, name in enumerate(classes):
        for _ in range(n_per_class):
            x, bpm = _window(name, seconds, sampling_rate, noise, rng)
            signals.append(x)
            labels.append(label)
            bpms.append(bpm)
    order = rng.permutation(len(labels))
    return EcgData(
        torch.as_tensor(np.stack(signals)[order], dtype=torch.float32),
        torch.as_tensor(np.array(labels)[order], dtype=torch.int64),
        classes,
        sampling_rate,
        torch.as_tensor(np.array(bpms)[order], dtype=torch.float32),
    )
