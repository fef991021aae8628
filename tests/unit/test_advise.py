"""memlib.advise: the advisor's choices follow the table it is given (made-up tables), with the evidence."""

from __future__ import annotations

import copy
import json
import math
import pathlib

import pytest

from memlib.advise import (
    Advice,
    Candidate,
    Series,
    TableNotFoundError,
    advise,
    fitted_exponent,
    load_table,
    predict,
)


def model(label, lags, step, peak, latency, interpretability=None):
    return {"label": label, "params": 1000, "largest_lag": lags, "step_ms": step, "peak_mib": peak,
            "latency_ms": latency, "interpretability": interpretability}


def linear(c, ts=(50, 200, 1000)):
    """Points of ``c * T`` (a recurrent model's memory and time)."""
    return [[t, c * t] for t in ts]


def quadratic(c, ts=(50, 200, 1000)):
    """Points of ``c * T**2`` (attention's T x T weights)."""
    return [[t, c * t * t] for t in ts]


def made_up() -> dict:
    """The RNN is fastest and cheapest but solves lags up to 10 only; the LSTM solves 100, the Transformer 1000 but
    its memory grows as T**2; the GRU is never measured (a skipped model)."""
    return {
        "suite": "compare",
        "machine": {"cpu": "made up"},
        "summary": {
            "batch": 32,
            "models": {
                "rnn": model("RNN", {"adding": 10, "copy": 4}, linear(0.01), linear(0.01), linear(0.001)),
                "lstm": model("LSTM", {"adding": 100, "copy": 21}, linear(0.04), linear(0.04), linear(0.004), 0.9),
                "transformer": model("Transformer", {"adding": 1000, "copy": 1000}, linear(0.02),
                                     quadratic(0.001), linear(0.002)),
                "gru": model("GRU", {}, [], [], []),
            },
        },
    }


@pytest.fixture
def table() -> dict:
    return made_up()


# The choice follows the table --------------------------------------------------------------------------------


def test_fastest_model_is_chosen_only_up_to_the_lag_it_solved(table):
    for dependency_range in (0, 4, 10):
        assert advise(200, dependency_range, math.inf, math.inf, table=table).choice == "rnn"
    # the RNN's lags (10, 4) fall short: next fastest, the Transformer (0.02 T ms per step)
    advice = advise(200, 11, math.inf, math.inf, table=table)
    assert advice.choice == "transformer"
    rnn = advice.candidate("rnn")
    assert not rnn.feasible and rnn.reasons == ("solved lags up to 10 (adding), 4 (copy) < 11",)


def test_swapping_the_cheapest_swaps_the_choice(table):
    assert advise(200, 50, math.inf, math.inf, table=table).choice == "transformer"
    models = table["summary"]["models"]
    models["lstm"]["step_ms"], models["transformer"]["step_ms"] = (models["transformer"]["step_ms"],
                                                                   models["lstm"]["step_ms"])
    assert advise(200, 50, math.inf, math.inf, table=table).choice == "lstm"


def test_ranking_is_by_training_time_then_memory(table):
    advice = advise(200, 0, math.inf, math.inf, table=table)
    assert [c.key for c in advice.candidates] == ["rnn", "transformer", "lstm", "gru"]
    assert [c.feasible for c in advice.candidates] == [True, True, True, False]
    # a tie on training time (the same points for both): the lower peak memory wins. The LSTM needs 0.04 T MiB,
    # the Transformer 0.001 T**2: the LSTM above T=40, the Transformer below
    models = table["summary"]["models"]
    models["lstm"]["step_ms"] = models["transformer"]["step_ms"] = linear(0.005)
    assert advise(200, 0, math.inf, math.inf, table=table).choice == "lstm"  # 8 MiB against 40 MiB
    at20 = advise(20, 0, math.inf, math.inf, table=table)  # extrapolated: 0.8 MiB against 0.4 MiB
    assert at20.choice == "transformer" and [c.key for c in at20.candidates[:3]] == ["transformer", "lstm", "rnn"]
    assert at20.candidates[0].predicted["step_ms"] == at20.candidates[1].predicted["step_ms"]


def test_a_tight_budget_excludes_the_quadratic_model_at_long_T_only(table):
    table["summary"]["models"]["rnn"]["largest_lag"] = {"adding": 0}  # out of the way
    budget = 100.0  # MiB: the Transformer needs 0.001 T**2 (2.5 at T=50, 1000 at T=1000), the LSTM 0.04 T
    short = advise(50, 20, budget, math.inf, table=table)
    assert short.choice == "transformer" and short.candidate("transformer").feasible
    long = advise(1000, 20, budget, math.inf, table=table)
    assert long.choice == "lstm"
    t = long.candidate("transformer")
    assert not t.feasible and t.predicted["peak_mib"] == pytest.approx(1000.0)
    assert t.reasons == ("needs 1000 MiB at T=1000 (measured) > budget 100 MiB",)


def test_a_latency_limit_excludes_the_slow_model(table):
    # latency per sequence at T=1000: RNN 1 ms, Transformer 2 ms, LSTM 4 ms
    advice = advise(1000, 50, math.inf, 3.0, table=table)
    assert advice.choice == "transformer"
    lstm = advice.candidate("lstm")
    assert not lstm.feasible and lstm.reasons == ("takes 4 ms per sequence at T=1000 (measured) > limit 3 ms",)
    assert advise(1000, 50, math.inf, 1.5, table=table).choice is None


def test_nothing_feasible_gives_none_with_a_reason_for_each(table):
    advice = advise(1000, 500, 10.0, 0.5, table=table)
    assert advice.choice is None and not any(c.feasible for c in advice.candidates)
    reasons = {c.key: c.reasons for c in advice.candidates}
    assert reasons["rnn"] == ("solved lags up to 10 (adding), 4 (copy) < 500",
                              "takes 1 ms per sequence at T=1000 (measured) > limit 0.5 ms")
    assert reasons["lstm"][1] == "needs 40 MiB at T=1000 (measured) > budget 10 MiB"
    assert reasons["transformer"] == ("needs 1000 MiB at T=1000 (measured) > budget 10 MiB",
                                      "takes 2 ms per sequence at T=1000 (measured) > limit 0.5 ms")
    assert reasons["gru"] == ("largest lag not measured", "training step time not measured",
                              "peak memory not measured", "latency not measured")
    text = str(advice)
    assert "No model meets every constraint (4 rejected)" in text
    for key in reasons:
        for reason in reasons[key]:
            assert reason in text


def test_the_explanation_shows_the_evidence_for_the_choice(table):
    advice = advise(2000, 50, 500.0, 10.0, table=table)
    assert advice.choice == "lstm"
    text = advice.explain()
    assert text == str(advice)
    assert "Choice: LSTM (lstm), the fastest to train of 1 feasible: 80 ms per training step (extrapolated)" in text
    assert "a memory budget of 500 MiB per training step of 32 sequences" in text
    assert "needs 80 MiB at T=2000 (extrapolated, exponent 1.00) <= budget 500 MiB" in text
    assert "interpretability 0.90" in text
    assert "Transformer: needs 4000 MiB at T=2000 (extrapolated, exponent 2.00) > budget 500 MiB" in text


def test_unmeasured_numbers_make_a_model_infeasible(table):
    table["summary"]["models"]["rnn"]["peak_mib"] = []
    advice = advise(200, 0, math.inf, math.inf, table=table)  # no budget: still, an unknown is not a yes
    assert advice.choice == "transformer"
    assert advice.candidate("rnn").reasons == ("peak memory not measured",)
    assert advice.candidate("rnn").predicted["peak_mib"] is None


def test_candidate_fields(table):
    advice = advise(500, 10, 1e6, 1e6, table=table)
    assert isinstance(advice, Advice) and isinstance(advice.candidates[0], Candidate)
    lstm = advice.candidate("lstm")
    assert lstm.label == "LSTM" and lstm.largest_lag == {"adding": 100, "copy": 21}
    assert lstm.interpretability == 0.9 and advice.candidate("rnn").interpretability is None
    assert lstm.predicted == pytest.approx({"step_ms": 20.0, "peak_mib": 20.0, "latency_ms": 2.0})
    assert lstm.extrapolated == {"step_ms": False, "peak_mib": False, "latency_ms": False}
    assert [(c.constraint, c.ok) for c in lstm.checks] == [("dependency", True), ("step_ms", True),
                                                            ("peak_mib", True), ("latency_ms", True)]
    assert lstm.reasons == tuple(c.text for c in lstm.checks)  # feasible: the evidence of every check
    assert lstm.reasons[1] == "a training step takes 20 ms at T=500 (interpolated)"
    rnn = advice.candidate("rnn")  # lags up to 10 >= 10: feasible too
    gru = advice.candidate("gru")
    assert [c.ok for c in gru.checks] == [False] * 4 and gru.reasons == tuple(c.text for c in gru.checks)
    assert rnn.feasible and advice.choice == "rnn"
    assert (advice.seq_len, advice.dependency_range, advice.memory_budget, advice.latency, advice.batch) == (
        500, 10, 1e6, 1e6, 32)
    with pytest.raises(KeyError, match=r"expected a model key among"):
        advice.candidate("mamba")


# Prediction: interpolation and extrapolation ---------------------------------------------------------------------


def test_interpolation_hits_the_measured_points_and_lies_between_neighbours():
    points = [[10, 1.0], [40, 9.0], [100, 20.0]]
    for t, v in points:
        p = predict(points, t)
        assert p.value == v and p.how == "measured" and not p.extrapolated
    # the geometric mean of the neighbours at the geometric mean of their lengths: sqrt(1 * 9) at T = sqrt(10 * 40)
    assert predict(points, 20).value == pytest.approx(3.0)
    for t in range(11, 100):
        if t == 40:
            continue
        p = predict(points, t)
        lo, hi = (1.0, 9.0) if t < 40 else (9.0, 20.0)
        assert lo < p.value < hi and p.how == "interpolated", t


def test_extrapolation_uses_the_least_squares_exponent():
    # log T equally spaced (ratio 2): the least-squares slope is (log 5 - log 1) / (log 40 - log 10) = log 5 / log 4,
    # and 2 ** (log 5 / log 4) = sqrt(5)
    points = [[10, 1.0], [20, 3.0], [40, 5.0]]
    assert fitted_exponent(Series((10, 20, 40), (1.0, 3.0, 5.0))) == pytest.approx(math.log(5) / math.log(4))
    above = predict(points, 80)
    assert above.value == pytest.approx(5 * math.sqrt(5)) and above.extrapolated
    assert above.exponent == pytest.approx(1.16096, abs=1e-5)
    below = predict(points, 5)
    assert below.value == pytest.approx(1 / math.sqrt(5)) and below.how == "extrapolated"
    # not the line through the last two points (exponent log(5/3) / log 2): that would give 5 * 5/3
    assert above.value != pytest.approx(5 * 5 / 3)


def test_one_point_cannot_be_extrapolated(table):
    assert predict([[50, 2.0]], 50).value == 2.0
    p = predict([[50, 2.0]], 60)
    assert p.value is None and p.how == "not measured"
    assert p.note == "not measured at T=60 (one point, T=50: cannot extrapolate)"
    assert predict([], 60).value is None
    table["summary"]["models"]["rnn"]["latency_ms"] = [[200, 0.2]]
    assert advise(200, 0, math.inf, math.inf, table=table).choice == "rnn"
    advice = advise(300, 0, math.inf, math.inf, table=table)
    assert advice.candidate("rnn").reasons == ("latency not measured at T=300 (one point, T=200: cannot "
                                               "extrapolate)",)


def test_metrics_may_have_different_lengths(table):
    table["summary"]["models"]["lstm"]["peak_mib"] = [[20, 1.0], [500, 25.0]]
    lstm = advise(1000, 50, 49.0, math.inf, table=table).candidate("lstm")
    assert lstm.extrapolated == {"step_ms": False, "peak_mib": True, "latency_ms": False}
    assert lstm.reasons == ("needs 50 MiB at T=1000 (extrapolated, exponent 1.00) > budget 49 MiB",)


# The table from a path ---------------------------------------------------------------------------------------------


def test_reading_from_a_json_path(table, tmp_path):
    path = tmp_path / "compare.json"
    path.write_text(json.dumps(table))
    expected = advise(700, 30, 50.0, 5.0, table=table)
    assert advise(700, 30, 50.0, 5.0, table=path) == expected
    assert advise(700, 30, 50.0, 5.0, table=str(path)) == expected
    assert advise(700, 30, 50.0, 5.0, table=load_table(path)) == expected


def test_the_table_is_not_modified(table):
    before = copy.deepcopy(table)
    advise(300, 10, 100.0, 1.0, table=table)
    assert table == before


# Errors --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,error,match",
    [
        ((200.0, 10, 1.0, 1.0), TypeError, r"expected seq_len as an int >= 1, got 200.0 \(float\)"),
        ((True, 0, 1.0, 1.0), TypeError, r"expected seq_len as an int >= 1, got True \(bool\)"),
        (("200", 0, 1.0, 1.0), TypeError, r"expected seq_len as an int >= 1, got '200' \(str\)"),
        ((0, 0, 1.0, 1.0), ValueError, r"expected seq_len as an int >= 1, got 0"),
        ((-5, 0, 1.0, 1.0), ValueError, r"expected seq_len as an int >= 1, got -5"),
        ((200, -1, 1.0, 1.0), ValueError, r"expected dependency_range as an int >= 0, got -1"),
        ((200, 1.5, 1.0, 1.0), TypeError, r"expected dependency_range as an int >= 0, got 1.5"),
        ((200, False, 1.0, 1.0), TypeError, r"expected dependency_range as an int >= 0, got False"),
        ((200, 201, 1.0, 1.0), ValueError, r"expected dependency_range <= seq_len \(200\).*got 201"),
        ((200, 0, 0.0, 1.0), ValueError, r"expected memory_budget as a number of MiB > 0 .*got 0.0"),
        ((200, 0, -3, 1.0), ValueError, r"expected memory_budget as a number of MiB > 0 .*got -3.0"),
        ((200, 0, math.nan, 1.0), ValueError, r"expected memory_budget as a number of MiB > 0 .*got nan"),
        ((200, 0, -math.inf, 1.0), ValueError, r"expected memory_budget .*got -inf"),
        ((200, 0, "1 GiB", 1.0), TypeError, r"expected memory_budget as a number of MiB > 0 .*got '1 GiB' \(str\)"),
        ((200, 0, True, 1.0), TypeError, r"expected memory_budget .*got True \(bool\)"),
        ((200, 0, 1.0, 0), ValueError, r"expected latency as a number of ms > 0 .*got 0.0"),
        ((200, 0, 1.0, math.nan), ValueError, r"expected latency as a number of ms > 0 .*got nan"),
        ((200, 0, 1.0, None), TypeError, r"expected latency as a number of ms > 0 .*got None \(NoneType\)"),
    ],
)
def test_bad_questions_say_what_was_expected(table, args, error, match):
    with pytest.raises(error, match=match):
        advise(*args, table=table)


def test_no_limit_is_allowed(table):
    assert advise(200, 0, math.inf, math.inf, table=table).choice == "rnn"


def test_table_of_the_wrong_type():
    with pytest.raises(TypeError, match=r"expected table as the benchmark's data .* or a path to its JSON, got list"):
        advise(200, 0, 1.0, 1.0, table=[1, 2])
    with pytest.raises(TypeError, match=r"got NoneType"):
        advise(200, 0, 1.0, 1.0, table=None)


def test_a_missing_file_says_how_to_make_it(tmp_path):
    path = tmp_path / "nowhere" / "compare.json"
    for given in (path, str(path)):
        with pytest.raises(TableNotFoundError) as info:
            advise(200, 0, 1.0, 1.0, table=given)
        assert str(path) in str(info.value)
        assert f"python -m memlib.bench compare --quick --json {path}" in str(info.value)
        assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)


def test_a_file_that_is_not_json(tmp_path):
    path = tmp_path / "compare.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"expected JSON in .*compare.json.*parse error"):
        advise(200, 0, 1.0, 1.0, table=path)


def _set(table: dict, path: str, value) -> dict:
    keys = path.split(".")
    target = table
    for k in keys[:-1]:
        target = target[k]
    if value is _DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return table


_DELETE = object()


@pytest.mark.parametrize(
    "path,value,match",
    [
        ("summary", _DELETE, r"expected key summary, missing"),
        ("summary.models", _DELETE, r"expected key summary.models, missing"),
        ("summary.batch", _DELETE, r"expected key summary.batch, missing"),
        ("summary.models.lstm.peak_mib", _DELETE, r"expected key summary.models.lstm.peak_mib, missing"),
        ("summary.models.rnn.largest_lag", _DELETE, r"expected key summary.models.rnn.largest_lag, missing"),
        ("summary.models.rnn.label", _DELETE, r"expected key summary.models.rnn.label, missing"),
        ("summary.batch", 0, r"expected summary.batch as an int >= 1, got 0"),
        ("summary.models", {}, r"expected summary.models as a non-empty object"),
        ("summary.models.rnn", [1], r"expected summary.models.rnn as an object \(dict\), got list"),
        ("summary.models.rnn.largest_lag", {"adding": -1}, r"summary.models.rnn.largest_lag.adding as an int >= 0"),
        ("summary.models.rnn.largest_lag", [10], r"summary.models.rnn.largest_lag as an object task -> lag"),
        ("summary.models.lstm.step_ms", [[50, 0.0]], r"summary.models.lstm.step_ms\[0\] to hold a measured value > 0"),
        ("summary.models.lstm.step_ms", [[50, -2.0]], r"step_ms\[0\] to hold a measured value > 0 and finite, got -2"),
        ("summary.models.lstm.peak_mib", [[50, 1.0], [60, math.inf]], r"peak_mib\[1\] .*finite, got inf"),
        ("summary.models.lstm.peak_mib", [[50, math.nan]], r"peak_mib\[0\] .*finite, got nan"),
        ("summary.models.lstm.latency_ms", [[200, 1.0], [50, 0.5]],
         r"latency_ms sorted by increasing T without repeats, got unsorted T=50 after T=200 at index 1"),
        ("summary.models.lstm.latency_ms", [[200, 1.0], [200, 0.5]], r"got duplicate T=200 after T=200"),
        ("summary.models.lstm.latency_ms", [[0, 1.0]], r"latency_ms\[0\] to start with a length T as an int >= 1"),
        ("summary.models.lstm.latency_ms", [[50.5, 1.0]], r"latency_ms\[0\] to start with a length T as an int"),
        ("summary.models.lstm.latency_ms", [[50, 1.0, 2.0]], r"latency_ms\[0\] as a \[T, value\] pair"),
        ("summary.models.lstm.latency_ms", {"50": 1.0}, r"latency_ms as a list of \[T, value\] pairs, got dict"),
        ("summary.models.lstm.interpretability", 1.5, r"interpretability as a number in \[0, 1\] or null, got 1.5"),
    ],
)
def test_bad_tables_name_the_key(table, path, value, match):
    with pytest.raises(ValueError, match=match):
        advise(200, 0, 1.0, 1.0, table=_set(table, path, value))


def test_bad_tables_from_a_file_too(table, tmp_path):
    path = pathlib.Path(tmp_path) / "bad.json"
    path.write_text(json.dumps(_set(table, "summary.models.gru.step_ms", [[100, 2.0], [50, 1.0]])))
    with pytest.raises(ValueError, match=r"summary.models.gru.step_ms sorted by increasing T"):
        advise(200, 0, 1.0, 1.0, table=path)


def test_predict_checks_its_points():
    with pytest.raises(ValueError, match=r"points sorted by increasing T"):
        predict([[20, 1.0], [10, 2.0]], 15)
    with pytest.raises(ValueError, match=r"expected seq_len as an int >= 1, got 0"):
        predict([[20, 1.0]], 0)
