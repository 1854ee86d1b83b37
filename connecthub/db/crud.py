"""Reading and writing Jobs and JobLogs: the queries every entry point shares.

Saving a job always goes through `save_job(spec)`, which encrypts the secrets; JobLog attempts
are written with `record_attempt`, an upsert on (flow_run_id, attempt) so that the flow body,
the trigger and the reconciler can each write the same attempt, in any order, without a
duplicate row and without a late writer undoing a final status.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from connecthub.db.models import Job, JobLog, utcnow
from connecthub.db.runlog import NON_FINAL, upsert_attempt
from connecthub.jobs.spec import JobSpec
from connecthub.security.fernet import encrypt_json


class JobExistsError(ValueError):
    pass


class JobNotFoundError(LookupError):
    pass


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise JobNotFoundError(f"no job with id '{job_id}'")
    return job


def list_jobs(session: Session) -> list[Job]:
    return list(session.scalars(select(Job).order_by(Job.id)))


def apply_spec(job: Job, spec: JobSpec, *, create_key: bool = True) -> None:
    """Copy `spec` onto `job`, encrypting the secrets (None keeps the stored ones)."""
    for field in (
        "name", "description", "cron_expr", "timezone", "handler_path", "public_cfg", "enabled",
        "timeout_seconds", "max_retries", "retry_delay_seconds", "concurrency_limit", "tags",
    ):
        setattr(job, field, getattr(spec, field))
    job.collision_strategy = spec.collision_strategy.value
    if spec.secret_cfg is not None:
        job.secret_cfg = (
            encrypt_json(spec.secret_cfg, create_key=create_key) if spec.secret_cfg else None
        )
    job.updated_at = utcnow()


def save_job(session: Session, spec: JobSpec, *, must_be_new: bool = False) -> Job:
    """Insert or update the job `spec.id`; flushed, not committed."""
    # Fail closed: a new key may only be created while nothing is encrypted yet.
    encrypted = session.scalar(select(Job.id).where(Job.secret_cfg.is_not(None)).limit(1))
    job = session.get(Job, spec.id)
    if job is None:
        job = Job(id=spec.id, created_at=utcnow())
        session.add(job)
    elif must_be_new:
        raise JobExistsError(f"a job with id '{spec.id}' already exists")
    apply_spec(job, spec, create_key=encrypted is None)
    session.flush()
    return job


def delete_job(session: Session, job_id: str) -> None:
    session.delete(get_job(session, job_id))
    session.flush()


def secret_tokens(session: Session) -> list[str]:
    return list(session.scalars(select(Job.secret_cfg).where(Job.secret_cfg.is_not(None))))


def reencrypt_secrets(session: Session, rotate: Callable[[str], str]) -> int:
    """Apply `rotate` to every stored token; the caller's transaction makes it all-or-nothing."""
    count = 0
    for job in session.scalars(select(Job).where(Job.secret_cfg.is_not(None))):
        job.secret_cfg = rotate(job.secret_cfg)
        count += 1
    session.flush()
    return count


def record_sync(
    session: Session, job_id: str, *, deployment_id: str | None, error: str | None
) -> None:
    """Store the outcome of syncing one job, without touching `updated_at`."""
    values: dict[str, Any] = {"sync_error": error}
    if error is None:
        values.update(deployment_id=deployment_id, synced_at=utcnow())
    session.execute(update(Job).where(Job.id == job_id).values(**values))


def record_attempt(
    session: Session,
    flow_run_id: str,
    attempt: int,
    *,
    create: dict[str, Any],
    update_values: dict[str, Any] | None = None,
    overwrite_final: bool = True,
) -> JobLog:
    """Write the JobLog row of (flow_run_id, attempt) and return it (see `runlog.upsert_attempt`).

    `create` are the values of a new row; on an existing row only `update_values` are written,
    and, unless `overwrite_final`, only while the row is not yet in a final status.
    """
    sql, params = upsert_attempt(
        session.get_bind().dialect.name, flow_run_id, attempt, create=create,
        update_values=update_values, overwrite_final=overwrite_final,
    )
    session.execute(text(sql), params)
    session.expire_all()
    return session.scalars(
        select(JobLog).where(JobLog.flow_run_id == flow_run_id, JobLog.attempt == attempt)
    ).one()


def find_attempt(session: Session, flow_run_id: str, attempt: int) -> JobLog | None:
    return session.scalars(
        select(JobLog).where(JobLog.flow_run_id == flow_run_id, JobLog.attempt == attempt)
    ).one_or_none()


def latest_attempt(session: Session, flow_run_id: str) -> JobLog | None:
    return session.scalars(
        select(JobLog)
        .where(JobLog.flow_run_id == flow_run_id)
        .order_by(JobLog.attempt.desc())
        .limit(1)
    ).one_or_none()


def open_logs(session: Session, limit: int = 500) -> list[JobLog]:
    """JobLogs still PENDING or RUNNING, oldest first."""
    return list(
        session.scalars(
            select(JobLog).where(JobLog.status.in_(NON_FINAL)).order_by(JobLog.id).limit(limit)
        )
    )


def recent_logs(session: Session, *, job_id: str | None = None, limit: int = 20) -> list[JobLog]:
    query = select(JobLog).order_by(JobLog.id.desc()).limit(limit)
    if job_id:
        query = query.where(JobLog.job_id == job_id)
    return list(session.scalars(query))


def last_status_by_job(session: Session, job_ids: list[str]) -> dict[str, str]:
    """The status of each job's newest JobLog (one indexed lookup per job)."""
    statuses: dict[str, str] = {}
    for start in range(0, len(job_ids), 100):
        # One max() per job reads a single entry of the (job_id, id) index, whatever the history.
        newest = [
            select(func.max(JobLog.id)).where(JobLog.job_id == job_id).scalar_subquery()
            for job_id in job_ids[start : start + 100]
        ]
        rows = session.execute(
            select(JobLog.job_id, JobLog.status).where(JobLog.id.in_(newest))
        )
        statuses.update({job_id: status for job_id, status in rows})
    return statuses
