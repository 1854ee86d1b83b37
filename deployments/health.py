"""ConnectHub's health at a glance: what the dashboard and `connecthub status` show.

`snapshot()` gathers, from Prefect, the workers of the work pool (online when their last
heartbeat is younger than CONNECTHUB_WORKER_STALE_SECONDS, default 90) and the late runs
(scheduled more than CONNECTHUB_LATE_RUN_SECONDS, default 300, ago and not started); and, from
ConnectHub's database, the jobs whose last run failed, the sync loop's last pass, the alert
deliveries that fail, and the runs per hour of the last day. `Health.problems` says, one line
each, what is wrong; none means healthy. Prefect being unreachable is a problem, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from sqlalchemy import select
from sqlalchemy.orm import Session

from connecthub.alerts.messages import first_line
from connecthub.alerts.outbox import failing_deliveries
from connecthub.core.config import get_settings
from connecthub.db import crud, loop_state
from connecthub.db.engine import session_scope
from connecthub.db.models import AlertDelivery, JobLog, utcnow
from connecthub.jobs.vocabulary import FLOW_NAME, RunStatus
from deployments.client import PrefectUnavailableError, prefect_client, read_or_none

FAILED_STATUSES = (RunStatus.FAILED.value, RunStatus.CRASHED.value)
LATE_RUNS_LISTED = 50


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    last_heartbeat: datetime | None
    online: bool


@dataclass(frozen=True)
class LateRun:
    job_id: str
    flow_run_id: str
    expected_start: datetime


@dataclass(frozen=True)
class FailingJob:
    job_id: str
    status: str
    log_id: int
    error: str


@dataclass(frozen=True)
class HourBucket:
    hour: datetime
    succeeded: int
    failed: int
    other: int

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.other


@dataclass
class Health:
    checked_at: datetime
    pool: str
    prefect_error: str | None = None
    workers: list[WorkerInfo] = field(default_factory=list)
    late_runs: list[LateRun] = field(default_factory=list)
    failing_jobs: list[FailingJob] = field(default_factory=list)
    last_pass_at: datetime | None = None
    last_pass_error: str | None = None
    failing_deliveries: list[AlertDelivery] = field(default_factory=list)
    runs_per_hour: list[HourBucket] = field(default_factory=list)

    @property
    def workers_online(self) -> int:
        return sum(worker.online for worker in self.workers)

    @property
    def problems(self) -> list[str]:
        found = []
        if self.prefect_error:
            found.append(self.prefect_error)
        elif not self.workers_online:
            found.append(f"no worker online for work pool '{self.pool}'")
        if self.late_runs:
            found.append(f"{len(self.late_runs)} late run(s)")
        if self.failing_jobs:
            names = ", ".join(job.job_id for job in self.failing_jobs[:5])
            found.append(f"{len(self.failing_jobs)} job(s) failing: {names}")
        stale_after = timedelta(seconds=3 * get_settings().sync_interval_seconds + 60)
        if self.last_pass_at is None:
            found.append("the sync/reconcile loop has never run")
        elif self.checked_at - self.last_pass_at > stale_after:
            found.append(f"the sync/reconcile loop has not run since {self.last_pass_at:%c} UTC")
        if self.last_pass_error:
            found.append(f"the last sync/reconcile pass failed: {self.last_pass_error}")
        if self.failing_deliveries:
            found.append(f"{len(self.failing_deliveries)} alert delivery(ies) failing")
        return found


def read_workers(client: SyncPrefectClient, now: datetime) -> list[WorkerInfo]:
    settings = get_settings()
    stale = timedelta(seconds=settings.worker_stale_seconds)
    workers = read_or_none(lambda: client.read_workers_for_work_pool(settings.work_pool)) or []
    return [
        WorkerInfo(
            worker.name, worker.last_heartbeat_time,
            worker.last_heartbeat_time is not None and now - worker.last_heartbeat_time < stale,
        )
        for worker in workers
    ]


def read_late_runs(client: SyncPrefectClient, now: datetime) -> list[LateRun]:
    """ConnectHub's scheduled runs that should have started CONNECTHUB_LATE_RUN_SECONDS ago."""
    late_after = timedelta(seconds=get_settings().late_run_seconds)
    runs = client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
            expected_start_time=FlowRunFilterExpectedStartTime(before_=now - late_after),
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        limit=LATE_RUNS_LISTED,
    )
    return [
        LateRun(str(run.parameters.get("job_id", "?")), str(run.id), run.expected_start_time)
        for run in runs
        if run.expected_start_time is not None
    ]


def _failing_jobs(session: Session) -> list[FailingJob]:
    jobs = [job.id for job in crud.list_jobs(session)]
    failing = [job_id for job_id, status in crud.last_status_by_job(session, jobs).items()
               if status in FAILED_STATUSES]
    found = []
    for job_id in sorted(failing):
        log = session.scalars(
            select(JobLog).where(JobLog.job_id == job_id).order_by(JobLog.id.desc()).limit(1)
        ).one()
        found.append(FailingJob(job_id, log.status, log.id, first_line(log.error)))
    return found


def _runs_per_hour(session: Session, now: datetime) -> list[HourBucket]:
    first_hour = (now - timedelta(hours=23)).replace(minute=0, second=0, microsecond=0)
    counts: dict[datetime, list[int]] = {
        first_hour + timedelta(hours=hour): [0, 0, 0] for hour in range(24)
    }
    rows = session.execute(
        select(JobLog.created_at, JobLog.status).where(JobLog.created_at >= first_hour)
    )
    for created_at, status in rows:
        bucket = counts.get(created_at.replace(minute=0, second=0, microsecond=0))
        if bucket is not None:
            index = 0 if status == RunStatus.SUCCESS.value else (
                1 if status in FAILED_STATUSES else 2
            )
            bucket[index] += 1
    return [HourBucket(hour, *values) for hour, values in counts.items()]


def snapshot() -> Health:
    now = utcnow()
    health = Health(checked_at=now, pool=get_settings().work_pool)
    try:
        with prefect_client() as client:
            health.workers = read_workers(client, now)
            health.late_runs = read_late_runs(client, now)
    except PrefectUnavailableError as error:
        health.prefect_error = str(error)
    with session_scope() as session:
        health.failing_jobs = _failing_jobs(session)
        state = loop_state.read(session, loop_state.SYNC_LOOP)
        if state is not None:
            health.last_pass_at, health.last_pass_error = state.finished_at, state.error
        health.failing_deliveries = failing_deliveries(session)
        health.runs_per_hour = _runs_per_hour(session, now)
    return health
