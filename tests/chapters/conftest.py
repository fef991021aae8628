"""Collects each page's quick-mode seconds and prints them together at the end of the run.

Each page test records its seconds as a user property of its report, so the summary also works when
pytest-xdist runs the pages on several workers (the reports come back to the main process).
"""

from __future__ import annotations

import pytest

PROPERTY = "quick_mode_seconds"


@pytest.fixture
def page_seconds(record_property):
    """Call with (page, seconds): the terminal summary lists them."""
    return lambda page, seconds: record_property(PROPERTY, (page, seconds))


def pytest_terminal_summary(terminalreporter, config):
    seconds = {}
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
        if report.when == "call":
            seconds.update(v for k, v in report.user_properties if k == PROPERTY)
    if not seconds:
        return
    terminalreporter.section("quick-mode seconds per page")
    for page, s in sorted(seconds.items()):
        terminalreporter.write_line(f"{s:7.1f} s  {page}")
    terminalreporter.write_line(f"{sum(seconds.values()):7.1f} s  total ({len(seconds)} pages)")
