"""memlib.bench: every suite runs end to end on small sizes and writes its JSON with the machine it ran on."""

from __future__ import annotations

import json

import pytest

from memlib import bench
from memlib.bench import recurrent


def test_trace_suite_writes_json(tmp_path, capsys):
    out = tmp_path / "trace.json"
    assert bench.main(["trace", "--repeats", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["suite"] == "trace" and set(data["ratios"]) == {"b/a", "c/a"}
    assert data["machine"]["torch_threads"] >= 1
    assert "record() inside trace()" in capsys.readouterr().out


def test_recurrent_suite_measures_three_paths(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(recurrent, "QUICK_STEPS", (5,))
    monkeypatch.setattr(recurrent, "QUICK_WIDTHS", (8,))
    out = tmp_path / "recurrent.json"
    assert bench.main(["recurrent", "--quick", "--repeats", "2", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [(r["family"], r["T"], r["H"]) for r in data["rows"]] == [("rnn", 5, 8), ("lstm", 5, 8), ("gru", 5, 8)]
    for row in data["rows"]:
        assert set(row["median_ms"]) == {"torch", "fused", "reference"}
        assert all(len(v) == 2 for v in row["seconds"].values())
        assert all(v > 0 for v in row["peak_mib"].values())
        assert row["aa_band"] >= 1  # torch.nn timed against itself in the same run
    assert "lstm" in capsys.readouterr().out


def test_recurrent_targets_are_judged_against_the_a_a_band(monkeypatch, tmp_path):
    monkeypatch.setattr(recurrent, "QUICK_STEPS", (5,))
    monkeypatch.setattr(recurrent, "QUICK_WIDTHS", (8,))
    monkeypatch.setattr(recurrent, "TARGET", dict(T=5, H=8, fused=1.1, reference=4.0))
    out = tmp_path / "recurrent.json"
    assert bench.main(["recurrent", "--quick", "--repeats", "2", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["targets_met"]) == {f"{f}.{k}" for f in ("rnn", "lstm", "gru") for k in ("fused", "reference")}
    assert set(data["targets_met"].values()) <= {"met", "missed", "within noise"}


@pytest.mark.parametrize("argv", [["nope"], ["trace", "--repeats", "0"]])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert "usage:" in capsys.readouterr().err
