"""From the typed job form to the run in the real Prefect UI and back, in Chromium.

An operator creates `typed.ui` (tests.plugins.typed:TypedJob) from the form the plugin's models
give: a bad batch size is refused under its field, the fixed form saves. "Run with params" runs
it once with a changed target; the JobLog links the flow run in the Prefect UI served by the
test's `prefect server start`, where the run is named after the job, its steps are task runs of
its graph, and its artifact links back to the JobLog page; the operator retries it from there
and the retry shows up in JobLog as the run's next attempt. No page holds the secret.

A worker and an admin of its own (its own work pool, ADMIN_URL set to the admin's address) so
that the run's links point at this admin. Saves the screenshots of the typed form and the run
graph (to test-artifacts/screenshots/, or CONNECTHUB_SCREENSHOTS; see test_admin_browser.py).
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from connecthub.db.engine import session_scope
from connecthub.db.models import JobLog
from connecthub.jobs.vocabulary import RunStatus, Trigger
from deployments.sync import remove_job
from tests.support.browser import (
    SCREENSHOTS,
    Pages,
    choose_handler,
    log_in,
    wait_for_status,
)
from tests.support.processes import free_port, start_admin, start_worker, stop_process
from tests.support.settings import use_settings

pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.timeout(600)]

JOB_ID = "typed.ui"
HANDLER = "tests.plugins.typed:TypedJob"
API_KEY = "ui-api-key-4b2d9e"
RETRY_TIMEOUT = 180
DRAWN_COLOURS = 100


@pytest.fixture(scope="module")
def stack(
    prefect_server: str, pg_database: str, session_dir: Path
) -> Iterator[tuple[str, str]]:
    """An admin on a known port and a worker of its own pool; yields (admin URL, UI URL)."""
    port = free_port()
    admin_url = f"http://127.0.0.1:{port}"
    pool = f"connecthub-ui-{uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as patch:
        use_settings(patch, CONNECTHUB_WORK_POOL=pool, ADMIN_URL=admin_url)
        env = dict(os.environ)
        worker = start_worker(session_dir / "ui-worker.log", env)
        try:
            admin, _ = start_admin(session_dir / "ui-admin.log", env, port=port)
            try:
                yield admin_url, prefect_server.removesuffix("/api")
            finally:
                stop_process(admin)
        finally:
            stop_process(worker)
            remove_job(JOB_ID)
    use_settings(None, PREFECT_API_URL=prefect_server)


def wait_for_drawing(canvas, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    """Wait until the canvas shows a drawing: an empty one is a single colour, a drawn graph
    (nodes, labels, the time axis, anti-aliased) hundreds."""
    deadline = time.monotonic() + timeout
    while True:
        image = Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")
        colours = len(image.getcolors(1 << 20) or [])
        if colours > DRAWN_COLOURS:
            return
        assert time.monotonic() < deadline, f"the run graph stayed empty ({colours} colours)"
        time.sleep(0.5)


def attempts_of(flow_run_id: str) -> list[JobLog]:
    with session_scope() as session:
        rows = list(session.scalars(
            select(JobLog).where(JobLog.flow_run_id == flow_run_id).order_by(JobLog.attempt)
        ))
        session.expunge_all()
        return rows


def test_typed_form_run_with_params_and_the_prefect_ui(  # type: ignore[no-untyped-def]
    browser, stack: tuple[str, str], pg_env: None
) -> None:
    admin_url, ui_url = stack
    context = browser.new_context(base_url=admin_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    pages = Pages(page)
    try:
        log_in(page)

        # The typed form: a batch size the model refuses is shown under its field.
        page.goto("/admin/job/create")
        page.fill("#id", JOB_ID)
        choose_handler(page, HANDLER)
        assert page.input_value("#id") == JOB_ID  # kept across the reload
        assert page.input_value("#params-batch_size") == "100"  # the model's default
        assert page.locator("#params-mode").evaluate("el => el.tagName") == "SELECT"
        page.select_option("#params-mode", "full")
        typed = {"#cron_expr": "0 3 1 1 *", "#params-target": "crm", "#params-batch_size": "0"}
        for selector, value in {**typed, "#secrets-api_key": API_KEY}.items():
            page.fill(selector, value)
        page.click("input[type=submit][value=Save]")
        error = page.locator("#params-batch_size ~ .invalid-feedback")
        assert "greater than or equal to 1" in error.inner_text() and error.is_visible()
        assert page.input_value("#secrets-api_key") == ""  # never sent back
        pages.keep()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1280, "height": 1900})
        page.screenshot(path=str(SCREENSHOTS / "job-typed-form.png"))
        page.set_viewport_size({"width": 1280, "height": 900})

        page.fill("#params-batch_size", "20")
        page.fill("#secrets-api_key", API_KEY)
        page.click("input[type=submit][value=Save]")
        page.wait_for_url(re.compile(r"/admin/job/list"))
        assert "created and deployed to Prefect" in page.inner_text("#flash-messages")

        # Run with params: the form holds the job's params; the run gets a changed target.
        page.goto(f"/admin/job/details/{JOB_ID}")
        page.click("#run-with-params")
        assert page.input_value("#params-target") == "crm"
        assert page.input_value("#params-batch_size") == "20"
        page.fill("#params-target", "erp")
        page.click("#run-submit")
        page.wait_for_url(re.compile(r"/admin/job-log/details/\d+"))
        log_id = int(page.url.rsplit("/", 1)[-1])
        wait_for_status(page, RunStatus.SUCCESS, pages)
        assert '"target": "erp"' in page.inner_text("#joblog-params")
        assert '"batch_size": 20' in page.inner_text("#joblog-params")
        run_link = page.get_attribute("#prefect-flow-run-link", "href")
        assert run_link and run_link.startswith(f"{ui_url}/runs/flow-run/")
        flow_run_id = run_link.rsplit("/", 1)[-1]

        # The run in the Prefect UI: named after the job, its steps in the graph.
        page.goto(run_link)
        title = page.get_by_text(re.compile(rf"^{re.escape(JOB_ID)} · .* · manual$")).first
        title.wait_for()
        steps = {"load job", "run plugin", "fetch", "transform", "page 1", "push", "record"}
        # What the UI draws its graph from: the steps as nodes, "page 1" under "transform".
        graph = httpx.get(f"{ui_url}/api/flow_runs/{flow_run_id}/graph-v2", timeout=30).json()
        nodes = {node["label"]: node for _, node in graph["nodes"]}
        assert steps <= set(nodes)
        parents = {edge["id"] for edge in nodes["page 1"]["parents"]}
        assert nodes["transform"]["id"] in parents
        wait_for_drawing(page.locator("canvas").first)  # the graph, drawn (WebGL)
        page.get_by_text("Task Runs", exact=True).click()  # the run page's tabs
        for step in steps:
            page.get_by_text(step, exact=True).first.wait_for()
        page.screenshot(path=str(SCREENSHOTS / "prefect-run-graph.png"))

        # ... and its link back to the JobLog page.
        page.get_by_text("Artifacts", exact=True).click()
        page.get_by_text("This run in the ConnectHub admin").first.click()  # the link artifact
        back = page.get_by_role("link", name=f"JobLog #{log_id}").first
        back.wait_for()
        assert back.get_attribute("href") == f"{admin_url}/admin/job-log/details/{log_id}"
        page.goto(back.get_attribute("href"))
        assert f"/admin/job-log/details/{log_id}" in page.url
        page.wait_for_selector("#joblog-details")

        # Retry from the Prefect UI: the same flow run runs again, JobLog records attempt 2.
        page.goto(run_link)
        page.get_by_role("button", name="Retry").first.click()
        confirm = page.get_by_role("dialog").get_by_role("button", name="Retry")
        if confirm.count():
            confirm.click()
        deadline = time.monotonic() + RETRY_TIMEOUT
        while True:
            attempts = attempts_of(flow_run_id)
            if len(attempts) == 2 and RunStatus(attempts[1].status).is_final:
                break
            assert time.monotonic() < deadline, f"no second attempt: {attempts}"
            time.sleep(1)
        second = attempts[1]
        assert second.status == RunStatus.SUCCESS.value and second.trigger == Trigger.PREFECT_RETRY
        assert second.snapshot_params["target"] == "erp"
        page.goto(f"{admin_url}/admin/job-log/details/{second.id}")
        pages.keep()
        assert "prefect-retry" in page.inner_text("#joblog-details")
        pages.assert_never_contained(API_KEY)
    finally:
        context.close()
