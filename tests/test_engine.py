"""The engine end to end: a real Prefect server on PostgreSQL and a real process worker."""

from __future__ import annotations

import base64
import os
import signal
import time
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.states import Cancelled, Cancelling, Scheduled

from connecthub.core.config import get_settings
from connecthub.db import crud, joblog
from connecthub.db.engine import session_scope
from deployments.client import prefect_client
from deployments.heartbeat import (
    AUTOMATION_NAME,
    ensure_heartbeat_automation,
    heartbeat_automation,
)
from deployments.reconcile import reconcile_flow_runs
from deployments.runs import retry, run_now, wait_for_final
from deployments.sync import ENGINE_COMMAND, POOL_COMMAND, _Syncer, sync_all, sync_job
from tests.support.jobs import (
    CANARY,
    assert_canary_absent_from_prefect,
    deployment,
    job_row,
    logs_of,
    save,
    wait_pid,
)
from tests.support.processes import free_port
from tests.support.settings import use_settings

pytestmark = pytest.mark.engine

# --- sync -------------------------------------------------------------------------------------


def test_sync_mirrors_jobs_and_writes_only_the_difference(pg_env: None, prefect_server: str):
    save("sync.a", cron_expr="*/5 * * * *", timezone="Europe/Berlin", tags=["crm"])
    save("sync.b")
    assert sync_job("sync.a").error is None
    created = deployment("sync.a")
    assert created.parameters == {"job_id": "sync.a"}
    assert created.schedules[0].schedule.cron == "*/5 * * * *"
    assert created.schedules[0].schedule.timezone == "Europe/Berlin"
    assert created.global_concurrency_limit.limit == 1
    assert created.work_pool_name == "connecthub"
    assert set(created.tags) == {"connecthub", "crm"}
    assert job_row("sync.a").deployment_id == str(created.id)

    first = sync_all()
    assert first.created == ["sync.b"]
    again = sync_all()
    assert again.writes == 0 and again.unchanged == 2
    assert sync_job("sync.a").writes == 0

    schedule_id = created.schedules[0].id
    save("sync.a", cron_expr="*/7 * * * *", timezone="Europe/Berlin", tags=["crm"])
    edited = sync_all()
    assert edited.updated == ["sync.a"] and edited.writes == 1
    after = deployment("sync.a")
    assert after.schedules[0].id == schedule_id  # updated in place, never replaced
    assert after.schedules[0].schedule.cron == "*/7 * * * *"

    save("sync.a", cron_expr="*/7 * * * *", timezone="Europe/Berlin", tags=["crm"], enabled=False)
    assert sync_job("sync.a").writes == 1
    assert deployment("sync.a").paused is True
    save("sync.a", cron_expr="*/7 * * * *", timezone="Europe/Berlin", tags=["crm"])
    sync_job("sync.a")
    assert deployment("sync.a").paused is False

    with session_scope() as session:
        crud.delete_job(session, "sync.b")
    assert sync_all().deleted == ["sync.b"]
    with prefect_client() as client:
        names = {d.name for d in client.read_deployments()}
    assert "sync.b" not in names and "sync.a" in names


def test_a_job_synced_by_its_save_during_the_loops_pass_is_created_once(
    pg_env: None, prefect_server: str, monkeypatch: pytest.MonkeyPatch
):
    """The loop's pass read the deployments before a new job's save synced it: the pass must
    not create it again (Prefect's create replaces the schedule, and runs the scheduler made
    for the first one would run beside those of the second)."""
    save("sync.race")
    read_all = _Syncer.existing
    synced_by_save: list[UUID] = []

    def then_the_save_syncs(self: _Syncer) -> dict:
        current = read_all(self)
        assert "sync.race" not in current
        assert sync_job("sync.race").error is None  # the admin's save, in between
        synced_by_save.append(deployment("sync.race").schedules[0].id)
        return current

    monkeypatch.setattr(_Syncer, "existing", then_the_save_syncs)
    report = sync_all()
    assert "sync.race" not in report.created and report.errors == {}
    after = deployment("sync.race")
    assert [schedule.id for schedule in after.schedules] == synced_by_save  # not replaced
    assert job_row("sync.race").deployment_id == str(after.id)


def test_save_succeeds_while_prefect_is_down_and_sync_catches_up(
    pg_env: None, prefect_server: str, monkeypatch: pytest.MonkeyPatch
):
    use_settings(monkeypatch, PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api")
    save("down.a")
    outcome = sync_job("down.a")
    assert outcome.error and "not reachable" in outcome.error
    assert "not reachable" in job_row("down.a").sync_error

    use_settings(monkeypatch, PREFECT_API_URL=prefect_server)
    report = sync_all()
    assert "down.a" in report.created
    row = job_row("down.a")
    assert row.sync_error is None and row.deployment_id == str(deployment("down.a").id)


def test_work_pool_starts_runs_through_the_launcher(pg_env: None, prefect_server: str,
                                              monkeypatch: pytest.MonkeyPatch):
    def ensure() -> tuple[int, str | None]:
        """One infrastructure pass: (its writes, the pool's command)."""
        with prefect_client() as client:
            syncer = _Syncer(client)
            syncer.ensure_infrastructure()
            template = client.read_work_pool(pool).base_job_template
        return syncer.writes, template["variables"]["properties"]["command"].get("default")

    pool = f"pool-{uuid4().hex[:8]}"
    use_settings(monkeypatch, CONNECTHUB_WORK_POOL=pool)
    chosen = "nice python -m prefect.engine"
    try:
        assert ensure() == (1, POOL_COMMAND)
        assert ensure() == (0, POOL_COMMAND)
        # A pool made without the command (by hand) or starting the engine directly (an older
        # ConnectHub) gets it once; a command the operator chose is kept.
        with prefect_client() as client:
            client.delete_work_pool(pool)
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        assert ensure() == (1, POOL_COMMAND)
        with prefect_client() as client:
            template = client.read_work_pool(pool).base_job_template
            template["variables"]["properties"]["command"]["default"] = ENGINE_COMMAND
            client.update_work_pool(pool, WorkPoolUpdate(base_job_template=template))
        assert ensure() == (1, POOL_COMMAND)
        with prefect_client() as client:
            template = client.read_work_pool(pool).base_job_template
            template["variables"]["properties"]["command"]["default"] = chosen
            client.update_work_pool(pool, WorkPoolUpdate(base_job_template=template))
        assert ensure() == (0, chosen)
    finally:
        with prefect_client() as client:
            client.delete_work_pool(pool)


def test_heartbeat_automation_is_installed_once_and_upgraded_in_place(
    pg_env: None, prefect_server: str
):
    wanted = heartbeat_automation()
    older = wanted.model_copy(
        update={"trigger": wanted.trigger.model_copy(
            update={"after": {"prefect.flow-run.heartbeat"}}
        )}
    )
    with prefect_client() as client:
        for automation in client.read_automations_by_name(AUTOMATION_NAME):
            client.delete_automation(automation.id)
        client.create_automation(older)
        assert ensure_heartbeat_automation(client) == 1
        assert ensure_heartbeat_automation(client) == 0
        installed = client.read_automations_by_name(AUTOMATION_NAME)
    assert len(installed) == 1
    assert installed[0].trigger.after == {"prefect.flow-run.Running", "prefect.flow-run.heartbeat"}


# --- runs -------------------------------------------------------------------------------------


def test_reconcile_mirrors_a_run_whose_retried_log_is_gone(pg_env: None, prefect_server: str):
    save("reconcile.orphan")
    sync_job("reconcile.orphan")
    with prefect_client() as client:
        flow_run = client.create_flow_run_from_deployment(
            deployment("reconcile.orphan").id,
            parameters={"job_id": "reconcile.orphan", "retry_of": 2**40},
            state=Cancelled(message="cancelled before it started"),
        )
    assert reconcile_flow_runs([str(flow_run.id)]) == 1
    row = joblog.find_attempt(str(flow_run.id), 1)
    assert row is not None
    assert (row.status, row.retry_of, row.error) == (
        "CANCELLED", None, "cancelled before it started")



def test_run_now_succeeds_and_keeps_the_secret_out_of_prefect(pg_env: None, worker: Path):
    save("run.ok", secret_cfg={"token": CANARY}, public_cfg={"name": "Mars"})
    sync_job("run.ok")
    started = run_now("run.ok")
    final = wait_for_final(started.id, timeout_seconds=120)
    assert final.id == started.id
    assert final.status == "SUCCESS", final.error
    assert final.trigger == "manual" and final.attempt == 1
    assert final.snapshot_params == {"name": "Mars"}
    assert final.result == {"params": {"name": "Mars"}, "secret_keys": ["token"]}
    assert final.duration_ms is not None and final.finished_at is not None
    assert_canary_absent_from_prefect(final.flow_run_id)
    # The heartbeat automation relies on the worker's flow processes beating.
    assert heartbeats_of(final.flow_run_id) >= 1


def test_run_now_recreates_a_deployment_deleted_in_prefect(pg_env: None, worker: Path):
    save("run.redeploy")
    sync_job("run.redeploy")
    old = job_row("run.redeploy").deployment_id
    with prefect_client() as client:
        client.delete_deployment(UUID(old))
    final = wait_for_final(run_now("run.redeploy").id, timeout_seconds=120)
    assert final.status == "SUCCESS", final.error
    new = job_row("run.redeploy").deployment_id
    assert new not in (None, old) and str(deployment("run.redeploy").id) == new


def test_failing_plugin_is_failed_with_masked_traceback(pg_env: None, worker: Path):
    save("run.fail", handler="tests.plugins.jobs:LeakyFailingJob", secret_cfg={"token": CANARY})
    started = run_now("run.fail")
    final = wait_for_final(started.id, timeout_seconds=120)
    assert final.status == "FAILED"
    assert "RuntimeError: remote refused token ***" in final.error
    assert "Traceback" in final.traceback and "tests/plugins/jobs.py" in final.traceback
    assert CANARY not in final.error + final.traceback
    assert_canary_absent_from_prefect(final.flow_run_id)
    assert CANARY not in worker.read_text()
    assert CANARY.encode() not in base64.b64decode(base64.b64encode(worker.read_bytes()))


def test_retry_with_snapshot_and_with_current_config(pg_env: None, worker: Path):
    save("run.retry", public_cfg={"version": 1})
    first = wait_for_final(run_now("run.retry").id, timeout_seconds=120)
    assert first.status == "SUCCESS"
    save("run.retry", public_cfg={"version": 2})

    again = wait_for_final(retry(first.id, "snapshot").id, timeout_seconds=120)
    assert again.status == "SUCCESS"
    assert again.retry_of == first.id and again.trigger == "retry"
    assert again.snapshot_params == {"version": 1}

    current = wait_for_final(retry(first.id, "current").id, timeout_seconds=120)
    assert current.retry_of == first.id
    assert current.snapshot_params == {"version": 2}
    assert current.result["params"] == {"version": 2}


def test_retry_of_a_deleted_job_is_a_clear_error(pg_env: None, worker: Path):
    from deployments.client import RunRefusedError

    save("run.gone")
    first = wait_for_final(run_now("run.gone").id, timeout_seconds=120)
    with session_scope() as session:
        crud.delete_job(session, "run.gone")
    with pytest.raises(RunRefusedError, match=r"run\.gone"):
        retry(first.id)


def test_retry_from_the_prefect_ui_is_a_new_attempt(pg_env: None, worker: Path):
    save("run.ui", handler="tests.plugins.jobs:LeakyFailingJob", secret_cfg={"token": CANARY})
    first = wait_for_final(run_now("run.ui").id, timeout_seconds=120)
    assert first.status == "FAILED"
    with prefect_client() as client:  # what the UI's Retry button sends
        client.set_flow_run_state(
            UUID(first.flow_run_id),
            Scheduled(name="AwaitingRetry", message="Retry from the UI"),
            force=True,
        )
    second = wait_for_final(first.id, timeout_seconds=120)
    assert second.attempt == 2 and second.flow_run_id == first.flow_run_id
    assert second.trigger == "prefect-retry" and second.retry_of == first.id
    assert len([row for row in logs_of("run.ui") if row.flow_run_id == first.flow_run_id]) == 2


def test_job_retries_become_prefect_retries(pg_env: None, worker: Path):
    save(
        "run.retries", handler="tests.plugins.jobs:LeakyFailingJob",
        secret_cfg={"token": CANARY}, max_retries=1, retry_delay_seconds=0,
    )
    started = run_now("run.retries")
    final = wait_for_final(started.id, timeout_seconds=180)
    assert final.attempt == 2 and final.status == "FAILED"
    attempts = sorted(row.attempt for row in logs_of("run.retries"))
    assert attempts == [1, 2]


def test_timeout_fails_the_run(pg_env: None, worker: Path):
    save("run.slow", handler="tests.plugins.jobs:SleepJob", public_cfg={"seconds": 30},
         timeout_seconds=2)
    final = wait_for_final(run_now("run.slow").id, timeout_seconds=120)
    assert final.status == "FAILED"
    assert "JobTimeoutError" in final.error


def test_killed_flow_process_is_crashed(pg_env: None, worker: Path, tmp_path: Path):
    pid_file = tmp_path / "pid"
    save("run.kill", handler="tests.plugins.jobs:SleepJob",
         public_cfg={"seconds": 120, "pid_file": str(pid_file)})
    started = run_now("run.kill")
    os.kill(wait_pid(pid_file), signal.SIGKILL)
    final = wait_for_final(started.id, timeout_seconds=60)
    assert final.status == "CRASHED"
    assert final.finished_at is not None


def test_cancelled_run_is_cancelled(pg_env: None, worker: Path, tmp_path: Path):
    pid_file = tmp_path / "pid"
    save("run.cancel", handler="tests.plugins.jobs:SleepJob",
         public_cfg={"seconds": 120, "pid_file": str(pid_file)})
    started = run_now("run.cancel")
    wait_pid(pid_file)
    with prefect_client() as client:
        client.set_flow_run_state(UUID(started.flow_run_id), Cancelling(), force=True)
    final = wait_for_final(started.id, timeout_seconds=90)
    assert final.status == "CANCELLED"


def test_scheduled_run_reaches_success(pg_env: None, worker: Path):
    save("run.cron", cron_expr="* * * * *", public_cfg={"scheduled": True})
    assert sync_job("run.cron").error is None
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            done = [row for row in logs_of("run.cron") if row.status == "SUCCESS"]
            if done:
                assert done[0].trigger == "schedule"
                assert done[0].snapshot_params == {"scheduled": True}
                return
            time.sleep(2)
        pytest.fail(f"no scheduled run succeeded: {logs_of('run.cron')}")
    finally:  # later tests must not see this job's runs
        with session_scope() as session:
            crud.delete_job(session, "run.cron")
        sync_job("run.cron")


def heartbeats_of(flow_run_id: str | None, timeout: float = 15) -> int:
    """The number of heartbeat events Prefect's server holds for the flow run."""
    query = {"filter": {
        "event": {"name": ["prefect.flow-run.heartbeat"]},
        "resource": {"id": [f"prefect.flow-run.{flow_run_id}"]},
    }}
    url = f"{get_settings().prefect_api_url}/events/filter"
    deadline = time.monotonic() + timeout
    while True:
        total = httpx.post(url, json=query, timeout=10).raise_for_status().json()["total"]
        if total or time.monotonic() > deadline:
            return total
        time.sleep(0.5)
