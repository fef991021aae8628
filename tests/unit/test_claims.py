"""memlib.claims: criteria fixed beforehand, verdicts computed from intervals, records, A/A timing and the ledger."""

import json

import pytest

from memlib import claims
from memlib.claims import Claim, Estimate, at_least, at_most, check, exact, not_tested, over_seeds


def _claim(**kw):
    base = dict(id="t", quote="A sentence.", section="2", measure="m", criterion=at_least(0.9, partly=0.5))
    return Claim(**{**base, **kw})


@pytest.mark.parametrize(
    "estimate, verdict",
    [
        (exact(0.95), "holds"),
        (exact(0.7), "partly"),
        (exact(0.1), "fails"),
        (over_seeds([0.92, 0.95, 0.99]), "holds"),
        (over_seeds([0.6, 0.95, 0.99]), "partly"),  # one end holds, the other in part
        (over_seeds([0.3, 0.95]), "inconclusive"),  # the spread reaches from a miss to a pass
        (over_seeds([0.1, 0.6]), "inconclusive"),
    ],
)
def test_the_verdict_comes_from_both_ends_of_the_interval(estimate, verdict):
    assert check(_claim(), estimate, "f", show=False).verdict == verdict


def test_at_most_reads_the_other_way():
    claim = _claim(criterion=at_most(1.0))
    assert check(claim, exact(0.8), "f", show=False).verdict == "holds"
    assert check(claim, exact(1.2), "f", show=False).verdict == "fails"
    assert check(claim, Estimate(1.05, 0.9, 1.2, "A/A band x1.15"), "f", show=False).verdict == "inconclusive"


def test_a_baseline_that_did_not_learn_makes_the_test_inconclusive():
    result = check(_claim(), exact(0.99), "f", requires={"the LSTM baseline learned": False}, show=False)
    assert result.verdict == "inconclusive"
    assert "the LSTM baseline learned" in result.record["reason"]
    assert check(_claim(), exact(0.99), "f", requires={"ok": True}, show=False).verdict == "holds"


def test_parts_combine_into_one_verdict():
    claim = _claim(criterion=None, parts={"memory": at_most(1.0), "speed": at_least(2.0)})
    both = check(claim, {"memory": exact(0.5), "speed": exact(3.0)}, "f", show=False)
    assert both.verdict == "holds"
    one = check(claim, {"memory": exact(0.5), "speed": exact(1.0)}, "f", show=False)
    assert one.verdict == "partly"
    assert one.record["parts"]["speed"]["verdict"] == "fails"
    neither = check(claim, {"memory": exact(2.0), "speed": exact(1.0)}, "f", show=False)
    assert neither.verdict == "fails"
    with pytest.raises(TypeError, match=r"expected an Estimate for each of \['memory', 'speed'\], got \['memory'\]"):
        check(claim, {"memory": exact(0.5)}, "f", show=False)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="expected partly as a weaker level than holds = 0.9, got 0.95"):
        at_least(0.9, partly=0.95)
    with pytest.raises(TypeError, match="expected either a criterion or parts"):
        Claim("t", "q", "2", "m")
    with pytest.raises(TypeError, match="expected quote as a non-empty string"):
        Claim("t", "", "2", "m", at_least(1))
    with pytest.raises(ValueError, match="expected each value as a finite number, got nan"):
        over_seeds([0.5, float("nan")])
    with pytest.raises(ValueError, match="expected a reason as a non-empty string"):
        not_tested(_claim(), "", show=False)


def test_the_record_is_json_and_the_box_says_what_decided():
    result = check(_claim(), over_seeds([0.91, 0.93, 0.97]), "Three seeds.", conditions={"device": "cpu"},
                   show=False)
    record = json.loads(json.dumps(result.record))
    assert record["id"] == "t" and record["verdict"] == "holds" and record["conditions"]["device"] == "cpu"
    html = claims.box_html(_claim(), record)
    assert 'data-verdict="holds"' in html and "Holds." in html
    assert "holds if m &gt;= 0.9, in part if &gt;= 0.5; measured 0.93 [0.91, 0.97] (3 seeds: min..max)" in html


def test_the_box_escapes_the_quote_and_keeps_the_findings_html():
    claim = Claim("t", '<script>alert("x")</script> & more', "2", "m", at_least(0.9))
    record = check(claim, exact(0.95), "Measured <b>0.95</b>.", show=False).record
    html = claims.box_html(claim, record)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in html
    assert "Measured <b>0.95</b>." in html  # a finding may hold simple HTML


def test_not_tested_has_its_reason_in_the_box():
    result = not_tested(_claim(), "no data ships offline", show=False)
    assert result.verdict == "not tested"
    assert "no data ships offline" in claims.box_html(_claim(), result.record)


def test_a_time_ratio_of_the_same_call_is_within_its_own_noise():
    def work():
        return sum(range(3000))

    estimate, seconds = claims.time_ratio(work, work, repeats=5)
    assert estimate.low <= 1.0 <= estimate.high or claims.within_noise(estimate.value, estimate.high / estimate.value)
    assert len(seconds["A/A"]) == 5
    slow, _ = claims.time_ratio(lambda: sum(range(300_000)), work, repeats=5)
    assert slow.value > 10  # a hundred times the work is not within noise


def test_the_ledger_collects_records_from_output_metadata(tmp_path):
    record = check(_claim(), exact(0.95), "f", show=False).record
    nb = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "display_data", "data": {"text/html": "x"}, "metadata": {claims.METADATA_KEY: record}},
        {"output_type": "stream", "text": "y"}]}]}
    (tmp_path / "ch99_page.ipynb").write_text(json.dumps(nb))
    records = claims.collect([tmp_path / "ch99_page.ipynb"])
    assert [(r["id"], r["page"], r["verdict"]) for r in records] == [("t", "ch99_page", "holds")]
    html = claims.ledger_html(records)
    assert "1 claims:</b> holds 1, holds in part 0" in html and 'href="ch99_page.html"' in html
