"""The pages' quick-mode assertions hold with room to spare: each comparison was measured over seeds 0-4 and a
restricted instruction set (tests/chapters/margins.py, results in margins.json and MARGINS.md)."""

from __future__ import annotations

import json

import pytest

from tests.chapters.margins import SUMMARY, comparisons_in
from tests.chapters.pages import notebook_pages

RUNS_PER_SITE = 6  # seeds 0-4 and seed 0 with the instruction set held back
# A comparison holds with room to spare when its worst margin is at least 5% of the threshold (of 1, for a
# threshold of 0), or, for quantities that sit near their threshold by nature (a ratio close to 1), when the worst
# margin is positive and at least three times the range the measured values spanned over the runs.
MIN_RELATIVE = 0.05
SPREADS = 3
# Comparisons where a zero margin is the assertion itself, with the reason.
EXACT = {
    ("ch02_lstm", "a <= b"): "half-lives (integers, in steps) must not decrease as the bias grows: equal is allowed",
}

SWEEP = "python -m tests.chapters.margins sweep --restricted PAGE && python -m tests.chapters.margins report"
summary = json.loads(SUMMARY.read_text())
PAGES = [p for p in notebook_pages() if comparisons_in(p)]


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_every_assertion_of_the_page_was_measured(page):
    known = {(s["assert"], s["comparison"]) for s in summary["sites"] + summary["not_in_quick_mode"]
             if s["page"] == page.stem}
    new = sorted(comparisons_in(page) - known)
    assert not new, f"{page.stem}: comparisons not measured by the margins sweep (run `{SWEEP}`): {new}"


SITE_IDS = [f"{s['page']}: {s['comparison']}"[:90] for s in summary["sites"]]


@pytest.mark.parametrize("site", summary["sites"], ids=SITE_IDS)
def test_each_quick_mode_threshold_has_a_margin(site):
    assert site["runs"] >= RUNS_PER_SITE, f"measured in {site['runs']} runs, expected {RUNS_PER_SITE}"
    if (site["page"], site["comparison"]) in EXACT:
        assert site["worst_margin"] >= 0, site
        return
    spread = site["max_value"] - site["min_value"]
    steady = site["worst_margin"] > 0 and site["worst_margin"] >= SPREADS * spread
    assert site["worst_relative"] >= MIN_RELATIVE or steady, (
        f"{site['page']}: `{site['comparison']}`: worst margin {site['worst_margin']:.4g} "
        f"({100 * site['worst_relative']:.1f}% of the threshold {site['threshold']:.4g}; values "
        f"{site['min_value']:.4g} to {site['max_value']:.4g} over {site['runs']} runs, a range of {spread:.3g}): "
        "move the threshold or the setting"
    )
