"""memlib.bench.compare: the models, the JSON it writes (schema), the command line and its errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from memlib import bench
from memlib.bench import compare

# numpy notices flushed denormals when it first inspects float limits, and warns; nothing is wrong
pytestmark = pytest.mark.filterwarnings("ignore:The value of the smallest subnormal")

# a few seconds: every section, every code path, numbers not meaningful
TINY = compare.Size(
    steps=5,
    adding_lengths=(4, 6),
    copy_lengths=(1,),
    lengths=(8, 16),
    memory_lengths=(8, 16),
    interpret_length=4,
    cell_seconds=5.0,
    repeats=2,
)


@pytest.fixture(scope="module")
def tiny() -> dict:
    return compare.measure(TINY, models=("rnn", "transformer", "linformer"))


@pytest.mark.parametrize("name", compare.MODELS)
def test_every_model_maps_sequences_to_an_output_per_step(name):
    model = compare.build(name, 3, 2, 12)
    y = model(torch.randn(4, 12, 3))  # (B, T, I)
    assert y.shape == (4, 12, 2)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_models_have_comparable_sizes():
    counts = {m: compare.parameter_count(compare.build(m, 2, 1, 50)) for m in compare.ARTICLE}
    assert (
        max(counts["lstm"], counts["gru"], counts["transformer"])
        / min(counts["lstm"], counts["gru"], counts["transformer"])
        < 1.5
    ), counts


def test_lags_count_steps_between_the_needed_input_and_the_answer():
    adding, copy = compare.TASKS["adding"], compare.TASKS["copy"]
    assert (adding.steps(50), adding.lag(50)) == (50, 49)
    batch = compare._copy(2, 5, 0, 0, torch.device("cpu"))
    assert batch.inputs.shape[1] == copy.steps(5) == 12
    # vector 1 enters at step 1 and is due at the first of the last 5 steps, step 7: 6 = L + 1 steps later
    assert copy.lag(5) == 6 == (12 - 5) - 1


def test_json_schema(tiny):
    data = json.loads(json.dumps(tiny))  # JSON-ready: survives a round trip unchanged
    assert data == tiny
    assert data["suite"] == "compare" and data["size"] == "custom" and data["device"] == "cpu"
    assert data["models"] == ["rnn", "transformer", "linformer"]
    assert set(data["params"]) == set(data["models"]) and all(v > 0 for v in data["params"].values())
    for key in ("steps", "batch", "seed", "threads", "lr", "adding_solved", "copy_solved"):
        assert key in data["settings"]
    for task in ("adding", "copy"):
        section = data["long_term"][task]
        assert set(section["rows"]) == set(section["largest_lag"]) == set(section["lower_bound"]) == set(data["models"])
        for rows in section["rows"].values():
            for r in rows:
                assert r["status"] in ("solved", "failed", "capped") and r["solved"] == (r["status"] == "solved")
                assert r["lag"] == compare.TASKS[task].lag(r["length"]) and r["steps"] <= TINY.steps
    speed = data["speed"]
    assert speed["lengths"] == [8, 16]
    for rows in speed["rows"].values():
        assert [r["T"] for r in rows] == [8, 16]
        for r in rows:
            assert len(r["step_ms_repeats"]) == TINY.repeats and r["step_ms"] > 0
            assert r["seq_per_s"] == pytest.approx(compare.BATCH / (r["step_ms"] / 1e3))
    memory = data["memory"]
    for rows in memory["rows"].values():
        assert [r["T"] for r in rows] == [8, 16] and all(r["peak_mib"] > 0 for r in rows)
    assert all(isinstance(b, float) for b in memory["exponent"].values())
    for row in data["interpretability"]["rows"].values():
        assert 0.0 <= row["score"] <= 1.0 and math.isfinite(row["test_mse"])
    summary = data["summary"]
    assert summary["batch"] == compare.BATCH
    for m in data["models"]:
        entry = summary["models"][m]
        assert entry["label"] == compare.LABELS[m] and entry["params"] == data["params"][m]
        assert set(entry["largest_lag"]) == {"adding", "copy"}
        for key in ("step_ms", "latency_ms", "peak_mib"):
            assert [T for T, _ in entry[key]] == [8, 16] and all(v > 0 for _, v in entry[key])
    assert data["seconds"] > 0 and isinstance(data["skipped"], list)


def test_time_to_solve_reads_the_ladder(tiny):
    solve = compare.time_to_solve(tiny)
    for m in tiny["models"]:
        for r in tiny["long_term"]["adding"]["rows"][m]:
            assert solve[m][r["T"]] == ((r["seconds"], r["steps"]) if r["solved"] else None)
        reached = {r["T"] for r in tiny["long_term"]["adding"]["rows"][m]}
        assert all(solve[m][T] is None for T in TINY.adding_lengths if T not in reached)


def test_table_names_every_model_and_section(tiny):
    text = compare.tables(tiny)
    for label in (
        "RNN",
        "Transformer",
        "Linformer",
        "long-term",
        "training speed",
        "memory footprint",
        "interpretability",
    ):
        assert label in text


def test_memory_grows_with_length(tiny):
    for rows in tiny["memory"]["rows"].values():
        assert rows[1]["peak_mib"] > rows[0]["peak_mib"]


def test_a_rung_stops_once_solved(monkeypatch):
    monkeypatch.setattr(compare, "metric", lambda task, model, batch: 0.0)  # every check passes
    run = compare._Run(TINY._replace(steps=200), torch.device("cpu"), 0, compare._quiet, [])
    record, _ = compare._rung(run, "rnn", "adding", 4)
    assert record["status"] == "solved" and record["steps"] == compare.EVAL_EVERY


def test_a_rung_out_of_time_is_capped_not_failed(monkeypatch):
    monkeypatch.setattr(compare, "metric", lambda task, model, batch: 1.0)
    run = compare._Run(TINY._replace(steps=10_000, cell_seconds=0.0), torch.device("cpu"), 0, compare._quiet, [])
    record, _ = compare._rung(run, "rnn", "adding", 4)
    assert record["status"] == "capped" and not record["solved"] and record["steps"] == 1
    assert run.skipped and "out of time" in run.skipped[0]["reason"]


def test_a_rung_solved_when_its_time_runs_out_counts_as_solved(monkeypatch):
    monkeypatch.setattr(compare, "metric", lambda task, model, batch: 0.0)
    run = compare._Run(TINY._replace(steps=10_000, cell_seconds=0.0), torch.device("cpu"), 0, compare._quiet, [])
    record, _ = compare._rung(run, "rnn", "adding", 4)
    assert record["status"] == "solved" and record["steps"] == 1 and not run.skipped


def test_diff_of_a_result_with_itself_is_all_ones(tiny):
    d = compare.diff(tiny, tiny)
    assert d["models"] == tiny["models"]
    for rows in d["speed"].values():
        assert all(r["seq_per_s"] == 1.0 and r["latency_ms"] == 1.0 for r in rows)
    for rows in d["memory"].values():
        assert all(r["peak_mib"] == 1.0 for r in rows)
    with pytest.raises(ValueError, match="expected b to be a result of the compare suite"):
        compare.diff(tiny, {"suite": "trace"})


def test_command_line_writes_json_with_the_machine(tmp_path, capsys):
    out = tmp_path / "compare.json"
    argv = [
        "compare",
        "--size",
        "smoke",
        "--sections",
        "memory",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--json",
        str(out),
    ]
    assert bench.main(argv) == 0
    data = json.loads(out.read_text())
    assert data["suite"] == "compare" and data["size"] == "smoke" and "memory" in data and "speed" not in data
    machine = data["machine"]
    assert machine["torch_threads"] == 1 and machine["cpu_count"] >= 1 and machine["torch"] == torch.__version__
    assert data["device"] == "cpu"
    assert "memory footprint" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "--device", "tpu"], "--device: device: unknown device 'tpu'"),
        (["compare", "--sections", "speed,bogus"], "--sections: expected names from long_term, speed"),
        (["compare", "--size", "huge"], "--size: expected one of smoke, quick, full, got huge"),
        (["compare", "--threads", "0"], "--threads: expected a positive int, got 0"),
        (["trace", "--sections", "speed"], "--sections: the trace suite does not take it"),
    ],
)
def test_bad_command_lines_are_named(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_requested_without_cuda_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        bench.main(["compare", "--device", "cuda"])
    assert "CUDA is not available here" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(size="huge"), "expected size in"),
        (dict(models=("lstm", "cnn")), "expected models from"),
        (dict(models="lstm"), "expected models from"),
        (dict(sections=("speed", "accuracy")), "expected sections from"),
        (dict(repeats=0), "expected repeats as a positive int, got 0"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compare.measure(**kwargs)


def test_a_negative_length_is_refused():
    with pytest.raises(ValueError, match="expected every length"):
        compare.measure(TINY._replace(lengths=(-5, 16)))


def _made_up(speeds: dict[str, tuple[float, float]], lags: dict[str, int]) -> dict:
    """A minimal result: sequences per second at T = 50 and 1000, and largest lags on adding (copy: none)."""
    models = list(speeds)
    return dict(
        suite="compare",
        models=models,
        long_term={"adding": dict(largest_lag=lags), "copy": dict(largest_lag={m: 0 for m in models})},
        speed=dict(
            lengths=[50, 1000],
            rows={m: [dict(T=50, seq_per_s=s[0]), dict(T=1000, seq_per_s=s[1])] for m, s in speeds.items()},
        ),
    )


def test_ratings_follow_the_measurements_pair_by_pair():
    data = _made_up(
        {"rnn": (1000, 100), "lstm": (500, 400), "transformer": (2000, 50)}, {"rnn": 9, "lstm": 49, "transformer": 199}
    )
    # claimed: transformer fastest, lstm slowest
    speed = compare.check_ratings(data, {"training_speed": {"transformer": 2, "rnn": 1, "lstm": 0}})["training_speed"]
    assert speed["transformer"]["verdict"] == "holds with a condition"  # fastest at T=50, slowest at T=1000
    assert speed["transformer"]["holds_at"] == ["T=50"] and speed["transformer"]["fails_at"] == ["T=1000"]
    assert speed["lstm"]["verdict"] == "holds with a condition"
    assert any("rated worse than Transformer, measured better than" in d for d in speed["lstm"]["disagreements"])
    lags = compare.check_ratings(data, {"long_term": {"transformer": 2, "lstm": 1, "rnn": 0}})["long_term"]
    # copy: every lag 0, so the claimed differences do not show there
    assert lags["transformer"]["holds_at"] == ["adding"] and lags["transformer"]["fails_at"] == ["copy"]
    assert lags["transformer"]["verdict"] == "holds with a condition" and lags["rnn"]["fails_at"] == ["copy"]
    reversed_lags = compare.check_ratings(data, {"long_term": {"transformer": 0, "rnn": 2}})["long_term"]
    assert reversed_lags["rnn"]["verdict"] == "does not hold"


def test_equal_ratings_need_comparable_measurements():
    data = _made_up({"lstm": (500, 100), "gru": (550, 300)}, {"lstm": 49, "gru": 49})
    cells = compare.check_ratings(data, {"training_speed": {"lstm": 1, "gru": 1}})["training_speed"]
    assert cells["gru"]["holds_at"] == ["T=50"] and cells["gru"]["fails_at"] == ["T=1000"]  # 1.1x, then 3x


def test_memory_ratings_reward_the_smaller_peak():
    data = dict(
        suite="compare",
        models=["rnn", "transformer"],
        memory=dict(
            lengths=[100], rows={"rnn": [dict(T=100, peak_mib=2.0)], "transformer": [dict(T=100, peak_mib=40.0)]}
        ),
    )
    claim = {"memory_footprint": {"rnn": 1, "transformer": 0}}  # the RNN rated lighter
    assert compare.check_ratings(data, claim)["memory_footprint"]["rnn"]["verdict"] == "holds"
    claim = {"memory_footprint": {"rnn": 0, "transformer": 1}}
    assert compare.check_ratings(data, claim)["memory_footprint"]["rnn"]["verdict"] == "does not hold"


def test_unmeasured_interpretability_is_untested():
    data = dict(
        suite="compare",
        models=["rnn", "lstm"],
        interpretability=dict(T=25, rows={"rnn": dict(score=0.1, solved=False), "lstm": dict(score=0.9, solved=True)}),
    )
    cells = compare.check_ratings(data, {"interpretability": {"rnn": 1, "lstm": 0}})["interpretability"]
    assert cells["rnn"]["verdict"] == "untested" and cells["lstm"]["verdict"] == "holds"  # no pair to contradict


def test_bad_ratings_are_named(tiny):
    with pytest.raises(ValueError, match="expected metrics from"):
        compare.check_ratings(tiny, {"beauty": {"rnn": 1}})
    with pytest.raises(ValueError, match=r"rates \['gru'\], which the results do not hold"):
        compare.check_ratings(tiny, {"training_speed": {"gru": 1}})
    with pytest.raises(ValueError, match="expected ratings as"):
        compare.check_ratings(tiny, {})


def _flushed() -> bool:
    return (torch.tensor([1e-310], dtype=torch.float64) * 1.0).item() == 0.0


@pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU cannot flush denormals")
def test_denormals_are_flushed_during_a_run_and_restored_after():
    with compare.flushed_denormals():
        assert _flushed()
    assert not _flushed()
    torch.set_flush_denormal(True)
    with compare.flushed_denormals():
        assert _flushed()
    assert _flushed()  # the caller's setting, kept
    torch.set_flush_denormal(False)
