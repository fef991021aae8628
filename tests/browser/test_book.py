"""The built book in headless Chromium, offline: every page clean, equations typeset, explorers alive."""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import screenshot
from tests.chapters.pages import ROOT, toc_files

PAGES = toc_files()
# `pytest -n 2 --dist loadgroup tests/browser` runs the page checks here and test_reader in one worker (they share the
# session's readings: each page is loaded once). The explorer tests below load their pages anew to drive them: they
# run in the other worker, with the Voila files (EXPLORERS), which leave Chromium idle while a kernel runs a page.
pytestmark = pytest.mark.xdist_group("pages")
EXPLORERS = pytest.mark.xdist_group("explorers")

def _has_math(name: str) -> bool:
    for suffix in (".ipynb", ".md"):
        path = ROOT / f"{name}{suffix}"
        if path.exists():
            text = path.read_text()
            if suffix == ".ipynb":
                cells = json.loads(text)["cells"]
                text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
            return "$" in text or "{math}" in text
    return False


@pytest.mark.parametrize("name", PAGES)
def test_page_is_clean_offline(name, readings):
    """Read once with test_reader's checks (reading.py): loaded, network idle, MathJax done, then screenshotted."""
    reading = readings[name]
    math = _has_math(name)
    reading.require("load", "networkidle", "main_text", "html", "screenshot", *(["math"] if math else []))
    text = reading.main_text
    assert "VBox(" not in text and "HBox(" not in text, "a raw ipywidgets repr is shown"
    html = reading.html
    assert "injected-parameters" not in html, "papermill's injected cell is shown"
    assert "cdn.bokeh.org" not in html and "cdn.jsdelivr" not in html
    assert len(html) < 1_500_000, f"page is {len(html)} bytes: is an inline BokehJS stored?"
    if math:
        state = reading.math
        assert state is not None, "MathJax did not load"
        assert state["formulas"] > 0, "the page's formulas were not found"
        assert state["raw"] == 0 and state["rendered"] >= state["formulas"], f"not every formula was typeset: {state}"
        assert state["errors"] == 0, f"MathJax errors: {state}"
    assert not reading.problems, "\n".join(reading.problems)


_SOURCE_DATA = """
(name) => {
  for (const doc of Bokeh.documents) {
    const model = doc.get_model_by_name(name);
    if (model) return Array.from(model.data.value);
  }
  return null;
}
"""

_CANVASES = """
() => {
  let n = 0;
  const walk = (root) => root.querySelectorAll('*').forEach(el => {
    if (el.tagName === 'CANVAS') n++;
    if (el.shadowRoot) walk(el.shadowRoot);
  });
  walk(document);
  return n;
}
"""


@EXPLORERS
def test_chapter1_explorer_answers_its_slider(book_url, open_page):
    page, log = open_page(f"{book_url}/book/ch01_introduction.html")
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length >= 2")
    page.wait_for_function(f"() => ({_CANVASES})() > 0")
    before = page.evaluate(_SOURCE_DATA, "hidden_state_at_step")
    assert before is not None, "the explorer's data source is missing"
    handle = page.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(5):
        page.keyboard.press("ArrowLeft")
    after = page.evaluate(_SOURCE_DATA, "hidden_state_at_step")
    assert len(after) == len(before)
    assert after != before, "moving the slider did not change the plotted hidden state"
    assert _count_canvases(page) >= 3
    screenshot(page, "ch01_explorer_after_slider")
    assert not log.problems(), "\n".join(log.problems())


def _count_canvases(page) -> int:
    return page.evaluate(_CANVASES)


_COLUMN = """
([name, column]) => {
  for (const doc of Bokeh.documents) {
    const model = doc.get_model_by_name(name);
    if (model) return JSON.stringify(Array.from(model.data[column], v => ArrayBuffer.isView(v) ? Array.from(v) : v));
  }
  return null;
}
"""

_SELECT_OTHER_VARIANT = """
() => {
  for (const doc of Bokeh.documents) {
    const select = doc.get_model_by_name("gate_variant_select");
    if (select) {
      select.value = select.options.find(o => o !== select.value);
      return select.value;
    }
  }
  return null;
}
"""


@EXPLORERS
@pytest.mark.parametrize("name", ["book/ch02_lstm", "book/ch02_gru"])
def test_gate_explorer_answers_its_controls(name, book_url, open_page):
    page, log = open_page(f"{book_url}/{name}.html")
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.some(d => d.get_model_by_name('gate_time_slider'))")
    page.wait_for_function(f"() => ({_CANVASES})() > 0")
    column = lambda source, col: page.evaluate(_COLUMN, [source, col])  # noqa: E731
    time_handle, unit_handle = page.locator(".noUi-handle").nth(0), page.locator(".noUi-handle").nth(1)

    before = column("gates_at_time", "value")
    assert before is not None, "the gate explorer's data source is missing"
    time_handle.scroll_into_view_if_needed()
    time_handle.focus()
    for _ in range(7):
        page.keyboard.press("ArrowLeft")
    assert column("gates_at_time", "value") != before, "the time slider did not change the gates at the chosen step"

    lines = column("unit_over_time", "ys")
    unit_handle.focus()
    for _ in range(2):
        page.keyboard.press("ArrowRight")
    assert column("unit_over_time", "ys") != lines, "the unit slider did not change the unit's gate lines"

    retention = column("retention_of_unit", "retention")
    assert page.evaluate(_SELECT_OTHER_VARIANT) is not None, "no variant selector"
    assert column("retention_of_unit", "retention") != retention, "another variant did not change the retention"
    screenshot(page, name.replace("/", "_") + "_explorer")
    assert not log.problems(), "\n".join(log.problems())


_SELECT_OTHER = """
(name) => {
  for (const doc of Bokeh.documents) {
    const select = doc.get_model_by_name(name);
    if (select) {
      select.value = select.options.map(o => Array.isArray(o) ? o[0] : o).find(o => o !== select.value);
      return select.value;
    }
  }
  return null;
}
"""

_DIV_TEXT = """
(name) => {
  for (const doc of Bokeh.documents) {
    const div = doc.get_model_by_name(name);
    if (div) return div.text;
  }
  return null;
}
"""


@EXPLORERS
@pytest.mark.parametrize(
    ("name", "selects", "caption"),
    [
        ("book/ch05_performance_comparison", ["advisor_seq_len", "advisor_memory_budget"], "advisor_caption"),
        ("book/ch06_hardware", ["budget_model_select", "budget_optimizer_select"], "budget_caption"),
        ("book/ch12_interpretability", ["attribution_method_select", "attribution_example_select"],
         "attribution_caption"),
    ],
)
def test_explorer_caption_answers_its_selects(name, selects, caption, book_url, open_page):
    """Each select in turn, on one load of the page: choosing another option rewrites the explorer's caption."""
    page, log = open_page(f"{book_url}/{name}.html")
    for select in selects:
        page.wait_for_function(f"() => window.Bokeh && Bokeh.documents.some(d => d.get_model_by_name('{select}'))")
        before = page.evaluate(_DIV_TEXT, caption)
        assert before, f"the explorer's caption {caption!r} is missing"
        chosen = page.evaluate(_SELECT_OTHER, select)
        assert chosen is not None, f"no select named {select!r}"
        after = page.evaluate(_DIV_TEXT, caption)
        assert after != before, f"choosing {chosen!r} in {select} did not change {caption}"
        screenshot(page, name.replace("/", "_") + "_" + select)
    assert not log.problems(), "\n".join(log.problems())
