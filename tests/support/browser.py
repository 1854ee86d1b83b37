"""Debian's Chromium through Playwright, as the browser tests drive it, and the admin login."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

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
