"""Starting runs: run now, retry a JobLog, and waiting for the outcome.

`run_now(job_id)` and `retry(log_id, use=...)` create a flow run of the job's deployment
without waiting and write its JobLog row at once (PENDING), so the caller can show the new
execution straight away; the flow body then fills in the same row. A retry reruns either the
exact `snapshot_params` of the retried execution (`use="snapshot"`) or the job's current
public_cfg (`use="current"`), and links the new row to the old one with `retry_of`. The trigger
travels as a flow-run tag, never as a parameter.
"""

from __future__ import annotations

import time
from typing import Any, Literal
from uuid import UUID

from prefect.exceptions import ObjectNotFound

from connecthub.db import crud
from connecthub.db.engine import session_scope
from connecthub.db.models import Job, JobLog, RunStatus, Trigger
from deployments.client import (
    FLOW_NAME,
    PrefectUnavailableError,
    RunRefusedError,
    prefect_client,
)
from deployments.sync import sync_job
from flows.execute_job import TRIGGER_TAG_PREFIX

RetrySource = Literal["snapshot", "current"]


def _start(
    job_id: str, *, trigger: Trigger, params: dict[str, Any] | None, retry_of: int | None
) -> JobLog:
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise RunRefusedError(f"Job '{job_id}' does not exist (or was deleted); it cannot run.")
        has_deployment = job.deployment_id is not None and job.sync_error is None
    if not has_deployment:
        outcome = sync_job(job_id)
        if outcome.error:
            raise PrefectUnavailableError(f"Job '{job_id}' is not deployed: {outcome.error}")
    parameters: dict[str, Any] = {"job_id": job_id}
    if params is not None:
        parameters["params"] = params
    if retry_of is not None:
        parameters["retry_of"] = retry_of
    with prefect_client() as client:
        try:
            deployment = client.read_deployment_by_name(f"{FLOW_NAME}/{job_id}")
        except ObjectNotFound:
            raise RunRefusedError(
                f"Job '{job_id}' has no Prefect deployment yet; the sync loop will create it."
            ) from None
        flow_run = client.create_flow_run_from_deployment(
            deployment.id,
            parameters=parameters,
            tags=[f"{TRIGGER_TAG_PREFIX}{trigger.value}"],
        )
    with session_scope() as session:
        return crud.record_attempt(
            session,
            str(flow_run.id),
            1,
            create={
                "job_id": job_id,
                "trigger": trigger.value,
                "retry_of": retry_of,
                "status": RunStatus.PENDING.value,
                "snapshot_params": params if params is not None else None,
            },
        )


def run_now(job_id: str, params: dict[str, Any] | None = None) -> JobLog:
    """Start a manual run of `job_id` (with `params` instead of its public_cfg, if given)."""
    return _start(job_id, trigger=Trigger.MANUAL, params=params, retry_of=None)


def retry(log_id: int, use: RetrySource = "snapshot") -> JobLog:
    """Rerun the execution `log_id` with its own params (snapshot) or the job's current ones."""
    if not 0 < log_id < 2**63:  # outside JobLog's BIGINT ids: the database would refuse it
        raise RunRefusedError(f"There is no JobLog #{log_id} to retry.")
    with session_scope() as session:
        log = session.get(JobLog, log_id)
        if log is None:
            raise RunRefusedError(f"There is no JobLog #{log_id} to retry.")
        job_id, snapshot = log.job_id, log.snapshot_params
    if use == "snapshot" and snapshot is None:
        raise RunRefusedError(
            f"JobLog #{log_id} never reached the job, so it has no params to rerun; "
            "use 'Retry with current config'."
        )
    params = snapshot if use == "snapshot" else None
    return _start(job_id, trigger=Trigger.RETRY, params=params, retry_of=log_id)


def wait_for_final(
    log_id: int, timeout_seconds: float = 300, poll_seconds: float = 0.5
) -> JobLog:
    """The newest attempt of the run of `log_id` once Prefect has finished with that run."""
    from deployments.reconcile import reconcile_flow_runs

    with session_scope() as session:
        log = session.get(JobLog, log_id)
        if log is None or log.flow_run_id is None:
            raise RunRefusedError(f"JobLog #{log_id} has no flow run to wait for.")
        flow_run_id = log.flow_run_id
    deadline = time.monotonic() + timeout_seconds
    while True:
        with prefect_client() as client:
            flow_run = client.read_flow_run(UUID(flow_run_id))
        if flow_run.state is not None and flow_run.state.is_final():
            reconcile_flow_runs([flow_run_id])
            with session_scope() as session:
                latest = crud.latest_attempt(session, flow_run_id)
                if latest is not None and RunStatus(latest.status).is_final:
                    return latest
        if time.monotonic() > deadline:
            raise TimeoutError(f"JobLog #{log_id} did not finish within {timeout_seconds:.0f} s")
        time.sleep(poll_seconds)
