"""Chapter 1's explorer live in Voila: typing a new input reruns the model and changes the figure."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser.conftest import PageLog, open_logged, screenshot

ROOT = Path(__file__).resolve().parents[2]
VOILA = Path(sys.executable).with_name("voila")
# Voila's own page template asks a CDN for Font Awesome icons; blocked, the page works without them.
VOILA_CDN = ("https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free",)

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def voila_url():
    port = _free_port()
    env = {**os.environ, "BOOK_LIVE": "1", "BOOK_QUICK": "1"}
    proc = subprocess.Popen(
        [str(VOILA), "book/ch01_introduction.ipynb", "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"voila exited: {proc.stderr.read()[-2000:]}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("voila did not answer within 60 s")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_live_explorer_reruns_on_new_input(voila_url, browser):
    log = PageLog()
    page = open_logged(browser, voila_url, log, wait_until="commit")  # Voila streams while cells run
    box = page.locator(".widget-text input").first
    box.wait_for(timeout=180_000)  # Voila shows the page once every cell has run (quick mode)
    page.wait_for_function(f"() => window.Bokeh && ({_READ})() !== null", timeout=30_000)
    before = page.evaluate(_READ)
    box.fill("111000111")
    box.press("Enter")
    page.wait_for_function(f"() => ({_READ})().steps === 9", timeout=30_000)
    after = page.evaluate(_READ)
    assert before["steps"] == 16 and after["steps"] == 9
    assert after["state"] != before["state"], "the hidden state did not change with the input"
    box.fill("10a1")
    box.press("Enter")
    page.get_by_text("Not updated: encode_bits: expected only '0' and '1'").wait_for(timeout=30_000)
    assert page.evaluate(_READ)["steps"] == 9, "bad input must leave the last good figure"
    screenshot(page, "ch01_live_voila")
    log.blocked = [u for u in log.blocked if not u.startswith(VOILA_CDN)]
    assert not log.problems(), "\n".join(log.problems())
