"""Retention of ConnectHub's own history: JobLog rows and alert deliveries.

Rows older than JOBLOG_RETENTION_DAYS (default 30) go, and each job's rows beyond its newest N:
N is the job's own `max_log_rows`, else JOBLOG_MAX_ROWS_PER_JOB (default unset: no cap).
Deletes run in batches of `BATCH` ids, each its own short transaction on indexed ids, so the
admin's reads (and, on SQLite, other writers) wait for one batch at most, never for the whole
prune. A dry run counts what would go and deletes nothing.
Prefect's own flow runs are pruned on the same horizon by `deployments.retention`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from connecthub.core.config import get_settings
from connecthub.db.engine import session_scope
from connecthub.db.models import AlertDelivery, Job, JobLog, utcnow

BATCH = 1000


@dataclass
class PruneReport:
    horizon: datetime
    joblog_expired: int = 0
    joblog_over_cap: int = 0
    deliveries: int = 0
    flow_runs: int = 0

    @property
    def joblog(self) -> int:
        return self.joblog_expired + self.joblog_over_cap


def horizon() -> datetime:
    return utcnow() - timedelta(days=get_settings().joblog_retention_days)


def _delete_batches(
    select_ids: Select[tuple[int]], model: type[JobLog | AlertDelivery], max_batches: int | None
) -> int:
    deleted = batches = 0
    while max_batches is None or batches < max_batches:
        with session_scope() as session:
            ids = list(session.scalars(select_ids.limit(BATCH)))
            if not ids:
                break
            session.execute(delete(model).where(model.id.in_(ids)))
        deleted += len(ids)
        batches += 1
    return deleted


def _count(session: Session, query: Select[tuple[int]]) -> int:
    return session.scalar(select(func.count()).select_from(query.subquery())) or 0


def _over_cap_ids(job_id: str, cap: int) -> Select[tuple[int]]:
    # The (job_id, id) index serves both the offset and the range below it.
    boundary = (
        select(JobLog.id).where(JobLog.job_id == job_id).order_by(JobLog.id.desc())
        .offset(cap).limit(1).scalar_subquery()
    )
    return select(JobLog.id).where(JobLog.job_id == job_id, JobLog.id <= boundary)


def _jobs_over_cap(session: Session, default_cap: int | None) -> list[tuple[str, int]]:
    """Each job with more JobLog rows than its cap, and that cap: the job's `max_log_rows`,
    else `default_cap`. The history of a deleted job follows `default_cap`."""
    counts = select(JobLog.job_id, func.count().label("rows")).group_by(JobLog.job_id)
    if default_cap is None:  # only jobs with a cap of their own can be over it: count only them
        capped = select(Job.id).where(Job.max_log_rows.is_not(None))
        counts = counts.where(JobLog.job_id.in_(capped))
    per_job = counts.subquery()
    cap = Job.max_log_rows if default_cap is None else func.coalesce(Job.max_log_rows, default_cap)
    query = (
        select(per_job.c.job_id, cap).select_from(per_job)
        .outerjoin(Job, Job.id == per_job.c.job_id)
        .where(per_job.c.rows > cap)
    )
    return [(job_id, job_cap) for job_id, job_cap in session.execute(query)]


def prune(*, dry_run: bool = False, max_batches: int | None = None) -> PruneReport:
    """Delete (or, with `dry_run`, count) the expired history; `max_batches` bounds each kind."""
    report = PruneReport(horizon())
    default_cap = get_settings().joblog_max_rows_per_job
    expired = select(JobLog.id).where(JobLog.created_at < report.horizon).order_by(JobLog.id)
    old_deliveries = (
        select(AlertDelivery.id).where(AlertDelivery.created_at < report.horizon)
        .order_by(AlertDelivery.id)
    )
    if dry_run:
        with session_scope() as session:
            report.joblog_expired = _count(session, expired)
            report.deliveries = _count(session, old_deliveries)
            # The expired rows are counted above, as a prune deletes them before the caps apply.
            report.joblog_over_cap = sum(
                _count(session, _over_cap_ids(job_id, cap).where(
                    JobLog.created_at >= report.horizon
                ))
                for job_id, cap in _jobs_over_cap(session, default_cap)
            )
        return report
    report.joblog_expired = _delete_batches(expired, JobLog, max_batches)
    report.deliveries = _delete_batches(old_deliveries, AlertDelivery, max_batches)
    with session_scope() as session:
        over = _jobs_over_cap(session, default_cap)
    for job_id, cap in over:
        report.joblog_over_cap += _delete_batches(
            _over_cap_ids(job_id, cap).order_by(JobLog.id), JobLog, max_batches
        )
    return report
