"""memlib.execute: tiny units on a local 2-worker Dask cluster equal a serial run; a failing unit is reported
while the others finish; saved units are resumed, not re-run; the worker plan (GPUs faked)."""

from __future__ import annotations

import json
import os
import re
import socket
import time

import pytest

from memlib.execute import GIB, SCHEDULER_ENV, Executor, Unit, plan_workers

TIMEOUT = 60  # seconds a run may take before its units still out are failed (no test hangs)


def seeded_sum(seed: int) -> float:
    """A unit that draws from torch's generator after seeding it, slowly enough that both workers take some."""
    import torch

    torch.manual_seed(seed)
    time.sleep(0.3)
    return torch.randn(1000, dtype=torch.float64).sum().item()


def broken(seed: int) -> float:
    raise ValueError(f"unit {seed} is broken")


def units(call=seeded_sum, n: int = 6) -> list[Unit]:
    return [Unit(f"sum-{i}", call, (i,), dict(seed=i)) for i in range(n)]


def pinned_device() -> str | None:
    time.sleep(0.3)
    return os.environ.get("CUDA_VISIBLE_DEVICES")


GPU_UNITS = [Unit(f"gpu-{i}", pinned_device, gpu=True) for i in range(4)]


@pytest.fixture(scope="module")
def started():
    """One local cluster for the module, shut down after it: planned for units that take a GPU, with two GPUs faked
    (there is no CUDA here), so two workers pinned to "0" and "1"; the other tests' units run on it too."""
    with Executor(None, gpus=["0", "1"], log=None, timeout=TIMEOUT) as ex:
        yield ex, ex.run(GPU_UNITS)


@pytest.fixture
def cluster(started):
    return started[0]


def test_two_workers_equal_a_serial_run(cluster):
    with Executor(None, workers=1, log=None) as serial:
        expected = serial.run(units())
    assert serial.address is None  # one worker: no cluster at all
    records = cluster.run(units())
    assert cluster.address is not None
    assert [r["value"] for r in records] == [r["value"] for r in expected]
    assert [r["key"] for r in records] == [f"sum-{i}" for i in range(6)]
    assert all(r["status"] == "done" and r["threads"] == 1 for r in records)
    assert len({r["worker"] for r in records}) == 2  # both workers took units


def test_an_exclusive_unit_runs_after_the_others_alone_with_every_core(cluster):
    alone = Unit("alone", seeded_sum, (9,), dict(seed=9), threads=None, exclusive=True)
    records = cluster.run([alone, *units(n=2)])
    assert [r["key"] for r in records] == ["alone", "sum-0", "sum-1"] and records[0]["value"] == seeded_sum(9)
    assert records[0]["worker"] == f"{socket.gethostname()}:{os.getpid()}"  # here, beside the local cluster's workers
    assert records[0]["threads"] == os.cpu_count() // 2 * 2  # both workers' cores


def test_a_failing_unit_is_reported_with_its_config_and_the_others_finish(cluster):
    lines: list[str] = []
    cluster.log = lines.append
    try:
        records = cluster.run([*units(n=3), Unit("bad", broken, (7,), dict(seed=7))])
    finally:
        cluster.log = lambda _: None
    assert [r["status"] for r in records] == ["done", "done", "done", "failed"]
    assert "ValueError: unit 7 is broken" in records[-1]["error"] and records[-1]["config"] == {"seed": 7}
    failed = next(line for line in lines if "FAILED bad" in line)
    assert '"seed": 7' in failed and "unit 7 is broken" in failed
    assert lines[-1].startswith("4 units: 3 done (0 resumed), 1 failed") and lines[-1].endswith("FAILED: bad")


def test_saved_units_are_resumed_not_run_again(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv(SCHEDULER_ENV, cluster.address)  # an existing cluster, named by the environment
    with Executor(tmp_path, log=None, timeout=TIMEOUT) as ex:
        assert ex.scheduler == cluster.address
        first = ex.run(units(n=4))
    saved = json.loads((tmp_path / "sum-2.json").read_text())
    assert saved["status"] == "done" and saved["value"] == first[2]["value"] and not list(tmp_path.glob("*.tmp"))
    # the same units again, each of which would now fail if it ran; one with a new config runs
    again = [*units(broken, n=4)[:3], Unit("sum-3", seeded_sum, (3,), dict(seed=3, changed=True))]
    with Executor(tmp_path, log=None, timeout=TIMEOUT) as ex:
        second = ex.run(again)
    assert [r["resumed"] for r in second] == [True, True, True, False]
    assert [r["value"] for r in second] == [r["value"] for r in first]
    with Executor(tmp_path, log=None, timeout=TIMEOUT, fresh=True) as ex:  # fresh: runs them all
        assert all(r["status"] == "failed" for r in ex.run(units(broken, n=2)))


def test_a_cluster_without_a_worker_that_fits_a_unit_says_so(cluster):
    with Executor(None, scheduler=cluster.address, log=None) as ex, pytest.raises(ValueError) as error:
        ex.run([Unit("huge", print, memory=1000 * GIB)])
    message = str(error.value)
    assert "expected a worker offering resources {'threads': 1, 'memory': 1073741824000} for unit huge" in message
    assert "got a worker offering {'threads': " in message


def test_units_that_take_a_gpu_run_on_one_worker_per_gpu_pinned_to_it(started):
    records = started[1]
    assert {r["value"] for r in records} == {"0", "1"} and all(r["gpu"] == r["value"] for r in records)


def test_the_plan_fits_the_machine_and_pins_one_worker_per_gpu():
    many = units(n=8)
    assert len(plan_workers(many, cpus=4, memory=64 * GIB)) == 4
    assert len(plan_workers(many, cpus=16, memory=3 * GIB)) == 3  # memory holds three units of 1 GiB
    assert len(plan_workers(units(n=2), cpus=16, memory=64 * GIB)) == 2  # no more workers than units
    gpu = [u._replace(gpu=True) for u in many]
    plan = plan_workers(gpu, cpus=8, memory=64 * GIB, gpus=["0", "1", "2"])
    assert [w.gpu for w in plan] == ["0", "1", "2"] and all(w.threads == 2 for w in plan)
    assert plan[0].resources() == {"threads": 2, "memory": 64 * GIB // 3, "GPU": 1}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(workers=5, cpus=4), "expected at most 4 workers"),
        (dict(units=[Unit("a", print, threads=8)], cpus=4), "expected units that fit this machine's 4 cores, got a "
                                                          "unit that needs 8 threads"),
        (dict(units=[Unit("a", print, gpu=True)], gpus=[]), "expected a visible CUDA device"),
        (dict(units=[]), "expected at least one unit, got none"),
    ],
)
def test_bad_plans_are_named(kwargs, message):
    kwargs = dict(units=units(n=8), memory=64 * GIB, cpus=4) | kwargs
    with pytest.raises(ValueError, match=message):
        plan_workers(kwargs.pop("units"), **kwargs)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([Unit("a b", print)], "expected a unit key of letters, digits and _.=+-, got 'a b'"),
        ([Unit("a", print), Unit("a", print)], "expected unique unit keys, got 'a' twice"),
        ([Unit("a", print, threads=0)], "threads of a"),
    ],
)
def test_bad_units_are_named(bad, message):
    with Executor(None, workers=1, log=None) as ex, pytest.raises(ValueError, match=re.escape(message)):
        ex.run(bad)


def test_workers_and_a_scheduler_exclude_each_other():
    with pytest.raises(ValueError, match="expected either workers .* or a scheduler address"):
        Executor(None, workers=2, scheduler="tcp://127.0.0.1:8786")


# Measurements: times, and peak memory (torch's CPU allocator events: a few percent apart between two measurements
# of one step in one process).
MEASURED = {"seconds", "step_ms", "seq_per_s", "step_ms_repeats", "latency_ms", "latency_ms_repeats",
            "time_exponent", "peak_mib", "exponent"}


def untimed(data: object) -> object:
    """``data`` without its measurements (they differ between any two runs)."""
    if isinstance(data, dict):
        return {k: untimed(v) for k, v in data.items() if k not in MEASURED}
    return [untimed(v) for v in data] if isinstance(data, list) else data


def test_compare_units_learn_on_one_thread_wherever_they_run():
    # a serial run gave its units all (2) cores and 2 workers gave them 1 each: the ladders differed (float sums)
    from memlib.bench.__main__ import compare_units

    units = {u.key: u for u in compare_units("smoke", models=("rnn",), device="cpu")}
    assert {k: u.threads for k, u in units.items()} == {"long_term-rnn": 1, "memory-rnn": 1, "speed": None}
    assert units["speed"].exclusive  # timing alone, on all the cores
    assert {u.threads for u in compare_units("smoke", models=("rnn",), device="cpu", threads=2)} == {2}


@pytest.mark.filterwarnings("ignore:The value of the smallest subnormal")
def test_compare_in_units_merges_to_the_serial_result():
    from memlib.bench import compare
    from memlib.bench.__main__ import compare_units, merge_compare

    tiny = compare.Size(steps=5, adding_lengths=(4, 6), copy_lengths=(1,), lengths=(8, 16), memory_lengths=(8, 16),
                        interpret_length=4, rung_seconds=5.0, cell_seconds=5.0, repeats=2)
    models = ("rnn", "transformer")
    serial = json.loads(json.dumps(compare.measure(tiny, models=models, device="cpu")))
    parts = compare_units(tiny, models=models, device="cpu", threads=1)
    assert [u.key for u in parts] == ["long_term-transformer", "long_term-rnn", "memory-transformer", "memory-rnn",
                                      "speed"]
    with Executor(None, workers=1, log=None) as ex:
        records = ex.run(parts)
    merged = merge_compare([r["value"] for r in records], 1.0)
    assert untimed(merged) == untimed(serial)
    for m in models:
        peaks = [r["peak_mib"] for r in merged["memory"]["rows"][m]]
        assert peaks == pytest.approx([r["peak_mib"] for r in serial["memory"]["rows"][m]], rel=0.1)
    assert compare.tables(merged)  # the table prints from the merged result


@pytest.mark.filterwarnings("ignore:The value of the smallest subnormal")
def test_compare_ladders_cut_by_their_budget_are_equal_serial_and_on_two_workers(cluster):
    # Before the budget was modelled, a rung stopped after a time limit: on two busy workers it got fewer steps
    # than alone (NTM at T = 25: 306 against 525) and 5 of 38 rungs of the quick size differed.
    from memlib.bench import compare
    from memlib.bench.__main__ import compare_units, merge_compare
    from memlib.execute import unit_threads

    # budgets of 7 to 31 steps (of 40): most rungs capped, one check at the budget's end, not at EVAL_EVERY
    tiny = compare.Size(steps=40, adding_lengths=(4, 6), copy_lengths=(1, 2), lengths=(8, 16), memory_lengths=(8, 16),
                        interpret_length=6, rung_seconds=0.05, cell_seconds=5.0, repeats=2)
    models, sections = ("rnn", "transformer"), ("long_term", "interpretability")
    with unit_threads(1):
        serial = json.loads(json.dumps(compare.measure(tiny, models=models, sections=sections, device="cpu")))
    records = cluster.run(compare_units(tiny, models=models, sections=sections, device="cpu"))
    assert all(r["status"] == "done" for r in records) and len({r["worker"] for r in records}) == 2
    merged = merge_compare([r["value"] for r in records], 1.0)
    statuses = {r["status"] for task in ("adding", "copy") for rows in merged["long_term"][task]["rows"].values()
                for r in rows}
    assert "capped" in statuses and untimed(merged) == untimed(serial)
