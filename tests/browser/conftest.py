"""Headless Chromium (Debian's, driven by Playwright) with every non-local request blocked.

Pages are served from the built book (_build/html) on 127.0.0.1. A test fails on page errors,
console errors outside ALLOWED_CONSOLE, failed requests, and any request that tried to leave
the machine.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
# BOOK_HTML points the browser checks at another built book (e.g. an older commit's, to show that a
# check fails on it); by default they read this checkout's build.
HTML = Path(os.environ["BOOK_HTML"]) if os.environ.get("BOOK_HTML") else ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
# Every built page's screenshot (reading.py) is its first screen unless BOOK_SHOTS=full: a full page is a re-layout at
# its whole height and a PNG of it (the API page on training is 94,000 px: 13-19 s), which took about a third of the
# built pages' browser time. `make screenshots` takes them whole, to look at.
FULL_SHOTS = os.environ.get("BOOK_SHOTS", "") == "full"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # No host but this one resolves: a page that is not routed (the built book's, which keep Chromium's
    # cache; routing turns it off) still cannot reach the network, and its request is seen failing.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]
# Messages a page may print without failing a test: none. The two every page used to print
# (sphinx-thebe's doubled `const THEBE_JS_URL`, pydata-sphinx-theme's "invalid theme mode") are
# fixed in _config.yml.
ALLOWED_MESSAGES: tuple[str, ...] = ()
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def is_local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("data", "blob", "about") or parsed.hostname in LOCAL_HOSTS


@dataclass
class PageLog:
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    # Requests sent and not yet answered, and when that set last changed: for wait_for_quiet_network.
    inflight: set = field(default_factory=set)
    changed: float = field(default_factory=time.monotonic)

    def problems(self) -> list[str]:
        def allowed(message: str) -> bool:
            return any(a in message for a in ALLOWED_MESSAGES)

        # Chromium logs "Failed to load resource" for every failed request; the request and
        # response listeners below report those with their URL, so the console line adds nothing.
        console = [m for m in self.console if not m.startswith("Failed to load resource")]
        return (
            [f"page error: {e}" for e in self.errors if not allowed(e)]
            + [f"console error: {m}" for m in console if not allowed(m)]
            + [f"failed request: {u}" for u in self.failed]
            + [f"blocked non-local request: {u}" for u in self.blocked]
        )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output readable
        pass


@pytest.fixture(scope="session")
def book_url():
    if not (HTML / "index.html").exists():
        pytest.fail(f"No built book at {HTML}: run `make build-book` first")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=HTML))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, viewport={"width": 1280, "height": 900}
        )
        yield context
        context.close()


def open_logged(context, url: str, log: PageLog, wait_until: str = "load", route: bool = True):
    """A new page in ``context`` that records problems into ``log`` and blocks non-local requests.

    ``route=False`` blocks them without routing (which turns Chromium's cache off): FLAGS let no host but this
    one resolve, so such a request fails, and it is recorded as it leaves."""
    page = context.new_page()

    def block(r):
        if is_local(r.request.url):
            r.continue_()
        else:
            log.blocked.append(r.request.url)
            r.abort()

    if route:
        page.route("**/*", block)
    else:
        page.on("request", lambda req: not is_local(req.url) and log.blocked.append(req.url))
    page.on("pageerror", lambda exc: log.errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and log.console.append(msg.text))
    page.on("requestfailed", lambda req: req.url not in log.blocked and log.failed.append(req.url))
    page.on("response", lambda resp: resp.status >= 400 and log.failed.append(f"{resp.status} {resp.url}"))

    def track(request, sent: bool):
        (log.inflight.add if sent else log.inflight.discard)(request)
        log.changed = time.monotonic()

    page.on("request", lambda req: track(req, True))
    page.on("requestfinished", lambda req: track(req, False))
    page.on("requestfailed", lambda req: track(req, False))
    page.goto(url, wait_until=wait_until)
    return page


def wait_for_quiet_network(page, log: PageLog, quiet_s: float = 0.5, timeout_s: float = 30) -> None:
    """Wait until no request of ``page`` (opened by open_logged) has been in flight for ``quiet_s``.

    This is Playwright's "networkidle" (no request for 500 ms), read from the requests the page's listeners saw:
    here the lifecycle event itself sometimes never fires on a page whose every request was answered (seen on
    book/intro and chapter landing pages, routed or not, with nothing in flight), and the wait ran out its 30 s."""
    deadline = time.monotonic() + timeout_s
    while log.inflight or time.monotonic() - log.changed < quiet_s:
        if time.monotonic() > deadline:
            pending = sorted(r.url for r in log.inflight)
            raise TimeoutError(f"requests in flight after {timeout_s:.0f} s: {len(pending)}: {pending[:5]}")
        page.wait_for_timeout(100)  # a poll: Playwright delivers the page's events while it waits


@pytest.fixture
def open_page(browser):
    """Open a page of the built book, unrouted (Chromium's cache on: BokehJS and MathJax load once per session)."""
    pages = []

    def _open(url: str) -> tuple:
        log = PageLog()
        page = open_logged(browser, url, log, route=False)
        pages.append(page)
        return page, log

    yield _open
    for page in pages:
        page.close()


@pytest.fixture(scope="session")
def readings(browser, book_url):
    """Every page of the book in reading order, each loaded and read once for test_book and test_reader."""
    # Imported here: reading.py builds on this module's PageLog and open_logged.
    from tests.browser.reading import Readings
    from tests.chapters.pages import toc_files

    pages = Readings(browser, book_url, toc_files())
    yield pages
    pages.close()


def screenshot(page, name: str, full_page: bool = True) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
