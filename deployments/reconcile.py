"""JobLog agrees with Prefect: mirroring the runs the flow body could not record itself.

A run can end without its body writing JobLog: the process was killed (CRASHED), the run was
cancelled (CANCELLED), it died before the body started (an import or infrastructure error), or
its heartbeat stopped and the heartbeat automation crashed it. The reconciler reads Prefect's
own state of (1) every JobLog not yet final, (2) every run of the ConnectHub flow that ended
since the last pass and (3) every run Prefect holds for a concurrency slot, and writes each
attempt's status, idempotently on (flow_run_id, attempt) and never over a final status the
body wrote. A run held for a slot shows as QUEUED. A retry started in the Prefect UI reruns the
same flow run: its body records the new attempt, and when it dies first, the reconciler does.

A run the worker could not hand to its infrastructure ("Failed to submit flow run to
infrastructure", e.g. the Prefect server answered 503 while the worker labelled the run) is
CRASHED with `run_count` 0: no process started, nothing ran. The reconciler starts such a run
once more as a new flow run of the same deployment, with the same parameters and trigger, and
records both in JobLog, linked by `retry_of`; the new run carries RESUBMIT_TAG_PREFIX, so a
second failure stays CRASHED with Prefect's reason. Prefect's idempotency key makes the
resubmission happen once even when two loops see the crash.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateName,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort

from connecthub.db import joblog
from connecthub.jobs.vocabulary import FLOW_NAME, TRIGGER_TAG_PREFIX, RunStatus, trigger_tag
from deployments.client import prefect_client
from flows.attempts import RunAttempt, mirror_outcome

logger = logging.getLogger("connecthub.reconcile")
PAGE_SIZE = 200
# Runs that end while a pass is in flight are read again by the next one.
OVERLAP = timedelta(minutes=2)

FINAL_STATUS = {
    StateType.COMPLETED: RunStatus.SUCCESS,
    StateType.FAILED: RunStatus.FAILED,
    StateType.CRASHED: RunStatus.CRASHED,
    StateType.CANCELLED: RunStatus.CANCELLED,
}
# The state Prefect gives a run that found its deployment's concurrency limit full.
AWAITING_SLOT = "AwaitingConcurrencySlot"
# The worker's message when it could not start a run's process at all
# (prefect.workers.base.BaseWorker._submit_run_and_capture_errors).
SUBMISSION_FAILED = "Failed to submit flow run to infrastructure"
RESUBMIT_TAG_PREFIX = "connecthub.resubmit-of:"


def never_started(flow_run: FlowRun) -> bool:
    """Crashed at submission: no process ran, so starting it again cannot run anything twice."""
    message = (flow_run.state.message if flow_run.state else None) or ""
    return (
        flow_run.state_type is StateType.CRASHED
        and flow_run.run_count == 0
        and message.startswith(SUBMISSION_FAILED)
    )


def _is_resubmission(flow_run: FlowRun) -> bool:
    return any(tag.startswith(RESUBMIT_TAG_PREFIX) for tag in flow_run.tags or ())


def _resubmit(client: SyncPrefectClient, flow_run: FlowRun) -> None:
    """Start a run that never started once more, and record both attempts, linked."""
    attempt = RunAttempt.of(flow_run)
    tags = [tag for tag in flow_run.tags or () if not tag.startswith(TRIGGER_TAG_PREFIX)]
    assert flow_run.deployment_id is not None  # never_started() runs come from a worker
    again = client.create_flow_run_from_deployment(
        flow_run.deployment_id,
        parameters=flow_run.parameters,
        tags=[*tags, trigger_tag(attempt.trigger), f"{RESUBMIT_TAG_PREFIX}{flow_run.id}"],
        idempotency_key=f"{RESUBMIT_TAG_PREFIX}{flow_run.id}",
    )
    message = flow_run.state.message if flow_run.state else SUBMISSION_FAILED
    crashed = joblog.mirror_final(
        attempt.flow_run_id, attempt.attempt, RunStatus.CRASHED,
        job_id=attempt.job_id, trigger=attempt.trigger, retry_of=attempt.retry_of,
        snapshot_params=attempt.params,
        message=f"{message} Nothing ran; ConnectHub started it again as flow run {again.id}.",
        finished_at=flow_run.end_time,
    )
    joblog.record_pending(
        str(again.id), job_id=attempt.job_id, trigger=attempt.trigger, retry_of=crashed,
        snapshot_params=attempt.params,
    )
    logger.warning(
        "flow run %s of job %s never started (%s); started again as flow run %s",
        attempt.flow_run_id, attempt.job_id, message, again.id,
    )


def _mirror(client: SyncPrefectClient, flow_run: FlowRun) -> bool:
    """Record Prefect's state of `flow_run` where JobLog lacks it; True if an outcome was."""
    if flow_run.state_name == AWAITING_SLOT:
        attempt = RunAttempt.of(flow_run)
        joblog.record_queued(
            attempt.flow_run_id, attempt.attempt, job_id=attempt.job_id,
            trigger=attempt.trigger, retry_of=attempt.retry_of, snapshot_params=attempt.params,
        )
        return False  # not an outcome: the run is still to come
    status = FINAL_STATUS.get(flow_run.state_type) if flow_run.state_type else None
    if status is None:
        return False
    flow_run_id = str(flow_run.id)
    attempt = max(flow_run.run_count, 1)
    existing = joblog.find_attempt(flow_run_id, attempt)
    if existing is not None and RunStatus(existing.status).is_final:
        return False
    if never_started(flow_run) and not _is_resubmission(flow_run):
        _resubmit(client, flow_run)
        return True
    message = flow_run.state.message if flow_run.state else None
    mirror_outcome(flow_run, status, message, flow_run.end_time)
    logger.info("JobLog of flow run %s attempt %s mirrored as %s", flow_run_id, attempt, status)
    return True


def _read_by_ids(client: SyncPrefectClient, flow_run_ids: list[str]) -> list[FlowRun]:
    runs: list[FlowRun] = []
    for start in range(0, len(flow_run_ids), PAGE_SIZE):
        batch = [UUID(item) for item in flow_run_ids[start : start + PAGE_SIZE]]
        runs.extend(
            client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=batch)), limit=PAGE_SIZE
            )
        )
    return runs


def reconcile_flow_runs(flow_run_ids: list[str]) -> int:
    """Mirror the final state of these flow runs; returns how many JobLog rows were written."""
    with prefect_client() as client:
        return _mirror_all(client, _read_by_ids(client, flow_run_ids))


def _mirror_all(client: SyncPrefectClient, runs: list[FlowRun]) -> int:
    """Mirror each run; one that cannot be written is logged and does not stop the others."""
    written = 0
    for run in {run.id: run for run in runs}.values():
        try:
            written += _mirror(client, run)
        except Exception:
            logger.exception("could not mirror flow run %s into JobLog", run.id)
    return written


@dataclass
class Reconciler:
    """Passes over Prefect's flow runs; `since` is the end time from which runs are read."""

    since: datetime | None = None
    lookback: timedelta = timedelta(hours=1)

    def run_once(self) -> int:
        started = datetime.now(UTC)
        since = self.since or started - self.lookback
        open_ids = joblog.open_flow_run_ids()
        with prefect_client() as client:
            runs = _read_by_ids(client, open_ids) if open_ids else []
            runs += _read_all(client, FlowRunFilter(end_time=FlowRunFilterEndTime(after_=since)))
            runs += _read_all(
                client, FlowRunFilter(state=FlowRunFilterState(
                    name=FlowRunFilterStateName(any_=[AWAITING_SLOT])
                )),
            )
            written = _mirror_all(client, runs)
        self.since = started - OVERLAP
        return written


def _read_all(client: SyncPrefectClient, flow_run_filter: FlowRunFilter) -> list[FlowRun]:
    """Every run of the ConnectHub flow that `flow_run_filter` selects, page by page."""
    runs: list[FlowRun] = []
    while True:
        page = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            flow_run_filter=flow_run_filter,
            sort=FlowRunSort.END_TIME_DESC,
            limit=PAGE_SIZE,
            offset=len(runs),
        )
        runs.extend(page)
        if len(page) < PAGE_SIZE:
            return runs
