"""Starting runs: run now, retry a JobLog, and waiting for the outcome.

`run_now(job_id)` and `retry(log_id, use=...)` create a flow run of the job's deployment
without waiting and write its JobLog row at once (PENDING), so the caller can show the new
execution straight away; the flow body then fills in the same row. A retry reruns either the
exact `snapshot_params` of the retried execution (`use="snapshot"`) or the job's current
public_cfg (`use="current"`), and links the new row to the old one with `retry_of`. The trigger
travels as a flow-run tag, never as a parameter; the run is created with its readable name
(`vocabulary.flow_run_name`), so the Prefect UI shows it before the run starts.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun

from connecthub.db import joblog
from connecthub.db.engine import session_scope
from connecthub.db.models import Job, JobLog
from connecthub.jobs.base import JobConfigError
from connecthub.jobs.vocabulary import RunStatus, Trigger, flow_run_name, trigger_tag
from connecthub.plugins.manager import PluginError, load_job_class
from deployments.client import (
    PrefectUnavailableError,
    RunRefusedError,
    prefect_client,
    read_or_none,
)
from deployments.sync import sync_job

RetrySource = Literal["snapshot", "current"]


def _deployment_of(job_id: str) -> tuple[str | None, str]:
    """The job's stored deployment id (None when never synced or its sync failed) and handler."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise RunRefusedError(f"Job '{job_id}' does not exist (or was deleted); it cannot run.")
        return (job.deployment_id if job.sync_error is None else None), job.handler_path


def _create_flow_run(
    job_id: str, deployment_id: str | None, parameters: dict[str, Any], trigger: Trigger
) -> FlowRun:
    """A flow run of the job's deployment; re-synced first when Prefect does not know it."""
    name = flow_run_name(job_id, datetime.now(UTC), trigger, parameters.get("retry_of"))

    def create(client: SyncPrefectClient, deployment: str) -> FlowRun:
        return client.create_flow_run_from_deployment(
            UUID(deployment), parameters=parameters, tags=[trigger_tag(trigger)], name=name
        )

    with prefect_client() as client:
        flow_run = None
        if deployment_id is not None:
            flow_run = read_or_none(lambda: create(client, deployment_id))
        if flow_run is not None:
            return flow_run
        # Never synced, its sync failed, or deleted in Prefect meanwhile.
        outcome = sync_job(job_id)
        if outcome.error:
            raise PrefectUnavailableError(f"Job '{job_id}' is not deployed: {outcome.error}")
        if outcome.deployment_id is None:
            raise RunRefusedError(f"Job '{job_id}' was deleted; it cannot run.")
        return create(client, outcome.deployment_id)


def _start(
    job_id: str, *, trigger: Trigger, params: dict[str, Any] | None, retry_of: int | None
) -> JobLog:
    deployment_id, handler_path = _deployment_of(job_id)
    parameters: dict[str, Any] = {"job_id": job_id}
    if params is not None:
        _check_params(job_id, handler_path, params)
        parameters["params"] = params
    if retry_of is not None:
        parameters["retry_of"] = retry_of
    flow_run = _create_flow_run(job_id, deployment_id, parameters, trigger)
    log_id = joblog.record_pending(
        str(flow_run.id), job_id=job_id, trigger=trigger, retry_of=retry_of,
        snapshot_params=params,
    )
    with session_scope() as session:
        log = session.get(JobLog, log_id)
        assert log is not None  # just written
        return log


def _check_params(job_id: str, handler_path: str, params: dict[str, Any]) -> None:
    """Refuse params the plugin would refuse, before a run exists (if the plugin loads here)."""
    try:
        job_class = load_job_class(handler_path)
    except PluginError:
        return  # installed only where the workers run: the flow validates them
    try:
        job_class.validate_params(params)
    except JobConfigError as error:
        raise RunRefusedError(f"Job '{job_id}' would refuse these params: {error}") from None


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
            latest = joblog.latest_attempt(flow_run_id)
            if latest is not None and RunStatus(latest.status).is_final:
                return latest
        if time.monotonic() > deadline:
            raise TimeoutError(f"JobLog #{log_id} did not finish within {timeout_seconds:.0f} s")
        time.sleep(poll_seconds)
