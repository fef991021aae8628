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
    rung_seconds=5.0,
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
    for key in ("steps", "rung_seconds", "batch", "seed", "threads", "lr", "adding_solved", "copy_solved"):
        assert key in data["settings"]
    assert data["settings"]["step_cost"] == {m: cost._asdict() for m, cost in compare.STEP_COST.items()}
    for task in ("adding", "copy"):
        section = data["long_term"][task]
        assert set(section["rows"]) == set(section["largest_lag"]) == set(section["lower_bound"]) == set(data["models"])
        for m, rows in section["rows"].items():
            for r in rows:
                assert r["status"] in ("solved", "failed", "capped") and r["solved"] == (r["status"] == "solved")
                assert r["lag"] == compare.TASKS[task].lag(r["length"])
                assert r["budget"] == compare.step_budget(TINY, m, r["T"]) and r["steps"] <= r["budget"] <= TINY.steps
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


def test_the_step_budget_is_the_modelled_cost_of_a_rung_floored_at_most_the_size_steps():
    quick, full = compare.SIZES["quick"], compare.SIZES["full"]
    # NTM at T = 25: 2.09 + 4.22 * 25 = 107.59 ms a step; 40 s / 0.10759 s = 371.8 steps
    assert compare.STEP_COST["ntm"].seconds(25) == pytest.approx(0.10759)
    assert compare.step_budget(quick, "ntm", 25) == 371
    # Transformer at T = 200: 4.94 + 0.107 * 200 + 0.00218 * 200^2 = 113.54 ms; 40 / 0.11354 = 352.3
    assert compare.step_budget(quick, "transformer", 200) == 352
    assert compare.step_budget(full, "transformer", 200) == 2000  # 300 / 0.11354 = 2642: all of the size's steps
    assert compare.step_budget(quick, "rnn", 10) == quick.steps
    assert compare.step_budget(quick._replace(rung_seconds=1e-9), "ntm", 200) == 1  # at least one step
    with pytest.raises(ValueError, match=r"step_budget: expected a model in .*, got 'cnn'"):
        compare.step_budget(quick, "cnn", 25)
    with pytest.raises(ValueError, match="step_budget: expected T as a positive integer, got 0"):
        compare.step_budget(quick, "rnn", 0)


def _clock(seconds: float):
    """``time_call`` on a machine where every training step takes ``seconds`` (the step still runs)."""
    return lambda fn, device: (fn(), seconds)[1]


@pytest.mark.parametrize("seconds_per_step", [1e-6, 1e3])  # a fast machine and a very slow (or loaded) one
def test_a_rung_stops_exactly_at_its_step_budget_whatever_the_machine_speed(monkeypatch, seconds_per_step):
    monkeypatch.setattr(compare, "time_call", _clock(seconds_per_step))
    monkeypatch.setattr(compare, "metric", lambda task, model, batch: 1.0)  # never solved
    size = TINY._replace(steps=10_000, rung_seconds=7.5 * compare.STEP_COST["rnn"].seconds(4))
    run = compare._Run(size, torch.device("cpu"), 0, compare._quiet, [])
    record, _ = compare._rung(run, "rnn", "adding", 4)
    assert record["budget"] == record["steps"] == 7 and record["status"] == "capped" and not record["solved"]
    assert record["seconds"] == pytest.approx(7 * seconds_per_step)  # recorded, not read
    assert [s["reason"] for s in run.skipped] == [
        f"step budget spent: 7 of 10000 steps ({size.rung_seconds:g} s at a modelled 1.6 ms per step), "
        "test metric 1.0000"
    ]


def test_a_rung_that_spends_all_the_size_steps_has_failed_not_capped(monkeypatch):
    monkeypatch.setattr(compare, "metric", lambda task, model, batch: 1.0)
    run = compare._Run(TINY._replace(steps=3), torch.device("cpu"), 0, compare._quiet, [])
    record, _ = compare._rung(run, "rnn", "adding", 4)
    assert record["status"] == "failed" and record["budget"] == record["steps"] == 3 and not run.skipped


def test_a_rung_solved_at_the_last_step_of_its_budget_counts_as_solved(monkeypatch):
    monkeypatch.setattr(compare, "metric", lambda task, model, batch: 0.0)
    size = TINY._replace(steps=10_000, rung_seconds=7.5 * compare.STEP_COST["rnn"].seconds(4))  # 7 < EVAL_EVERY
    run = compare._Run(size, torch.device("cpu"), 0, compare._quiet, [])
    record, _ = compare._rung(run, "rnn", "adding", 4)
    assert record["status"] == "solved" and record["steps"] == 7 and not run.skipped


def test_speed_and_memory_cells_past_the_modelled_cost_are_skipped_without_a_clock(monkeypatch):
    monkeypatch.setattr(compare, "time_call", _clock(1e3))  # however slow the machine, the same rows
    cost = compare.STEP_COST["rnn"]
    size = TINY._replace(cell_seconds=(cost.seconds(8) + cost.seconds(16)) / 2)  # a step at T = 8 fits, T = 16 not
    data = compare.measure(size, models=["rnn"], sections=["speed", "memory"], repeats=1)
    assert [r["T"] for r in data["memory"]["rows"]["rnn"]] == [8] and data["speed"]["rows"]["rnn"] == []
    assert data["skipped"] == [  # speed: the warm-up and the timed step, 2 x 2.0 ms, pass already at T = 8
        dict(section="speed", model="rnn", at=f"T={T}", reason=f"2 steps modelled at {2 * cost.seconds(T):.3g} s > "
             f"{size.cell_seconds:g} s") for T in (8, 16)
    ] + [
        dict(section="memory", model="rnn", at="T=16", reason=f"a step modelled at 0.0028 s > {size.cell_seconds:g} s")
    ]


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


def test_the_named_sizes_are_valid():
    assert all(compare.check_size(size) is size for size in compare.SIZES.values())


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("lengths", (-5, 16), "Size.lengths as a non-empty increasing tuple of ints >= 2"),
        ("adding_lengths", (), "Size.adding_lengths as a non-empty increasing tuple of ints >= 2"),
        ("copy_lengths", (8, 4), "Size.copy_lengths as a non-empty increasing tuple of ints >= 1"),
        ("memory_lengths", (8, 16.0), "Size.memory_lengths as a non-empty increasing tuple of ints >= 2"),
        ("steps", 0, "Size.steps as an int >= 1"),
        ("repeats", 2.0, "Size.repeats as an int >= 1"),
        ("interpret_length", 1, "Size.interpret_length as an int >= 2"),
        ("rung_seconds", 0, "Size.rung_seconds as a finite number of modelled seconds > 0"),
        ("rung_seconds", float("inf"), "Size.rung_seconds as a finite number of modelled seconds > 0"),
        ("rung_seconds", "40", "Size.rung_seconds as a finite number of modelled seconds > 0"),
        ("rung_seconds", True, "Size.rung_seconds as a finite number of modelled seconds > 0"),
        ("cell_seconds", -1.0, "Size.cell_seconds as a finite number of seconds >= 0"),
        ("cell_seconds", float("nan"), "Size.cell_seconds as a finite number of seconds >= 0"),
    ],
)
def test_bad_size_fields_are_named(field, value, expected):
    with pytest.raises(ValueError) as error:
        compare.measure(TINY._replace(**{field: value}))
    assert str(error.value) == f"compare: expected {expected}, got {value!r}"


def test_a_size_must_be_a_size():
    with pytest.raises(TypeError, match="compare: expected a Size with the fields steps, adding_lengths, .* got tuple"):
        compare.check_size(tuple(TINY))


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
