"""memlib.bench.attention: the suite runs end to end on tiny lengths; the growth fit and the skip rule are right."""

from __future__ import annotations

import json
import math

import pytest

from memlib import bench
from memlib.bench import attention


@pytest.fixture
def tiny(monkeypatch):
    """Lengths, window, blocks and k small enough for a run in seconds."""
    monkeypatch.setattr(attention, "QUICK_LENGTHS", (16, 32, 64))
    monkeypatch.setattr(attention, "QUICK_KS", (8,))
    monkeypatch.setattr(attention, "WINDOW", 2)
    monkeypatch.setattr(attention, "BLOCK", 8)


def test_attention_suite_measures_every_method(tiny, tmp_path, capsys):
    out = tmp_path / "attention.json"
    assert bench.main(["attention", "--quick", "--repeats", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    methods = ["materialised", "nn_materialised", "fused", "nn_fused", "window", "bigbird", "linformer_k8", "lstm"]
    assert data["suite"] == "attention" and data["methods"] == methods
    assert [r["n"] for r in data["rows"]] == [16, 32, 64]
    for row in data["rows"]:
        assert row["skipped"] == {}
        for key in ("median_ms", "peak_mib", "time_ratio_to_materialised", "memory_ratio_to_materialised"):
            assert list(row[key]) == methods, key
        assert all(len(s) == 1 and s[0] > 0 for s in row["seconds"].values())
        assert all(v > 0 for v in row["peak_mib"].values())
        assert row["time_ratio_to_materialised"]["materialised"] == 1.0
        assert set(row["ratio_to_torch"]) == {"fused/nn_fused", "materialised/nn_materialised"}
    for m in methods:
        fit = data["exponents"][m]
        assert fit["lengths"] == [16, 32, 64]
        assert math.isfinite(fit["time"]) and math.isfinite(fit["memory"]), (m, fit)
    verdicts = data["targets_met"]
    assert verdicts["linformer_memory"] is None  # n=4096 is not in a quick run
    assert isinstance(verdicts["window_exponent"], bool)
    assert verdicts["torch_time_fused"] in ("met", "missed", "within noise")  # judged against the A/A band
    assert all(row["aa_band"] >= 1 for row in data["rows"])
    assert data["machine"]["torch_threads"] >= 1
    printed = capsys.readouterr().out
    for text in ("time (median ms)", "peak memory (MiB)", "growth exponents", "linformer_k8", "target", "n=64"):
        assert text in printed, text


@pytest.mark.parametrize("c, power", [(3.0, 2.0), (0.5, 1.0), (7.0, 1.5)])
def test_growth_exponent_recovers_the_power(c, power):
    ns = [256, 512, 1024, 2048, 4096]
    assert attention.growth_exponent(ns, [c * n**power for n in ns]) == pytest.approx(power)


def test_growth_exponent_needs_two_lengths_and_positive_values():
    assert attention.growth_exponent([256], [1.0]) is None
    assert attention.growth_exponent([256, 512], [1.0, 0.0]) is None
    with pytest.raises(ValueError, match="as many values as lengths"):
        attention.growth_exponent([256, 512], [1.0])


def test_a_cell_is_skipped_when_its_extrapolation_passes_a_limit(monkeypatch):
    monkeypatch.setattr(attention, "MEMORY_LIMIT_GIB", 6.0)
    monkeypatch.setattr(attention, "STEP_LIMIT_S", 30.0)
    assert attention._skip_reason(None, 8192) is None
    assert attention._skip_reason(dict(n=4096, seconds=1.0, peak_mib=1024.0), 8192) is None  # 4 GiB, 4 s
    assert "GiB" in attention._skip_reason(dict(n=4096, seconds=1.0, peak_mib=2048.0), 8192)  # 8 GiB
    assert "step" in attention._skip_reason(dict(n=4096, seconds=10.0, peak_mib=1.0), 8192)  # 40 s


def test_sweep_measures_the_methods_asked_for(tiny):
    rows, fits = attention.sweep([16, 32], [8], repeats=1, dev="cpu", methods=["materialised", "window"])
    assert list(fits) == ["materialised", "window"]
    for row in rows:
        assert list(row["median_ms"]) == ["materialised", "window"]
        assert row["memory_ratio_to_materialised"]["materialised"] == 1.0
    printed = "\n".join(attention.tables(rows, fits))
    assert "window" in printed and "bigbird" not in printed
    with pytest.raises(ValueError, match="expected methods among"):
        attention.sweep([16], [8], repeats=1, dev="cpu", methods=["flash"])
