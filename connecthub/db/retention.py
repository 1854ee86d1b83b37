"""Retention of ConnectHub's own history: JobLog rows and alert deliveries.

Rows older than JOBLOG_RETENTION_DAYS (default 30) go, and, with JOBLOG_MAX_ROWS_PER_JOB, each
job's rows beyond its newest N. Deletes run in batches of `BATCH` ids, each its own short
transaction on indexed ids, so the admin's reads (and, on SQLite, other writers) wait for one
batch at most, never for the whole prune. A dry run counts what would go and deletes nothing.
Prefect's own flow runs are pruned on the same horizon by `deployments.retention`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from connecthub.core.config import get_settings
from connecthub.db.engine import session_scope
from connecthub.db.models import AlertDelivery, JobLog, utcnow

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


def _jobs_over_cap(session: Session, cap: int) -> list[str]:
    return list(session.scalars(
        select(JobLog.job_id).group_by(JobLog.job_id).having(func.count() > cap)
    ))


def prune(*, dry_run: bool = False, max_batches: int | None = None) -> PruneReport:
    """Delete (or, with `dry_run`, count) the expired history; `max_batches` bounds each kind."""
    report = PruneReport(horizon())
    cap = get_settings().joblog_max_rows_per_job
    expired = select(JobLog.id).where(JobLog.created_at < report.horizon).order_by(JobLog.id)
    old_deliveries = (
        select(AlertDelivery.id).where(AlertDelivery.created_at < report.horizon)
        .order_by(AlertDelivery.id)
    )
    if dry_run:
        with session_scope() as session:
            report.joblog_expired = _count(session, expired)
            report.deliveries = _count(session, old_deliveries)
            if cap:
                report.joblog_over_cap = sum(
                    _count(session, _over_cap_ids(job_id, cap).where(
                        JobLog.created_at >= report.horizon
                    ))
                    for job_id in _jobs_over_cap(session, cap)
                )
        return report
    report.joblog_expired = _delete_batches(expired, JobLog, max_batches)
    report.deliveries = _delete_batches(old_deliveries, AlertDelivery, max_batches)
    if cap:
        with session_scope() as session:
            over = _jobs_over_cap(session, cap)
        for job_id in over:
            report.joblog_over_cap += _delete_batches(
                _over_cap_ids(job_id, cap).order_by(JobLog.id), JobLog, max_batches
            )
    return report
