"""Every built page as a reader meets it: in headless Chromium, offline, at 1280 px, light then dark.

One test per page; each names what it found, element by element:
- page errors, console errors and requests that leave the machine (conftest allows none);
- raw TeX in the visible text (a formula MathJax did not typeset, TeX in a bibliography entry);
- scaffolding in the visible text (test markers, papermill cells, the quick-mode switch);
- elements wider than the text column, and code that scrolls sideways instead of wrapping;
- text under 10 px, in the page and inside Bokeh's shadow DOM;
- form controls whose text does not stand out from their background in the dark theme;
- figure outputs (Bokeh roots, images) without a caption.

Each page is loaded once for this file and test_book together: reading.py reads it (its scripts measure all of the
above), and the test here judges what it read.

`BOOK_HTML=/path/to/_build/html pytest tests/browser/test_reader.py` checks another build.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.reading import MIN_TEXT_PX
from tests.chapters.pages import toc_files

PAGES = toc_files()
# `pytest -n 2 --dist loadgroup tests/browser` runs this file and test_book in one worker (they share the session's
# readings: each page is loaded once) while the two Voila files run in the other.
pytestmark = pytest.mark.xdist_group("pages")
# Text under 10 px that CSS cannot reach (Bokeh draws it in shadow DOM at sizes its Python sets).
# Each page here must still show small text: once the fix lands the test fails until the entry goes.
SMALL_TEXT_FIXED_IN_PYTHON: dict[str, str] = {}
SCAFFOLDING = ("NBVAL", "nbval-", "injected-parameters", "BOOK_QUICK", "BOOK_LIVE", "quick mode: ")
# A TeX command, or a $...$ span holding TeX syntax, left as text.
RAW_TEX = re.compile(r"\\(?:[a-zA-Z]{2,}|[{}])|\$[^$\n]{0,80}[\\^_{][^$\n]{0,80}\$")


def _summary(kind: str, items: list[str], limit: int = 8) -> list[str]:
    if not items:
        return []
    shown = "; ".join(items[:limit]) + (f"; ... ({len(items) - limit} more)" if len(items) > limit else "")
    return [f"{kind} ({len(items)}): {shown}"]


@pytest.mark.parametrize("name", PAGES)
def test_page_reads_as_a_book(name, readings):
    """Read once with test_book's checks (reading.py): Bokeh roots drawn, MathJax done, measured, then dark."""
    reading = readings[name]
    reading.require("ready", "math", "visible", "parameters", "layout", "uncaptioned", "dark")
    problems = list(reading.problems)

    text = reading.visible
    tex = sorted({m.group(0) for m in RAW_TEX.finditer(text["prose"])})
    problems += _summary("raw TeX on the page", tex)
    problems += _summary("scaffolding on the page", [s for s in SCAFFOLDING if s in text["cells"]])
    if reading.parameters_cells:
        problems.append(f"papermill parameters cells shown: {reading.parameters_cells}")

    layout = reading.layout
    problems += _summary("wider than the column", layout["wide"])
    problems += _summary("code that scrolls sideways", layout["scrolling"])
    small = _summary(f"text under {MIN_TEXT_PX} px", layout["small"])
    problems += _summary("figure outputs without a caption", reading.uncaptioned)

    dark = reading.dark
    problems += _summary(f"controls hard to read in the dark theme (of {dark['count']})", dark["bad"])

    if name not in SMALL_TEXT_FIXED_IN_PYTHON:
        problems += small
    assert not problems, f"{name}:\n" + "\n".join(problems)
    if name in SMALL_TEXT_FIXED_IN_PYTHON:
        assert small, f"{name} has no text under {MIN_TEXT_PX} px now: remove it from SMALL_TEXT_FIXED_IN_PYTHON"
        pytest.xfail(f"{small[0][:200]}; to fix in {SMALL_TEXT_FIXED_IN_PYTHON[name]}")
