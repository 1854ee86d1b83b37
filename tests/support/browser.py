"""Debian's Chromium through Playwright, as the browser tests drive it (the `browser` fixture
in conftest.py), the admin login, the pages seen (to check none held a secret), the job form's
handler field, waiting for a JobLog to end, and where screenshots go."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from connecthub.jobs.vocabulary import RunStatus

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USERNAME = os.environ.get("ADMIN_USERNAME", "admin")
REPO_ROOT = Path(__file__).resolve().parents[2]
# The screenshots in docs/screenshots are refreshed with
# CONNECTHUB_SCREENSHOTS=docs/screenshots ./connecthub.sh test tests/test_admin_browser.py
SCREENSHOTS = REPO_ROOT / os.environ.get("CONNECTHUB_SCREENSHOTS", "test-artifacts/screenshots")
RUN_TIMEOUT_MS = 120_000


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium; the test fails (never skips) when it is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium with `apt-get install -y chromium` "
            "(these tests never download a browser)."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def log_in(page: Any) -> None:
    page.goto("/admin/job/list")
    assert page.url.endswith("/admin/login")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", os.environ["ADMIN_PASSWORD"])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))


class Pages:
    """Every page the browser showed, to check afterwards that none held the secret."""

    def __init__(self, page) -> None:  # type: ignore[no-untyped-def]
        self.page = page
        self.seen: list[tuple[str, str]] = []

    def keep(self) -> str:
        html = self.page.content()
        self.seen.append((self.page.url, html))
        return html

    def assert_never_contained(self, *texts: str) -> None:
        assert self.seen
        for url, html in self.seen:
            for text in texts:
                assert text not in html, f"{url} contains a secret"


def choose_handler(page, handler: str) -> None:  # type: ignore[no-untyped-def]
    """Type a handler and leave the field: the form comes back with the plugin's fields."""
    page.fill("#handler_path", handler)
    with page.expect_navigation():
        page.dispatch_event("#handler_path", "change")
    assert page.input_value("#handler_path") == handler


FINAL_STATUS = ", ".join(
    f"#joblog-status[data-status={status.value}]" for status in RunStatus if status.is_final
)


def wait_for_status(page, status: RunStatus, pages: Pages) -> None:  # type: ignore[no-untyped-def]
    """Reload the JobLog details page until the run has ended, and check it ended in `status`.

    The page also refreshes itself while the run is going; waiting for a selector survives that.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    for _ in range(RUN_TIMEOUT_MS // 5000):
        try:
            page.wait_for_selector(FINAL_STATUS, timeout=5000)
            break
        except PlaywrightTimeoutError:
            page.reload()
    else:
        shown = page.get_attribute("#joblog-status", "data-status")
        raise AssertionError(f"JobLog {page.url} stayed {shown} for {RUN_TIMEOUT_MS // 1000} s")
    html = pages.keep()
    shown = page.get_attribute("#joblog-status", "data-status")
    assert shown == status.value, f"JobLog {page.url} ended {shown}:\n{html[-3000:]}"
