"""Jobs and their runs on the session's database and Prefect: save a job, read back its row,
its JobLog rows and its deployment, wait for a job's flow process, and check that the canary
secret never reached Prefect."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)

from connecthub.db import crud
from connecthub.db.engine import session_scope
from connecthub.db.models import Job, JobLog
from connecthub.jobs.spec import JobSpec
from connecthub.jobs.vocabulary import FLOW_NAME
from deployments.client import prefect_client

CANARY = "canary-7f3a9c51e2"


def save(job_id: str, handler: str = "tests.plugins.jobs:EchoJob", **fields: Any) -> None:
    fields.setdefault("cron_expr", "0 3 * * *")
    with session_scope() as session:
        crud.save_job(session, JobSpec(id=job_id, handler_path=handler, **fields))


def deployment(job_id: str):  # type: ignore[no-untyped-def]
    with prefect_client() as client:
        return client.read_deployment_by_name(f"{FLOW_NAME}/{job_id}")


def job_row(job_id: str) -> Job:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def logs_of(job_id: str) -> list[JobLog]:
    with session_scope() as session:
        rows = crud.recent_logs(session, job_id=job_id, limit=100)
        session.expunge_all()
        return rows


def wait_pid(path: Path, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    return int(path.read_text())


def flow_run_logs(flow_run_id: str, until: str = "Finished in state", timeout: float = 60) -> list:
    """The flow run's logs in Prefect, once one of them contains `until` (the engine's last
    line by default). Logs reach the server through Prefect's batched log worker, after the
    run's states and JobLog: a run can be final before its logs are all there."""
    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)]))
    deadline = time.monotonic() + timeout
    with prefect_client() as client:
        while True:
            logs = client.read_logs(log_filter=log_filter)
            if any(until in log.message for log in logs):
                return logs
            assert time.monotonic() < deadline, f"no log line with {until!r} in Prefect"
            time.sleep(0.5)


def assert_canary_absent_from_prefect(flow_run_id: str | None) -> None:
    encoded = base64.b64encode(CANARY.encode()).decode()
    logs = flow_run_logs(flow_run_id)
    with prefect_client() as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
        )
        deployments = client.read_deployments()
    assert runs, "expected the run in Prefect"
    surfaces = [run.model_dump_json() for run in runs]
    surfaces += [item.model_dump_json() for item in deployments]
    surfaces += [log.message for log in logs]
    for text in surfaces:
        assert CANARY not in text and encoded not in text


def stored_defaults() -> dict[str, Any]:
    """Every `JobSpec` default as stored, for rows inserted in bulk without JobSpec."""
    defaults = {
        name: field.get_default(call_default_factory=True)
        for name, field in JobSpec.model_fields.items() if not field.is_required()
    }
    return {name: getattr(value, "value", value) for name, value in defaults.items()}
