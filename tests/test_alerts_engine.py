"""Alerts with the real engine: a job whose plugin fails with its secret in the error alerts a
local webhook once, without the secret; a worker killed under a pool alerts "no worker" once, and
a scheduled run nobody starts then alerts "late" once;
and the admin's dashboard (in Chromium, see test_dashboard_browser) shows the worker offline."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from prefect.states import Scheduled

from connecthub.alerts import add_channel
from connecthub.core.config import get_settings
from connecthub.db.engine import session_scope
from deployments.alerting import run_alerting
from deployments.client import prefect_client
from deployments.health import snapshot
from deployments.runs import run_now, wait_for_final
from deployments.sync import sync_job
from tests.support.http import ScriptedServer
from tests.support.jobs import CANARY, job_row, save
from tests.support.settings import use_settings

pytestmark = pytest.mark.engine


def bodies(hook: ScriptedServer) -> list[dict[str, Any]]:
    return [json.loads(request.body) for request in hook.received]


def poll_alerts(hook: ScriptedServer, title_part: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run_alerting()
        found = [body for body in bodies(hook) if title_part in body["title"]]
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"no alert with {title_part!r}; got {bodies(hook)}")


def test_a_failing_job_a_killed_worker_and_a_late_run_alert_once_each(
    own_pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ScriptedServer() as hook:
        with session_scope() as session:
            add_channel(session, "hook", f"json://127.0.0.1:{hook.url.rsplit(':', 1)[1]}/a",
                        default=True)
        save("canary.fails", handler="tests.plugins.jobs:LeakyFailingJob",
             secret_cfg={"token": CANARY})
        assert sync_job("canary.fails").error is None
        final = wait_for_final(run_now("canary.fails").id, timeout_seconds=120)
        assert final.status == "FAILED"

        failing = poll_alerts(hook, "canary.fails FAILED", timeout=30)
        assert len(failing) == 1
        assert "remote refused token ***" in failing[0]["message"]
        assert f"/admin/job-log/details/{final.id}" in failing[0]["message"]
        ui_url = get_settings().ui_url
        assert f"Prefect run: {ui_url}/runs/flow-run/{final.flow_run_id}" in failing[0]["message"]
        assert snapshot().workers_online == 1

        os.killpg(own_pool.pid, signal.SIGKILL)
        own_pool.wait(timeout=10)
        missing = poll_alerts(hook, "no worker on pool", timeout=90)
        assert snapshot().workers_online == 0
        for _ in range(3):  # later passes see the same silence: no second alert
            run_alerting()
        titles = [body["title"] for body in bodies(hook)]
        assert titles.count(missing[0]["title"]) == 1
        assert titles.count(failing[0]["title"]) == 1

        # With no worker on the pool, a scheduled run is not started: one "late" alert.
        use_settings(monkeypatch, CONNECTHUB_LATE_RUN_SECONDS="5")
        with prefect_client() as client:
            late_run = client.create_flow_run_from_deployment(
                UUID(job_row("canary.fails").deployment_id),
                state=Scheduled(scheduled_time=datetime.now(UTC) - timedelta(seconds=10)),
            )
        late = poll_alerts(hook, "canary.fails run is late", timeout=30)
        assert str(late_run.id) in late[0]["message"]
        for _ in range(3):
            run_alerting()
        assert [body["title"] for body in bodies(hook)].count(late[0]["title"]) == 1
        for body in bodies(hook):
            assert CANARY not in json.dumps(body)
