"""The book's seven live explorers on one Voila page: all seven render on every load, and each answers.

The page (seven_explorers.ipynb, built by gallery.py as the chapters build their explorers) is loaded LOADS times
by reloading the tab, as a reader would. Every load must render all seven explorers (a Bokeh document and a live
widget box each, no "Error displaying widget"), ask nothing of the internet and log no console error. Voila runs
with the repository's voila.json, as `voila book/<page>.ipynb` from the root does: the book's template (no CDN),
kernels shut down when their page closes and culled when idle. So the test also checks that reloads do not leave
kernels behind. On the first load each explorer is driven through one control and fed one bad input (the
addressing pipeline has no live layer: its slider runs in the page). After a good change the figure must change;
after a bad one the status line must say why, and both the control and the figure must stay on the last good
setting. Load times, render times and answer latencies go to _build/screenshots/voila_explorers.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import pytest

from tests.browser.conftest import SHOTS, PageLog, open_logged, screenshot
from tests.browser.test_live import ROOT, Voila, serving, wait_for_execution

NOTEBOOK = "tests/browser/seven_explorers.ipynb"
LOADS = 3  # each load runs the page anew (40-50 s on two shared cores): the stage's longest part
RENDER_S = 120  # after the last cell ran: the browser connects to the kernel and renders seven explorers
ANSWER_S = 60  # an explorer reruns its model
KERNEL_GONE_S = 90  # a closed page's kernel is shut down (beforeunload), or culled (idle 60 s, checked every 20 s)
# `pytest -n 2 --dist loadgroup tests/browser` runs the explorer tests (the two Voila files, test_book's explorers) in
# one worker while the built book's pages (test_book, test_reader) are read in the other: Voila's kernel runs on one
# core while Chromium draws on the other.
pytestmark = pytest.mark.xdist_group("explorers")

# Root model of each explorer's Bokeh document, in page order.
ROOTS = ["hidden_state_explorer", "gate_explorer", "attention_explorer", "memory_explorer", "addressing_pipeline",
         "memory_budget_explorer", "attribution_explorer"]

_RENDERED = """
(roots) => {
  const docs = window.Bokeh ? Bokeh.documents : [];
  const named = roots.filter(r => docs.some(d => d.get_model_by_name(r)));
  const boxes = document.querySelectorAll('.jp-OutputArea-output > .widget-vbox').length;
  const broken = (document.body.innerText.match(/Error displaying widget[^\\n]*/g) || []);
  return {named, boxes, broken};
}
"""

# Everything the figure of one explorer shows: the data of every source in its document, and its captions.
_FIGURE = """
(root) => {
  for (const doc of Bokeh.documents) {
    if (!doc.get_model_by_name(root)) continue;
    const parts = [];
    for (const m of doc.all_models) {
      if (m.type === 'ColumnDataSource') {
        const cols = Object.keys(m.data).sort();
        parts.push((m.name || '') + ':' + cols.map(c => c + '=' + JSON.stringify(Array.from(m.data[c] ?? [],
          v => (v && v.length !== undefined && typeof v !== 'string') ? Array.from(v) : v))).join(';'));
      } else if (m.type === 'Div') {
        parts.push((m.name || '') + ':' + m.text);
      }
    }
    return parts.sort().join('\\n');
  }
  return null;
}
"""


def _kernels(server: Voila) -> list[int]:
    """Process ids of the kernels the Voila server runs now."""
    try:
        return [p.pid for p in psutil.Process(server.proc.pid).children(recursive=True)
                if "ipykernel" in " ".join(p.cmdline())]
    except psutil.NoSuchProcess:
        return []


def _wait(check, seconds: float, poll: float = 0.25):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    return check()


@pytest.fixture
def voila(tmp_path):
    with serving(NOTEBOOK, tmp_path / "voila.log") as server:
        yield server


def _load(page, server: Voila, first: bool) -> dict:
    """One load: Voila runs every cell, then the browser renders the explorers. Returns times and what rendered."""
    start = time.monotonic()
    if first:
        page.goto(server.url, wait_until="commit")
    else:
        page.reload(wait_until="commit")
    wait_for_execution(page, server)
    ran = time.monotonic() - start
    state = _wait(lambda: (lambda s: s if len(s["named"]) == len(ROOTS) and s["boxes"] >= len(ROOTS) or s["broken"]
                           else None)(page.evaluate(_RENDERED, ROOTS)), RENDER_S)
    state = state or page.evaluate(_RENDERED, ROOTS)
    return {"executed_s": round(ran, 1), "rendered_s": round(time.monotonic() - start - ran, 1),
            "explorers": len(state["named"]), "boxes": state["boxes"], "broken": state["broken"]}


def _box(page, explorer: int):
    return page.locator(".jp-OutputArea-output > .widget-vbox").nth(explorer)


def _status(page, explorer: int) -> str:
    return _box(page, explorer).locator(".widget-html-content").last.inner_text()


def _figure(page, explorer: int) -> str:
    return page.evaluate(_FIGURE, ROOTS[explorer])


def _type(page, explorer: int, control, text: str) -> float:
    """Type ``text`` into a text box and press Enter; the seconds until the figure or the status line changed."""
    before, status = _figure(page, explorer), _status(page, explorer)
    start = time.monotonic()
    control.fill(text)
    control.press("Enter")
    changed = _wait(lambda: _figure(page, explorer) != before or _status(page, explorer) != status, ANSWER_S)
    assert changed, f"{ROOTS[explorer]}: nothing changed {ANSWER_S} s after typing {text!r}"
    seconds = time.monotonic() - start
    _settle(page, explorer)
    return seconds


def _settle(page, explorer: int, quiet_s: float = 1.0) -> None:
    """Wait until the figure has stopped changing for ``quiet_s`` (the kernel sends its sources one by one)."""
    last, since = _figure(page, explorer), time.monotonic()
    deadline = since + ANSWER_S
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.2)
        now = _figure(page, explorer)
        if now != last:
            last, since = now, time.monotonic()


# (explorer, the text box's index within it, a good input, a bad input, what the status line must say)
TEXT_CASES = [
    (0, 0, "111000111", "10a1", "expected only '0' and '1'"),
    (1, 0, "length=30 seed=4", "length=5 seed=4", "expected a length from 10 to 200"),
    (2, 0, "E a X b c Y d B", "E a Q B", "unknown Q"),
    (3, 0, "1011 0110 1110", "1011 01a0", "Not updated"),
    (6, 0, "the plot was dull", "the movie was dull", "expected 1 to 40 words"),
]


def _drive_text(page, case, latencies: dict) -> None:
    explorer, index, good, bad, message = case
    name = ROOTS[explorer]
    box = _box(page, explorer).locator(".widget-text input").nth(index)
    before = _figure(page, explorer)
    latencies[name] = round(_type(page, explorer, box, good), 2)
    shown = _figure(page, explorer)
    assert shown != before, f"{name}: the figure did not change for {good!r}"
    assert _status(page, explorer) == "", f"{name}: {good!r} was refused: {_status(page, explorer)}"
    _type(page, explorer, box, bad)
    status = _status(page, explorer)
    assert status.startswith("Not updated:") and message in status, f"{name}: status {status!r} for {bad!r}"
    assert box.input_value() == good, f"{name}: the box shows {box.input_value()!r}, the figure shows {good!r}"
    assert _figure(page, explorer) == shown, f"{name}: a refused input changed the figure"


def _drive_budget(page, latencies: dict) -> None:
    """The budget explorer: a new length reruns memlib's estimator; a length that would take 640 GB is refused."""
    explorer = ROOTS.index("memory_budget_explorer")
    box = _box(page, explorer).locator(".widget-inline-hbox:has-text('length') input")
    shown = _figure(page, explorer)
    latencies["memory_budget_explorer"] = round(_type(page, explorer, box, "24"), 2)
    assert _figure(page, explorer) != shown and _status(page, explorer) == ""
    good = _figure(page, explorer)
    _type(page, explorer, box, "100000")
    status = _status(page, explorer)
    assert status.startswith("Not updated:") and "limit" in status, f"budget: status {status!r} for length 100000"
    assert box.input_value() == "24" and _figure(page, explorer) == good


def _drive_addressing(page, latencies: dict) -> None:
    """The addressing pipeline has no live layer: its sharpening slider recomputes the weights in the page."""
    explorer = ROOTS.index("addressing_pipeline")
    before = _figure(page, explorer)
    start = time.monotonic()
    page.evaluate("""() => { for (const doc of Bokeh.documents) { const s = doc.get_model_by_name('pipeline_gamma');
                             if (s) s.value = s.end; } }""")
    assert _wait(lambda: _figure(page, explorer) != before, ANSWER_S), "the pipeline did not answer its slider"
    latencies["addressing_pipeline"] = round(time.monotonic() - start, 2)
    assert "sharpened" in _figure(page, explorer)


def test_seven_explorers_render_on_every_load_and_answer(voila, browser):
    log = PageLog()
    page = open_logged(browser, "about:blank", log)
    loads, latencies, kernels = [], {}, []
    for n in range(LOADS):
        loads.append(_load(page, voila, first=n == 0))
        if n == 0 and loads[0]["explorers"] == len(ROOTS):
            for case in TEXT_CASES:
                _drive_text(page, case, latencies)
            _drive_budget(page, latencies)
            _drive_addressing(page, latencies)
            screenshot(page, "voila_seven_explorers")
        kernels.append(len(_kernels(voila)))
    page.close(run_before_unload=True)  # the last page closes: its kernel goes too
    _wait(lambda: not _kernels(voila), KERNEL_GONE_S)
    left = len(_kernels(voila))
    rendered = sum(load["explorers"] == len(ROOTS) and not load["broken"] for load in loads)
    report = {"loads": loads, "all_seven_rendered": f"{rendered}/{LOADS}", "answer_s": latencies,
              "kernels_after_each_load": kernels, "kernels_left_after_close": left}
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "voila_explorers.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    assert rendered == LOADS, f"all seven explorers rendered on {rendered} of {LOADS} loads: {loads}"
    assert len(latencies) == len(ROOTS), f"explorers driven: {sorted(latencies)}"
    assert max(kernels) <= 2, f"reloads left kernels running: {kernels} after each load"
    assert left == 0, f"{left} kernel(s) still running {KERNEL_GONE_S} s after the page closed"
    # Voila asks for its kernel's shutdown as the page unloads; the browser abandons that request as the page goes
    # (net::ERR_ABORTED), and the server acts on it all the same: the kernel counts above are the check.
    log.failed = [f for f in log.failed if not (f.startswith("http") and "/voila/api/shutdown/" in f)]
    problems = log.problems()
    assert not problems, "\n".join(problems)


def test_voila_config_is_the_books():
    """voila.json selects the book's template (installed by make setup) and culls idle kernels."""
    config = json.loads((ROOT / "voila.json").read_text())
    assert config["VoilaConfiguration"]["template"] == "book"
    assert config["MappingKernelManager"]["cull_idle_timeout"] > 0
    installed = Path(psutil.__file__).parents[4] / "share" / "jupyter" / "voila" / "templates" / "book"
    assert (installed / "index.html.j2").read_text() == (ROOT / "widgets/voila/book/index.html.j2").read_text()
