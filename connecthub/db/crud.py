"""Reading and writing Jobs and JobLogs: the queries every entry point shares.

Saving a job always goes through `save_job(spec)`, which copies every `JobSpec` field onto the
row and encrypts the secrets. JobLog transitions are written by `connecthub.db.joblog` alone;
here are the reads the admin, the CLI and the dashboard share.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from connecthub.db.engine import get_engine
from connecthub.db.models import AlertChannel, Job, JobLog, utcnow
from connecthub.jobs.spec import JOB_FIELDS, JobSpec
from connecthub.security.fernet import encrypt_json

ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


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


def prefix_match(column: Any, prefix: str) -> ColumnElement[bool]:
    """`column` starts with `prefix`, case-insensitively and every character taken literally,
    written so that the index on `lower(column)` (migration 0003) serves it."""
    if get_engine().dialect.name == "sqlite":
        # SQLite serves LIKE from an index only under a NOCASE collation, but GLOB (which is
        # case-sensitive) from the index on lower(column). Its lower() folds ASCII letters only:
        # fold the term the same way. GLOB has no escape character: [c] matches c literally.
        lowered = prefix.translate(ASCII_LOWER)
        pattern = "".join(f"[{char}]" if char in "*?[" else char for char in lowered) + "*"
        return func.lower(column).op("GLOB", is_comparison=True)(pattern)
    # PostgreSQL folds the pattern with the column's lower(), and plans it as a constant: a
    # range scan of the text_pattern_ops index.
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(column).like(func.lower(escaped + "%"), escape="\\")


def search_jobs(
    session: Session, prefix: str, *, limit: int, offset: int = 0
) -> tuple[list[Job], int]:
    """A page of the jobs whose id or name starts with `prefix` (all: ""), by id; and the total."""
    query = select(Job)
    if prefix.strip():
        query = query.where(
            or_(prefix_match(Job.id, prefix.strip()), prefix_match(Job.name, prefix.strip()))
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    jobs = list(session.scalars(query.order_by(Job.id).limit(limit).offset(offset)))
    return jobs, total


def apply_spec(job: Job, spec: JobSpec, *, create_key: bool = True) -> None:
    """Copy `spec` onto `job`, encrypting the secrets (None keeps the stored ones)."""
    for field in JOB_FIELDS:
        if field in ("id", "secret_cfg"):
            continue
        value = getattr(spec, field)
        setattr(job, field, value.value if isinstance(value, Enum) else value)
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
    """Every Fernet token stored: the jobs' secrets and the alert channels' URLs."""
    jobs = session.scalars(select(Job.secret_cfg).where(Job.secret_cfg.is_not(None)))
    return [*jobs, *session.scalars(select(AlertChannel.url_token))]


def reencrypt_secrets(session: Session, rotate: Callable[[str], str]) -> int:
    """Apply `rotate` to every stored token; the caller's transaction makes it all-or-nothing."""
    count = 0
    for job in session.scalars(select(Job).where(Job.secret_cfg.is_not(None))):
        job.secret_cfg = rotate(job.secret_cfg)
        count += 1
    for channel in session.scalars(select(AlertChannel)):
        channel.url_token = rotate(channel.url_token)
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
