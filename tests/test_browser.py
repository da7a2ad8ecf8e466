"""The built book in a real browser: headless Debian ``chromium`` driven by Python Playwright.

For every page of ``_toc.yml`` (and the ``index.html`` redirect):

* the page loads over a local ``http.server`` on 127.0.0.1 and no request goes anywhere else (every
  request URL is recorded; outside ones are aborted and fail the test: a CDN regression shows here);
* there is no console error, page error or failed local request, except the short allow-list below;
* every chart drew (an ``svg``/``canvas`` in every ``.book-vega``), and MathJax typeset every formula;
* every altair slider (``input[type=range]``) and select, when moved, changes its chart's drawing;
* a screenshot of the whole page lands in ``test-artifacts/screenshots/``.

The book comes from ``BOOK_HTML`` (a built ``_build/html``) when set; otherwise the test builds it with
``python -m lib.book build --profile smoke --reuse --chapters <every chapter whose source exists>``.
Without chromium the tests skip, except under CI (``CI`` set), where they fail: install it with
``apt-get install -y chromium`` (never ``playwright install``).
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lib import book

pytestmark = pytest.mark.browser

ROOT = book.ROOT
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
# Known noise of Jupyter Book 1 / sphinx-book-theme 1.3.0 pages; nothing else is tolerated.
ALLOWED_CONSOLE = [
    # sphinx-thebe injects its config script twice on every page
    re.compile(r"Identifier 'THEBE_JS_URL' has already been declared"),
    # pydata-sphinx-theme logs this when no colour mode is stored yet
    re.compile(r"Got invalid theme mode"),
]
ALLOWED_404 = [re.compile(r"/favicon\.ico$")]  # the browser asks for it; the book has none


def _pages() -> list[str]:
    from lib.book import toc_files

    return ["index"] + toc_files(ROOT / "_toc.yml")


PAGES = _pages()


@pytest.fixture(scope="session")
def chromium_path():
    path = shutil.which("chromium")
    if path is None:
        message = "Debian's chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; the browser test must run under CI", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def html_dir(tmp_path_factory):
    given = os.environ.get("BOOK_HTML")
    if given:
        html = Path(given).resolve()
        if not (html / "index.html").exists():
            pytest.fail(f"BOOK_HTML={given} holds no index.html", pytrace=False)
        return html
    present = [name for name in book.toc_chapters() if book.source(name).exists()]
    out = tmp_path_factory.mktemp("book") / "_build"
    run = subprocess.run([sys.executable, "-m", "lib.book", "build", "--profile", "smoke", "--reuse",
                          "--out", str(out), "--chapters", *present],
                         cwd=ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        tail = "\n".join((run.stdout + run.stderr).splitlines()[-30:])
        pytest.fail(f"python -m lib.book build failed (exit {run.returncode}):\n{tail}", pytrace=False)
    return out / "html"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def base_url(html_dir):
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield b
        b.close()


# JavaScript run in the page ----------------------------------------------------------------------
CHART_STATE = """el => {
  const host = el.closest('.book-vega') || el.closest('.vega-embed') || el;
  const svg = host.querySelector('svg.marks, svg');
  if (svg) return svg.innerHTML;
  const canvas = host.querySelector('canvas');
  return canvas ? canvas.toDataURL() : '';
}"""
CHANGED = """([el, before]) => {
  const host = el.closest('.book-vega') || el.closest('.vega-embed') || el;
  const svg = host.querySelector('svg.marks, svg');
  const now = svg ? svg.innerHTML : (host.querySelector('canvas') || {toDataURL: () => ''}).toDataURL();
  return now !== before;
}"""
MATHJAX_DONE = """() => {
  if (!window.MathJax || !window.MathJax.startup || !window.MathJax.startup.promise) return true;
  return window.MathJax.startup.promise.then(() => true);
}"""


def _allowed_console(text: str) -> bool:
    return any(p.search(text) for p in ALLOWED_CONSOLE)


@pytest.mark.parametrize("page_name", PAGES)
def test_page(page_name, browser, base_url):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    outside, requests, errors, failed = [], [], [], []

    def route(r):
        url = r.request.url
        if url.startswith(base_url) or url.startswith(("data:", "blob:", "about:")):
            r.continue_()
        else:
            outside.append(url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("request", lambda req: requests.append(req.url))
    page.on("pageerror", lambda exc: None if _allowed_console(str(exc)) else errors.append(f"pageerror: {exc}"))

    def on_console(msg):
        if msg.type == "error" and not _allowed_console(msg.text):
            where = (msg.location or {}).get("url", "")
            if "Failed to load resource" in msg.text and any(p.search(where) for p in ALLOWED_404):
                return
            errors.append(f"console: {msg.text} ({where})")

    page.on("console", on_console)
    page.on("response", lambda resp: failed.append(f"{resp.status} {resp.url}")
            if resp.status >= 400 and not any(p.search(resp.url) for p in ALLOWED_404) else None)
    page.on("requestfailed", lambda req: failed.append(f"failed {req.url}")
            if req.url.startswith(base_url) else None)
    try:
        response = page.goto(f"{base_url}/{page_name}.html", wait_until="load")
        assert response is not None and response.ok, f"{page_name}.html: HTTP {response and response.status}"
        page.wait_for_load_state("networkidle")
        assert page.locator("main h1, article h1").count() >= 1, f"{page_name}: no title on the page"

        # charts drew
        charts = page.locator(".book-vega")
        for i in range(charts.count()):
            chart = charts.nth(i)
            try:
                chart.locator("svg, canvas").first.wait_for(state="attached", timeout=15_000)
            except PlaywrightTimeout:
                pytest.fail(f"{page_name}: chart {i} did not draw: {chart.inner_text()!r}; "
                            f"errors so far: {errors}", pytrace=False)
            assert "Chart failed" not in chart.inner_text(), chart.inner_text()

        # formulas typeset by the vendored MathJax
        page.evaluate(MATHJAX_DONE)
        math = page.locator("div.math, span.math")
        if math.count():
            assert page.locator("mjx-container").count() >= math.count(), (
                f"{page_name}: {math.count()} formulas, {page.locator('mjx-container').count()} typeset")

        # every slider and select changes its chart
        controls = page.locator(".vega-bindings input[type=range], .vega-bindings select")
        for i in range(controls.count()):
            control = controls.nth(i)
            handle = control.element_handle()
            before = handle.evaluate(CHART_STATE)
            assert before, f"{page_name}: control {i} belongs to no drawn chart"
            if control.evaluate("e => e.tagName") == "SELECT":
                values = control.evaluate("e => Array.from(e.options).map(o => o.value)")
                current = control.input_value()
                assert len(values) > 1, f"{page_name}: select {i} offers one option only ({values})"
                target = next(v for v in values if v != current)
                control.select_option(target)
            else:
                lo = float(control.get_attribute("min") or 0)
                hi = float(control.get_attribute("max") or 100)
                target = lo if float(control.input_value()) != lo else hi
                control.fill(f"{target:g}")
            page.wait_for_function(CHANGED, arg=[handle, before], timeout=10_000)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{page_name.replace('/', '__')}.png"), full_page=True)
    finally:
        context.close()

    local = [u for u in requests if u.startswith(base_url)]
    assert local, f"{page_name}: no request recorded"
    assert not outside, f"{page_name}: requests left the local server: {outside}"
    assert not failed, f"{page_name}: failed local requests: {failed}"
    assert not errors, f"{page_name}: console/page errors: {errors}"
