"""The admin in a real browser (Debian's Chromium through Playwright) against a real admin server,
a real Prefect server and a real worker: an operator logs in, creates example.hello with a
secret, meets a validation error, runs the job, opens its JobLog, clicks Retry and watches the
retry succeed; no page ever contains the secret. A form posted from another site changes nothing.

Also saves screenshots (to test-artifacts/screenshots/, or CONNECTHUB_SCREENSHOTS). Chromium must
be installed (`apt-get install -y chromium`): without it these tests fail, they do not skip.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from connecthub.db.engine import session_scope
from connecthub.db.models import Job, JobLog
from connecthub.jobs.vocabulary import RunStatus
from tests.support.browser import (
    SCREENSHOTS,
    Pages,
    choose_handler,
    log_in,
    wait_for_status,
)
from tests.support.processes import start_admin, stop_process

pytestmark = pytest.mark.browser

SECRET_VALUE = "demo-token"
JOB_ID = "example.hello"


@pytest.fixture(scope="module")
def admin_server(worker: Path, session_dir: Path) -> Iterator[str]:
    """`connecthub admin` on a free port, on the session's database and Prefect."""
    process, base_url = start_admin(session_dir / "admin-browser.log", dict(os.environ))
    yield base_url
    stop_process(process)


@pytest.fixture
def page(browser, admin_server: str, pg_env: None):  # type: ignore[no-untyped-def]
    context = browser.new_context(base_url=admin_server, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def stored_token() -> str | None:
    with session_scope() as session:
        return session.scalar(select(Job.secret_cfg).where(Job.id == JOB_ID))


def joblog_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(JobLog)) or 0


def test_operator_creates_runs_and_retries_a_job(page) -> None:  # type: ignore[no-untyped-def]
    pages = Pages(page)
    log_in(page)

    # Create example.hello; the first try has a cron with a seconds field, which is refused.
    page.goto("/admin/job/create")
    page.fill("#id", JOB_ID)
    page.fill("#name", "Hello Mars")
    choose_handler(page, "extensions.example.job:ExampleJob")  # brings ExampleJob's fields
    page.fill("#cron_expr", "*/10 * * * * *")
    page.fill("#timezone", "UTC")
    page.fill("#params-name", "Mars")
    page.fill("#secrets-token", SECRET_VALUE)
    page.click("input[type=submit][value=Save]")
    cron_error = page.locator("#cron_expr ~ .invalid-feedback")
    assert "exactly 5 fields" in cron_error.inner_text()
    assert cron_error.is_visible()
    assert page.input_value("#secrets-token") == ""  # the secret is not sent back
    assert page.input_value("#params-name") == "Mars"
    pages.keep()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 1560})  # the whole form, sidebar included
    page.screenshot(path=str(SCREENSHOTS / "job-form.png"))
    page.set_viewport_size({"width": 1280, "height": 900})
    assert stored_token() is None

    page.fill("#cron_expr", "* * * * *")
    page.fill("#secrets-token", SECRET_VALUE)
    page.click("input[type=submit][value=Save]")
    page.wait_for_url(re.compile(r"/admin/job/list"))
    pages.keep()
    assert "created and deployed to Prefect" in page.inner_text("#flash-messages")
    token = stored_token()
    assert token is not None and token.startswith("gAAAA")

    try:
        # Run now, from the job's row: it opens the new JobLog.
        row = page.locator("tr", has=page.locator(f"text={JOB_ID}"))
        row.locator("button[title='Run now']").click()
        page.wait_for_url(re.compile(r"/admin/job-log/details/\d+"))
        first_url = page.url
        first_id = first_url.rsplit("/", 1)[-1]
        assert f"started as JobLog #{first_id}" in page.inner_text("#flash-messages")
        wait_for_status(page, RunStatus.SUCCESS, pages)
        assert '"greeting": "Hello, Mars!"' in page.inner_text("#joblog-result")
        assert '"name": "Mars"' in page.inner_text("#joblog-params")
        page.screenshot(path=str(SCREENSHOTS / "joblog-details.png"), full_page=True)

        # Retry: a new JobLog, linked to the first one, that succeeds as well.
        page.click("#retry-snapshot")
        page.wait_for_url(lambda url: "/admin/job-log/details/" in url and url != first_url)
        assert f"Retrying JobLog #{first_id}" in page.inner_text("#flash-messages")
        assert f"JobLog #{first_id}" in page.inner_text("#joblog-retry-of")
        retry_id = page.url.rsplit("/", 1)[-1]
        wait_for_status(page, RunStatus.SUCCESS, pages)
        assert "retry" in page.inner_text("#joblog-details")

        # The list shows both, newest first; the job's pages never show the secret.
        page.goto(f"/admin/job-log/list?job_id={JOB_ID}")
        pages.keep()
        listed = page.locator("a[href*='/admin/job-log/details/']").evaluate_all(
            "links => links.map(link => link.href.split('/').pop())"
        )
        assert listed.index(retry_id) < listed.index(first_id)  # newest first
        page.screenshot(path=str(SCREENSHOTS / "joblog-list.png"))
        for path in (
            f"/admin/job/edit/{JOB_ID}",
            f"/admin/job/details/{JOB_ID}",
            "/admin/job/list",
        ):
            page.goto(path)
            pages.keep()
        assert "SUCCESS" in page.inner_text("table")  # the list's last run status
        page.screenshot(path=str(SCREENSHOTS / "job-list.png"))
        pages.assert_never_contained(SECRET_VALUE, token)
    finally:
        # Delete through the admin so the deployment (and its every-minute schedule) goes too.
        page.goto(f"/admin/job/details/{JOB_ID}")
        page.click("a.btn-danger[data-bs-target='#modal-delete']")
        page.wait_for_selector(f"#modal-delete-text:has-text('{JOB_ID}')")
        page.click("#modal-delete-button")
        page.wait_for_url(re.compile(r"/admin/job/list"))
        assert stored_token() is None


def test_a_form_posted_from_another_site_changes_nothing(page) -> None:  # type: ignore[no-untyped-def]
    log_in(page)
    with session_scope() as session:
        log = JobLog(job_id=JOB_ID, status=RunStatus.FAILED.value, snapshot_params={})
        session.add(log)
        session.flush()
        log_id = log.id
    before = joblog_count()
    admin = page.url.rsplit("/admin/", 1)[0]
    attack = f"""<html><body>
      <form id="f" method="post" action="{admin}/admin/job-log/retry/{log_id}">
        <input name="use" value="snapshot"><input name="csrf_token" value="guess">
      </form><script>document.getElementById('f').submit()</script></body></html>"""
    page.route(
        "http://attacker.test/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body=attack),
    )
    page.goto("http://attacker.test/")
    page.wait_for_url(re.compile(r"/admin/login$"))
    assert joblog_count() == before
    # The operator is still logged in: only the cross-site request went without the cookie.
    page.goto("/admin/job-log/list")
    assert page.url.endswith("/admin/job-log/list")
