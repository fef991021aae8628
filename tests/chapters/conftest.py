"""Collects each page's quick-mode seconds and prints them together at the end of the run."""

from __future__ import annotations

import pytest

_SECONDS = pytest.StashKey[dict]()


@pytest.fixture
def page_seconds(request) -> dict:
    """page -> seconds its execution took; the terminal summary lists them."""
    return request.config.stash.setdefault(_SECONDS, {})


def pytest_terminal_summary(terminalreporter, config):
    seconds = config.stash.get(_SECONDS, {})
    if not seconds:
        return
    terminalreporter.section("quick-mode seconds per page")
    for page, s in seconds.items():
        terminalreporter.write_line(f"{s:7.1f} s  {page}")
    terminalreporter.write_line(f"{sum(seconds.values()):7.1f} s  total ({len(seconds)} pages)")
