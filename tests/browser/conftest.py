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
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
# BOOK_HTML points the browser checks at another built book (e.g. an older commit's, to show that a
# check fails on it); by default they read this checkout's build.
HTML = Path(os.environ["BOOK_HTML"]) if os.environ.get("BOOK_HTML") else ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # No host but this one resolves: a page that is not routed (test_reader's, which keep Chromium's
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
    page.goto(url, wait_until=wait_until)
    return page


@pytest.fixture
def open_page(browser):
    pages = []

    def _open(url: str) -> tuple:
        log = PageLog()
        page = open_logged(browser, url, log)
        pages.append(page)
        return page, log

    yield _open
    for page in pages:
        page.close()


def screenshot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
