"""memlib.bench.compress: the suite runs end to end on tiny sizes and writes every row; activations are counted."""

from __future__ import annotations

import json

import pytest
import torch

from memlib import bench
from memlib.bench import compress

# Touches precision or CPU kernels: `make test` runs these again under a restricted instruction set.
pytestmark = pytest.mark.kernels



@pytest.fixture
def tiny(monkeypatch):
    """Few training steps and small models: a run in seconds."""
    monkeypatch.setitem(bench.SUITES, "compress", "memlib.bench.compress")  # whether or not it is registered yet
    monkeypatch.setattr(compress, "QUICK_STEPS", dict(mlp=5, lstm=3, fine_tune=2, qat=2, student=3))
    monkeypatch.setattr(compress, "MLP_SIZES", (64, 32, 32, 10))
    monkeypatch.setattr(compress, "STUDENT_SIZES", (64, 8, 10))
    monkeypatch.setattr(compress, "LSTM_HIDDEN", 16)
    monkeypatch.setattr(compress, "QUICK_RANKS", (4,))
    # big enough that a layer keeps more than checkpointing's own cost (the RNG state it saves, 5 KB per block)
    deep = dict(layers=3, d_model=16, nhead=2, dim_feedforward=64, batch=2, length=32)
    monkeypatch.setattr(compress, "QUICK_DEEP", deep)
    monkeypatch.setattr(compress, "QUICK_LONG", dict(hidden=16, batch=2, length=64, chunk=16))


def test_compress_suite_measures_every_model(tiny, tmp_path, capsys):
    threads = torch.get_num_threads()
    out = tmp_path / "compress.json"
    assert bench.main(["compress", "--quick", "--repeats", "2", "--out", str(out)]) == 0
    assert torch.get_num_threads() == threads  # the suite's thread count does not leak
    data = json.loads(out.read_text())
    assert data["suite"] == "compress" and data["settings"]["threads"] == compress.THREADS
    techniques = [(r["model"], r["technique"]) for r in data["model_rows"]]
    assert techniques[0] == ("mlp", "float32 (baseline)") and ("lstm", "int8 dynamic") in techniques
    assert ("mlp", "int8 QAT") in techniques and ("mlp", "low rank r=4") in techniques
    assert ("student", "distilled T=4") in techniques and ("student", "labels only") in techniques
    for row in data["model_rows"]:
        assert row["parameters"] >= row["nonzero"] > 0 and row["disk_bytes"] > 0
        assert len(row["seconds"]) == 2 and 0 <= row["accuracy"] <= 100 and row["peak_mib"] >= 0
    rows = {(r["model"], r["technique"]): r for r in data["model_rows"]}
    base, pruned = rows["mlp", "float32 (baseline)"], rows["mlp", "prune 50% L1 + fine-tune"]
    assert pruned["parameters"] == base["parameters"] and pruned["nonzero"] < 0.6 * base["parameters"]
    assert rows["lstm", "int8 dynamic"]["disk_bytes"] < rows["lstm", "float32"]["disk_bytes"]

    variants = [(r["model"], r["variant"]) for r in data["training_rows"]]
    assert variants == [
        ("transformer L=3", "plain"),
        ("transformer L=3", "checkpointed"),
        ("transformer L=3", "bf16 autocast"),
        ("lstm T=64", "plain"),
        ("lstm T=64", "time chunks of 16"),
    ]
    for row in data["training_rows"]:
        assert row["step_peak_mib"] > 0 and row["activation_mib"] > 0 and len(row["seconds"]) == 2
    train = {(r["model"], r["variant"]): r for r in data["training_rows"]}
    assert train["transformer L=3", "plain"]["time_ratio"] == 1.0
    assert train["transformer L=3", "checkpointed"]["activation_ratio"] > 1  # keeps less for backward
    assert train["lstm T=64", "time chunks of 16"]["activation_ratio"] > 1
    assert set(data["targets_met"]) == {"checkpointing", "dynamic_quantization", "pruning"}
    assert set(data["targets_met"].values()) <= {"met", "missed", "within noise"}
    assert all(r["aa_band"] >= 1 for r in data["training_rows"])  # each model's first variant timed twice
    printed = capsys.readouterr().out
    assert "target checkpointing" in printed and "int8 dynamic" in printed


def test_kept_after_forward_counts_what_stays_allocated():
    kept = compress._kept_after_forward(lambda: torch.ones(1000, 100))  # 400,000 bytes returned
    assert kept == pytest.approx(400_000, rel=0.01)
    assert compress._kept_after_forward(lambda: torch.ones(1000, 100).sum()) < 1_000  # the big one is freed
