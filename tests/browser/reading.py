"""Every built page opened once in headless Chromium, and what the page checks read from it.

test_book (every page clean offline, its equations typeset) and test_reader (every page as a reader meets it) check
the same pages. Each page is loaded here once and read in full, in this order: the Bokeh roots drawn, the load and
then network idle (no request in flight for 500 ms), MathJax done, the text and HTML, the layout measured, a screenshot
(the first screen; the whole page with BOOK_SHOTS=full), the controls read in the dark theme, and last the page's log
(conftest's PageLog). A `Reading` holds all of it; the tests assert on it.

Pages are not routed (routing turns Chromium's cache off: every page would load BokehJS and MathJax anew); conftest's
FLAGS let no host but this one resolve, so a request that tries to leave the machine fails, and the request listener
records it. AHEAD pages load at once: Chromium loads the next ones while one is read.

A step that raises (a wait that times out, a page that crashed) is recorded under its name, and the steps after it
still run: a test fails on the steps it reads (`Reading.require`), as it did when each test loaded its own page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tests.browser.conftest import FULL_SHOTS, PageLog, open_logged, screenshot, wait_for_quiet_network

AHEAD = 2  # pages loading at once; on the loaded 2-core machine 3 were no faster than 1 (10 pages: 147 s, 134 s)
READY_MS = 30_000  # the Bokeh roots drawn, after the HTML arrived
MIN_TEXT_PX = 10
MIN_CONTRAST = 4.5  # WCAG AA for text

# Bokeh roots are the first element inside each output's embed div; they render into shadow DOM.
_READY = """
() => {
  if (document.readyState !== 'complete') return false;
  const scripts = Array.from(document.querySelectorAll('div.output script'))
    .filter(s => s.textContent.includes('embed_document')).length;
  const roots = Array.from(document.querySelectorAll('div.output > div > [class^="bk-"]'))
    .filter(r => r.getBoundingClientRect().width > 0).length;
  return roots >= scripts;
}
"""

# Sphinx wraps every formula in span.math / div.math; MathJax 3 renders each into an
# mjx-container and marks TeX errors with mjx-merror. null where the page has no MathJax.
_MATH_STATE = """
async () => {
  if (!window.MathJax || !MathJax.startup) return null;
  await MathJax.startup.promise;
  return {
    formulas: document.querySelectorAll('span.math, div.math').length,
    rendered: document.querySelectorAll('mjx-container').length,
    errors: document.querySelectorAll('mjx-merror').length,
    raw: document.querySelectorAll('span.math:not(:has(mjx-container)), div.math:not(:has(mjx-container))').length,
  };
}
"""

# The text a reader sees: in the notebook cells (for scaffolding: prose may name BOOK_QUICK when it
# explains how to run a page, a cell's visible code or output may not), and in the prose alone (for raw
# TeX: code is shown as written, and TeX inside it is not a rendering fault).
_VISIBLE_TEXT = """
() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const text = (drop, within) => {
    const clone = article.cloneNode(true);
    clone.querySelectorAll(drop).forEach(e => e.remove());
    clone.style.position = 'absolute'; clone.style.left = '-99999px';
    document.body.appendChild(clone);
    const t = within ? Array.from(clone.querySelectorAll(within), e => e.innerText).join('\\n') : clone.innerText;
    clone.remove();
    return t;
  };
  const hidden = 'script, style, mjx-container, details:not([open]) > :not(summary)';
  return {cells: text(hidden, 'div.cell'), prose: text(hidden + ', pre, code, .highlight')};
}
"""

_LAYOUT = """
([minPx]) => {
  const article = document.querySelector('article.bd-article');
  // the text column: the article's content box
  const box = article.getBoundingClientRect(), style = getComputedStyle(article);
  const left = box.left + parseFloat(style.paddingLeft), right = box.right - parseFloat(style.paddingRight);
  const column = {left, right, width: right - left};
  const describe = (e) => {
    const fig = e.closest && e.closest('figure');
    const where = fig && fig.id ? ` in #${fig.id}` : '';
    return `${e.tagName.toLowerCase()}.${String(e.className).split(' ')[0]}${where}`;
  };
  const visible = (e) => {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return false;
    for (let p = e; p; p = p.parentElement || (p.getRootNode() && p.getRootNode().host)) {
      if (p.tagName === 'DETAILS' && !p.open && !p.contains(e.closest('summary'))) return false;
    }
    return true;
  };
  const wide = [], scrolling = [], small = [];
  // wider than the column: every output, figure, table, formula and code block in the article
  const blocks = 'figure, div.cell_output > *, div.output > div > [class^="bk-"], table, div.math, div.highlight, img';
  for (const e of article.querySelectorAll(blocks)) {
    if (!visible(e)) continue;
    const r = e.getBoundingClientRect();
    if (r.right > column.right + 1 || r.left < column.left - 1) {
      wide.push(`${describe(e)}: ${Math.round(r.width)} px (column ${Math.round(column.width)} px)`);
    }
  }
  // code that scrolls sideways instead of wrapping
  for (const e of article.querySelectorAll('div.highlight pre')) {
    if (visible(e) && e.scrollWidth > e.clientWidth + 1) {
      scrolling.push(`${describe(e.closest('.cell') || e)}: ${e.scrollWidth} px of code in ${e.clientWidth} px`);
    }
  }
  // text under minPx: elements with their own text, in the page and in every shadow root
  const walk = (root) => {
    for (const e of root.querySelectorAll('*')) {
      if (e.shadowRoot) walk(e.shadowRoot);
      const own = Array.from(e.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
      // MathJax's assistive MathML is for screen readers, drawn nowhere
      if (!own || !visible(e) || e.closest('mjx-assistive-mml')) continue;
      const px = parseFloat(getComputedStyle(e).fontSize);
      if (px < minPx) small.push(`${px.toFixed(1)} px: "${e.textContent.trim().slice(0, 40)}"`);
    }
  };
  walk(article);
  return {wide, scrolling, small};
}
"""

_UNCAPTIONED = """
() => {
  const out = [];
  const outputs = document.querySelectorAll(
    'article.bd-article div.output > div > [class^="bk-"], article.bd-article div.cell_output img');
  for (const e of outputs) {
    const fig = e.closest('figure');
    const caption = fig && fig.querySelector('figcaption .caption-text');
    if (!caption || !caption.textContent.trim()) {
      const cell = e.closest('.cell');
      const index = Array.from(document.querySelectorAll('.cell')).indexOf(cell);
      out.push(`${e.tagName.toLowerCase()}.${String(e.className).split(' ')[0]} in code cell ${index}`);
    }
  }
  return out;
}
"""

# Text colour against the first opaque background behind it (through shadow hosts), before any CSS
# filter: a filter such as invert() keeps a readable pair readable.
_DARK_CONTROLS = """
([minContrast]) => {
  document.documentElement.dataset.theme = 'dark';
  document.documentElement.dataset.mode = 'dark';
  const parse = (c) => {
    const m = c.match(/[\\d.]+/g).map(Number);
    return {r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1};
  };
  const lum = ({r, g, b}) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const up = (e) => e.parentElement || (e.getRootNode && e.getRootNode().host) || null;
  const background = (e) => {
    for (let p = e; p; p = up(p)) {
      const c = parse(getComputedStyle(p).backgroundColor);
      if (c.a > 0.5) return c;
    }
    return parse(getComputedStyle(document.body).backgroundColor);
  };
  const controls = [];
  const walk = (root) => {
    for (const e of root.querySelectorAll('*')) {
      if (e.shadowRoot) walk(e.shadowRoot);
      const text = ['SELECT', 'INPUT', 'TEXTAREA'].includes(e.tagName) && !['checkbox', 'radio'].includes(e.type);
      if (text) controls.push(e);
    }
  };
  walk(document.querySelector('article.bd-article'));
  const bad = [];
  for (const e of controls) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || e.disabled) continue;  // WCAG exempts disabled controls
    const fg = lum(parse(getComputedStyle(e).color)), bg = lum(background(e));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const label = `${e.tagName.toLowerCase()} "${(e.value || '').slice(0, 30)}"`;
    if (ratio < minContrast) bad.push(`${label}: contrast ${ratio.toFixed(2)}`);
  }
  document.documentElement.dataset.theme = 'light';
  document.documentElement.dataset.mode = 'light';
  return {count: controls.length, bad};
}
"""

@dataclass
class Reading:
    """What one page showed. Each step's value is None where the step raised (its error is in ``errors``)."""

    name: str
    errors: dict[str, str] = field(default_factory=dict)  # step -> "ExceptionType: message"
    math: dict | None = None  # _MATH_STATE; None also where the page has no MathJax
    main_text: str | None = None  # inner_text of <main>
    html: str | None = None  # the page's HTML as rendered
    visible: dict | None = None  # _VISIBLE_TEXT: {cells, prose}
    parameters_cells: int | None = None  # papermill's parameters cells shown
    layout: dict | None = None  # _LAYOUT: {wide, scrolling, small}
    uncaptioned: list[str] | None = None
    screenshot: Path | None = None
    dark: dict | None = None  # _DARK_CONTROLS: {count, bad}
    problems: list[str] = field(default_factory=list)  # the log's problems once every step ran

    def require(self, *steps: str) -> None:
        """Fail as the step failed, for each of ``steps`` (and the page's opening) that raised."""
        failed = [f"{step}: {self.errors[step]}" for step in ("open", *steps) if step in self.errors]
        assert not failed, f"{self.name}: " + "\n".join(failed)


def read(page, log: PageLog, name: str) -> Reading:
    """Every step on ``page`` (opened at ``name``'s URL), in order; the page is closed afterwards."""
    reading = Reading(name)

    def step(label: str, action):
        try:
            return action()
        except Exception as e:  # playwright's TimeoutError and Error: recorded, read by the tests that need it
            reading.errors[label] = f"{type(e).__name__}: {e}"
            return None

    step("ready", lambda: page.wait_for_function(_READY, timeout=READY_MS))
    step("load", lambda: page.wait_for_load_state("load"))
    step("networkidle", lambda: wait_for_quiet_network(page, log))
    reading.math = step("math", lambda: page.evaluate(_MATH_STATE))
    reading.main_text = step("main_text", lambda: page.inner_text("main"))
    reading.html = step("html", page.content)
    reading.visible = step("visible", lambda: page.evaluate(_VISIBLE_TEXT))
    reading.parameters_cells = step(
        "parameters", lambda: page.locator("div.cell.tag_parameters, div.cell.tag_injected-parameters").count())
    reading.layout = step("layout", lambda: page.evaluate(_LAYOUT, [MIN_TEXT_PX]))
    reading.uncaptioned = step("uncaptioned", lambda: page.evaluate(_UNCAPTIONED))
    # After the measurements, as the reader's test took them before any capture; before the dark theme: light.
    reading.screenshot = step("screenshot", lambda: screenshot(page, name.replace("/", "_"), full_page=FULL_SHOTS))
    reading.dark = step("dark", lambda: page.evaluate(_DARK_CONTROLS, [MIN_CONTRAST]))
    reading.problems = log.problems()
    step("close", page.close)
    return reading


class Readings:
    """The pages of a built book, each read once on first request; the next ones load meanwhile (AHEAD at once)."""

    def __init__(self, context, book_url: str, names: list[str], ahead: int = AHEAD):
        self.context, self.book_url, self.names, self.ahead = context, book_url, names, ahead
        self.loading: dict[str, tuple] = {}  # name -> (page, log), opened and not yet read
        self.done: dict[str, Reading] = {}

    def _open(self, name: str) -> None:
        if name in self.loading or name in self.done:
            return
        log = PageLog()
        try:
            page = open_logged(self.context, f"{self.book_url}/{name}.html", log, "commit", route=False)
        except Exception as e:  # the page's own tests fail on it, not the one that asked for an earlier page
            self.done[name] = Reading(name, errors={"open": f"{type(e).__name__}: {e}"}, problems=log.problems())
            return
        self.loading[name] = page, log

    def __getitem__(self, name: str) -> Reading:
        at = self.names.index(name)
        for ahead in self.names[at : at + self.ahead]:
            self._open(ahead)
        if name in self.loading:
            self.done[name] = read(*self.loading.pop(name), name)
        for ahead in self.names[at + 1 : at + 1 + self.ahead]:  # keep AHEAD loading while the test asserts
            self._open(ahead)
        return self.done[name]

    def close(self) -> None:
        for page, _ in self.loading.values():
            page.close()
        self.loading.clear()
