"""The admin's home page in Chromium: the health dashboard shows the pool's worker online, and,
once the worker is killed, offline (and the page unhealthy) within a minute."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.browser import chromium, log_in
from tests.support.processes import start_admin, stop_process

pytestmark = [pytest.mark.browser, pytest.mark.engine]


def test_the_dashboard_shows_a_killed_worker_within_a_minute(
    own_pool: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    admin, base_url = start_admin(tmp_path / "admin.log", dict(os.environ))
    try:
        with chromium() as browser:
            page = browser.new_page(base_url=base_url)
            page.set_default_timeout(30_000)
            log_in(page)
            assert page.text_content("#workers-online") == "1"
            assert page.locator("#runs-chart").count() == 1

            os.killpg(own_pool.pid, signal.SIGKILL)
            killed = time.monotonic()
            while page.text_content("#workers-online") != "0":
                assert time.monotonic() - killed < 60, "the dashboard still shows the worker"
                time.sleep(1)
                page.reload()
            assert "offline" in page.text_content("#workers")
            assert "Unhealthy" in page.text_content("#health-status")
            assert "no worker online" in page.text_content("#problems")
    finally:
        stop_process(admin)
