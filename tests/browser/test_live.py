"""Chapter 1's explorer live in Voila: typing a new input reruns the model and changes the figure.

Voila (0.5) executes the notebook on the server while it streams the page: each cell arrives as a
`<div cell-index="i">` whose script calls `voila_process(i, n)`, and the document finishes loading
(`document.readyState` leaves "loading") once the last cell has run. A cell that raises stops the
execution; with `--show_tracebacks=True` its traceback is in the page. So the test follows the
execution instead of waiting on a fixed clock: it fails as soon as a traceback shows, when Voila stops
before the last cell, when Voila or the kernel dies (the kernel's state from Voila's
/api/kernels/<id>), and only as a last resort after VOILA_CAP_S. Once every cell has run, the browser
has RENDER_S to show the widgets, and the explorer must answer its input as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.browser.conftest import PageLog, open_logged, screenshot

ROOT = Path(__file__).resolve().parents[2]
VOILA = Path(sys.executable).with_name("voila")
NOTEBOOK = "book/ch01_introduction.ipynb"
VOILA_CAP_S = 15 * 60  # the whole page in quick mode, on a machine busy with other jobs: a last resort only
RENDER_S = 120  # after the last cell ran: the browser connects to the kernel and renders the widgets
ANSWER_S = 60  # the explorer reruns its model on a new input
POLL_S = 1.0
# `pytest -n 2 --dist loadgroup tests/browser` runs the explorer tests (the two Voila files, test_book's explorers) in
# one worker while the built book's pages (test_book, test_reader) are read in the other: Voila's kernel runs on one
# core while Chromium draws on the other.
pytestmark = pytest.mark.xdist_group("explorers")

_READ = """
() => {
  for (const doc of Bokeh.documents) {
    const state = doc.get_model_by_name('hidden_state_at_step');
    const curve = doc.get_model_by_name('running_answer');
    if (state && curve) return {state: Array.from(state.data.value), steps: curve.data.step.length};
  }
  return null;
}
"""

# Where Voila's execution stands, read from the streamed page.
_PROGRESS = """
() => {
  const cells = Array.from(document.querySelectorAll('div[cell-index]'));
  let total = null;
  for (const cell of cells) {
    const m = /voila_process\\((\\d+),\\s*(\\d+)\\)/.exec(cell.querySelector('script')?.textContent || '');
    if (m) total = Number(m[2]);
  }
  const errors = [];
  for (const cell of cells) {
    for (const out of cell.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')) {
      const text = out.textContent;
      if (/Traceback \\(most recent call last\\)|An exception occurred at the server|ExecutionError/.test(text)) {
        errors.push({cell: Number(cell.getAttribute('cell-index')), text: text.trim()});
      }
    }
  }
  let kernelId = null;
  try { kernelId = JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId; } catch (e) {}
  return {
    loading: document.readyState === 'loading',
    ran: cells.length ? Number(cells[cells.length - 1].getAttribute('cell-index')) : 0,
    total, errors, kernelId,
  };
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


class Voila:
    """A Voila server for one notebook, its log in a file (a pipe nobody reads can fill and stall it)."""

    def __init__(self, notebook: str, log: Path, root: Path = ROOT):
        self.notebook = notebook
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        env = {**os.environ, "BOOK_LIVE": "1", "BOOK_QUICK": "1"}
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                [str(VOILA), notebook, "--no-browser", f"--port={self.port}", "--Voila.ip=127.0.0.1",
                 "--show_tracebacks=True"],
                cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
            )

    def wait_until_serving(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.check_alive()
            try:  # a static file: asking for the notebook's page would start executing it
                urllib.request.urlopen(self.url + "voila/static/", timeout=2)
                return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"voila did not answer within {seconds:.0f} s\n{_tail(self.log)}")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"voila exited with status {self.proc.returncode}:\n{_tail(self.log)}")

    def kernel_state(self, kernel_id: str | None) -> str | None:
        """The kernel's execution_state from Voila's REST API ("busy", "idle", "dead"; "gone" if unknown)."""
        if not kernel_id:
            return None
        try:
            with urllib.request.urlopen(f"{self.url}api/kernels/{kernel_id}", timeout=5) as r:
                return json.load(r).get("execution_state")
        except urllib.error.HTTPError as e:
            return "gone" if e.code == 404 else None
        except (OSError, ValueError):
            return None  # busy server or no answer: not a verdict

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def serving(notebook: str, log: Path):
    """A Voila server for ``notebook``, answering, and stopped afterwards."""
    server = Voila(notebook, log)
    try:
        server.wait_until_serving()
        yield server
    finally:
        server.stop()


@pytest.fixture
def voila(tmp_path):
    with serving(NOTEBOOK, tmp_path / "voila.log") as server:
        yield server


def wait_for_execution(page, voila: Voila, cap_s: float = VOILA_CAP_S) -> dict:
    """Follow Voila's execution of the page until every cell has run; fail promptly on an error."""
    start = time.monotonic()
    state = {"ran": 0, "total": None, "errors": [], "loading": True, "kernelId": None}
    kernel = None
    while time.monotonic() - start < cap_s:
        voila.check_alive()
        state = page.evaluate(_PROGRESS)
        if state["errors"]:
            shown = "\n\n".join(f"cell {e['cell']}:\n{e['text'][-4000:]}" for e in state["errors"])
            pytest.fail(f"{voila.notebook} raised in Voila after {time.monotonic() - start:.0f} s:\n{shown}")
        kernel = voila.kernel_state(state["kernelId"])
        if kernel in ("dead", "gone"):
            pytest.fail(f"the kernel of {voila.notebook} is {kernel} after cell {state['ran']} of {state['total']}:\n"
                        f"{_tail(voila.log)}")
        if not state["loading"]:
            if state["total"] is None or state["ran"] < state["total"]:
                pytest.fail(f"Voila stopped {voila.notebook} after cell {state['ran']} of {state['total']} "
                            f"without a traceback in the page:\n{_tail(voila.log)}")
            print(f"Voila ran {state['total']} cells of {voila.notebook} in {time.monotonic() - start:.0f} s")
            return state
        time.sleep(POLL_S)
    pytest.fail(f"Voila had run {state['ran']} of {state['total']} cells of {voila.notebook} after {cap_s:.0f} s "
                f"(kernel {kernel}):\n{_tail(voila.log)}")


def test_live_explorer_reruns_on_new_input(voila, browser):
    log = PageLog()
    page = open_logged(browser, voila.url, log, wait_until="commit")  # Voila streams while cells run
    wait_for_execution(page, voila)
    box = page.locator(".widget-text input").first
    try:
        box.wait_for(timeout=RENDER_S * 1000)
    except Exception as e:  # playwright's TimeoutError
        problems = "\n".join(log.problems()) or "(none)"
        pytest.fail(f"every cell of {NOTEBOOK} ran, but its text box did not render within {RENDER_S} s "
                    f"({type(e).__name__}); page problems:\n{problems}")
    page.wait_for_function(f"() => window.Bokeh && ({_READ})() !== null", timeout=RENDER_S * 1000)
    before = page.evaluate(_READ)
    box.fill("111000111")
    box.press("Enter")
    page.wait_for_function(f"() => ({_READ})().steps === 9", timeout=ANSWER_S * 1000)
    after = page.evaluate(_READ)
    assert before["steps"] == 16 and after["steps"] == 9
    assert after["state"] != before["state"], "the hidden state did not change with the input"
    box.fill("10a1")
    box.press("Enter")
    page.get_by_text("Not updated: encode_bits: expected only '0' and '1'").wait_for(timeout=ANSWER_S * 1000)
    assert page.evaluate(_READ)["steps"] == 9, "bad input must leave the last good figure"
    screenshot(page, "ch01_live_voila")
    problems = log.problems()
    assert not problems, "\n".join(problems)
