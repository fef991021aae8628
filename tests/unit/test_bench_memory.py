"""memlib.bench.memory: the suite runs end to end on tiny sizes; the skip rule and the growth check are right."""

from __future__ import annotations

import json
import math

import pytest
import torch

from memlib import bench
from memlib.bench import memory
from memlib.claims import noise_band, target_met, within_noise
from memlib.memory import fast


@pytest.fixture
def tiny(monkeypatch):
    """Batch, widths, lengths and memory sizes small enough for a run in seconds."""
    monkeypatch.setattr(memory, "B", 2)
    monkeypatch.setattr(memory, "BITS", 3)
    monkeypatch.setattr(memory, "CONTROLLER", 8)
    monkeypatch.setattr(memory, "NTM_SIZES", dict(memory_width=4, read_heads=1, shift_range=1))
    monkeypatch.setattr(memory, "DNC_SIZES", dict(memory_width=4, read_heads=2))
    monkeypatch.setattr(memory, "SLOTS", 8)
    monkeypatch.setattr(memory, "QUICK_LENGTHS", (2, 3))
    monkeypatch.setattr(memory, "SIZE_LENGTH", 2)
    monkeypatch.setattr(memory, "QUICK_SIZES", (4, 8, 16))
    monkeypatch.setattr(memory, "FAST_LENGTH", 2)
    monkeypatch.setattr(memory, "FAST_BATCHES", (1, 2))
    # Compiling takes minutes on a loaded CPU: here the fast step takes its no-compiler path (eager);
    # tests/unit/test_fast_memory.py compiles.
    monkeypatch.setattr(fast, "_compiler_ok", False)
    monkeypatch.setattr(memory, "_peer_available", lambda: False)


def test_memory_suite_measures_every_model(tiny, tmp_path, capsys):
    threads = torch.get_num_threads()
    out = tmp_path / "memory.json"
    assert bench.main(["memory", "--quick", "--repeats", "1", "--out", str(out)]) == 0
    assert torch.get_num_threads() == threads  # the suite's thread count does not leak
    data = json.loads(out.read_text())
    assert data["suite"] == "memory" and data["models"] == ["ntm", "dnc", "lstm"]
    assert data["settings"]["threads"] == memory.THREADS and data["settings"]["batch"] == 2
    assert all(n > 0 for n in data["parameters"].values())

    assert [(r["B"], r["L"], r["N"]) for r in data["fast_rows"]] == [(1, 2, 8), (2, 2, 8)]
    for row in data["fast_rows"]:
        variants = ["ntm eager", "ntm eager A/A", "ntm fast", "dnc eager", "dnc fast", "lstm"]
        assert list(row["median_ms"]) == variants and not row["compiled"]
        assert all(len(row["seconds"][m]) == 1 for m in variants) and row["aa_band"] >= 1
        assert set(row["ratios"]) == set(row["within_noise"]) and "ntm fast / ntm eager" in row["ratios"]
        aa = row["seconds"]["ntm eager A/A"][0] / row["seconds"]["ntm eager"][0]
        assert row["ratios"]["ntm eager A/A"] == pytest.approx(aa) and row["within_noise"]["ntm eager A/A"]
    assert data["settings"]["peer"] is None
    assert all(len(r["targets"]) == 3 for r in data["fast_rows"])
    assert all(v in ("met", "missed", "within noise") for r in data["fast_rows"] for v in r["targets"].values())

    assert [(r["L"], r["T"], r["N"]) for r in data["length_rows"]] == [(2, 6, 8), (3, 8, 8)]
    for row in data["length_rows"]:
        assert row["skipped"] == {}
        for key in ("median_ms", "sequences_per_s", "peak_mib", "time_ratio_to_lstm", "memory_ratio_to_lstm"):
            assert list(row[key]) == ["ntm", "dnc", "lstm"], key
        assert all(len(s) == 1 and s[0] > 0 for s in row["seconds"].values())
        assert all(v > 0 for v in row["peak_mib"].values())
        assert row["time_ratio_to_lstm"]["lstm"] == 1.0 and row["memory_ratio_to_lstm"]["lstm"] == 1.0
        for m, ms in row["median_ms"].items():
            assert row["sequences_per_s"][m] == pytest.approx(2 / (ms / 1e3))

    assert [(r["N"], r["L"]) for r in data["size_rows"]] == [(4, 2), (8, 2), (16, 2)]
    for row in data["size_rows"]:
        assert row["skipped"] == {} and list(row["median_ms"]) == ["ntm", "dnc"]
        assert all(v > 0 for v in row["peak_mib"].values())
    for m in ("ntm", "dnc"):
        fit = data["exponents"][m]
        assert fit["sizes"] == [4, 8, 16]
        assert math.isfinite(fit["time"]) and math.isfinite(fit["memory"]), (m, fit)
    assert isinstance(data["checks"]["dnc_memory_grows_faster"], bool)
    assert data["machine"]["torch_threads"] >= 1

    printed = capsys.readouterr().out
    for text in ("eager and fast", "no working compiler here", "A/A band", "ntm fast / lstm", "targets:",
                 "copy length L", "seq/s", "time (median ms)", "peak memory (MiB)", "growth exponents", "N=16",
                 "DNC memory exponent in N > NTM's: measured"):
        assert text in printed, text


def test_a_cell_is_skipped_when_its_extrapolation_passes_a_limit(monkeypatch):
    monkeypatch.setattr(memory, "MEMORY_LIMIT_GIB", 6.0)
    monkeypatch.setattr(memory, "STEP_LIMIT_S", 60.0)
    assert memory._skip_reason(None, 512, "N", 2) is None
    assert memory._skip_reason(dict(N=128, seconds=1.0, peak_mib=256.0), 512, "N", 2) is None  # 4 GiB, 16 s
    assert "GiB" in memory._skip_reason(dict(N=128, seconds=1.0, peak_mib=512.0), 512, "N", 2)  # 8 GiB
    assert "step" in memory._skip_reason(dict(N=128, seconds=4.0, peak_mib=1.0), 512, "N", 2)  # 64 s
    assert memory._skip_reason(dict(L=20, seconds=20.0, peak_mib=1.0), 40, "L", 1) is None  # 40 s: linear in L


@pytest.mark.parametrize("dnc, ntm, expected", [(1.7, 0.9, True), (0.9, 0.9, False), (None, 0.9, None)])
def test_growth_check_compares_the_measured_exponents(dnc, ntm, expected):
    fits = {"dnc": dict(memory=dnc), "ntm": dict(memory=ntm)}
    verdict, line = memory._growth_check(fits)
    assert verdict is expected
    assert ("met" in line or "MISSED" in line) if expected is not None else "not measured" in line


def test_the_noise_band_is_the_widest_a_a_ratio_and_sets_the_verdict():
    band = noise_band([1.0, 1.0, 1.0], [1.0, 1.25, 0.9])
    assert band == pytest.approx(1.25)
    assert noise_band([2.0], [2.0]) == 1.0
    assert within_noise(0.85, band) and within_noise(1.2, band)
    assert not within_noise(0.5, band) and not within_noise(1.3, band)
    # a target is met or missed only outside the band: 3x faster means a ratio <= 1/3
    assert target_met(0.2, band, 1 / 3) == "met" and target_met(0.5, band, 1 / 3) == "missed"
    assert target_met(0.3, band, 1 / 3) == "within noise"
