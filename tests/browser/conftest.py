"""Debian's Chromium, headless, driven by Playwright against the page served by the
test stack's Flask app on a real port (behind a proxy that can drop connections)."""
from __future__ import annotations

import os
import threading

import pytest
import requests

from tests.browser.proxy import CuttableProxy

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Nothing may be downloaded: the system browser, no first-run, update or sync traffic.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]  # containers often have a tiny /dev/shm
TIMEOUT_MS = 15_000  # generous: the machine may be busy with other suites


def _missing() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium with apt-get "
                "when it runs as root; elsewhere install it (or set CHROMIUM_PATH)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -r requirements-dev.txt)"
    return None


@pytest.fixture(scope="session")
def browser():
    if reason := _missing():
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def web(browser, app):
    """The app on a real port (threads: each open event stream holds one), behind the proxy."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, args=(0.1,), name="web-server", daemon=True).start()
    proxy = CuttableProxy(("127.0.0.1", server.server_port))
    try:
        yield proxy
    finally:
        proxy.close()
        server.shutdown()
        server.server_close()


@pytest.fixture()
def context(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture()
def page(context, web):
    page = context.new_page()
    page.errors = []  # uncaught exceptions in the page's own scripts
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(web.url)
    return page


@pytest.fixture()
def model(stack):
    """Pace the offline model for one test (POST /_control), then put its settings back."""
    url = stack.model.url + "/_control"
    before = requests.post(url, json={}, timeout=5).json()

    def pace(**settings) -> dict:
        response = requests.post(url, json=settings, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    yield pace
    requests.post(url, json={k: before[k] for k in ("delay_ms", "chunk_chars", "stream_delay_ms")} | {"faults": []},
                  timeout=5)


def key_of(headers: dict) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def sign_in(page, headers: dict) -> None:
    page.get_by_label("API key").fill(key_of(headers))
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()

