"""Real headless Chromium (Debian's `chromium`) driven by Playwright."""
import os
import shutil
import tempfile

import pytest

from tests.factories import PASSWORD

# Playwright's sync API runs an event loop in this thread; the ORM calls the
# tests make around it are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path():
    return os.environ.get("ATTUNE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser():
    path = chromium_path()
    if not path:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is required under CI=true (install Debian's chromium)")
        pytest.skip("Chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser, **context_options):
    """A page in a fresh browser context (no cookies: a new session) that waits at most 15 s for anything;
    close it with ``page.context.close()``."""
    page = browser.new_context(**context_options).new_page()
    page.set_default_timeout(15000)
    return page


@pytest.fixture
def page(browser):
    page = new_page(browser)
    yield page
    page.context.close()


def _log_in(page, url, username, submit):
    page.goto(url)
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click(submit)


def clinician_login(page, live_server, username):
    """Sign in on the clinicians' login page, which opens the rating queue."""
    _log_in(page, live_server.url + "/accounts/login/", username, "button[type=submit]")
    assert page.url == live_server.url + "/rate/"


def admin_login(page, live_server, username, next_path="/admin/"):
    """Sign in on the admin's login page, which goes on to ``next_path`` (when the user may open it)."""
    _log_in(page, f"{live_server.url}/admin/login/?next={next_path}", username, "input[type=submit]")


@pytest.fixture
def user_data_dir():
    with tempfile.TemporaryDirectory() as path:
        yield path
